/**
 * Nodes in this process, each with its own connection to a real nats-server.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Scope from "effect/Scope"
import { Packr } from "msgpackr"
import { connect, type Msg } from "nats"
import { createHash } from "node:crypto"
import { afterAll, beforeAll } from "vitest"
import * as Actor from "../../src/actors/Actor.ts"
import * as Topic from "../../src/actors/Topic.ts"
import type { ActorSystem } from "../../src/actors/ActorSystem.ts"
import * as Codec from "../../src/layers/Codec.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as Transport from "../../src/layers/Transport.ts"
import * as Node from "../../src/runtime/Node.ts"
import { type Envelope, ProtocolVersion } from "../../src/schema/Envelope.ts"
import { eventually } from "../fixtures/clock.ts"
import { type NatsCluster, type NatsServer, startNatsCluster, startNatsServer } from "../fixtures/nats.ts"
import { nodeOf } from "../fixtures/nodes.ts"
import { owner } from "../../src/runtime/internal/placement.ts"
import { makeProbeState, Probe, ProbeService, probeLayer, probeServiceLayer } from "../fixtures/probe.ts"
import {
  bytes,
  expectedSha256,
  makeStreamerState,
  Streamer,
  streamerLayer,
  StreamerService,
  streamerServiceLayer
} from "../fixtures/streamer.ts"

let server: NatsServer
let small: NatsServer
let cluster: NatsCluster

beforeAll(async () => {
  ;[server, small, cluster] = await Promise.all([
    startNatsServer(),
    startNatsServer({ maxPayload: 64 * 1024 }),
    startNatsCluster(3)
  ])
}, 30_000)

afterAll(async () => {
  await Promise.all([server?.stop(), small?.stop(), cluster?.stop()])
})

const natsNode = (
  url: string | ReadonlyArray<string>,
  codec: "json" | "msgpack",
  registry: Discovery.Registry,
  kinds: Layer.Layer<never, never, ActorSystem>,
  options?: Node.NodeOptions & { readonly namespace?: string; readonly maxMessageBytes?: number }
) =>
  Layer.build(
    kinds.pipe(
      Layer.provideMerge(Node.layer(options)),
      Layer.provide(Layer.merge(
        Transport.nats({
          servers: url,
          namespace: options?.namespace ?? "test",
          maxMessageBytes: options?.maxMessageBytes,
          ...(options?.name !== undefined ? { name: options.name } : {})
        }).pipe(
          Layer.provide(codec === "json" ? Codec.json : Codec.msgpack)
        ),
        Discovery.layerInMemory(registry)
      ))
    )
  )

describe.each(["json", "msgpack"] as const)("nodes over NATS (%s)", (codec) => {
  it.live("ask, tell, typed errors and defects between nodes on one server", () =>
    Effect.gen(function*() {
      const registry = yield* Discovery.makeRegistry
      const state = makeProbeState()
      yield* natsNode(server.url, codec, registry, probeLayer(state, { label: "host" }), { name: "host" })
      const caller = yield* natsNode(server.url, codec, registry, Layer.empty, { name: "caller" })
      const probe = (yield* Effect.provide(Actor.client(Probe), caller))("a")
      expect(yield* probe.Increment({ by: 2 })).toBe(2)
      yield* Actor.tell(probe.Increment({ by: 3 }))
      yield* eventually(() => state.builds === 1, "built")
      expect(yield* probe.Get().pipe(Effect.repeat({ until: (n) => n === 5, times: 100 }))).toBe(5)
      expect(yield* probe.Whoami()).toBe("host")
      expect(yield* Effect.flip(probe.Fail({ reason: "typed" }))).toMatchObject({ _tag: "ProbeError", reason: "typed" })
      expect(yield* Effect.flip(probe.Die({ message: "boom" }))).toMatchObject({
        _tag: "RemoteDefect",
        defect: "boom",
        node: expect.stringContaining("host")
      })
      const at = new Date(1234)
      const when = yield* probe.When({ at }).pipe(Effect.either)
      // JSON cannot carry a Date as a Date; MessagePack can
      expect(Either.isRight(when) ? when.right : when.left._tag).toEqual(codec === "json" ? "DecodeError" : at)
    }).pipe(Effect.scoped))

  it.live("interrupting an ask interrupts the handler on the other node", () =>
    Effect.gen(function*() {
      const registry = yield* Discovery.makeRegistry
      const state = makeProbeState()
      yield* natsNode(server.url, codec, registry, probeLayer(state), { name: "host" })
      const caller = yield* natsNode(server.url, codec, registry, Layer.empty, { name: "caller" })
      const probe = (yield* Effect.provide(Actor.client(Probe), caller))("a")
      const fiber = yield* Effect.fork(probe.Block({ key: "k" }))
      yield* waitFor(() => state.latches.has("k"))
      yield* Fiber.interrupt(fiber)
      yield* waitFor(() => state.interrupted.includes("k"))
      const timed = yield* Effect.flip(probe.Block({ key: "t" }, { timeout: "200 millis" }))
      expect(timed).toMatchObject({ _tag: "AskTimeout", kind: "Probe", id: "a" })
      yield* waitFor(() => state.interrupted.includes("t"))
      expect(yield* probe.Increment({ by: 1 })).toBe(1)
    }).pipe(Effect.scoped))

  it.live("no responders fails the ask at once with NoAvailableNode, not after the timeout", () =>
    Effect.gen(function*() {
      const registry = yield* Discovery.makeRegistry
      const caller = yield* natsNode(server.url, codec, registry, Layer.empty, { name: "caller" })
      // discovery believes a node serves both kinds, but nothing listens on NATS
      yield* Effect.provide(
        Discovery.Discovery.pipe(Effect.flatMap((d) =>
          d.announce({
            nodeId: "ghost-1",
            name: "ghost",
            incarnation: "x",
            address: "nowhere",
            kinds: ["Probe", "ProbeService"],
            isServing: true,
            startedAt: 0
          })
        )),
        Discovery.layerInMemory(registry)
      )
      const probe = yield* Effect.provide(Actor.client(Probe), caller)
      const service = yield* Effect.provide(Actor.client(ProbeService), caller)
      const started = Date.now()
      expect(yield* Effect.flip(probe("a").Get(undefined, { timeout: "20 seconds" }))).toMatchObject({
        _tag: "NoAvailableNode",
        kind: "Probe",
        id: "a"
      })
      expect(yield* Effect.flip(service.Get(undefined, { timeout: "20 seconds" }))).toMatchObject({
        _tag: "NoAvailableNode",
        kind: "ProbeService"
      })
      expect(Date.now() - started).toBeLessThan(10_000) // far below the 20 s timeout
      expect(nodeOf(caller).pendingAsks()).toBe(0)
    }).pipe(Effect.scoped))

  it.live("a message over the server's max_payload travels in pieces; one over maxMessageBytes fails before sending", () =>
    Effect.gen(function*() {
      const registry = yield* Discovery.makeRegistry
      const state = makeProbeState()
      yield* natsNode(small.url, codec, registry, probeLayer(state), { name: "host" })
      const caller = yield* natsNode(small.url, codec, registry, Layer.empty, {
        name: "caller",
        maxMessageBytes: 512 * 1024
      })
      const probe = (yield* Effect.provide(Actor.client(Probe), caller))("a")
      const data = Array.from({ length: 50_000 }, (_, i) => i) // > 64 KiB in both codecs
      expect(yield* probe.Echo({ data })).toEqual(data)
      const huge = Array.from({ length: 200_000 }, (_, i) => i * 1.5) // > 512 KiB in both codecs
      const error = yield* Effect.flip(probe.Echo({ data: huge }))
      expect(error).toMatchObject({ _tag: "PayloadTooLarge", limit: 512 * 1024 })
      expect(state.builds).toBe(1) // only the first request reached the host
      expect(yield* probe.Echo({ data: [1, 2] })).toEqual([1, 2])
    }).pipe(Effect.scoped))

  it.live("a request over the receiver's smaller limit fails with PayloadTooLarge from the receiver, not a timeout", () =>
    Effect.gen(function*() {
      const registry = yield* Discovery.makeRegistry
      const state = makeProbeState()
      yield* natsNode(server.url, codec, registry, probeLayer(state), { name: "host", maxMessageBytes: 256 * 1024 })
      const caller = yield* natsNode(server.url, codec, registry, Layer.empty, {
        name: "caller",
        maxMessageBytes: 1024 * 1024
      })
      const probe = (yield* Effect.provide(Actor.client(Probe), caller))("a")
      const data = Array.from({ length: 100_000 }, (_, i) => i * 1.5) // > 256 KiB, < 1 MiB in both codecs
      // were the receiver silent, this ask would end in AskTimeout after 20 s
      const error = yield* Effect.flip(probe.Echo({ data }, { timeout: "20 seconds" }))
      expect(error).toMatchObject({ _tag: "PayloadTooLarge", limit: 256 * 1024 })
      expect((error as { readonly size: number }).size).toBeGreaterThan(256 * 1024)
      expect(state.builds).toBe(0)
      expect(yield* probe.Echo({ data: [1, 2] })).toEqual([1, 2])
    }).pipe(Effect.scoped))

  it.live("a streamed element or an uploaded piece over the receiver's smaller limit fails the call with PayloadTooLarge", () =>
    Effect.gen(function*() {
      const small = 256 * 1024
      // the consumer has the smaller limit: its stream fails, not times out
      const registry = yield* Discovery.makeRegistry
      yield* natsNode(server.url, codec, registry, streamerLayer(makeStreamerState()), {
        name: "big",
        namespace: `lim-${codec}-1`,
        maxMessageBytes: 4 * small
      })
      const consumer = yield* natsNode(server.url, codec, registry, Layer.empty, {
        name: "small",
        namespace: `lim-${codec}-1`,
        maxMessageBytes: small
      })
      const fromBig = (yield* Effect.provide(Actor.client(Streamer), consumer))("s")
      const streamError = yield* Effect.flip(
        Stream.runCollect(fromBig.Bytes({ size: 600_000, chunk: 300_000 }, { timeout: "20 seconds" }))
      )
      expect(streamError).toMatchObject({ _tag: "PayloadTooLarge", limit: small })
      // the uploader has the larger limit: its call fails with the receiver's PayloadTooLarge
      const registry2 = yield* Discovery.makeRegistry
      yield* natsNode(server.url, codec, registry2, streamerLayer(makeStreamerState()), {
        name: "small",
        namespace: `lim-${codec}-2`,
        maxMessageBytes: small
      })
      const uploader = yield* natsNode(server.url, codec, registry2, Layer.empty, {
        name: "big",
        namespace: `lim-${codec}-2`,
        maxMessageBytes: 4 * small
      })
      const toSmall = (yield* Effect.provide(Actor.client(Streamer), uploader))("s")
      const uploadError = yield* Effect.flip(
        toSmall.Put({ name: "x", data: bytes(600_000, 300_000) }, { timeout: "20 seconds" })
      )
      expect(uploadError).toMatchObject({ _tag: "PayloadTooLarge", limit: small })
      // within the limits both still work
      expect((yield* Stream.runCollect(fromBig.Bytes({ size: 1000, chunk: 100 }))).length).toBe(10)
      expect(yield* toSmall.Put({ name: "y", data: bytes(1000, 100) })).toMatchObject({ bytes: 1000, chunks: 10 })
    }).pipe(Effect.scoped))

  it.live(
    "several streams at once between the same two nodes, both ways: every one arrives intact",
    () =>
      Effect.gen(function*() {
        const registry = yield* Discovery.makeRegistry
        const namespace = `many-${codec}`
        yield* natsNode(server.url, codec, registry, streamerServiceLayer(makeStreamerState()), {
          name: "host",
          namespace
        })
        const caller = yield* natsNode(server.url, codec, registry, Layer.empty, { name: "caller", namespace })
        const streamer = yield* Effect.provide(Actor.client(StreamerService), caller)
        const sha256 = (pieces: Iterable<Uint8Array>) => {
          const hash = createHash("sha256")
          for (const piece of pieces) hash.update(piece)
          return hash.digest("hex")
        }
        // elements below, at and above the chunk size, and sizes that are no multiple of them
        const downloads = [[3_000_001, 64 * 1024], [2_000_003, 100_000], [1_500_007, 7_000], [
          2_500_000,
          16 * 1024
        ]] as const
        const uploads = [[2_000_003, 64 * 1024], [1_000_000, 33_333], [1_700_000, 16 * 1024 + 1]] as const
        const results = yield* Effect.all([
          Effect.forEach(downloads, ([size, chunk]) =>
            Effect.map(Stream.runCollect(streamer.Bytes({ size, chunk })), (pieces) => ({
              bytes: Chunk.reduce(pieces, 0, (n, piece) =>
                n + piece.byteLength),
              sha256: sha256(pieces)
            })), { concurrency: "unbounded" }),
          Effect.forEach(uploads, ([size, chunk], i) =>
            Effect.map(
              streamer.Put({ name: `up-${i}`, data: bytes(size, chunk) }),
              ({ bytes, sha256 }) => ({ bytes, sha256 })
            ), {
            concurrency: "unbounded"
          })
        ], { concurrency: "unbounded" })
        expect(results[0]).toEqual(
          downloads.map(([size, chunk]) => ({ bytes: size, sha256: expectedSha256(size, chunk) }))
        )
        expect(results[1]).toEqual(
          uploads.map(([size, chunk]) => ({ bytes: size, sha256: expectedSha256(size, chunk) }))
        )
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("two namespaces on one server do not see each other", () =>
    Effect.gen(function*() {
      const registry = yield* Discovery.makeRegistry
      yield* natsNode(server.url, codec, registry, probeServiceLayer(makeProbeState(), { label: "blue" }), {
        name: "blue",
        namespace: "blue"
      })
      yield* natsNode(server.url, codec, registry, probeServiceLayer(makeProbeState(), { label: "green" }), {
        name: "green",
        namespace: "green"
      })
      const caller = yield* natsNode(server.url, codec, registry, Layer.empty, { name: "caller", namespace: "blue" })
      const service = yield* Effect.provide(Actor.client(ProbeService), caller)
      for (let i = 0; i < 10; i++) expect(yield* service.Whoami()).toBe("blue")
    }).pipe(Effect.scoped))
})

describe("the NATS transport's coalescing", () => {
  const transportOn = (url: string, coalesce: boolean) =>
    Effect.map(
      Layer.build(Transport.nats({ servers: url, namespace: "coalesce", coalesce }).pipe(Layer.provide(Codec.msgpack))),
      (context) => Context.get(context, Transport.Transport)
    )
  const interrupt = (requestId: number) => ({ _tag: "Interrupt" as const, v: ProtocolVersion, source: "n1", requestId })

  /**
   * A coalescing sender, a receiver subscribed to `subject`, and a plain NATS client that sees
   * every wire message to it (`onWire`); `noResponders` gathers the sender's reply slots
   * (`slot.*`) that reached nobody.
   */
  const wireSetup = (subject: string, onFrame: (frame: Envelope) => void, onWire: (msg: Msg) => void) =>
    Effect.gen(function*() {
      const sender = yield* transportOn(server.url, true)
      const receiver = yield* transportOn(server.url, false)
      yield* receiver.subscribe(subject, onFrame)
      const raw = yield* Effect.acquireRelease(
        Effect.promise(() => connect({ servers: server.url })),
        (nc) => Effect.promise(() => nc.close())
      )
      raw.subscribe(`troupe.coalesce.${subject}`, { callback: (_, msg) => onWire(msg) })
      yield* Effect.promise(() => raw.flush())
      const noResponders: Array<string> = []
      yield* sender.subscribe("slot.*", () => {}, { onNoResponders: (slot) => noResponders.push(slot) })
      yield* Effect.sleep("100 millis")
      return { sender, noResponders }
    })

  it.live("frames published in one turn arrive in order, in fewer NATS messages, and each still hears no responders", () =>
    Effect.gen(function*() {
      const received: Array<number> = []
      let messages = 0
      const { noResponders, sender } = yield* wireSetup("batched.>", (frame) => {
        if (frame._tag === "Interrupt") received.push(frame.requestId)
      }, () => messages++)
      // one synchronous loop: 100 frames to one subject, then 10 to another, then 5 to nobody
      for (let i = 0; i < 100; i++) expect(sender.unsafePublish("batched.a", interrupt(i))).toBeUndefined()
      for (let i = 100; i < 110; i++) expect(sender.unsafePublish("batched.b", interrupt(i))).toBeUndefined()
      for (let i = 0; i < 5; i++) sender.unsafePublish("nobody.here", interrupt(i), { replyTo: `slot.${i}` })
      yield* waitFor(() => received.length === 110 && noResponders.length === 5)
      expect(received).toEqual(Array.from({ length: 110 }, (_, i) => i))
      expect(messages).toBeLessThan(20)
      expect([...noResponders].sort()).toEqual(["slot.0", "slot.1", "slot.2", "slot.3", "slot.4"])
    }).pipe(Effect.scoped))

  it.live("a large frame's first piece carries its reply subject, the others none; a piece to nobody hears no responders once", () =>
    Effect.gen(function*() {
      const received: Array<number> = []
      const replies: Array<string> = []
      const { noResponders, sender } = yield* wireSetup("node.big", (frame) => {
        if (frame._tag === "Items") received.push((frame.items[0] as Uint8Array).byteLength)
      }, (msg) => replies.push(msg.reply ?? ""))
      const items = (size: number) => ({
        _tag: "Items" as const,
        v: ProtocolVersion,
        source: "n1",
        requestId: 1,
        seq: 0,
        items: [new Uint8Array(size)]
      })
      // 64 KiB: four pieces of 16 KiB
      expect(sender.unsafePublish("node.big", items(64 * 1024), { fragmentTo: "node.big", replyTo: "slot.big" }))
        .toBeUndefined()
      expect(sender.unsafePublish("node.none", items(64 * 1024), { fragmentTo: "node.none", replyTo: "slot.none" }))
        .toBeUndefined()
      yield* waitFor(() => received.length === 1 && replies.length === 4 && noResponders.length === 1)
      expect(received).toEqual([64 * 1024])
      expect(replies).toEqual(["troupe.coalesce.slot.big", "", "", ""])
      yield* Effect.sleep("200 millis")
      expect(noResponders).toEqual(["slot.none"])
    }).pipe(Effect.scoped))
})

