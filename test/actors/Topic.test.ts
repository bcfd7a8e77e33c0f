import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { Rpc } from "@effect/rpc"
import * as Actor from "../../src/actors/Actor.ts"
import * as Ticks from "../../src/actors/Ticks.ts"
import * as Topic from "../../src/actors/Topic.ts"
import * as Codec from "../../src/layers/Codec.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as Transport from "../../src/layers/Transport.ts"
import * as Node from "../../src/runtime/Node.ts"
import { droppedEvents, undecodableEvents } from "../../src/runtime/internal/topics.ts"
import { ProtocolVersion } from "../../src/schema/Envelope.ts"
import { eventually } from "../fixtures/clock.ts"
import { makeCluster, type Mode, type NodeContext } from "../fixtures/nodes.ts"

class Order extends Schema.Class<Order>("Order")({ id: Schema.String, total: Schema.Number }) {}
const orders = (subject: string) => Topic.make(subject, Order)

const busOf = (node: NodeContext) => Context.get(node, Topic.TopicBus)

/** Starts collecting a subscription into an array; returns once it is live. */
const collect = <A, I>(node: NodeContext, topic: Topic.Topic<A, I>, options?: Topic.SubscribeOptions) =>
  Effect.gen(function*() {
    const bus = busOf(node)
    const before = bus.subscriptionCount()
    const received: Array<Topic.Event<A>> = []
    yield* Topic.subscribe(topic, options).pipe(
      Stream.runForEach((event) => Effect.sync(() => received.push(event))),
      Effect.provide(node),
      Effect.forkScoped
    )
    yield* eventually(() => bus.subscriptionCount() === before + 1, "subscribed")
    return received
  })

const publish = <A, I>(node: NodeContext, topic: Topic.Topic<A, I>, value: A, subject?: string) =>
  Effect.provide(Topic.publish(topic, value, subject === undefined ? undefined : { subject }), node)

describe.each(["zero-copy", "json", "msgpack", "secure"] as const)("topics (%s)", (mode: Mode) => {
  it.scoped("every subscriber gets each event; wildcards pick the subjects", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(mode)
      const a = yield* cluster.add(Layer.empty, { name: "a" })
      const b = yield* cluster.add(Layer.empty, { name: "b" })
      const exact = yield* collect(b, orders("orders.eu.placed"))
      const star = yield* collect(b, orders("orders.*.placed"))
      const rest = yield* collect(a, orders("orders.>"))
      const other = yield* collect(a, orders("invoices.>"))
      const subjects = ["orders.eu.placed", "orders.us.placed", "orders.eu.shipped", "orders", "invoices.x"]
      for (const [i, subject] of subjects.entries()) {
        yield* publish(a, orders(subject), new Order({ id: `o${i}`, total: i }))
      }
      yield* eventually(() => rest.length === 3 && other.length === 1, "delivered")
      expect(exact.map((e) => e.subject)).toEqual(["orders.eu.placed"])
      expect(star.map((e) => e.subject)).toEqual(["orders.eu.placed", "orders.us.placed"])
      expect(rest.map((e) => e.subject)).toEqual(["orders.eu.placed", "orders.us.placed", "orders.eu.shipped"])
      expect(other.map((e) => e.value.id)).toEqual(["o4"])
      expect(exact[0]!.value).toBeInstanceOf(Order) // decoded with the topic's schema
      expect(exact[0]!.source).toContain("a-")
    }))

  it.scoped("a queue group gives each event to exactly one member, evenly; broadcast alongside", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(mode)
      const nodes = [
        yield* cluster.add(Layer.empty, { name: "n0" }),
        yield* cluster.add(Layer.empty, { name: "n1" }),
        yield* cluster.add(Layer.empty, { name: "n2" })
      ]
      const members = yield* Effect.forEach(nodes, (node) => collect(node, orders("orders.>"), { group: "billing" }))
      const watcher = yield* collect(nodes[0]!, orders("orders.>"))
      const N = 90
      for (let i = 0; i < N; i++) yield* publish(nodes[1]!, orders("orders.x"), new Order({ id: `${i}`, total: i }))
      yield* eventually(() => watcher.length === N && members.reduce((n, m) => n + m.length, 0) === N, "all delivered")
      const ids = members.flatMap((m) => m.map((e) => e.value.id))
      expect(new Set(ids).size).toBe(N) // exactly once across the group
      for (const member of members) expect(member.length).toBe(N / 3)
    }))
})

