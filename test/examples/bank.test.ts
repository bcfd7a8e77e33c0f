/**
 * `examples/bank.ts` as a newcomer runs it, on the in-memory store: a refused withdrawal
 * changes nothing, the balance survives passivation, and of two nodes that both activate one
 * account, the second save gets `StateConflict` instead of overwriting the first.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"
import { spawnNode } from "../fixtures/nats.ts"

const bank = fileURLToPath(new URL("../../examples/bank.ts", import.meta.url))

describe("examples/bank", () => {
  it.live("shows each message as a transaction and fencing between two activations", () =>
    Effect.gen(function*() {
      const run = yield* Effect.acquireRelease(
        Effect.sync(() => spawnNode(bank, [], { NATS_URL: "" })),
        (running) => Effect.promise(() => running.stop())
      )
      const code = yield* Effect.promise(() => run.exited)
      expect(code, run.stderr()).toBe(0)
      expect(run.lines).toEqual([
        "alice deposits 100 on node a: 100",
        "alice withdraws 500: Refused (balance 100)",
        "alice's balance, unchanged: 100",
        "alice's balance after passivation: 100",
        "alice deposits 10 on node b: 110",
        expect.stringMatching(/^alice deposits 1 on node a: StateConflict \(the state of Account\/alice was written/),
        "alice's balance on node a, activated again: 110",
        "alice's balance on node b: 110",
        "done"
      ])
    }).pipe(Effect.scoped), 60_000)
})
