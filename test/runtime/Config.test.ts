import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Config from "../../src/runtime/Config.ts"
import { serveLayer } from "../../src/runtime/internal/serve.ts"

const example = fileURLToPath(new URL("../../examples/gateway/troupe.toml", import.meta.url))

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
        nats: { servers: "nats://h:4222" },
        modules: ["./m.ts", "../lib/n.ts"]
      }),
      "/srv/app/troupe.json"
    )
    expect(Either.isRight(result)).toBe(true)
    const config = Either.getOrThrow(result)
    expect(Duration.toMillis(config.node!.askTimeout!)).toBe(1500)
    expect(config.http).toBeUndefined()
    expect(Config.modulePaths(config)).toEqual(["/srv/app/m.ts", "/srv/lib/n.ts"])
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
      "http.port: Expected a number between 0 and 65535, actual 70000",
      `http.routes[1].method: Expected "GET" | "POST" | "PUT" | "PATCH" | "DELETE", actual "FETCH"`,
      `http.routes[1].path: Expected a string starting with "/", actual "b"`,
      "http.routes[1].tag: is missing",
      "http.routes[1].errors.X: Expected a number between 400 and 599, actual 200",
      "modules[1]: Expected string, actual 3"
    ])
    const error = Either.getLeft(result)
    expect(error._tag === "Some" && error.value.message).toMatch(/^troupe\.toml: 10 problem\(s\)\n  node\.typo/)
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

      const badRoute = yield* load(`[http]\nport = 1\n[[http.routes]]\nmethod = "GET"\npath = "/a"\nkind = "K"\ntag = "T"\n`)
      const routeError = yield* Effect.flip(serveLayer(badRoute))
      expect(routeError.issues.map((i) => i.path)).toEqual(["http.routes[0]"])
      expect(routeError.issues[0]!.message).toContain(":id")

      const noLayer = yield* load(`modules = ["./empty.ts"]\n`)
      const moduleError = yield* Effect.flip(serveLayer(noLayer))
      expect(moduleError.issues[0]!.path).toBe("modules[0]")
      expect(moduleError.issues[0]!.message).toContain("exports no Layer")

      const missing = yield* load(`modules = ["./missing.ts"]\n`)
      expect((yield* Effect.flip(serveLayer(missing))).issues[0]!.message).toMatch(/^cannot load /)

      const secure = yield* load(`[secure]\nidentity = "./node.key"\ntrust = ["./peer.pub"]\n`)
      expect((yield* Effect.flip(serveLayer(secure))).issues[0]!.path).toBe("secure")
    }))
})
