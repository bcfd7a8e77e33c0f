/**
 * Topics: typed publish/subscribe by subject, with NATS wildcards (`*` one token, `>` the rest).
 *
 * Every subscriber gets each event (broadcast) unless it joins a queue group
 * (`{ group: "name" }`), in which case one member of the group does. Both can be used on the
 * same subject at once. `Topic.routes` decides per subject whether events stay in the process
 * (`local`: zero-copy, with backpressure) or go through the node's transport (`remote`), or both.
 *
 * @example
 * ```ts
 * const OrderPlaced = Topic.make("orders.placed", Order)
 * yield* Topic.publish(OrderPlaced, order)
 * yield* Topic.subscribe(Topic.make("orders.>", Order)).pipe(Stream.runForEach(handle), Effect.forkScoped)
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Subject from "../layers/Subject.ts"
import type { Headers } from "../schema/Envelope.ts"
import type { EncodeError, PayloadTooLarge, TransportError } from "../schema/Errors.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("troupe/Topic")

/**
 * A typed topic: a subject (or a pattern, for subscribing) and the schema of its events.
 *
 * @since 0.1.0
 * @category models
 */
export interface Topic<A, I = A> {
  readonly [TypeId]: typeof TypeId
  readonly subject: string
  readonly schema: Schema.Schema<A, I>
}

/**
 * Declares a topic. The subject may contain wildcards; such a topic can be subscribed to, and
 * published to with an explicit concrete subject.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <A, I>(subject: string, schema: Schema.Schema<A, I>): Topic<A, I> => {
  const problem = Subject.subjectProblem(subject, true)
  if (problem !== undefined) throw new TypeError(`Topic.make: ${problem}`)
  return { [TypeId]: TypeId, subject, schema }
}

/**
 * One received event.
 *
 * @since 0.1.0
 * @category models
 */
export interface Event<A> {
  /** the concrete subject it was published to */
  readonly subject: string
  readonly value: A
  /** the node that published it */
  readonly source: string
  readonly headers: Headers
}

/**
 * Where events of a subject travel.
 *
 * @since 0.1.0
 * @category models
 */
export type Bus = "local" | "remote" | "both"

/**
 * What a subscription does when its buffer is full: `suspend` the (local) publisher, or drop the
 * newest (`dropping`) or the oldest (`sliding`) event, counted in `troupe_topic_dropped`.
 *
 * @since 0.1.0
 * @category models
 */
export type Strategy = "suspend" | "dropping" | "sliding"

/**
 * @since 0.1.0
 * @category models
 */
export interface SubscribeOptions {
  /** join this queue group: each event goes to one member of the group */
  readonly group?: string | undefined
  /** events buffered for a slow consumer; default 1024 */
  readonly bufferSize?: number | undefined
  /**
   * when the buffer is full; default `suspend` for events from local publishers and `dropping`
   * for events from the transport (a network callback cannot wait)
   */
  readonly strategy?: Strategy | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface PublishOptions {
  /** the concrete subject, for a topic declared with a pattern */
  readonly subject?: string | undefined
  readonly headers?: Headers | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export type PublishError = TransportError | EncodeError | PayloadTooLarge

/**
 * The node's event bus (provided by `Node.layer`).
 *
 * @since 0.1.0
 * @category models
 */
export interface TopicBusShape {
  readonly publish: <A, I>(
    topic: Topic<A, I>,
    value: A,
    options?: PublishOptions
  ) => Effect.Effect<void, PublishError>
  readonly subscribe: <A, I>(
    topic: Topic<A, I>,
    options?: SubscribeOptions
  ) => Stream.Stream<Event<A>, TransportError>
  /** live subscriptions made through this bus (diagnostics, leak checks) */
  readonly subscriptionCount: () => number
}

/**
 * @since 0.1.0
 * @category tags
 */
export class TopicBus extends Context.Tag("troupe/TopicBus")<TopicBus, TopicBusShape>() {}

/**
 * Publishes one event.
 *
 * @since 0.1.0
 * @category publishing
 */
export const publish = <A, I>(
  topic: Topic<A, I>,
  value: A,
  options?: PublishOptions
): Effect.Effect<void, PublishError, TopicBus> => Effect.flatMap(TopicBus, (bus) => bus.publish(topic, value, options))

/**
 * The events of a topic (its subject may be a pattern), as a Stream. The subscription lives
 * while the stream runs: it is removed when the stream ends or its scope closes.
 *
 * @since 0.1.0
 * @category subscribing
 */
export const subscribe = <A, I>(
  topic: Topic<A, I>,
  options?: SubscribeOptions
): Stream.Stream<Event<A>, TransportError, TopicBus> =>
  Stream.unwrap(Effect.map(TopicBus, (bus) => bus.subscribe(topic, options)))

/**
 * A routing rule: events whose subject matches `pattern` travel on `bus`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Route {
  readonly pattern: string
  readonly bus: Bus
}

/**
 * The routing rules of the node (first match wins).
 *
 * @since 0.1.0
 * @category tags
 */
export class Routes extends Context.Tag("troupe/Topic/Routes")<Routes, ReadonlyArray<Route>>() {}

/**
 * Routes subjects to buses, first match wins; subjects that match no rule go through the
 * node's transport (`remote`).
 *
 * @example
 * ```ts
 * Topic.routes([{ pattern: "clock.>", bus: "local" }, { pattern: "orders.>", bus: "remote" }])
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const routes = (rules: ReadonlyArray<Route>): Layer.Layer<Routes> => {
  for (const rule of rules) {
    const problem = Subject.subjectProblem(rule.pattern, true)
    if (problem !== undefined) throw new TypeError(`Topic.routes: ${problem}`)
  }
  return Layer.succeed(Routes, rules)
}
