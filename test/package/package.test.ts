/**
 * Troupe as a user installs it. `npm pack` (whose `prepack` builds dist/) makes the tarball; a
 * fresh project installs it from the registry with the supported versions of its peers; then
 *
 * - (a) a plain `node app.mjs` builds an in-memory node, asks an actor and prints the reply;
 * - (b) a strict `"module": "NodeNext"` TypeScript consumer type-checks under `tsc --noEmit`
 *   (a typed client, typed errors), and a wrong payload does not;
 * - (c) `npx troupe --help`, `troupe serve --config` with a `.js` module on a real nats-server
 *   (asked with `npx troupe call`), and a `.ts` module without tsx failing in one line.
 *
 * The peers are the repository's own pinned versions; `TROUPE_PACKAGE_PEERS` (space-separated
 * `name@version`) installs others, to check the ends of the supported ranges.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import * as Readline from "node:readline"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { type NatsServer, startNatsServer } from "../fixtures/nats.ts"

const root = fileURLToPath(new URL("../../", import.meta.url))
const manifest = JSON.parse(readFileSync(Path.join(root, "package.json"), "utf8")) as {
  readonly name: string
  readonly version: string
  readonly peerDependencies: Record<string, string>
  readonly peerDependenciesMeta: Record<string, { readonly optional?: boolean }>
  readonly devDependencies: Record<string, string>
}

/** the required peers at the repository's pinned versions, unless the environment names others */
const peers = process.env["TROUPE_PACKAGE_PEERS"]?.split(/\s+/).filter((spec) => spec !== "") ??
  Object.keys(manifest.peerDependencies)
    .filter((name) => manifest.peerDependenciesMeta[name]?.optional !== true)
    .map((name) => `${name}@${manifest.devDependencies[name]}`)

const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")

/** the environment less npm's own variables (an outer `npm test` sets them for its scripts) */
const cleanEnv = (): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !/^npm_/i.test(key)) env[key] = value
  }
  return env
}

interface Ran {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** runs `command` to its end, killed after `timeoutMs` */
const run = (command: string, args: ReadonlyArray<string>, cwd: string, timeoutMs = 120_000): Promise<Ran> =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    child.once("error", reject)
    child.once("close", (code) => resolve({ code, stdout, stderr }))
  })

const ok = (ran: Ran, what: string): Ran => {
  if (ran.code !== 0) throw new Error(`${what} exited ${ran.code}\nstdout:\n${ran.stdout}\nstderr:\n${ran.stderr}`)
  return ran
}

/**
 * `troupe serve ...` in `cwd` as npx runs it (node_modules/.bin/troupe), until `stop`: SIGTERM,
 * then SIGKILL after 5 s, by PID.
 */
const serveIn = (cwd: string, args: ReadonlyArray<string>) => {
  const child: ChildProcess = spawn(process.execPath, [Path.join(cwd, "node_modules", ".bin", "troupe"), ...args], {
    cwd,
    env: cleanEnv(),
    stdio: ["ignore", "pipe", "pipe"]
  })
  const lines: Array<string> = []
  let stderr = ""
  Readline.createInterface({ input: child.stdout! }).on("line", (line) => lines.push(line))
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  return {
    /** the first stdout line matching `match`, within `timeoutMs` */
    waitForLine: async (match: RegExp, timeoutMs: number): Promise<string> => {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const line = lines.find((line) => match.test(line))
        if (line !== undefined) return line
        if (Date.now() >= deadline || child.exitCode !== null) break
        await sleep(50)
      }
      throw new Error(
        `troupe ${args.join(" ")}: no line matching ${match}\nstdout:\n${lines.join("\n")}\nstderr:\n${stderr}`
      )
    },
    stop: async (): Promise<void> => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM")
        if (await Promise.race([exited.then(() => false), sleep(5_000).then(() => true)])) child.kill("SIGKILL")
      }
      await exited
    }
  }
}

interface Packed {
  readonly filename: string
  readonly size: number
  readonly unpackedSize: number
  readonly entryCount: number
  readonly files: ReadonlyArray<{ readonly path: string }>
}

let work: string
let app: string
let packed: Packed

