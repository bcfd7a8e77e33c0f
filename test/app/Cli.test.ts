/**
 * The `troupe` CLI as real processes (`node bin/troupe.mjs ...`, no tsx preloaded) on a real
 * nats-server: `serve` answers HTTP, `monitor` prints a node that joins, `call` returns the
 * reply, and a trace id crosses from the gateway's process to the handler's. The monitor's
 * options and refresh period are also tested in process, on the TestClock.
 */
import * as CliConfig from "@effect/cli/CliConfig"
import * as Options from "@effect/cli/Options"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as Secure from "../../src/layers/Secure.ts"
import { DEFAULT_MONITOR_INTERVAL_MILLIS, monitorOptions, monitorRenders, withOverrides } from "../../src/app/cli.ts"
import * as Config from "../../src/app/Config.ts"
import { awaitSleepIn, eventually } from "../fixtures/clock.ts"
import { freePort, type NodeChild, natsServerResource, spawnNode } from "../fixtures/nats.ts"

const packageVersion = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  readonly version: string
}).version

const bin = fileURLToPath(new URL("../../bin/troupe.mjs", import.meta.url))
const greeter = fileURLToPath(new URL("../../examples/gateway/greeter.ts", import.meta.url))
const traceModule = fileURLToPath(new URL("../fixtures/trace-module.ts", import.meta.url))
const troupeNode = fileURLToPath(new URL("../fixtures/troupe-node.ts", import.meta.url))

const troupe = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.sync(() => spawnNode(bin, args, env, { tsx: false })),
    (child) => Effect.promise(() => child.stop())
  )

/** runs a command to its end; the process is stopped if the test ends first */
const runToEnd = (args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const child = yield* troupe(args)
    const code = yield* Effect.promise(() => child.exited)
    return { code, stdout: child.lines.join("\n"), stderr: child.stderr() }
  })

const waitForLine = (child: NodeChild, match: RegExp, timeoutMs = 20_000) =>
  Effect.promise(() => child.waitForLine(match, timeoutMs))

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(Path.join(tmpdir(), "troupe-cli-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const httpGet = (port: number, path: string, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, { headers, signal: AbortSignal.timeout(10_000) })
    return { status: response.status, body: await response.json() as any }
  })

/** the monitor's flags as @effect/cli parses them from `args` */
const parseMonitor = (args: ReadonlyArray<string>) =>
  Options.processCommandLine(Options.all(monitorOptions), args, CliConfig.defaultConfig).pipe(
    Effect.map(([, , flags]) => flags),
    Effect.provide(NodeContext.layer)
  )

/** the header row of a monitor render */
const monitorTitle = /^name\s+node\s+serving\s+status\s+last seen\s+kinds$/