const waitFor = (condition: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 500; i++) {
      if (condition()) return
      yield* Effect.sleep("10 millis")
    }
    return yield* Effect.dieMessage("condition not met within 5 s")
  })

describe("NATS failures", () => {
  it.live(
    "nats-server killed and restarted mid-traffic: every ask resolves, and the node serves again",
    () =>
      Effect.gen(function*() {
        const local = yield* Effect.acquireRelease(
          Effect.promise(() => startNatsServer()),
          (s) => Effect.promise(() => s.stop())
        )
        const registry = yield* Discovery.makeRegistry
        yield* natsNode(local.url, "msgpack", registry, probeServiceLayer(makeProbeState()), { name: "host" })
        const caller = yield* natsNode(local.url, "msgpack", registry, Layer.empty, { name: "caller" })
        const service = yield* Effect.provide(Actor.client(ProbeService), caller)
        const outcomes = { ok: 0, typed: 0 }
        const traffic = yield* Effect.fork(
          Effect.forEach(
            Array.from({ length: 300 }, (_, i) => i),
            () =>
              service.Increment({ by: 1 }, { timeout: "2 seconds" }).pipe(
                Effect.match({
                  onSuccess: () => outcomes.ok++,
                  onFailure: (error) => {
                    expect(["TransportError", "AskTimeout", "NoAvailableNode"]).toContain(error._tag)
                    outcomes.typed++
                  }
                }),
                Effect.zipLeft(Effect.sleep("5 millis"))
              ),
            { concurrency: 4, discard: true }
          )
        )
        yield* waitFor(() => outcomes.ok >= 50)
        local.kill("SIGKILL")
        yield* Effect.sleep("300 millis")
        yield* Effect.promise(() => local.restart())
        yield* Fiber.join(traffic).pipe(Effect.timeout("60 seconds"))
        expect(outcomes.ok + outcomes.typed).toBe(300)
        expect(outcomes.ok).toBeGreaterThan(50)
        // reconnected: asks succeed again
        const after = yield* service.Get().pipe(Effect.retry({ times: 50, schedule: Schedule.spaced("100 millis") }))
        expect(after).toBeGreaterThanOrEqual(outcomes.ok)
      }).pipe(Effect.scoped),
    90_000
  )

  it.live("nodes on different servers of a 3-server cluster talk", () =>
    Effect.gen(function*() {
      const registry = yield* Discovery.makeRegistry
      const state = makeProbeState()
      yield* natsNode(cluster.urls[2]!, "msgpack", registry, probeLayer(state, { label: "far" }), { name: "far" })
      const caller = yield* natsNode(cluster.urls[0]!, "msgpack", registry, Layer.empty, { name: "near" })
      const probe = (yield* Effect.provide(Actor.client(Probe), caller))("x")
      // the subscription takes a moment to reach the other servers
      const first = yield* probe.Whoami().pipe(
        Effect.retry({ while: (e) => e._tag === "NoAvailableNode", times: 50, schedule: Schedule.spaced("50 millis") })
      )
      expect(first).toBe("far")
      expect(yield* probe.Increment({ by: 4 })).toBe(4)
      const fiber = yield* Effect.fork(probe.Block({ key: "c" }))
      yield* waitFor(() => state.latches.has("c"))
      yield* Fiber.interrupt(fiber)
      yield* waitFor(() => state.interrupted.includes("c"))
    }).pipe(Effect.scoped))

  it.live("the connection is drained and closed when the layer is released", () =>
    Effect.gen(function*() {
      // counted by connection name: other tests' connections may still be closing
      const named = () => server.connectionCount("short-lived")
      expect(yield* Effect.promise(named)).toBe(0)
      const scope = yield* Scope.make()
      const registry = yield* Discovery.makeRegistry
      yield* Scope.extend(natsNode(server.url, "json", registry, Layer.empty, { name: "short-lived" }), scope)
      yield* waitForAsync(async () => (await named()) === 1)
      yield* Scope.close(scope, Exit.void)
      yield* waitForAsync(async () => (await named()) === 0)
    }))
})

