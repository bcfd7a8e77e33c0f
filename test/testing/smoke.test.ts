import { Rpc } from "@effect/rpc"
import { expect, it } from "@effect/vitest"
import { Effect, Ref, Schema } from "effect"
import * as Actor from "../../src/actors/Actor.ts"
import * as TestCluster from "../../src/testing/TestCluster.ts"

const Counter = Actor.make("Counter", [
  Rpc.make("Increment", { payload: { by: Schema.Number }, success: Schema.Number })
])
const CounterLive = Actor.toLayer(Counter, Effect.gen(function*() {
  const count = yield* Ref.make(0)
  return { Increment: ({ by }) => Ref.updateAndGet(count, (n) => n + by) }
}))

it.scoped("smoke", () =>
  Effect.gen(function*() {
    const t0 = Date.now()
    const cluster = yield* TestCluster.make({ nodes: ["a", "b", "c"], seed: 42, layer: CounterLive })
    yield* cluster.settle
    console.log("settled", Date.now() - t0, cluster.node("a").nodeId)
    const counter = yield* cluster.client("a", Counter)
    for (let i = 0; i < 10; i++) expect(yield* counter(`c-${i}`).Increment({ by: 1 })).toBe(1)
    console.log("asked", Date.now() - t0)
    yield* cluster.faults({ delay: ["1 millis", "50 millis"], drop: 0.05 })
    const r = yield* Effect.either(counter("c-1").Increment({ by: 1 }, { timeout: "1 second" }))
    console.log(r)
    yield* cluster.crash("b")
    yield* cluster.restart("b")
    yield* cluster.heal
    yield* cluster.settle
    console.log("settled again", Date.now() - t0, cluster.stats())
    console.log(cluster.trace().slice(-15).join("\n"))
  }).pipe(TestCluster.withReport))
