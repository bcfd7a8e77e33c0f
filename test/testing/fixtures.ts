/**
 * The kinds the TestCluster suites host: a Counter actor (its activations and finalizers
 * counted), a Slow actor whose handler sleeps, and a topic.
 */
import { Rpc } from "@effect/rpc"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Actor from "../../src/actors/Actor.ts"
import * as Topic from "../../src/actors/Topic.ts"

export const Counter = Actor.make("Counter", [
  Rpc.make("Increment", { payload: { by: Schema.Number }, success: Schema.Number }),
  Rpc.make("Sleep", { payload: { millis: Schema.Number }, success: Schema.Number })
])

/** what the Counter instances did, across every node of one cluster */
export interface Journal {
  activations: number
  finalized: number
}

export const counterLive = (journal: Journal, maxIdleTime: `${number} seconds` = "30 seconds") =>
  Actor.toLayer(
    Counter,
    Effect.gen(function*() {
      journal.activations++
      yield* Effect.addFinalizer(() => Effect.sync(() => void journal.finalized++))
      const count = yield* Ref.make(0)
      return {
        Increment: ({ by }) => Ref.updateAndGet(count, (n) => n + by),
        Sleep: ({ millis }) => Effect.as(Effect.sleep(millis), millis)
      }
    }),
    { maxIdleTime }
  )

export const Ticks = Topic.make("ticks.>", Schema.Struct({ n: Schema.Number }))

export const kinds = (journal: Journal = { activations: 0, finalized: 0 }) => Layer.mergeAll(counterLive(journal))