const waitForAsync = (condition: () => Promise<boolean>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100; i++) {
      if (yield* Effect.promise(condition)) return
      yield* Effect.sleep("50 millis")
    }
    return yield* Effect.dieMessage("condition not met within 5 s")
  })

describe("Node.layerNats", () => {
  it.live("one layer gives a node on NATS with NATS discovery", () =>
    Effect.gen(function*() {
      const options = { servers: server.url, namespace: "one-layer", heartbeat: "200 millis" } as const
      yield* Layer.build(
        probeServiceLayer(makeProbeState(), { label: "host" }).pipe(
          Layer.provideMerge(Node.layerNats({ ...options, name: "host" }))
        )
      )
      const caller = yield* Layer.build(Node.layerNats({ ...options, name: "caller", codec: "json" }).pipe(Layer.orDie))
      const members = yield* Effect.provide(Discovery.awaitServing("ProbeService", { timeout: "5 seconds" }), caller)
      expect(members.map((m) => m.name)).toEqual(["host"])
      const service = yield* Effect.provide(Actor.client(ProbeService), caller)
      expect(yield* service.Whoami()).toBe("host")
    }).pipe(Effect.scoped))
})

describe("topics over NATS", () => {
  const Price = Topic.make("prices.>", Schema.Number)
  const options = { servers: "", namespace: "topics", heartbeat: "200 millis" } as const
  const natsTopicNode = (name: string) =>
    Layer.build(Node.layerNats({ ...options, servers: server.url, name }).pipe(Layer.orDie))
  const collect = (node: Context.Context<Topic.TopicBus>, group?: string) =>
    Effect.gen(function*() {
      const bus = Context.get(node, Topic.TopicBus)
      const before = bus.subscriptionCount()
      const received: Array<Topic.Event<number>> = []
      yield* Topic.subscribe(Price, group === undefined ? undefined : { group }).pipe(
        Stream.runForEach((event) => Effect.sync(() => received.push(event))),
        Effect.provide(node),
        Effect.forkScoped
      )
      yield* waitFor(() => bus.subscriptionCount() === before + 1)
      return received
    })

  it.live("broadcast reaches every node; a queue group splits the events between its members", () =>
    Effect.gen(function*() {
      const nodes = [yield* natsTopicNode("t0"), yield* natsTopicNode("t1"), yield* natsTopicNode("t2")]
      const everyone = yield* Effect.forEach(nodes, (node) => collect(node))
      const group = yield* Effect.forEach(nodes, (node) => collect(node, "workers"))
      // the subscriptions reach the server before we publish
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 100)))
      const N = 60
      for (let i = 0; i < N; i++) {
        yield* Effect.provide(Topic.publish(Price, i, { subject: `prices.eur.${i % 3}` }), nodes[0]!)
      }
      yield* waitFor(() => everyone.every((r) => r.length === N) && group.reduce((n, r) => n + r.length, 0) === N)
      for (const received of everyone) {
        expect(received.map((e) => e.value)).toEqual(Array.from({ length: N }, (_, i) => i))
      }
      const split = group.map((r) => r.length)
      expect(new Set(group.flatMap((r) => r.map((e) => e.value))).size).toBe(N) // each exactly once
      for (const count of split) expect(count).toBeGreaterThan(5) // NATS spreads a queue group at random
      expect(everyone[1]![0]!.source).toContain("t0-")
    }).pipe(Effect.scoped))

  it.live(
    "hostile frames on the discovery and topic subjects: dropped and counted; heartbeats, events and asks go on",
    () =>
      Effect.gen(function*() {
        const namespace = "hostile-topics"
        const base = { servers: server.url, namespace, heartbeat: "200 millis" } as const
        const host = yield* Layer.build(
          probeServiceLayer(makeProbeState(), { label: "host" }).pipe(
            Layer.provideMerge(Node.layerNats({ ...base, name: "host" }))
          )
        )
        const caller = yield* Layer.build(Node.layerNats({ ...base, name: "caller", codec: "json" }).pipe(Layer.orDie))
        yield* Effect.provide(Discovery.awaitServing("ProbeService", { timeout: "5 seconds" }), caller)
        const received: Array<number> = []
        yield* Topic.subscribe(Price).pipe(
          Stream.runForEach((event) => Effect.sync(() => received.push(event.value))),
          Effect.provide(host),
          Effect.forkScoped
        )
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 100)))
        const nc = yield* Effect.acquireRelease(
          Effect.promise(() => connect({ servers: server.url })),
          (c) => Effect.promise(() => c.close())
        )
        const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })
        const json = (u: unknown) => new TextEncoder().encode(JSON.stringify(u))
        const beat = {
          _tag: "Heartbeat",
          v: ProtocolVersion,
          source: "x-id",
          name: "x",
          incarnation: "x-id.1",
          address: "x",
          kinds: ["ProbeService"],
          isServing: true,
          startedAt: 0,
          periodMillis: 200
        }
        const onDiscovery = [
          json([{ toString: 1 }]),
          json({ _tag: { toString: 1 } }),
          json({ ...beat, source: "a b c" }),
          json({ ...beat, source: "x\r\ny" }),
          json({ ...beat, kinds: ["a b"] }),
          packr.pack({ ...beat, startedAt: Number.NaN }),
          new Uint8Array(5000).fill(0x91),
          new Uint8Array([0xdd, 0x00, 0xff, 0xff, 0xff])
        ]
        const onTopic = [
          json(["E", ProtocolVersion, "a b", "prices.eur", 0, 1]),
          json(["E", ProtocolVersion, "src", "prices eur", 0, 1]),
          json(["E", ProtocolVersion, "src", "prices.eur", { toString: 1 }, 1]),
          json(["E", ProtocolVersion, "src", "prices.eur", 0, "not a number"])
        ]
        const before = Effect.runSync(Metric.value(Transport.malformedFrames)).count
        for (let round = 0; round < 50; round++) {
          for (const bytes of onDiscovery) nc.publish(`troupe.${namespace}.discovery`, bytes)
          for (const bytes of onTopic) nc.publish(`troupe.${namespace}.topic.prices.eur`, bytes)
        }
        yield* Effect.promise(() => nc.flush())
        // both nodes hear the discovery garbage; the host, the three malformed events
        yield* waitFor(() => Effect.runSync(Metric.value(Transport.malformedFrames)).count - before >= 50 * (2 * 8 + 3))
        yield* Effect.provide(Topic.publish(Price, 7, { subject: "prices.eur" }), caller)
        yield* waitFor(() => received.includes(7))
        expect(received).toEqual([7])
        const members = yield* Effect.provide(Discovery.awaitServing("ProbeService", { timeout: "5 seconds" }), caller)
        expect(members.map((m) => m.name)).toEqual(["host"])
        const service = yield* Effect.provide(Actor.client(ProbeService), caller)
        for (let i = 0; i < 10; i++) expect(yield* service.Whoami()).toBe("host")
        // heartbeats keep flowing: the host is still alive to the caller after several periods
        yield* Effect.sleep("800 millis")
        expect(Context.get(caller, Discovery.Discovery).unsafeState().members.find((m) => m.name === "host")?.status)
          .toBe("alive")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live("closing a subscription removes it from the server (no leaked NATS subscriptions)", () =>
    Effect.gen(function*() {
      const node = yield* natsTopicNode("leak")
      // a subject no other test uses, counted alone: other tests' connections may still be closing
      const Leak = Topic.make("leakcheck.>", Schema.Number)
      const onTopic = () => server.subscriptionCount("leakcheck.>")
      expect(yield* Effect.promise(onTopic)).toBe(0)
      const scope = yield* Scope.make()
      for (let i = 0; i < 5; i++) {
        yield* Topic.subscribe(Leak, { group: i % 2 === 0 ? "g" : undefined }).pipe(
          Stream.runDrain,
          Effect.provide(node),
          Effect.forkIn(scope)
        )
      }
      yield* waitFor(() => Context.get(node, Topic.TopicBus).subscriptionCount() === 5)
      yield* waitForAsync(async () => (await onTopic()) === 5)
      yield* Scope.close(scope, Exit.void)
      expect(Context.get(node, Topic.TopicBus).subscriptionCount()).toBe(0)
      yield* waitForAsync(async () => (await onTopic()) === 0)
    }).pipe(Effect.scoped))
})

