/**
 * The kinds every benchmark suite measures: a `Counter` actor (state, one message at a time)
 * and an `Echo` service (stateless, concurrent handlers).
 *
 * @since 0.1.0
 */
import { Rpc } from "@effect/rpc"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import { Actor } from "../src/index.ts"

/**
 * @since 0.1.0
 * @category kinds
 */
export const Counter = Actor.make("Counter", [
  Rpc.make("Increment", { payload: { by: Schema.Number }, success: Schema.Number }),
  Rpc.make("Get", { success: Schema.Number })
])

/**
 * @since 0.1.0
 * @category kinds
 */
export const Echo = Actor.service("Echo", [
  Rpc.make("Echo", { payload: { n: Schema.Number }, success: Schema.Number })
])

/**
 * The kind of the NATS suite: a stateless service whose one handler does the least work there
 * is (`by + 1`), so the figure is the cost of the ask path and the wire, not of the handler. It
 * answers the same `{ by: 1 }` payload the raw nats.js baseline sends.
 *
 * @since 0.1.0
 * @category kinds
 */
export const Adder = Actor.service("Adder", [
  Rpc.make("Increment", { payload: { by: Schema.Number }, success: Schema.Number })
])

/**
 * The tell benchmark sends up to this many messages per round before asking for the count.
 *
 * @since 0.1.0
 * @category constants
 */
export const TELL_MAILBOX_CAPACITY = 200_000

/**
 * @since 0.1.0
 * @category layers
 */
export const CounterLive = Actor.toLayer(
  Counter,
  Effect.gen(function*() {
    const count = yield* Ref.make(0)
    return {
      Increment: ({ by }) => Ref.updateAndGet(count, (n) => n + by),
      Get: () => Ref.get(count)
    }
  }),
  { mailboxCapacity: TELL_MAILBOX_CAPACITY }
)

/**
 * @since 0.1.0
 * @category layers
 */
export const EchoLive = Actor.toLayer(
  Echo,
  Effect.succeed({
    Echo: ({ n }) => Effect.succeed(n)
  })
)

/**
 * @since 0.1.0
 * @category layers
 */
export const AdderLive = Actor.toLayer(
  Adder,
  Effect.succeed({
    Increment: ({ by }) => Effect.succeed(by + 1)
  })
)

/**
 * Both kinds, hosted on whatever node is provided.
 *
 * @since 0.1.0
 * @category layers
 */
export const KindsLive = Layer.merge(CounterLive, EchoLive)