describe("troupe monitor (in process)", () => {
  it.effect("without --interval renders every 500 ms: at once, then 500 ms after each render", () =>
    Effect.gen(function*() {
      const flags = yield* parseMonitor([])
      expect(flags.interval).toBe(500)
      expect(DEFAULT_MONITOR_INTERVAL_MILLIS).toBe(500)
      expect(Option.isNone(flags.count)).toBe(true)
      expect((yield* parseMonitor(["--interval", "200"])).interval).toBe(200)

      const renders: Array<string> = []
      const fiber = yield* monitorRenders({ interval: flags.interval, count: flags.count, header: "test" }).pipe(
        Stream.runForEach((text) => Effect.sync(() => renders.push(text))),
        Effect.provide(Discovery.inMemory),
        Effect.fork
      )
      yield* eventually(() => renders.length === 1, "the first render")
      expect(renders[0]!.split("\n")).toContainEqual(expect.stringMatching(monitorTitle))
      for (let n = 2; n <= 4; n++) {
        yield* awaitSleepIn(500) // the wait before the next render, exactly
        yield* TestClock.adjust(499)
        expect(renders.length).toBe(n - 1)
        yield* TestClock.adjust(1)
        yield* eventually(() => renders.length === n, `render ${n}`)
      }
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("--count N renders N times, then ends", () =>
    Effect.gen(function*() {
      const flags = yield* parseMonitor(["--count", "3"])
      const fiber = yield* monitorRenders({ interval: flags.interval, count: flags.count, header: "test" }).pipe(
        Stream.runCollect,
        Effect.provide(Discovery.inMemory),
        Effect.fork
      )
      yield* awaitSleepIn(500)
      yield* TestClock.adjust(500)
      yield* awaitSleepIn(500)
      yield* TestClock.adjust(500)
      const renders = yield* Fiber.join(fiber)
      expect(renders.length).toBe(3)
    }))
})

describe("troupe serve --nats / --port (in process)", () => {
  const parse = (text: string) => Either.getOrThrow(Config.parse(text, "/srv/troupe.toml"))
  const issues = (result: Either.Either<Config.Config, Config.ConfigError>) =>
    Either.isLeft(result) ? result.left.issues.map((i) => `${i.path}: ${i.message}`) : []

  it("override the config file's NATS servers and HTTP port, and nothing else", () => {
    const config = parse(
      `[node]\nname = "edge"\n[nats]\nservers = ["nats://127.0.0.1:4222"]\nheartbeat = 200\n[http]\nport = 8080\nhost = "127.0.0.1"\n`
    )
    const none = Either.getOrThrow(withOverrides(config, { servers: Option.none(), port: Option.none() }))
    expect(none).toEqual(config)
    const both = Either.getOrThrow(
      withOverrides(config, { servers: Option.some(["nats://a:1", "nats://b:2"]), port: Option.some(9090) })
    )
    expect(both.nats?.servers).toEqual(["nats://a:1", "nats://b:2"])
    expect(both.nats?.heartbeat).toEqual(config.nats?.heartbeat)
    expect(both.http).toEqual({ ...config.http, port: 9090 })
    expect(both.node).toEqual(config.node)
    // a file without [nats] runs in memory; --nats puts it on NATS
    const local = Either.getOrThrow(
      withOverrides(parse(`[node]\nname = "solo"\n`), { servers: Option.some(["nats://c:3"]), port: Option.none() })
    )
    expect(local.nats).toEqual({ servers: ["nats://c:3"] })
  })

  it("refuse --port without [http], a port out of range and an empty --nats", () => {
    const noHttp = parse(`[node]\nname = "worker"\n`)
    expect(issues(withOverrides(noHttp, { servers: Option.some([]), port: Option.some(80) }))).toEqual([
      "--nats: expected at least one NATS server URL",
      "--port: the config file has no [http] section to serve"
    ])
    const http = parse(`[http]\nport = 8080\n`)
    expect(issues(withOverrides(http, { servers: Option.none(), port: Option.some(70000) }))).toEqual([
      "--port: expected a port 0..65535, got 70000"
    ])
  })
})

describe("troupe CLI", () => {
  it.live("--help works on every command", () =>
    Effect.gen(function*() {
      const top = yield* runToEnd(["--help"])
      expect(top.code).toBe(0)
      expect(top.stdout).toContain("serve")
      expect(top.stdout).toContain("monitor")
      expect(top.stdout).toContain("call")
      const commands = ["serve", "monitor", "call"] as const
      const helps = yield* Effect.forEach(commands, (command) => runToEnd([command, "--help"]), { concurrency: 3 })
      expect(helps.map((h) => h.code)).toEqual([0, 0, 0])
      expect(helps[0]!.stdout).toContain("--config")
      expect(helps[0]!.stdout).toContain("--nats")
      expect(helps[0]!.stdout).toContain("--port")
      expect(helps[1]!.stdout).toContain("milliseconds between two renders (default 500)")
      expect(helps[1]!.stdout).toContain("--nats")
      expect(helps[2]!.stdout).toContain("<KIND> <ID> <TAG>")
      // --version is the package's
      const version = yield* runToEnd(["--version"])
      expect(version.code).toBe(0)
      expect(version.stdout.trim()).toContain(packageVersion)
    }).pipe(Effect.scoped), 60_000)

  it.live("monitor without --interval shows the last seen column and a node that joins", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerResource()
      const namespace = `mon${Math.random().toString(36).slice(2, 8)}`
      const monitor = yield* troupe(["monitor", "--nats", nats.url, "--namespace", namespace])
      yield* waitForLine(monitor, monitorTitle)
      yield* waitForLine(monitor, /\(no nodes\)/)
      yield* Effect.acquireRelease(
        Effect.sync(() =>
          spawnNode(troupeNode, [], {
            NATS_URL: nats.url,
            NODE_NAME: "mon-worker",
            NAMESPACE: namespace,
            HEARTBEAT: "200 millis"
          })
        ),
        (child) => Effect.promise(() => child.stop())
      )
      // name, node id, serving, status, last seen ("0.2s ago"), kinds
      yield* waitForLine(monitor, /^mon-worker\s+mon-worker-\S+\s+serving\s+alive\s+\d+\.\ds ago\s+Probe,ProbeService$/)
      yield* waitForLine(monitor, new RegExp(`namespace=${namespace}  members=1$`))
    }).pipe(Effect.scoped), 60_000)

  it.live("serve fails with every config issue and its path", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = Path.join(dir, "troupe.toml")
      writeFileSync(file, `[node]\ncodec = "yaml"\n[http]\nport = "x"\n`)
      const result = yield* runToEnd(["serve", "--config", file])
      expect(result.code).toBe(1)
      expect(result.stderr).toContain("node.codec: Expected \"msgpack\" | \"json\", actual \"yaml\"")
      expect(result.stderr).toContain("http.port: Expected number, actual \"x\"")
    }).pipe(Effect.scoped), 30_000)

  it.live(
    "serve answers HTTP from an actor on another node; monitor sees nodes join; call asks",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerResource()
        const dir = yield* tempDir
        const port = yield* Effect.promise(freePort)
        const namespace = `cli${Math.random().toString(36).slice(2, 8)}`
        const common = `[nats]\nservers = ["${nats.url}"]\nheartbeat = "200 millis"\n`
        writeFileSync(
          Path.join(dir, "worker.toml"),
          `modules = [${JSON.stringify(greeter)}, ${
            JSON.stringify(traceModule)
          }]\n[node]\nname = "cli-worker"\nnamespace = "${namespace}"\n${common}`
        )
        writeFileSync(
          Path.join(dir, "edge.toml"),
          `[node]\nname = "cli-edge"\nnamespace = "${namespace}"\n${common}[http]\nport = ${port}\nhost = "127.0.0.1"\n` +
            `[[http.routes]]\nmethod = "GET"\npath = "/hello/:name"\nkind = "Greeter"\ntag = "Hello"\nid = ":name"\nerrors = { Shy = 404 }\n` +
            `[[http.routes]]\nmethod = "GET"\npath = "/where"\nkind = "TraceProbe"\ntag = "Where"\nservice = true\n`
        )

        const monitor = yield* troupe(["monitor", "--nats", nats.url, "--namespace", namespace, "--interval", "200"])
        yield* waitForLine(monitor, /\(no nodes\)/)

        const worker = yield* troupe(["serve", "--config", Path.join(dir, "worker.toml")])
        yield* waitForLine(worker, /^troupe: node cli-worker-\S+ up; hosting \[Greeter, TraceProbe\]$/)
        const edge = yield* troupe(["serve", "--config", Path.join(dir, "edge.toml")])
        yield* waitForLine(
          edge,
          new RegExp(`^troupe: node cli-edge-\\S+ up; hosting \\[\\]; http on 127.0.0.1:${port}$`)
        )

        // the monitor prints both nodes once they have joined
        yield* waitForLine(monitor, /^cli-worker\s+cli-worker-\S+\s+serving\s+alive\s+.*Greeter,TraceProbe$/)
        yield* waitForLine(monitor, /^cli-edge\s+cli-edge-\S+\s+serving\s+alive/)

        // the edge learns of the worker from its heartbeats: poll (bounded) until it routes
        let hello = yield* httpGet(port, "/hello/ada?greeting=Hi")
        for (let i = 0; i < 50 && hello.status !== 200; i++) {
          yield* Effect.sleep("100 millis")
          hello = yield* httpGet(port, "/hello/ada?greeting=Hi")
        }
        expect(hello).toEqual({ status: 200, body: { message: "Hi, ada!", count: 1, node: "worker (ada)" } })
        expect(yield* httpGet(port, "/hello/nobody")).toEqual({ status: 404, body: { _tag: "Shy", name: "nobody" } })

        // a trace id crosses two nodes in two processes: HTTP → edge's ask span → worker's handler span
        const traceId = "0af7651916cd43dd8448eb211c80319c"
        const where = yield* httpGet(port, "/where", { traceparent: `00-${traceId}-b7ad6b7169203331-01` })
        expect(where.status).toBe(200)
        expect(where.body.traceId).toBe(traceId)
        expect(where.body.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`))
        expect(where.body.pid).toBe(worker.pid)

        // call: one ask from a third process, reply as JSON on stdout
        const called = yield* runToEnd([
          "call",
          "Greeter",
          "ada",
          "Hello",
          "--json",
          `{"name":"ada"}`,
          "--nats",
          nats.url,
          "--namespace",
          namespace
        ])
        expect(called.code).toBe(0)
        expect(JSON.parse(called.stdout.trim())).toEqual({ message: "Hello, ada!", count: 2, node: "worker (ada)" })

        // --config: servers, namespace and codec from a config file
        const refused = yield* runToEnd([
          "call",
          "Greeter",
          "nobody",
          "Hello",
          "--json",
          `{"name":"nobody"}`,
          "--config",
          Path.join(dir, "edge.toml")
        ])
        expect(refused.code).toBe(1)
        expect(JSON.parse(refused.stderr.trim().split("\n").at(-1)!)).toMatchObject({ _tag: "Shy", name: "nobody" })

        const badPayload = yield* runToEnd([
          "call",
          "Greeter",
          "ada",
          "Hello",
          "--json",
          `{"name":3}`,
          "--nats",
          nats.url,
          "--namespace",
          namespace
        ])
        expect(badPayload.code).toBe(1)
        expect(badPayload.stderr).toContain("DecodeError")
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "call --stream prints each element of a streamed reply as one NDJSON line, as it arrives",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerResource()
        const dir = yield* tempDir
        const namespace = `str${Math.random().toString(36).slice(2, 8)}`
        writeFileSync(
          Path.join(dir, "worker.toml"),
          `modules = [${JSON.stringify(traceModule)}]\n[node]\nname = "str-worker"\nnamespace = "${namespace}"\n` +
            `[nats]\nservers = ["${nats.url}"]\nheartbeat = "200 millis"\n`
        )
        const worker = yield* troupe(["serve", "--config", Path.join(dir, "worker.toml")])
        yield* waitForLine(worker, /^troupe: node str-worker-\S+ up; hosting \[TraceProbe\]$/)
        const call = (
          tag: string,
          payload: object
        ) => [
          "call",
          "TraceProbe",
          "-",
          tag,
          "--service",
          "--stream",
          "--json",
          JSON.stringify(payload),
          "--nats",
          nats.url,
          "--namespace",
          namespace
        ]
        const parsed = (stdout: string) => stdout.trim().split("\n").map((line) => JSON.parse(line))

        const counted = yield* runToEnd(call("Count", { n: 3 }))
        expect(counted.code).toBe(0)
        expect(parsed(counted.stdout)).toEqual([0, 1, 2].map((i) => ({ i, pid: worker.pid })))

        // a failure after the first element: the elements so far on stdout, the error on stderr, exit 1
        const tooFar = yield* runToEnd(call("Count", { n: 3, failAt: 1 }))
        expect(tooFar.code).toBe(1)
        expect(parsed(tooFar.stdout)).toEqual([{ i: 0, pid: worker.pid }])
        expect(JSON.parse(tooFar.stderr.trim().split("\n").at(-1)!)).toMatchObject({ _tag: "TooFar", at: 1 })

        // binary elements (msgpack on the wire) come out as base64 strings: [0, 1, 255], [1, 2, 254]
        const bytes = yield* runToEnd(call("Bytes", { n: 2 }))
        expect(bytes.code).toBe(0)
        expect(parsed(bytes.stdout)).toEqual(["AAH/", "AQL+"])

        // the wrong kind of call: a clear error from the handler's node, nothing on stdout
        const unary = call("Count", { n: 3 }).filter((arg) => arg !== "--stream")
        const askedOnce = yield* runToEnd(unary)
        expect(askedOnce.code).toBe(1)
        expect(askedOnce.stdout.trim()).toBe("")
        expect(JSON.parse(askedOnce.stderr.trim().split("\n").at(-1)!)).toMatchObject({
          _tag: "StreamError",
          kind: "TraceProbe",
          tag: "Count",
          reason: "this Rpc replies with a stream: call it as a stream"
        })
        const streamedWhere = yield* runToEnd(call("Where", {}))
        expect(streamedWhere.code).toBe(1)
        expect(streamedWhere.stdout.trim()).toBe("")
        expect(JSON.parse(streamedWhere.stderr.trim().split("\n").at(-1)!)).toMatchObject({
          _tag: "StreamError",
          tag: "Where",
          reason: "this Rpc replies once: call it with ask, not as a stream"
        })

        // a reply that stays open: its elements are printed while the call still runs
        const held = yield* troupe(call("Hold", { n: 2 }))
        yield* waitForLine(held, /^1$/)
        expect(held.lines).toEqual(["0", "1"])
        const state = yield* Effect.promise(() =>
          Promise.race([held.exited.then(() => "exited"), Promise.resolve("running")])
        )
        expect(state).toBe("running")
        // a node without [secure] has no key to print
        expect(worker.lines.filter((line) => line.startsWith("troupe: public key"))).toEqual([])
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "serve with [secure]: prints its public key; two secured nodes answer through the gateway; call needs the config's identity",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerResource()
        const dir = yield* tempDir
        const port = yield* Effect.promise(freePort)
        const namespace = `sec${Math.random().toString(36).slice(2, 8)}`
        // each node its own seed file; the edge trusts the worker by a key file, the worker the edge inline
        const keys: Record<string, string> = {}
        for (const name of ["worker", "edge"]) {
          writeFileSync(Path.join(dir, `${name}.key`), yield* Secure.generateSeed)
          keys[name] = (yield* Secure.identityFromFile(Path.join(dir, `${name}.key`))).publicKey
          writeFileSync(Path.join(dir, `${name}.pub`), `# ${name}\n${keys[name]}\n`)
        }
        const common = `[nats]\nservers = ["${nats.url}"]\nheartbeat = "200 millis"\n`
        writeFileSync(
          Path.join(dir, "worker.toml"),
          `modules = [${JSON.stringify(greeter)}, ${
            JSON.stringify(traceModule)
          }]\n[node]\nname = "sec-worker"\nnamespace = "${namespace}"\n${common}` +
            `[secure]\nidentity = "./worker.key"\ntrust = ["${keys["edge"]}", "${keys["worker"]}"]\n`
        )
        writeFileSync(
          Path.join(dir, "edge.toml"),
          `[node]\nname = "sec-edge"\nnamespace = "${namespace}"\n${common}` +
            `[secure]\nidentity = { file = "./edge.key" }\ntrust = ["./worker.pub", "./edge.pub"]\n` +
            `[http]\nport = ${port}\nhost = "127.0.0.1"\n` +
            `[[http.routes]]\nmethod = "GET"\npath = "/hello/:name"\nkind = "Greeter"\ntag = "Hello"\nid = ":name"\nerrors = { Shy = 404 }\n` +
            `[[http.routes]]\nmethod = "POST"\npath = "/count"\nkind = "TraceProbe"\ntag = "Count"\nservice = true\nstream = true\n` +
            `errors = { TooFar = 416 }\n`
        )
        const worker = yield* troupe(["serve", "--config", Path.join(dir, "worker.toml")])
        const edge = yield* troupe(["serve", "--config", Path.join(dir, "edge.toml")])
        yield* waitForLine(worker, /^troupe: node sec-worker-\S+ up; hosting \[Greeter, TraceProbe\]$/)
        yield* waitForLine(
          edge,
          new RegExp(`^troupe: node sec-edge-\\S+ up; hosting \\[\\]; http on 127.0.0.1:${port}$`)
        )
        // each prints the public key of its identity (the one its peers trust), once
        for (const [child, name] of [[worker, "worker"], [edge, "edge"]] as const) {
          expect(child.lines.filter((line) => line.startsWith("troupe: public key"))).toEqual([
            `troupe: public key ${keys[name]}`
          ])
        }

        // the edge learns of the worker from its (sealed) heartbeats: poll (bounded) until it routes
        let hello = yield* httpGet(port, "/hello/ada")
        for (let i = 0; i < 100 && hello.status !== 200; i++) {
          yield* Effect.sleep("100 millis")
          hello = yield* httpGet(port, "/hello/ada")
        }
        expect(hello).toEqual({ status: 200, body: { message: "Hello, ada!", count: 1, node: "worker (ada)" } })
        expect(yield* httpGet(port, "/hello/nobody")).toEqual({ status: 404, body: { _tag: "Shy", name: "nobody" } })

        // a streamed reply by name (`stream = true`), as NDJSON, from the other process over sealed frames
        const count = (body: object) =>
          Effect.promise(async () => {
            const response = await fetch(`http://127.0.0.1:${port}/count`, {
              method: "POST",
              body: JSON.stringify(body),
              signal: AbortSignal.timeout(10_000)
            })
            const text = await response.text()
            return { status: response.status, type: response.headers.get("content-type"), text }
          })
        const counted = yield* count({ n: 3 })
        expect(counted).toMatchObject({ status: 200, type: "application/x-ndjson" })
        expect(counted.text.trim().split("\n").map((line) => JSON.parse(line))).toEqual(
          [0, 1, 2].map((i) => ({ i, pid: worker.pid }))
        )
        const tooFar = yield* count({ n: 3, failAt: 2 })
        expect(tooFar.text.trim().split("\n").map((line) => JSON.parse(line))).toEqual([
          { i: 0, pid: worker.pid },
          { i: 1, pid: worker.pid },
          { _error: { _tag: "TooFar", at: 2 } }
        ])
        const early = yield* count({ n: 3, failAt: 0 })
        expect(early.status).toBe(416)
        expect(JSON.parse(early.text)).toEqual({ _tag: "TooFar", at: 0 })

        // call --config joins with the config's identity
        const called = yield* runToEnd([
          "call",
          "Greeter",
          "ada",
          "Hello",
          "--json",
          `{"name":"ada"}`,
          "--config",
          Path.join(dir, "edge.toml")
        ])
        expect(called.code).toBe(0)
        expect(JSON.parse(called.stdout.trim())).toEqual({ message: "Hello, ada!", count: 2, node: "worker (ada)" })
        // without it, the secured nodes stay invisible: nobody hosts Greeter as far as it can tell
        const plain = yield* runToEnd([
          "call",
          "Greeter",
          "ada",
          "Hello",
          "--json",
          `{"name":"ada"}`,
          "--nats",
          nats.url,
          "--namespace",
          namespace,
          "--timeout",
          "1 second"
        ])
        expect(plain.code).toBe(1)
        expect(plain.stdout).toBe("")
        expect(JSON.parse(plain.stderr.trim().split("\n").at(-1)!)).toMatchObject({
          _tag: "NoAvailableNode",
          kind: "Greeter"
        })
      }).pipe(Effect.scoped),
    120_000
  )
})
