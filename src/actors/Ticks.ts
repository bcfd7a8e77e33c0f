/**
 * A clock module: a service that publishes `clock.tick` on a `Schedule` (default once per
 * second). An example of an actor-side module built from Troupe's parts, and a source of time
 * events that tests drive with `TestClock`.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Topic from "./Topic.ts"

/**
 * One tick: its sequence number (from 1) and the clock time it was published at.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Tick = Schema.Struct({ seq: Schema.Number, at: Schema.Number })

/**
 * @since 0.1.0
 * @category models
 */
export type Tick = typeof Tick.Type

/**
 * The `clock.tick` topic.
 *
 * @since 0.1.0
 * @category topics
 */
export const ticks: Topic.Topic<Tick> = Topic.make("clock.tick", Tick)

/**
 * Publishes a tick every `interval` (default 1 second) while the layer lives. Ticks are meant
 * to stay in the process: route `clock.>` to the `local` bus unless remote nodes need them.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: {
  readonly interval?: Duration.DurationInput | undefined
  readonly topic?: Topic.Topic<Tick> | undefined
}): Layer.Layer<never, never, Topic.TopicBus> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const topic = options?.topic ?? ticks
    let seq = 0
    const tick = Effect.flatMap(Clock.currentTimeMillis, (at) =>
      Topic.publish(topic, { seq: ++seq, at }).pipe(
        Effect.catchAll((error) => Effect.logWarning("clock tick not published", error))
      ))
    // one tick at every whole interval: interval, 2 × interval, ...
    yield* Effect.forkScoped(
      Effect.delay(tick, options?.interval ?? Duration.seconds(1)).pipe(Effect.repeat(Schedule.forever))
    )
  }))