describe("topic routing", () => {
  it.scoped("local subjects stay in the process, remote ones cross nodes, both reaches everyone once", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const registry = yield* Discovery.makeRegistry
      const rules = Topic.routes([
        { pattern: "clock.>", bus: "local" },
        { pattern: "orders.>", bus: "remote" },
        { pattern: "audit.>", bus: "both" }
      ])
      const node = (name: string) =>
        Layer.build(
          Node.layer({ name }).pipe(
            Layer.provide(
              Layer.mergeAll(
                Transport.layerInMemory({ network, serialize: true }),
                Discovery.layerInMemory(registry),
                rules
              )
            ),
            Layer.provide(Codec.msgpack),
            Layer.orDie
          )
        )
      const a = yield* node("a")
      const b = yield* node("b")
      const tick = Topic.make("clock.tick", Schema.Number)
      const audit = Topic.make("audit.login", Schema.String)
      const localTicks = yield* collect(a, tick)
      const remoteTicks = yield* collect(b, tick)
      const remoteOrders = yield* collect(b, orders("orders.>"))
      const auditA = yield* collect(a, audit)
      const auditB = yield* collect(b, audit)
      yield* publish(a, tick, 1)
      yield* publish(a, orders("orders.eu"), new Order({ id: "o", total: 1 }))
      yield* publish(a, audit, "ada")
      yield* eventually(() => localTicks.length === 1 && remoteOrders.length === 1 && auditB.length === 1, "delivered")
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      expect(remoteTicks).toEqual([]) // never left node a
      expect(auditA.map((e) => e.value)).toEqual(["ada"]) // once, through the local bus
      expect(auditB.map((e) => e.value)).toEqual(["ada"])
    }))

  it.scoped("publishing to a pattern fails with a typed error", () =>
    Effect.gen(function*() {
      const node = yield* (yield* makeCluster("zero-copy")).add(Layer.empty)
      const error = yield* Effect.flip(publish(node, orders("orders.>"), new Order({ id: "x", total: 0 })))
      expect(error).toMatchObject({ _tag: "TransportError" })
      expect(() => Topic.make("orders.>.x", Order)).toThrow(/last token/)
    }))
})

describe("slow subscribers and bad events", () => {
  it.scoped("a local publisher waits for a slow local subscriber (suspend)", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const node = yield* Layer.build(
        Node.layer({ name: "a" }).pipe(
          Layer.provide(Layer.mergeAll(
            Transport.layerInMemory({ network }),
            Discovery.inMemory,
            Topic.routes([{ pattern: ">", bus: "local" }])
          )),
          Layer.orDie
        )
      )
      const topic = Topic.make("work", Schema.Number)
      const gate = yield* Ref.make(false)
      const taken: Array<number> = []
      const bus = busOf(node)
      yield* Topic.subscribe(topic, { bufferSize: 2 }).pipe(
        Stream.runForEach((e) =>
          Effect.repeat(Ref.get(gate), { until: (open) => open }).pipe(
            Effect.zipRight(Effect.sync(() => taken.push(e.value)))
          )
        ),
        Effect.provide(node),
        Effect.forkScoped
      )
      yield* eventually(() => bus.subscriptionCount() === 1, "subscribed")
      const publisher = yield* Effect.fork(
        Effect.forEach([1, 2, 3, 4, 5], (n) => publish(node, topic, n), { discard: true })
      )
      for (let i = 0; i < 50; i++) yield* Effect.yieldNow()
      expect(publisher.unsafePoll()).toBeNull() // 1 in the consumer, 2 buffered: the publisher waits
      yield* Ref.set(gate, true)
      yield* Fiber.join(publisher)
      yield* eventually(() => taken.length === 5, "all taken")
      expect(taken).toEqual([1, 2, 3, 4, 5]) // nothing lost
    }))

  it.scoped("events from the transport beyond the buffer are dropped and counted; bad events are counted", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster("json")
      const a = yield* cluster.add(Layer.empty, { name: "a" })
      const topic = Topic.make("load", Schema.Number)
      const received: Array<number> = []
      const gate = yield* Ref.make(false)
      const bus = busOf(a)
      yield* Topic.subscribe(topic, { bufferSize: 4 }).pipe(
        Stream.runForEach((e) =>
          Effect.repeat(Ref.get(gate), { until: (open) => open }).pipe(
            Effect.zipRight(Effect.sync(() => received.push(e.value)))
          )
        ),
        Effect.provide(a),
        Effect.forkScoped
      )
      yield* eventually(() => bus.subscriptionCount() === 1, "subscribed")
      const dropped0 = (yield* Metric.value(droppedEvents)).count
      const bad0 = (yield* Metric.value(undecodableEvents)).count
      for (let i = 0; i < 20; i++) yield* publish(a, topic, i)
      // an event whose body does not match the schema, straight onto the wire
      const raw = Transport.makeInMemorySerialized(Codec.jsonCodec, { network: cluster.network })
      yield* raw.publish("topic.load", {
        _tag: "Event",
        v: ProtocolVersion,
        source: "intruder",
        subject: "load",
        headers: {},
        body: "not a number"
      })
      const dropped = (yield* Metric.value(droppedEvents)).count - dropped0
      expect((yield* Metric.value(undecodableEvents)).count - bad0).toBe(1)
      expect(dropped).toBeGreaterThan(0)
      yield* Ref.set(gate, true)
      // everything published is either received or counted as dropped
      yield* eventually(() => received.length + dropped === 20, "the buffered events are consumed")
      yield* publish(a, topic, 100)
      yield* eventually(() => received.includes(100), "the stream goes on after the bad event")
    }))
})

