/**
 * The examples as a newcomer runs them, as real processes: `npm start`'s demo, the secure
 * sessions, the file transfer (on its own private nats-server, and on the test's), a cluster node
 * watched by the state monitor, and the gateway example's own `troupe.toml` and `worker.toml`
 * served by two `troupe serve` processes over a real nats-server (`--nats` and `--port` point
 * them at the test's server and a free port).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { createHash, randomBytes } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { freePort, type NodeChild, natsServerResource, spawnNode } from "../fixtures/nats.ts"

const demo = fileURLToPath(new URL("../../examples/demo.ts", import.meta.url))
const secureExample = fileURLToPath(new URL("../../examples/secure.ts", import.meta.url))
const clusterNode = fileURLToPath(new URL("../../examples/cluster-node.ts", import.meta.url))
const monitorState = fileURLToPath(new URL("../../examples/monitor-state.ts", import.meta.url))
const fileTransfer = fileURLToPath(new URL("../../examples/file-transfer.ts", import.meta.url))
const bin = fileURLToPath(new URL("../../bin/troupe.mjs", import.meta.url))
const edgeConfig = fileURLToPath(new URL("../../examples/gateway/troupe.toml", import.meta.url))
const workerConfig = fileURLToPath(new URL("../../examples/gateway/worker.toml", import.meta.url))

/** a child process stopped (by PID) when the scope closes */
const child = (...args: Parameters<typeof spawnNode>) =>
  Effect.acquireRelease(Effect.sync(() => spawnNode(...args)), (running) => Effect.promise(() => running.stop()))

