/**
 * Where a node gets its `Persistence`: `Node.inMemory` (a private store), `Node.layerNats({
 * persistence })` (JetStream key-value on the node's servers), and `[persistence]` in the config
 * file through `troupe serve`.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { connect } from "nats"
import { afterAll, beforeAll } from "vitest"
import * as Config from "../../src/app/Config.ts"
import { serveLayer } from "../../src/app/internal/serve.ts"
import * as Persistence from "../../src/layers/Persistence.ts"
import * as Node from "../../src/runtime/Node.ts"
import { type NatsServer, natsServerResource, startNatsServer } from "../fixtures/nats.ts"

let server: NatsServer

beforeAll(async () => {
  server = await startNatsServer({ jetstream: true })
}, 30_000)

afterAll(async () => {
  await server?.stop()
})

const key = Persistence.key("state", "Account", "alice")
const one = new Uint8Array([1])

/** the Persistence a built layer provides, if any */
const persistenceOf = <E>(layer: Layer.Layer<never, E> | Layer.Layer<Node.Node, E>) =>
  Effect.flatMap(
    Layer.build(layer as Layer.Layer<Node.Node, E>),
    (context) => Effect.serviceOption(Persistence.Persistence).pipe(Effect.provide(context))
  )

const parse = (toml: string) => Config.parse(toml, "troupe.toml")
const issuesOf = (result: Either.Either<Config.Config, Config.ConfigError>) =>
  Either.match(result, { onLeft: (error) => error.issues.map((i) => `${i.path}: ${i.message}`), onRight: () => [] })

describe("Node.inMemory and Persistence", () => {
  it.scoped("Node.inMemory provides an in-memory store, new for each build", () =>
    Effect.gen(function*() {
      const first = Option.getOrThrow(yield* persistenceOf(Layer.fresh(Node.inMemory)))
      const second = Option.getOrThrow(yield* persistenceOf(Layer.fresh(Node.layerInMemory({ name: "b" }))))
      expect(first.name).toBe("memory")
      yield* first.put(key, one, 0)
      expect(yield* second.get(key)).toEqual(Option.none())
    }))
})

describe("Node.layerNats and Persistence", () => {
  it.scopedLive("with persistence, the node provides a JetStream store on its servers, in the bucket asked for", () =>
    Effect.gen(function*() {
      const options = { servers: server.url, persistence: { bucket: "wired", maxValueBytes: 4096 } }
      const a = Option.getOrThrow(yield* persistenceOf(Node.layerNats({ ...options, name: "a" })))
      const b = Option.getOrThrow(yield* persistenceOf(Node.layerNats({ ...options, name: "b" })))
      expect(a.name).toBe("nats-kv")
      expect(a.maxValueBytes).toBe(4096)
      const revision = yield* a.put(key, one, 0)
      expect(Option.map(yield* b.get(key), (entry) => entry.revision)).toEqual(Option.some(revision))
      // a connection of its own, named after the node
      expect(yield* Effect.promise(() => server.connectionCount("a-persistence"))).toBe(1)
      const nc = yield* Effect.acquireRelease(
        Effect.promise(() => connect({ servers: server.url })),
        (nc) => Effect.promise(() => nc.close())
      )
      const info = yield* Effect.promise(async () => (await nc.jetstreamManager()).streams.info("KV_wired"))
      expect(info.config.num_replicas).toBe(1)
    }))

  it.scopedLive("without persistence, the node provides no store", () =>
    Effect.gen(function*() {
      expect(yield* persistenceOf(Node.layerNats({ servers: server.url, name: "plain" }))).toEqual(Option.none())
    }))

  it.live("with persistence on a server without JetStream, the node fails to start with PersistenceError", () =>
    Effect.scoped(Effect.gen(function*() {
      const plain = yield* natsServerResource()
      const error = yield* Effect.flip(
        Layer.build(Node.layerNats({ servers: plain.url, name: "nojs", persistence: { timeout: "2 seconds" } }))
      )
      expect(error).toMatchObject({ _tag: "PersistenceError" })
      expect((error as { reason: string }).reason).toMatch(/-js/)
    })))
})

describe("[persistence] in the config file", () => {
  it("parses every setting", () => {
    const config = Either.getOrThrow(parse(`
[nats]
servers = "nats://127.0.0.1:4222"

[persistence]
store = "nats-kv"
bucket = "bank"
replicas = 3
maxValueBytes = 65536
timeout = "3 seconds"
`))
    expect(config.persistence).toMatchObject({ store: "nats-kv", bucket: "bank", replicas: 3, maxValueBytes: 65536 })
  })

  it("reports each bad value with its path", () => {
    expect(issuesOf(parse(`
[persistence]
store = "redis"
bucket = "a.b"
replicas = 7
maxValueBytes = 0
timeout = "soon"
history = 2
`))).toEqual([
        expect.stringMatching(/^persistence\.history: is unexpected/),
        expect.stringMatching(/^persistence\.store: Expected "nats-kv" \| "memory", actual "redis"/),
        expect.stringMatching(/^persistence\.bucket: expected \[A-Za-z0-9_-\]\+/),
        "persistence.replicas: expected a whole number from 1 to 5",
        expect.stringMatching(/^persistence\.maxValueBytes: /),
        expect.stringMatching(/^persistence\.timeout: expected a duration/)
      ])
  })

  it.effect("nats-kv without [nats], and nats-kv settings with the memory store, are config errors", () =>
    Effect.gen(function*() {
      const noNats = Either.getOrThrow(parse(`[persistence]\nbucket = "x"\n`))
      const error = yield* Effect.flip(serveLayer(noNats))
      expect(error.issues.map((i) => i.path)).toEqual(["persistence.store"])
      expect(error.issues[0]!.message).toMatch(/add a \[nats\] section, or set store = "memory"/)
      const misplaced = Either.getOrThrow(parse(`[persistence]\nstore = "memory"\nreplicas = 3\n`))
      expect((yield* Effect.flip(serveLayer(misplaced))).issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
        `persistence.replicas: a setting of store = "nats-kv" only`
      ])
    }))

  it.scoped("troupe serve: store = \"memory\" without [nats] gives the node an in-memory store with its limit", () =>
    Effect.gen(function*() {
      const config = Either.getOrThrow(parse(`[persistence]\nstore = "memory"\nmaxValueBytes = 100\n`))
      const store = Option.getOrThrow(yield* persistenceOf(yield* serveLayer(config)))
      expect(store.name).toBe("memory")
      expect(store.maxValueBytes).toBe(100)
    }))

  it.scoped("troupe serve: no [persistence], no store", () =>
    Effect.gen(function*() {
      const config = Either.getOrThrow(parse(`[node]\nname = "bare"\n`))
      expect(yield* persistenceOf(yield* serveLayer(config))).toEqual(Option.none())
    }))

  it.scopedLive("troupe serve: [nats] and [persistence] give the node a JetStream store", () =>
    Effect.gen(function*() {
      const config = Either.getOrThrow(parse(`
[node]
name = "served"

[nats]
servers = "${server.url}"

[persistence]
bucket = "served"
maxValueBytes = 2048
`))
      const store = Option.getOrThrow(yield* persistenceOf(yield* serveLayer(config)))
      expect(store.name).toBe("nats-kv")
      expect(store.maxValueBytes).toBe(2048)
      yield* store.put(key, one, 0)
    }))
})