beforeAll(async () => {
  work = mkdtempSync(Path.join(tmpdir(), "troupe-package-"))
  app = Path.join(work, "app")
  mkdirSync(app)
  // prepack runs `npm run build`; its output goes to stderr, the listing to stdout
  const pack = ok(await run("npm", ["pack", "--json", "--pack-destination", work], root), "npm pack")
  packed = (JSON.parse(pack.stdout) as ReadonlyArray<Packed>)[0]!
  writeFileSync(Path.join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }))
  ok(
    await run("npm", [
      "install",
      "--no-audit",
      "--no-fund",
      "--prefer-offline",
      Path.join(work, packed.filename),
      ...peers,
      // the consumer's own tooling: Node's types for tsc
      `@types/node@${manifest.devDependencies["@types/node"]}`
    ], app),
    "npm install"
  )
}, 240_000)

afterAll(() => {
  if (work !== undefined) rmSync(work, { recursive: true, force: true })
})

describe("the packed tarball", () => {
  it("holds dist/, the bin, the README, CHANGELOG and LICENSE, and no sources, tests, benches or fixtures", () => {
    const paths = packed.files.map((file) => file.path)
    const extra = ["package.json", "bin/troupe.mjs", "README.md", "CHANGELOG.md", "LICENSE"]
    expect(paths.filter((path) => !path.startsWith("dist/") && !extra.includes(path))).toEqual([])
    expect(paths.filter((path) => /(^|\/)(src|test|tests|bench|fixtures|examples)\//.test(path))).toEqual([])
    expect(paths.filter((path) => /\.ts$/.test(path) && !/\.d\.ts$/.test(path))).toEqual([])
    for (const file of ["README.md", "CHANGELOG.md", "LICENSE"]) {
      if (existsSync(Path.join(root, file))) expect(paths).toContain(file)
    }
    expect(paths).toContain("LICENSE")
    for (const entry of ["index", "runtime/Telemetry", "app/cli", "testing/index", "testing/TestCluster"]) {
      for (const ext of [".js", ".js.map", ".d.ts", ".d.ts.map"]) expect(paths).toContain(`dist/${entry}${ext}`)
    }
    console.log(
      `troupe tarball: ${packed.entryCount} files, ${packed.size} bytes packed, ${packed.unpackedSize} unpacked`
    )
  })

  it("installs with one copy of effect, shared by the app and Troupe", async () => {
    const listed = ok(await run("npm", ["ls", "effect", "--all", "--parseable"], app), "npm ls effect")
    const copies = new Set(listed.stdout.split("\n").filter((line) => line.endsWith(`${Path.sep}effect`)))
    expect([...copies]).toEqual([Path.join(app, "node_modules", "effect")])
  })
})

describe("a plain Node app", () => {
  it("builds an in-memory node, asks an actor and prints the reply; internal/ stays closed", async () => {
    writeFileSync(
      Path.join(app, "app.mjs"),
      `import { Rpc } from "@effect/rpc"
import { Effect, Layer, Schema } from "effect"
import { Actor, Node } from "troupe"

const Greeter = Actor.make("Greeter", [
  Rpc.make("Hello", { payload: { name: Schema.String }, success: Schema.String })
])
const GreeterLive = Actor.toLayer(Greeter, Effect.gen(function*() {
  const { id } = yield* Actor.CurrentAddress
  return { Hello: ({ name }) => Effect.succeed(\`Hello, \${name}, from \${id}\`) }
}))
const program = Effect.gen(function*() {
  const greeter = yield* Actor.client(Greeter)
  return yield* greeter("g-1").Hello({ name: "ada" })
})
console.log(await program.pipe(Effect.provide(GreeterLive.pipe(Layer.provideMerge(Node.inMemory))), Effect.runPromise))
console.log(import.meta.resolve("troupe/Telemetry").endsWith("/node_modules/troupe/dist/runtime/Telemetry.js"))
await import("troupe/internal/node.js").then(() => console.log("internal: open"), (error) => console.log(\`internal: \${error.code}\`))
`
    )
    const ran = ok(await run(process.execPath, ["app.mjs"], app, 30_000), "node app.mjs")
    expect(ran.stdout.trim().split("\n")).toEqual([
      "Hello, ada, from g-1",
      "true",
      "internal: ERR_PACKAGE_PATH_NOT_EXPORTED"
    ])
  })
})

describe("troupe/testing, installed", () => {
  it("a plain Node app runs a two-node TestCluster from the tarball: asks across nodes, replays by seed", async () => {
    writeFileSync(
      Path.join(app, "cluster.mjs"),
      `import { Rpc } from "@effect/rpc"
import { Effect, Schema } from "effect"
import { Actor } from "troupe"
import { TestCluster } from "troupe/testing"

const Echo = Actor.make("Echo", [Rpc.make("Say", { payload: { text: Schema.String }, success: Schema.String })])
const EchoLive = Actor.toLayer(Echo, { Say: ({ text }) => Effect.succeed(text) })
const run = (seed) => Effect.gen(function*() {
  const cluster = yield* TestCluster.make({ nodes: ["a", "b"], seed, layer: EchoLive })
  yield* cluster.settle
  yield* cluster.faults({ delay: ["1 millis", "20 millis"] })
  const echo = yield* cluster.client("a", Echo)
  const replies = yield* Effect.forEach(["x", "y", "z"], (text) => echo(text).Say({ text }))
  return { replies: replies.join(""), trace: cluster.trace().join("\\n") }
}).pipe(Effect.scoped, Effect.runPromise)
const first = await run(3)
const again = await run(3)
console.log(first.replies, first.trace === again.trace, first.trace.includes("Request"))
console.log(import.meta.resolve("troupe/testing").endsWith("/node_modules/troupe/dist/testing/index.js"))
`
    )
    const ran = ok(await run(process.execPath, ["cluster.mjs"], app, 60_000), "node cluster.mjs")
    expect(ran.stdout.trim().split("\n")).toEqual(["xyz true true", "true"])
  }, 90_000)
})

describe("a TypeScript consumer (NodeNext, strict)", () => {
  it("type-checks a typed client and typed errors; a wrong payload is a type error", async () => {
    // one program: consumer.ts must have no error, wrong-payload.ts exactly the payload's
    writeFileSync(
      Path.join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          exactOptionalPropertyTypes: true,
          skipLibCheck: true,
          noEmit: true,
          types: ["node"]
        },
        files: ["consumer.ts", "wrong-payload.ts"]
      })
    )
    const counter = `import { Rpc } from "@effect/rpc"
import { Effect, Layer, Schema } from "effect"
import { Actor, Errors, Node } from "troupe"
import * as Telemetry from "troupe/Telemetry"

export class Refused extends Schema.TaggedError<Refused>()("Refused", { reason: Schema.String }) {}

export const Counter = Actor.make("Counter", [
  Rpc.make("Increment", { payload: { by: Schema.Number }, success: Schema.Number, error: Refused })
])

export const CounterLive = Actor.toLayer(Counter, {
  Increment: ({ by }) => by < 0 ? Effect.fail(new Refused({ reason: "negative" })) : Effect.succeed(by)
})
`
    writeFileSync(
      Path.join(app, "consumer.ts"),
      `${counter}
export const program = Effect.gen(function*() {
  const counter = yield* Actor.client(Counter)
  const n: number = yield* counter("c-1").Increment({ by: 2 })
  // the Rpc's own error and the runtime's errors are in the error channel, by tag
  const recovered: string = yield* counter("c-1").Increment({ by: -1 }).pipe(
    Effect.map(String),
    Effect.catchTag("Refused", (error) => Effect.succeed(error.reason)),
    Effect.catchTag("AskTimeout", (error: Errors.AskTimeout) => Effect.succeed(error.kind)),
    // @ts-expect-error: no such error can come out of the ask
    Effect.catchTag("NoSuchError", () => Effect.succeed("never"))
  )
  return \`\${n} \${recovered}\`
}).pipe(Effect.provide(CounterLive.pipe(Layer.provideMerge(Node.inMemory))))

export const ran: Promise<string> = Effect.runPromise(program)
export const telemetry: typeof Telemetry.layerOtlp = Telemetry.layerOtlp
`
    )
    writeFileSync(
      Path.join(app, "wrong-payload.ts"),
      `${counter}
export const wrong = Effect.flatMap(Actor.client(Counter), (counter) => counter("c-1").Increment({ by: "two" }))
`
    )
    const checked = await run(process.execPath, [tsc, "-p", "tsconfig.json"], app, 90_000)
    const errors = checked.stdout.split("\n").filter((line) => line.includes("error TS"))
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatch(
      /^wrong-payload\.ts\(\d+,\d+\): error TS2322: Type 'string' is not assignable to type 'number'\.$/
    )
    expect(checked.code).toBe(2)
  }, 120_000)
})