describe.each(["json", "msgpack"] as const)("hostile frames over NATS (%s)", (codec) => {
  const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })
  const plain = (u: unknown): Uint8Array =>
    codec === "json" ? new TextEncoder().encode(JSON.stringify(u)) : packr.pack(u)
  const malformedCount = () => Effect.map(Metric.value(Transport.malformedFrames), (state) => state.count)

  it.live("an ask whose owners by placement are two ghosts in a row is sent on to the live node that serves it", () =>
    Effect.gen(function*() {
      const namespace = `ghosts-${codec}`
      const base = { servers: server.url, namespace, heartbeat: "200 millis", codec } as const
      const state = makeProbeState()
      const host = yield* Layer.build(
        probeLayer(state).pipe(Layer.provideMerge(Node.layerNats({ ...base, name: "host" })))
      )
      const caller = yield* Layer.build(Node.layerNats({ ...base, name: "caller" }).pipe(Layer.orDie))
      yield* Effect.provide(Discovery.awaitServing("Probe", { timeout: "5 seconds" }), caller)
      const hostId = Context.get(host, Node.Node).nodeId
      // two heartbeats of nodes that serve Probe, with nothing behind them (anyone on the broker can send them)
      const nc = yield* Effect.acquireRelease(
        Effect.promise(() => connect({ servers: server.url })),
        (c) => Effect.promise(() => c.close())
      )
      const ghosts = ["ghost-1", "ghost-2"]
      for (const ghost of ghosts) {
        nc.publish(
          `troupe.${namespace}.discovery`,
          plain({
            _tag: "Heartbeat",
            v: ProtocolVersion,
            source: ghost,
            name: ghost,
            incarnation: `${ghost}.1`,
            address: "nowhere",
            kinds: ["Probe"],
            isServing: true,
            startedAt: 0,
            periodMillis: 60_000
          })
        )
      }
      yield* Effect.promise(() => nc.flush())
      yield* waitFor(() =>
        Effect.runSync(Effect.provide(Discovery.state, caller)).members.filter((m) =>
          ghosts.includes(m.nodeId) && m.status === "alive"
        ).length === 2
      )
      // an id owned by a ghost, and by the other ghost once the first is gone
      const all = [...ghosts, hostId]
      const id = Array.from({ length: 1_000 }, (_, i) => `id-${i}`).find((candidate) => {
        const first = owner(all, candidate)
        return first !== hostId && owner(all.filter((n) => n !== first), candidate) !== hostId
      })
      expect(id).toBeDefined()
      const probe = (yield* Effect.provide(Actor.client(Probe), caller))(id!)
      expect(yield* probe.Increment({ by: 1 }, { timeout: "20 seconds" })).toBe(1)
      expect(state.builds).toBe(1)
      expect(nodeOf(caller).pendingAsks()).toBe(0)
    }).pipe(Effect.scoped))

  it.live(
    "frames with a source that is not a subject token are dropped and counted; the node keeps its connection and answers",
    () =>
      Effect.gen(function*() {
        const namespace = `hostile-${codec}`
        const registry = yield* Discovery.makeRegistry
        const events: Array<Transport.TransportEvent> = []
        const host = yield* Layer.build(
          Layer.mergeAll(
            probeLayer(makeProbeState(), { label: "host" }),
            probeServiceLayer(makeProbeState(), { label: "host" })
          ).pipe(
            Layer.provideMerge(Node.layer({ name: "host" })),
            Layer.provideMerge(Layer.merge(
              Transport.nats({ servers: server.url, namespace }).pipe(
                Layer.provide(codec === "json" ? Codec.json : Codec.msgpack)
              ),
              Discovery.layerInMemory(registry)
            ))
          )
        )
        yield* Context.get(host, Transport.Transport).watch((event) => events.push(event))
        const caller = yield* natsNode(server.url, codec, registry, Layer.empty, { name: "caller", namespace })
        const probe = (yield* Effect.provide(Actor.client(Probe), caller))("a")
        const service = yield* Effect.provide(Actor.client(ProbeService), caller)
        expect(yield* probe.Increment({ by: 1 })).toBe(1)
        const hostId = registry.current.members.find((m) => m.name === "host")!.nodeId

        const nc = yield* Effect.acquireRelease(
          Effect.promise(() => connect({ servers: server.url })),
          (c) => Effect.promise(() => c.close())
        )
        const request = (source: unknown, kind = "Probe", extra: ReadonlyArray<unknown> = []) =>
          plain(["Q", ProtocolVersion, source, 7, kind, "a", "Get", 0, 2, 0, ...extra])
        const hostile: ReadonlyArray<readonly [string, Uint8Array]> = [
          // the issue's examples: a source that would become the subject of the reply
          ["node", request("a b c")],
          ["node", request("a\r\nPUB troupe.x 1\r\n")],
          ["actor.ProbeService", request("a b c", "ProbeService")],
          ["actor.ProbeService", request("x\ny", "ProbeService")],
          ["node", request("ok-source", "a b")],
          // the three inputs that threw out of the callback, and deep nesting
          ["discovery", plain([{ toString: 1 }])],
          ["node", plain([{ _tag: { toString: 1 } }])],
          ["node", plain({ _tag: { toString: 1 } })],
          [
            "node",
            codec === "json"
              ? new TextEncoder().encode("[".repeat(20_000) + "]".repeat(20_000))
              : new Uint8Array(20_001).fill(0x91)
          ],
          // decodable but absurd: numbers, flags, empty and huge strings
          ["node", plain(["Q", ProtocolVersion, "src", -1, "Probe", "a", "Get", 0, 2, 0])],
          ["node", plain(["Q", ProtocolVersion, "src", 1.5, "Probe", "a", "Get", 0, 2, 0])],
          ["node", plain(["Q", ProtocolVersion, "src", 8, "Probe", "a", "Get", 0, 2, 1e9])],
          ["node", plain(["Q", ProtocolVersion, "", 9, "Probe", "a", "Get", 0, 2, 0])],
          ["node", plain(["Q", ProtocolVersion, "s".repeat(100_000), 9, "Probe", "a", "Get", 0, 2, 0])],
          ["node", plain(["T", ProtocolVersion, "src", 1, -5, 0, []])],
          ["node", plain({ _tag: "Ack", v: ProtocolVersion, source: "src", requestId: 1, credit: -1 })],
          ["node", plain({ _tag: "Ack", v: ProtocolVersion, source: "a b", requestId: 1, credit: 5 })],
          [
            "node",
            plain({
              _tag: "Exit",
              v: ProtocolVersion,
              source: "src",
              requestId: 1,
              exit: { _tag: "Error", error: { _tag: { toString: 1 } } }
            })
          ],
          ["interrupt.Probe", plain(["I", ProtocolVersion, "a b", 1])],
          ["interrupt.Probe", plain(["I", ProtocolVersion, "src", -1])],
          [
            "discovery",
            plain({
              _tag: "Heartbeat",
              v: ProtocolVersion,
              source: "a b c",
              name: "x",
              incarnation: "x.1",
              address: "x",
              kinds: [],
              isServing: true,
              startedAt: 0,
              periodMillis: 1000
            })
          ],
          ["topic.prices.x", plain(["E", ProtocolVersion, "src", "prices x", 0, 1])],
          // binary layouts: a piece and binary items naming a source with a space
          ["node", new Uint8Array([0xc1, 1, 1, 3, 0x61, 0x20, 0x62, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x41])],
          [
            "node",
            new Uint8Array([0xc3, 1, 0, 3, 0x61, 0x20, 0x62, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0x41])
          ],
          // MessagePack's count bomb: 5 bytes announcing 2^24 elements
          ["node", new Uint8Array([0xdd, 0x00, 0xff, 0xff, 0xff])]
        ]
        const before = yield* malformedCount()
        for (const [subject, bytes] of hostile) {
          nc.publish(`troupe.${namespace}.${subject === "node" ? `node.${hostId}` : subject}`, bytes)
        }
        yield* Effect.promise(() => nc.flush())
        // the dropped frames are counted: all but the two on discovery (in memory here) and the event (no subscriber)
        yield* waitFor(() => Effect.runSync(malformedCount()) - before >= hostile.length - 3)
        // and the host still answers, on the same connection
        expect(yield* probe.Increment({ by: 1 })).toBe(2)
        expect(yield* service.Whoami()).toBe("host")
        for (let i = 0; i < 20; i++) expect(yield* probe.Get()).toBe(2)
        expect(events).toEqual([])
      }).pipe(Effect.scoped),
    30_000
  )
})
