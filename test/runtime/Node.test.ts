import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Scope from "effect/Scope"
import { Rpc } from "@effect/rpc"
import * as Chunk from "effect/Chunk"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Actor from "../../src/actors/Actor.ts"
import * as Codec from "../../src/layers/Codec.ts"
import * as Transport from "../../src/layers/Transport.ts"
import { ProtocolVersion } from "../../src/schema/Envelope.ts"
import { eventually } from "../fixtures/clock.ts"
import { makeCluster, modes, nodeOf } from "../fixtures/nodes.ts"
import { makeProbeState, openLatch, Probe, ProbeService, probeLayer, probeServiceLayer } from "../fixtures/probe.ts"

describe.each([...modes, "secure" as const])("several nodes on one in-memory network (%s)", (mode) => {
  it.scoped("places each actor id on exactly one node, reachable from every node", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(mode)
      const states = [makeProbeState(), makeProbeState(), makeProbeState()]
      const nodes = [
        yield* cluster.add(probeLayer(states[0]!, { label: "n0" }), { name: "n0" }),
        yield* cluster.add(probeLayer(states[1]!, { label: "n1" }), { name: "n1" }),
        yield* cluster.add(probeLayer(states[2]!, { label: "n2" }), { name: "n2" })
      ]
      const clients = yield* Effect.forEach(nodes, (node) => Effect.provide(Actor.client(Probe), node))
      const ids = Array.from({ length: 60 }, (_, i) => `id-${i}`)
      for (const id of ids) {
        // every node increments the same actor
        for (const client of clients) yield* client(id).Increment({ by: 1 })
      }
      for (const id of ids) {
        const hosts = nodes.filter((node) => nodeOf(node).isActive("Probe", id))
        expect(hosts.length).toBe(1)
        for (const client of clients) expect(yield* client(id).Get()).toBe(3)
        expect(yield* clients[0]!(id).Whoami()).toBe(nodeOf(hosts[0]!).name)
      }
      // rendezvous hashing spreads the ids
      for (const node of nodes) expect(nodeOf(node).activeInstances("Probe")).toBeGreaterThan(5)
      expect(states.reduce((sum, s) => sum + s.builds, 0)).toBe(ids.length)
    }))

  it.scoped("interrupting an ask interrupts the handler on the other node", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(mode)
      const state = makeProbeState()
      const caller = yield* cluster.add(probeServiceLayer(makeProbeState()), { name: "caller" })
      yield* cluster.add(probeLayer(state), { name: "host" })
      const probe = (yield* Effect.provide(Actor.client(Probe), caller))("remote")
      const fiber = yield* Effect.fork(probe.Block({ key: "remote" }))
      yield* eventually(() => state.latches.has("remote"), "handler started on the host")
      expect(nodeOf(caller).isActive("Probe", "remote")).toBe(false)
      yield* Fiber.interrupt(fiber)
      yield* eventually(() => state.interrupted.includes("remote"), "remote handler interrupted")
      expect(nodeOf(caller).pendingAsks()).toBe(0)
    }))

  it.scoped("a service is served by any node hosting it", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(mode)
      const caller = yield* cluster.add(probeLayer(makeProbeState()), { name: "caller" })
      yield* cluster.add(probeServiceLayer(makeProbeState(), { label: "s0" }), { name: "s0" })
      yield* cluster.add(probeServiceLayer(makeProbeState(), { label: "s1" }), { name: "s1" })
      const service = yield* Effect.provide(Actor.client(ProbeService), caller)
      const served = new Set<string>()
      for (let i = 0; i < 10; i++) served.add(yield* service.Whoami())
      expect([...served].sort()).toEqual(["s0", "s1"])
    }))

  it.scoped("a kind hosted by no node fails with ActorNotFound, one whose nodes all drain with NoAvailableNode", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(mode)
      const caller = yield* cluster.add(probeServiceLayer(makeProbeState()), { name: "caller" })
      const probe = (yield* Effect.provide(Actor.client(Probe), caller))("x")
      expect(yield* Effect.flip(probe.Get())).toMatchObject({ _tag: "ActorNotFound", kind: "Probe" })
      const host = yield* cluster.add(probeLayer(makeProbeState()), { name: "host" })
      expect(yield* probe.Get()).toBe(0)
      yield* nodeOf(host).setServing(false)
      expect(yield* Effect.flip(probe.Get())).toMatchObject({ _tag: "NoAvailableNode", kind: "Probe" })
      yield* nodeOf(host).setServing(true)
      expect(yield* probe.Get()).toBe(0)
    }))

  if (mode !== "zero-copy") {
    it.scoped("a reply over the per-message limit fails the ask with PayloadTooLarge at once, not at its timeout", () =>
      Effect.gen(function*() {
        const cluster = yield* makeCluster(mode, { maxMessageBytes: 2048 })
        const caller = yield* cluster.add(probeServiceLayer(makeProbeState()), { name: "caller" })
        yield* cluster.add(probeLayer(makeProbeState()), { name: "host" })
        const probe = (yield* Effect.provide(Actor.client(Probe), caller))("big")
        expect(yield* probe.Repeat({ text: "ab", times: 10 })).toBe("ab".repeat(10))
        // the TestClock stands still: a reply that never came would leave the ask pending for good
        const fiber = yield* Effect.fork(probe.Repeat({ text: "ab", times: 5000 }))
        yield* eventually(() => fiber.unsafePoll() !== null, "the ask was answered")
        const error = yield* Effect.flip(Fiber.join(fiber))
        expect(error).toMatchObject({ _tag: "PayloadTooLarge", limit: 2048 })
        expect((error as { size: number }).size).toBeGreaterThan(10_000)
        expect(nodeOf(caller).pendingAsks()).toBe(0)
        expect(yield* probe.Repeat({ text: "c", times: 3 })).toBe("ccc")
      }))
  }

  it.effect("asks pending on a node that stops fail with a typed error", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(mode)
      const state = makeProbeState()
      const scope = yield* Scope.make()
      const caller = yield* cluster.add(probeServiceLayer(makeProbeState()), { name: "caller" })
      yield* Scope.extend(cluster.add(probeLayer(state), { name: "host", shutdownTimeout: "0 millis" }), scope)
      const probe = (yield* Effect.provide(Actor.client(Probe), caller))("a")
      const fiber = yield* Effect.fork(probe.Block({ key: "k" }))
      yield* eventually(() => state.latches.has("k"), "handler started")
      yield* Scope.close(scope, Exit.void)
      expect(yield* Effect.flip(Fiber.join(fiber))).toMatchObject({ _tag: "ActorStopped", kind: "Probe", id: "a" })
      yield* openLatch(state, "k")
    }).pipe(Effect.scoped))
})