describe("the troupe command, installed", () => {
  it("--help runs on plain Node (no tsx in the project)", async () => {
    expect(existsSync(Path.join(app, "node_modules", "tsx"))).toBe(false)
    const help = ok(await run("npx", ["--no-install", "troupe", "--help"], app, 30_000), "npx troupe --help")
    expect(help.stdout).toContain("troupe")
    for (const command of ["serve", "monitor", "call"]) expect(help.stdout).toContain(command)
    const version = ok(await run("npx", ["--no-install", "troupe", "--version"], app, 30_000), "npx troupe --version")
    expect(version.stdout.trim()).toBe(manifest.version)
  }, 60_000)

  it("serve --config runs a .js module on a real nats-server; call asks it", async () => {
    let nats: NatsServer | undefined
    let serve: ReturnType<typeof serveIn> | undefined
    try {
      nats = await startNatsServer()
      const namespace = `pkg${Math.random().toString(36).slice(2, 8)}`
      writeFileSync(
        Path.join(app, "greeter.js"),
        `import { Rpc } from "@effect/rpc"
import { Effect, Schema } from "effect"
import { Actor } from "troupe"

export const Greeter = Actor.service("Greeter", [
  Rpc.make("Hello", { payload: { name: Schema.String }, success: Schema.String })
])
export const layer = Actor.toLayer(Greeter, { Hello: ({ name }) => Effect.succeed(\`Hello, \${name}!\`) })
`
      )
      writeFileSync(
        Path.join(app, "troupe.toml"),
        `modules = ["./greeter.js"]\n[node]\nname = "pkg"\nnamespace = "${namespace}"\n` +
          `[nats]\nservers = ["${nats.url}"]\nheartbeat = "200 millis"\n`
      )
      serve = serveIn(app, ["serve", "--config", "troupe.toml"])
      await serve.waitForLine(/^troupe: node pkg-\S+ up; hosting \[Greeter\]$/, 30_000)
      const called = ok(
        await run(
          "npx",
          [
            "--no-install",
            "troupe",
            "call",
            "Greeter",
            "-",
            "Hello",
            "--service",
            "--json",
            `{"name":"ada"}`,
            "--nats",
            nats.url,
            "--namespace",
            namespace
          ],
          app,
          30_000
        ),
        "npx troupe call"
      )
      expect(JSON.parse(called.stdout.trim())).toBe("Hello, ada!")
    } finally {
      await serve?.stop()
      await nats?.stop()
    }
  }, 90_000)

  it("serve --config with a .ts module and no tsx fails in one line naming the module and the fix", async () => {
    writeFileSync(
      Path.join(app, "worker.ts"),
      `import { Rpc } from "@effect/rpc"
import { Effect, Schema } from "effect"
import { Actor } from "troupe"

export const Echo = Actor.service("Echo", [Rpc.make("Echo", { payload: { text: Schema.String }, success: Schema.String })])
const echo = (text: string): string => text
export const layer = Actor.toLayer(Echo, { Echo: ({ text }) => Effect.succeed(echo(text)) })
`
    )
    writeFileSync(Path.join(app, "ts.toml"), `modules = ["./worker.ts"]\n[node]\nname = "pkg-ts"\n`)
    const ran = await run("npx", ["--no-install", "troupe", "serve", "--config", "ts.toml"], app, 30_000)
    expect(ran.code).toBe(1)
    expect(ran.stdout).toBe("")
    expect(ran.stderr.trim().split("\n")).toEqual([
      `${Path.join(app, "ts.toml")}: modules[0]: ${
        Path.join(app, "worker.ts")
      } is TypeScript and the project has no tsx ` +
      `to load it: npm install -D tsx`
    ])
  }, 60_000)

  it("serve --config with a .ts module runs it through the project's own tsx once installed", async () => {
    ok(
      await run("npm", [
        "install",
        "--no-audit",
        "--no-fund",
        "--prefer-offline",
        "--save-dev",
        `tsx@${createRequire(import.meta.url)("tsx/package.json").version}`
      ], app),
      "npm install -D tsx"
    )
    const serve = serveIn(app, ["serve", "--config", "ts.toml"])
    try {
      await serve.waitForLine(/^troupe: node pkg-ts-\S+ up; hosting \[Echo\]$/, 30_000)
    } finally {
      await serve.stop()
    }
  }, 90_000)
})
