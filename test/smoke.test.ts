import { expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Actor from "../src/actors/Actor.ts"
import { makeCluster } from "../test/fixtures/nodes.ts"
import { makeProbeState, Probe, probeLayer } from "../test/fixtures/probe.ts"

it.live("smoke", () => Effect.gen(function*() {
  const cluster = yield* makeCluster("secure")
  const host = yield* cluster.add(probeLayer(makeProbeState()), { name: "host" })
  const caller = yield* cluster.add(probeLayer(makeProbeState()), { name: "caller" })
  void host
  const probe = (yield* Effect.provide(Actor.client(Probe), caller))
  for (let i = 0; i < 5; i++) {
    const r = yield* probe(`x${i}`).Increment({ by: 1 }).pipe(Effect.timeout("2 seconds"), Effect.either)
    console.log(i, r)
  }
  expect(1).toBe(1)
}).pipe(Effect.scoped))
