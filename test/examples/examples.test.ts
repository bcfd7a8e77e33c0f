/**
 * The examples as a newcomer runs them, as real processes: `npm start`'s demo, and the gateway
 * example's own `troupe.toml` and `worker.toml` served by two `troupe serve` processes over a real
 * nats-server (`--nats` and `--port` point them at the test's server and a free port).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"
import { freePort, natsServerResource, spawnNode } from "../fixtures/nats.ts"

const demo = fileURLToPath(new URL("../../examples/demo.ts", import.meta.url))
const bin = fileURLToPath(new URL("../../bin/troupe.mjs", import.meta.url))
const edgeConfig = fileURLToPath(new URL("../../examples/gateway/troupe.toml", import.meta.url))
const workerConfig = fileURLToPath(new URL("../../examples/gateway/worker.toml", import.meta.url))

/** a child process stopped (by PID) when the scope closes */
const child = (...args: Parameters<typeof spawnNode>) =>
  Effect.acquireRelease(Effect.sync(() => spawnNode(...args)), (running) => Effect.promise(() => running.stop()))

const httpGet = (port: number, path: string) =>
  Effect.promise(async () => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(10_000) })
    return { status: response.status, body: await response.json() as unknown }
  })

describe("examples", () => {
  it.live("npm start: the demo runs to its end and exits 0, showing each step", () =>
    Effect.gen(function*() {
      const run = yield* child(demo)
      const code = yield* Effect.promise(() => run.exited)
      const out = run.lines
      expect(code, run.stderr()).toBe(0)
      // asks and a tell, in order
      expect(out).toContain("    Increment c-1 by 2 -> 2")
      expect(out).toContain("    Increment c-1 by 3 -> 5")
      expect(out).toContain("    told Increment by 1; Get c-1 -> 6")
      expect(out).toContain("    Hello, Ada! (asked by the demo)")
      // the typed error declared on the Rpc
      expect(out).toContain("    NotEnough: have 6, wanted 100")
      // the per-call timeout: AskTimeout at the caller, the slow handler interrupted
      expect(out).toContainEqual(expect.stringMatching(/^    AskTimeout after \d+ ms \(Counter\/c-1\.Slow\)$/))
      expect(out.filter((line) => line === "    [Counter c-1] slow handler interrupted")).toHaveLength(2)
      expect(out).toContain("    TimeoutException on the caller side")
      // the defect: RemoteDefect at the caller, then a restart with fresh state
      expect(out).toContainEqual(expect.stringMatching(/^    RemoteDefect: the counter tripped over a bug \(on node-\S+\)$/))
      const crash = out.findIndex((line) => line.startsWith("    RemoteDefect:"))
      const activations = out.flatMap((line, i) => line === "    [Counter c-2] activated with count 0" ? [i] : [])
      expect(activations).toHaveLength(2)
      expect(activations[1]).toBeGreaterThan(crash)
      expect(out).toContain("    Get c-2 after the restart -> 0")
      expect(out).toContain("    c-1 was not affected: Get c-1 -> 6")
      // a full mailbox refuses a tell
      expect(out).toContainEqual(expect.stringMatching(/^    tell job \d: MailboxFull \(capacity 2\)$/))
      expect(out.at(-1)).toBe("done")
    }).pipe(Effect.scoped), 60_000)

  it.live("examples/gateway: its troupe.toml and worker.toml answer GET /hello/:name through the Greeter on the other node", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerResource()
      const port = yield* Effect.promise(freePort)
      // the Greeter names its node from TROUPE_NODE_LABEL: the reply shows which process served it
      const worker = yield* child(bin, ["serve", "--config", workerConfig, "--nats", nats.url], {
        TROUPE_NODE_LABEL: "greeter-process"
      }, { tsx: false })
      const edge = yield* child(bin, ["serve", "--config", edgeConfig, "--nats", nats.url, "--port", String(port)], {}, {
        tsx: false
      })
      yield* Effect.promise(() => worker.waitForLine(/^troupe: node greeter-worker-\S+ up; hosting \[Greeter\]$/, 30_000))
      yield* Effect.promise(() =>
        edge.waitForLine(new RegExp(`^troupe: node edge-\\S+ up; hosting \\[\\]; http on 127\\.0\\.0\\.1:${port}$`), 30_000)
      )
      // the edge learns of the worker from its heartbeats (every second): poll, bounded, until it routes
      let hello = yield* httpGet(port, "/hello/ada?greeting=Bonjour")
      for (let i = 0; i < 100 && hello.status !== 200; i++) {
        yield* Effect.sleep("100 millis")
        hello = yield* httpGet(port, "/hello/ada?greeting=Bonjour")
      }
      // the reply names the worker's node: the Greeter ran there, not on the edge
      expect(hello).toEqual({ status: 200, body: { message: "Bonjour, ada!", count: 1, node: "greeter-process (ada)" } })
      expect(yield* httpGet(port, "/hello/ada")).toEqual({
        status: 200,
        body: { message: "Hello, ada!", count: 2, node: "greeter-process (ada)" }
      })
      // the example's declared status for its typed error
      expect(yield* httpGet(port, "/hello/nobody")).toEqual({ status: 404, body: { _tag: "Shy", name: "nobody" } })
    }).pipe(Effect.scoped), 120_000)
})
