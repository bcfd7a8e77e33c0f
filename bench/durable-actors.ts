/**
 * The kinds of the durable suite (`durable.ts`), hosted by `durable-responder.ts`:
 * - `Tally`: a plain actor, its count in the fiber (a `Ref`): the baseline ask;
 * - `Ledger`: a durable actor whose every `Add` changes its `Actor.state`, so every ask is a
 *   fenced save to the store before the reply;
 * - `Ticker`: a durable actor that sets one repeating reminder on `Start`; each firing runs
 *   `Tick`, which only counts itself in this process;
 * - `TickerStats`: a service answering how many `Tick`s this process has run.
 *
 * @since 0.5.0
 */
import { Rpc } from "@effect/rpc"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import { Actor } from "../src/index.ts"

/**
 * @since 0.5.0
 * @category kinds
 */
export const Tally = Actor.make("Tally", [
  Rpc.make("Add", { payload: { by: Schema.Number }, success: Schema.Number })
])

/**
 * @since 0.5.0
 * @category kinds
 */
export const Ledger = Actor.make("Ledger", [
  Rpc.make("Add", { payload: { by: Schema.Number }, success: Schema.Number })
])

/**
 * @since 0.5.0
 * @category kinds
 */
export const Ticker = Actor.make("Ticker", [
  Rpc.make("Start", { payload: { everyMillis: Schema.Number } }),
  Rpc.make("Tick")
])

/**
 * @since 0.5.0
 * @category kinds
 */
export const TickerStats = Actor.service("TickerStats", [
  /** the `Tick`s run so far in this process, and when (`performance.now()` of this process) */
  Rpc.make("Fired", { success: Schema.Struct({ fired: Schema.Number, millis: Schema.Number }) })
])

/**
 * @since 0.5.0
 * @category layers
 */
export const TallyLive = Actor.toLayer(
  Tally,
  Effect.gen(function*() {
    const count = yield* Ref.make(0)
    return { Add: ({ by }) => Ref.updateAndGet(count, (n) => n + by) }
  })
)

const LedgerState = Schema.Struct({ total: Schema.Number })

/**
 * @since 0.5.0
 * @category layers
 */
export const LedgerLive = Actor.toLayer(
  Ledger,
  Effect.gen(function*() {
    const state = yield* Actor.state(LedgerState, { initial: () => ({ total: 0 }) })
    return { Add: ({ by }) => state.modify((s) => [s.total + by, { total: s.total + by }] as const) }
  })
)

/**
 * `Ticker` and `TickerStats`, counting the `Tick`s in `counter`.
 *
 * @since 0.5.0
 * @category layers
 */
export const tickerLayers = (counter: { fired: number }) =>
  Layer.merge(
    Actor.toLayer(
      Ticker,
      Effect.gen(function*() {
        const reminders = yield* Actor.reminders(Ticker)
        return {
          Start: ({ everyMillis }) => reminders.set("tick", { every: Duration.millis(everyMillis) }, "Tick", undefined),
          Tick: () =>
            Effect.sync(() => {
              counter.fired++
            })
        }
      })
    ),
    Actor.toLayer(
      TickerStats,
      Effect.succeed({
        Fired: () => Effect.sync(() => ({ fired: counter.fired, millis: performance.now() }))
      })
    )
  )