/** a line of `running` matching `match` after its first `after` lines */
const lineAfter = (running: NodeChild, after: number, match: RegExp) => {
  let index = 0
  return Effect.promise(() => running.waitForLine((line) => index++ >= after && match.test(line), 20_000))
}

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
      expect(out).toContainEqual(
        expect.stringMatching(/^    RemoteDefect: the counter tripped over a bug \(on node-\S+\)$/)
      )
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

  it.live(
    "examples/secure: two nodes that trust each other talk; the untrusted one is refused with HandshakeError",
    () =>
      Effect.gen(function*() {
        const run = yield* child(secureExample)
        const code = yield* Effect.promise(() => run.exited)
        expect(code, run.stderr()).toBe(0)
        expect(run.lines).toEqual([
          expect.stringMatching(/^alice's public key: [A-Za-z0-9_-]{43}$/),
          "bob asks: opened with 1234",
          expect.stringMatching(/^bob's sessions: alice-\S+$/),
          expect.stringMatching(
            /^mallory asks: HandshakeError: handshake with alice-\S+ failed: rejected by the peer: not trusted$/
          ),
          "alice rejected: {\"untrusted\":1}"
        ])
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "examples/cluster-node watched by examples/monitor-state: the node joins serving, drains, then leaves",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerResource()
        const env = { TROUPE_NAMESPACE: `ex${Math.random().toString(36).slice(2, 8)}` }
        const monitor = yield* child(monitorState, [nats.url], env)
        yield* lineAfter(monitor, 0, /^ {2}\(no nodes\)$/)
        const node = yield* child(clusterNode, [nats.url, "worker-1"], { ...env, DRAIN_AFTER: "2", LEAVE_AFTER: "4" })
        const row = (status: string) =>
          new RegExp(
            `^worker-1 +worker-1-\\S+ +${status} +alive +[\\d.]+s ago +nats\\+msgpack://worker-1-\\S+ Greeter,Counter$`
          )
        const serving = yield* lineAfter(monitor, 0, row("serving"))
        const draining = yield* lineAfter(monitor, monitor.lines.indexOf(serving), row("draining"))
        yield* lineAfter(monitor, monitor.lines.indexOf(draining), /^ {2}\(no nodes\)$/)
        const code = yield* Effect.promise(() => node.exited)
        expect(code, node.stderr()).toBe(0)
        expect(node.lines).toEqual([
          expect.stringMatching(/^worker-1: up as worker-1-\S+, hosting Greeter, Counter$/),
          "worker-1: draining (no new routes)",
          "worker-1: leaving"
        ])
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "examples/file-transfer: a file goes to the vault node and back over NATS, its SHA-256 checked both ways",
    () =>
      Effect.gen(function*() {
        const checkRun = (lines: ReadonlyArray<string>) => {
          expect(lines).toContainEqual(expect.stringMatching(/^uploaded: \d+ bytes in .*, vault's sha256 matches$/))
          expect(lines).toContainEqual(expect.stringMatching(/^download: \d+ bytes in .*, sha256 matches$/))
          expect(lines.at(-1)).toBe("a file the vault never got: NoSuchFile")
        }
        // as the README runs it: no arguments, a 32 MiB file of its own and a private nats-server
        const alone = yield* child(fileTransfer, [], { NATS_URL: "" })
        const aloneCode = yield* Effect.promise(() => alone.exited)
        expect(aloneCode, alone.stderr()).toBe(0)
        expect(alone.lines[0]).toMatch(/^file: {5}\S+sample\.bin \(32\.0 MiB\), sha256 [0-9a-f]{64}$/)
        checkRun(alone.lines)
        // a given file (not a multiple of any chunk size) over the test's server
        const nats = yield* natsServerResource()
        const directory = yield* Effect.acquireRelease(
          Effect.sync(() => mkdtempSync(Path.join(tmpdir(), "troupe-ft-"))),
          (path) => Effect.sync(() => rmSync(path, { recursive: true, force: true }))
        )
        const file = Path.join(directory, "given.bin")
        const content = randomBytes(5 * 1024 * 1024 + 12_345)
        writeFileSync(file, content)
        const given = yield* child(fileTransfer, [file, nats.url])
        const givenCode = yield* Effect.promise(() => given.exited)
        expect(givenCode, given.stderr()).toBe(0)
        const sha256 = createHash("sha256").update(content).digest("hex")
        expect(given.lines[0]).toBe(`file:     ${file} (5.0 MiB), sha256 ${sha256}`)
        expect(given.lines).toContainEqual(
          expect.stringMatching(new RegExp(`^uploaded: ${content.byteLength} bytes in `))
        )
        expect(given.lines).toContainEqual(
          expect.stringMatching(new RegExp(`^download: ${content.byteLength} bytes in `))
        )
        checkRun(given.lines)
      }).pipe(Effect.scoped),
    90_000
  )

  it.live(
    "examples/gateway: its troupe.toml and worker.toml answer GET /hello/:name through the Greeter on the other node",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerResource()
        const port = yield* Effect.promise(freePort)
        // the Greeter names its node from TROUPE_NODE_LABEL: the reply shows which process served it
        const worker = yield* child(bin, ["serve", "--config", workerConfig, "--nats", nats.url], {
          TROUPE_NODE_LABEL: "greeter-process"
        }, { tsx: false })
        const edge = yield* child(
          bin,
          ["serve", "--config", edgeConfig, "--nats", nats.url, "--port", String(port)],
          {},
          {
            tsx: false
          }
        )
        yield* Effect.promise(() =>
          worker.waitForLine(/^troupe: node greeter-worker-\S+ up; hosting \[Greeter\]$/, 30_000)
        )
        yield* Effect.promise(() =>
          edge.waitForLine(
            new RegExp(`^troupe: node edge-\\S+ up; hosting \\[\\]; http on 127\\.0\\.0\\.1:${port}$`),
            30_000
          )
        )
        // the edge learns of the worker from its heartbeats (every second): poll, bounded, until it routes
        let hello = yield* httpGet(port, "/hello/ada?greeting=Bonjour")
        for (let i = 0; i < 100 && hello.status !== 200; i++) {
          yield* Effect.sleep("100 millis")
          hello = yield* httpGet(port, "/hello/ada?greeting=Bonjour")
        }
        // the reply names the worker's node: the Greeter ran there, not on the edge
        expect(hello).toEqual({
          status: 200,
          body: { message: "Bonjour, ada!", count: 1, node: "greeter-process (ada)" }
        })
        expect(yield* httpGet(port, "/hello/ada")).toEqual({
          status: 200,
          body: { message: "Hello, ada!", count: 2, node: "greeter-process (ada)" }
        })
        // the example's declared status for its typed error
        expect(yield* httpGet(port, "/hello/nobody")).toEqual({ status: 404, body: { _tag: "Shy", name: "nobody" } })
      }).pipe(Effect.scoped),
    120_000
  )
})