describe("subscriptions and scopes", () => {
  it.scoped("closing the scope unsubscribes (no leaked subscriptions)", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster("msgpack")
      const node = yield* cluster.add(Layer.empty)
      const before = cluster.network.subscriptionCount
      const fiber = yield* Topic.subscribe(orders("orders.>"), { group: "g" }).pipe(
        Stream.runDrain,
        Effect.provide(node),
        Effect.fork
      )
      yield* eventually(() => busOf(node).subscriptionCount() === 1, "subscribed")
      expect(cluster.network.subscriptionCount).toBe(before + 1)
      yield* Fiber.interrupt(fiber)
      expect(busOf(node).subscriptionCount()).toBe(0)
      expect(cluster.network.subscriptionCount).toBe(before)
    }))

  it.scoped("an actor subscribes inside toLayer; the subscription lives in its scope", () =>
    Effect.gen(function*() {
      const Ledger = Actor.make("Ledger", [Rpc.make("Total", { success: Schema.Number })])
      const LedgerLive = Actor.toLayer(
        Ledger,
        Effect.gen(function*() {
          const total = yield* Ref.make(0)
          yield* Topic.subscribe(orders("orders.>")).pipe(
            Stream.runForEach((e) => Ref.update(total, (n) => n + e.value.total)),
            Effect.forkScoped
          )
          return { Total: () => Ref.get(total) }
        }),
        { maxIdleTime: "1 minute" }
      )
      const cluster = yield* makeCluster("zero-copy")
      const node = yield* cluster.add(LedgerLive)
      const ledger = (yield* Effect.provide(Actor.client(Ledger), node))("main")
      expect(yield* ledger.Total()).toBe(0)
      yield* eventually(() => busOf(node).subscriptionCount() === 1, "the actor subscribed")
      yield* publish(node, orders("orders.a"), new Order({ id: "1", total: 5 }))
      yield* publish(node, orders("orders.b"), new Order({ id: "2", total: 7 }))
      yield* eventually(() => busOf(node).subscriptionCount() === 1, "still subscribed")
      let total = 0
      for (let i = 0; i < 100 && total !== 12; i++) {
        yield* Effect.yieldNow() // let the actor's subscription fiber run
        total = yield* ledger.Total()
      }
      expect(total).toBe(12)
      yield* TestClock.adjust("61 seconds") // passivated: its scope closes, and the subscription with it
      yield* eventually(() => busOf(node).subscriptionCount() === 0, "unsubscribed on passivation")
    }))
})

describe("Ticks", () => {
  it.scoped("publishes clock.tick once per interval (TestClock)", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster("zero-copy")
      const node = yield* cluster.add(Layer.empty)
      const received = yield* collect(node, Ticks.ticks)
      yield* Layer.build(Ticks.layer().pipe(Layer.provide(Layer.succeedContext(node))))
      yield* TestClock.adjust("999 millis")
      expect(received).toEqual([])
      yield* TestClock.adjust("1 millis")
      yield* eventually(() => received.length === 1, "first tick")
      yield* TestClock.adjust("4 seconds")
      yield* eventually(() => received.length === 5, "five ticks")
      expect(received.map((e) => e.value)).toEqual(
        [1, 2, 3, 4, 5].map((seq) => ({ seq, at: seq * 1000 }))
      )
      expect(Chunk.size(Chunk.fromIterable(received))).toBe(5)
    }))
})
