/**
 * `examples/bank.ts` with `NATS_URL` set, against a JetStream nats-server: its accounts live in
 * the JetStream key-value store, so the second run shows the balances of the first.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll } from "vitest"
import { type NatsServer, spawnNode, startNatsServer } from "../fixtures/nats.ts"

const bank = fileURLToPath(new URL("../../examples/bank.ts", import.meta.url))

let server: NatsServer
beforeAll(async () => {
  server = await startNatsServer({ jetstream: true })
}, 20_000)
afterAll(() => server?.stop())

const run = Effect.acquireRelease(
  Effect.sync(() => spawnNode(bank, [], { NATS_URL: server.url })),
  (running) => Effect.promise(() => running.stop())
).pipe(
  Effect.flatMap((running) =>
    Effect.map(
      Effect.promise(() => running.exited),
      (code) => ({ code, lines: running.lines, stderr: running.stderr() })
    )
  ),
  Effect.scoped
)

describe("examples/bank on NATS", () => {
  it.live("a second run shows the balances of the first", () =>
    Effect.gen(function*() {
      const first = yield* run
      expect(first.code, first.stderr).toBe(0)
      expect(first.lines).toEqual([
        "alice's balance, as stored: 0",
        "bob's balance, as stored: 0",
        "alice deposits 100: 100",
        "bob deposits 5: 5",
        "done"
      ])
      const second = yield* run
      expect(second.code, second.stderr).toBe(0)
      expect(second.lines).toEqual([
        "alice's balance, as stored: 100",
        "bob's balance, as stored: 5",
        "alice deposits 100: 200",
        "bob deposits 5: 10",
        "done"
      ])
    }), 60_000)
})