describe("frames from the wire", () => {
  const frame = (overrides: Record<string, unknown>) => ({
    _tag: "Request",
    v: ProtocolVersion,
    source: "test",
    requestId: 1,
    kind: "Probe",
    id: "a",
    tag: "Increment",
    headers: {},
    body: { by: 1 },
    ...overrides
  })

  it.scoped("a request for a kind the node does not host is answered with ActorNotFound", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster("json")
      const node = yield* cluster.add(probeLayer(makeProbeState()), { name: "host" })
      const transport = Transport.makeInMemorySerialized(Codec.jsonCodec, { network: cluster.network })
      const replies: Array<unknown> = []
      yield* transport.subscribe("node.test", (reply) => replies.push(reply))
      yield* transport.publish(`node.${nodeOf(node).nodeId}`, frame({ kind: "Nope" }) as never)
      yield* transport.publish(`node.${nodeOf(node).nodeId}`, frame({ requestId: 2, body: { by: "x" } }) as never)
      yield* transport.publish(`node.${nodeOf(node).nodeId}`, frame({ requestId: 3, tag: "Unknown" }) as never)
      yield* transport.publish(`node.${nodeOf(node).nodeId}`, frame({ requestId: 4 }) as never)
      yield* eventually(() => replies.length === 4, "four replies")
      const byId = new Map(replies.map((r) => [(r as { requestId: number }).requestId, (r as { exit: unknown }).exit]))
      expect(byId.get(1)).toMatchObject({ _tag: "Error", error: { _tag: "ActorNotFound", kind: "Nope" } })
      expect(byId.get(2)).toMatchObject({ _tag: "Error", error: { _tag: "DecodeError" } })
      expect(byId.get(3)).toMatchObject({ _tag: "Error", error: { _tag: "DecodeError" } })
      expect(byId.get(4)).toMatchObject({ _tag: "Success", value: 1 })
    }))

  it.scoped("a tell to a streaming Rpc from the wire is refused, never runs its handler nor restarts the actor", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster("json")
      const builds = { count: 0 }
      const Ticker = Actor.make("Ticker", [
        Rpc.make("Ticks", { payload: { n: Schema.Number }, success: Schema.Number, stream: true }),
        Rpc.make("Builds", { success: Schema.Number })
      ])
      const TickerLive = Actor.toLayer(
        Ticker,
        Effect.sync(() => {
          builds.count++
          return {
            Ticks: ({ n }: { readonly n: number }) => Stream.range(1, n),
            Builds: () => Effect.succeed(builds.count)
          }
        })
      )
      const node = yield* cluster.add(TickerLive, { name: "host" })
      const ticker = (yield* Effect.provide(Actor.client(Ticker), node))("t")
      expect(yield* ticker.Builds()).toBe(1)
      const transport = Transport.makeInMemorySerialized(Codec.jsonCodec, { network: cluster.network })
      for (let i = 0; i < 5; i++) {
        yield* transport.publish(
          `node.${nodeOf(node).nodeId}`,
          frame({ requestId: 10 + i, kind: "Ticker", id: "t", tag: "Ticks", body: { n: 3 }, oneWay: true }) as never
        )
      }
      yield* Effect.yieldNow()
      // five refused tells: had each run the handler as an ask, each would have died and restarted the actor
      expect(yield* ticker.Builds()).toBe(1)
      expect(yield* Stream.runCollect(ticker.Ticks({ n: 3 })).pipe(Effect.map(Chunk.toArray))).toEqual([1, 2, 3])
    }))

  it.scoped("malformed bytes are counted and dropped; the node carries on", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster("msgpack")
      const node = yield* cluster.add(probeLayer(makeProbeState()), { name: "host" })
      const before = (yield* Metric.value(Transport.malformedFrames)).count
      const subject = `troupe.default.node.${nodeOf(node).nodeId}`
      cluster.network.route(subject, new Uint8Array([0xc1, 0xff, 0x00]))
      cluster.network.route(subject, Either.getOrThrow(Codec.jsonCodec.encode(frame({}) as never)).slice(0, 20))
      const after = (yield* Metric.value(Transport.malformedFrames)).count
      expect(after - before).toBe(2)
      const probe = (yield* Effect.provide(Actor.client(Probe), node))("a")
      expect(yield* probe.Increment({ by: 1 })).toBe(1)
    }))
})
