import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Config from "../../src/app/Config.ts"
import * as Secure from "../../src/layers/Secure.ts"
import { secureOptions, serveLayer } from "../../src/app/internal/serve.ts"
import { freePort } from "../fixtures/nats.ts"

const example = fileURLToPath(new URL("../../examples/gateway/troupe.toml", import.meta.url))
const sleeperModule = fileURLToPath(new URL("../fixtures/sleeper-module.ts", import.meta.url))

const http = (port: number, method: string, path: string, body?: string) =>
  Effect.promise(async () => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      ...(body === undefined ? {} : { body, headers: { "content-type": "application/json" } }),
      signal: AbortSignal.timeout(5_000)
    })
    return { status: response.status, body: await response.json() as any }
  })

const issuesOf = (result: Either.Either<Config.Config, Config.ConfigError>) =>
  Either.match(result, {
    onLeft: (error) => error.issues.map((i) => `${i.path}: ${i.message}`),
    onRight: () => []
  })

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(Path.join(tmpdir(), "troupe-config-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

describe("Config", () => {
  it.effect("loads the example's troupe.toml", () =>
    Effect.gen(function*() {
      const config = yield* Config.load(example)
      expect(config.file).toBe(example)
      expect(config.node).toEqual({ name: "edge", namespace: "gateway-example" })
      expect(config.nats?.servers).toEqual(["nats://127.0.0.1:4222"])
      expect(config.http?.port).toBe(8080)
      expect(Duration.toMillis(config.http!.timeout!)).toBe(5000)
      expect(config.http?.routes).toEqual([
        { method: "GET", path: "/hello/:name", kind: "Greeter", tag: "Hello", id: ":name", errors: { Shy: 404 } }
      ])
      expect(config.modules).toEqual([])
    }))

  it("reads the same shape from JSON, and resolves modules against the file's folder", () => {
    const result = Config.parse(
      JSON.stringify({
        node: { name: "a", codec: "json", askTimeout: 1500 },
        nats: { servers: "nats://h:4222", maxMessageBytes: 1048576 },
        modules: ["./m.ts", "../lib/n.ts"]
      }),
      "/srv/app/troupe.json"
    )
    expect(Either.isRight(result)).toBe(true)
    const config = Either.getOrThrow(result)
    expect(Duration.toMillis(config.node!.askTimeout!)).toBe(1500)
    expect(config.nats?.maxMessageBytes).toBe(1048576)
    expect(config.http).toBeUndefined()
    expect(Config.modulePaths(config)).toEqual(["/srv/app/m.ts", "/srv/lib/n.ts"])
  })

  it("reads [nats] reconnectWait as a duration", () => {
    const config = Either.getOrThrow(Config.parse(
      `[nats]\nservers = "nats://h:4222"\nreconnectWait = "500 millis"\n`,
      "/srv/app/troupe.toml"
    ))
    expect(Duration.toMillis(config.nats!.reconnectWait!)).toBe(500)
    expect(issuesOf(Config.parse(`[nats]\nservers = "nats://h:4222"\nreconnectWait = "soon"\n`, "/t.toml")))
      .toEqual([`nats.reconnectWait: expected a duration such as "2 seconds", got "soon"`])
  })

  it("reports every mistake with its path in the file", () => {
    const result = Config.parse(
      `
modules = ["./a.ts", 3]

[node]
name = "edge node"
codec = "yaml"
typo = 1

[nats]
servers = "nats://127.0.0.1:4222"
heartbeat = "often"
maxMessageBytes = 0

[http]
port = 70000

[[http.routes]]
method = "GET"
path = "/a/:id"
kind = "A"
tag = "T"

[[http.routes]]
method = "FETCH"
path = "b"
kind = "B"
errors = { X = 200 }
`,
      "troupe.toml"
    )
    expect(issuesOf(result)).toEqual([
      `node.typo: is unexpected, expected: "name" | "namespace" | "codec" | "askTimeout" | "shutdownTimeout" | "tracing"`,
      "node.name: expected [A-Za-z0-9_-]+",
      `node.codec: Expected "msgpack" | "json", actual "yaml"`,
      `nats.heartbeat: expected a duration such as "2 seconds", got "often"`,
      "nats.maxMessageBytes: Expected a positive number, actual 0",
      "http.port: Expected a number between 0 and 65535, actual 70000",
      `http.routes[1].method: Expected "GET" | "POST" | "PUT" | "PATCH" | "DELETE", actual "FETCH"`,
      `http.routes[1].path: Expected a string starting with "/", actual "b"`,
      "http.routes[1].tag: is missing",
      "http.routes[1].errors.X: Expected a number between 400 and 599, actual 200",
      "modules[1]: Expected string, actual 3"
    ])
    const error = Either.getLeft(result)
    expect(error._tag === "Some" && error.value.message).toMatch(/^troupe\.toml: 11 problem\(s\)\n  node\.typo/)
  })

  it("reports a TOML syntax error with its line and column", () => {
    expect(issuesOf(Config.parse("[node]\nname = \"a\"\nport = = 3\n", "t.toml"))[0]).toMatch(/^line 3, column \d+: /)
    expect(issuesOf(Config.parse("{ \"node\": ", "t.json"))[0]).toMatch(/^\(syntax\): /)
  })

  it.effect("fails with ConfigError for a file it cannot read", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Config.load("/nonexistent/troupe.toml"))
      expect(error._tag).toBe("ConfigError")
      expect(error.issues[0]!.path).toBe("(file)")
    }))

  it.scoped("serve: a route whose id names a missing param, a module without a Layer, secure sessions", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      writeFileSync(Path.join(dir, "empty.ts"), "export const nothing = 1\n")
      const file = Path.join(dir, "troupe.toml")
      const load = (text: string) =>
        Effect.flatMap(Effect.sync(() => writeFileSync(file, text)), () => Config.load(file))

      const badRoute = yield* load(
        `[http]\nport = 1\n[[http.routes]]\nmethod = "GET"\npath = "/a"\nkind = "K"\ntag = "T"\n`
      )
      const routeError = yield* Effect.flip(serveLayer(badRoute))
      expect(routeError.issues.map((i) => i.path)).toEqual(["http.routes[0]"])
      expect(routeError.issues[0]!.message).toContain(":id")

      const noLayer = yield* load(`modules = ["./empty.ts"]\n`)
      const moduleError = yield* Effect.flip(serveLayer(noLayer))
      expect(moduleError.issues[0]!.path).toBe("modules[0]")
      expect(moduleError.issues[0]!.message).toContain("exports no Layer")

      const missing = yield* load(`modules = ["./missing.ts"]\n`)
      expect((yield* Effect.flip(serveLayer(missing))).issues[0]!.message).toMatch(/^cannot load /)

      // secure sessions are between nodes over NATS: without [nats] the file is refused
      const secure = yield* load(`[secure]\nidentity = "./node.key"\ntrust = ["./peer.pub"]\n`)
      const secureError = yield* Effect.flip(serveLayer(secure))
      expect(secureError.issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
        "secure: secure sessions protect traffic between nodes over NATS: add a [nats] section"
      ])
    }))

  it.live("serve: the config's http.timeout (504, the handler interrupted) and http.maxBodySize (413) over real HTTP", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const port = yield* Effect.promise(freePort)
      const file = Path.join(dir, "troupe.toml")
      // one process, no [nats]: the node is a serializing in-memory one; the node's ask timeout
      // stays at its default (30 s), longer than the client waits (5 s)
      writeFileSync(
        file,
        `modules = [${JSON.stringify(sleeperModule)}]\n[node]\nname = "cfg"\n` +
          `[http]\nport = ${port}\nhost = "127.0.0.1"\ntimeout = "200 millis"\nmaxBodySize = 256\n` +
          `[[http.routes]]\nmethod = "GET"\npath = "/sleep/:key"\nkind = "Sleeper"\ntag = "Sleep"\nservice = true\n` +
          `[[http.routes]]\nmethod = "GET"\npath = "/interrupted/:key"\nkind = "Sleeper"\ntag = "WasInterrupted"\nservice = true\n` +
          `[[http.routes]]\nmethod = "POST"\npath = "/size"\nkind = "Sleeper"\ntag = "Size"\nservice = true\n`
      )
      const config = yield* Config.load(file)
      yield* Layer.build(yield* serveLayer(config)).pipe(Effect.orDie)

      // a route without a timeout of its own gets the config's
      const slept = yield* http(port, "GET", "/sleep/k1")
      expect(slept).toMatchObject({ status: 504, body: { _tag: "AskTimeout", kind: "Sleeper", tag: "Sleep" } })
      // ...and the handler was interrupted (the node may see the interrupt just after the 504)
      let interrupted = yield* http(port, "GET", "/interrupted/k1")
      for (let i = 0; i < 50 && interrupted.body !== true; i++) {
        yield* Effect.sleep("100 millis")
        interrupted = yield* http(port, "GET", "/interrupted/k1")
      }
      expect(interrupted).toEqual({ status: 200, body: true })
      expect(yield* http(port, "GET", "/interrupted/never-asked")).toEqual({ status: 200, body: false })

      // the body limit: within it answered, over it 413 with the config's limit
      const within = JSON.stringify({ text: "a".repeat(200) })
      expect(yield* http(port, "POST", "/size", within)).toEqual({ status: 200, body: 200 })
      const over = JSON.stringify({ text: "a".repeat(300) })
      expect(yield* http(port, "POST", "/size", over)).toMatchObject({
        status: 413,
        body: { _tag: "PayloadTooLarge", size: over.length, limit: 256 }
      })
    }).pipe(Effect.scoped))

  it("parses a [secure] section: identity from a file or a variable, trust keys and files or \"any\"", () => {
    const parse = (secure: string) =>
      Config.parse(`[nats]\nservers = "nats://h:4222"\n[secure]\n${secure}`, "/srv/app/troupe.toml")
    const fromFile = Either.getOrThrow(
      parse(
        `identity = "./keys/edge.key"\ntrust = ["./keys/peers.pub", "${
          "ab".repeat(32)
        }"]\nhandshakeTimeout = "2 seconds"\n`
      )
    )
    expect(fromFile.secure).toMatchObject({ identity: "./keys/edge.key", trust: ["./keys/peers.pub", "ab".repeat(32)] })
    expect(Duration.toMillis(fromFile.secure!.handshakeTimeout!)).toBe(2000)
    expect(Config.resolvePath(fromFile, "./keys/edge.key")).toBe("/srv/app/keys/edge.key")
    expect(Either.getOrThrow(parse(`identity = { env = "SEED" }\ntrust = "any"\n`)).secure).toEqual({
      identity: { env: "SEED" },
      trust: "any"
    })
    expect(Either.getOrThrow(parse(`identity = { file = "k" }\ntrust = []\n`)).secure).toEqual({
      identity: { file: "k" },
      trust: []
    })
    expect(issuesOf(parse(`identity = { path = "k" }\ntrust = "all"\nextra = 1\n`))).toEqual([
      `secure.extra: is unexpected, expected: "identity" | "trust" | "handshakeTimeout"`,
      `secure.identity: expected a key file ("./node.key" or { file = "..." }) or { env = "VARIABLE" }`,
      `secure.trust: Expected "any" | ReadonlyArray<nonEmptyString>, actual "all"`
    ])
    expect(issuesOf(parse(`trust = "any"\n`))).toEqual(["secure.identity: is missing"])
  })

  it.scoped("reads the identity and the trust files of [secure], each mistake with its path", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = Path.join(dir, "troupe.toml")
      const [a, b, c] = [yield* Secure.generateIdentity, yield* Secure.generateIdentity, yield* Secure.generateIdentity]
      const seed = yield* Secure.generateSeed
      writeFileSync(Path.join(dir, "node.key"), `${seed}\n`)
      writeFileSync(Path.join(dir, "peers.pub"), `# the workers\n${a.publicKey}\n\n${b.publicKey} # worker-2\n`)
      writeFileSync(Path.join(dir, "bad.pub"), "not a key\n")
      const load = (secure: string) =>
        Effect.flatMap(
          Effect.sync(() => writeFileSync(file, `[nats]\nservers = "nats://127.0.0.1:4222"\n[secure]\n${secure}`)),
          () => Config.load(file)
        )
      const options = yield* secureOptions(
        yield* load(`identity = "./node.key"\ntrust = ["./peers.pub", "${c.publicKey}"]\n`)
      )
      expect(options?.trust).toEqual([a.publicKey, b.publicKey, c.publicKey])
      const identity = options!.identity
      expect(Secure.isIdentity(identity) && identity.publicKey).toBe(
        (yield* Secure.identityFromFile(Path.join(dir, "node.key"))).publicKey
      )
      process.env["TROUPE_TEST_CONFIG_SEED"] = seed
      const fromEnv = yield* secureOptions(
        yield* load(`identity = { env = "TROUPE_TEST_CONFIG_SEED" }\ntrust = "any"\n`)
      )
      delete process.env["TROUPE_TEST_CONFIG_SEED"]
      expect(fromEnv?.trust).toBe("any")
      expect(Secure.isIdentity(fromEnv!.identity) && fromEnv!.identity.publicKey).toBe(
        Secure.isIdentity(identity) && identity.publicKey
      )

      const failure = (secure: string) =>
        Effect.map(
          Effect.flip(Effect.flatMap(load(secure), secureOptions)),
          (e) => e.issues.map((i) => `${i.path}: ${i.message}`)
        )
      expect((yield* failure(`identity = "./missing.key"\ntrust = "any"\n`))[0]).toMatch(
        /^secure\.identity: cannot read the identity file /
      )
      expect(yield* failure(`identity = { env = "TROUPE_TEST_UNSET_SEED" }\ntrust = "any"\n`)).toEqual([
        "secure.identity: the environment variable TROUPE_TEST_UNSET_SEED is not set"
      ])
      expect((yield* failure(`identity = "./node.key"\ntrust = ["${a.publicKey}", "./bad.pub"]\n`))[0]).toMatch(
        /^secure\.trust\[1\]: .*bad\.pub must hold public keys/
      )
      expect((yield* failure(`identity = "./node.key"\ntrust = ["./nope.pub"]\n`))[0]).toMatch(
        /^secure\.trust\[0\]: not a public key, nor a readable file/
      )
    }))
})
