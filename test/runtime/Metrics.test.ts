import { describe, expect, it } from "@effect/vitest"
import { Rpc } from "@effect/rpc"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Actor from "../../src/actors/Actor.ts"
import * as Node from "../../src/runtime/Node.ts"
import { eventually } from "../fixtures/clock.ts"
import { makeCluster, nodeLayer, nodeOf } from "../fixtures/nodes.ts"

// the gauges are per process and kind: each test has kinds of its own
const Held = Actor.make("MetricsHeld", [
  /** waits until the test opens the gate */
  Rpc.make("Block", { success: Schema.String }),
  Rpc.make("Ping", { success: Schema.String })
])

const heldLayer = (gate: Deferred.Deferred<void>, started: { count: number }) =>
  Actor.toLayer(Held, {
    Block: () =>
      Effect.suspend(() => {
        started.count++
        return Effect.as(Deferred.await(gate), "released")
      }),
    Ping: () => Effect.sync(() => "pong")
  })

const depthOf = (kind: string) => Node.metrics.mailboxDepth.pipe(Metric.tagged("kind", kind))
const activeOf = (kind: string) => Node.metrics.activeActors.pipe(Metric.tagged("kind", kind))
const read = (gauge: ReturnType<typeof depthOf>): number => gauge.unsafeValue([]).value as number

describe("the node's gauges", () => {
  it.scoped("mailbox depth counts the messages waiting behind blocked actors, and falls as they run", () =>
    Effect.gen(function*() {
      const depth = depthOf("MetricsHeld")
      const active = activeOf("MetricsHeld")
      const gate = yield* Deferred.make<void>()
      const started = { count: 0 }
      const cluster = yield* makeCluster("msgpack")
      // the host lives in a scope of its own, to see what releasing it does to the gauges
      const hostScope = yield* Scope.make()
      yield* Layer.buildWithScope(
        nodeLayer("msgpack", cluster.network, cluster.registry, heldLayer(gate, started), { name: "host" }),
        hostScope
      )
      const caller = yield* cluster.add(Layer.empty, { name: "caller" })
      const held = yield* Effect.provide(Actor.client(Held), caller)
      expect(read(depth)).toBe(0)

      // each of two actors runs one Block, which waits on the gate
      const blocks = yield* Effect.forEach(["a1", "a2"], (id) => Effect.fork(held(id).Block()))
      yield* eventually(() => started.count === 2, "both Block handlers started")
      expect(read(depth)).toBe(0)
      expect(read(active)).toBe(2)

      // 4 + 3 messages queue behind them
      const pings = yield* Effect.forEach(
        [...Array.from({ length: 4 }, () => "a1"), ...Array.from({ length: 3 }, () => "a2")],
        (id) => Effect.fork(held(id).Ping())
      )
      yield* eventually(() => read(depth) === 7, "7 messages waiting")
      for (let i = 0; i < 50; i++) yield* Effect.yieldNow()
      expect(read(depth)).toBe(7)
      expect((yield* Metric.value(depth)).value).toBe(7)
      // a kind with nothing waiting keeps its own label at 0
      expect(read(depthOf("MetricsIdle"))).toBe(0)

      // a waiting message whose caller gives up leaves the mailbox
      yield* Fiber.interrupt(pings[0]!)
      yield* eventually(() => read(depth) === 6, "6 messages waiting after one caller left")

      // the gate opens: every waiting message runs, and the depth is back to 0
      yield* Deferred.succeed(gate, undefined)
      expect(yield* Fiber.join(Fiber.zip(blocks[0]!, blocks[1]!))).toEqual(["released", "released"])
      for (const ping of pings.slice(1)) expect(yield* Fiber.join(ping)).toBe("pong")
      expect(read(depth)).toBe(0)
      expect(read(active)).toBe(2)

      // a released node takes its instances out of the gauge
      yield* Scope.close(hostScope, Exit.void)
      expect(read(active)).toBe(0)
      expect(read(depth)).toBe(0)
    }))

  it.scoped("two nodes of one process hosting a kind add up in its gauges", () =>
    Effect.gen(function*() {
      const Shared = Actor.make("MetricsShared", [Rpc.make("Ping", { success: Schema.String })])
      const layer = Actor.toLayer(Shared, { Ping: () => Effect.sync(() => "pong") })
      const cluster = yield* makeCluster("zero-copy")
      const hosts = [yield* cluster.add(layer, { name: "h1" }), yield* cluster.add(layer, { name: "h2" })]
      const client = yield* Effect.provide(Actor.client(Shared), hosts[0]!)
      const ids = Array.from({ length: 12 }, (_, i) => `s${i}`)
      for (const id of ids) expect(yield* client(id).Ping()).toBe("pong")
      const perNode = hosts.map((host) => nodeOf(host).activeInstances("MetricsShared"))
      // rendezvous hashing puts some ids on each node
      expect(perNode[0]).toBeGreaterThan(0)
      expect(perNode[1]).toBeGreaterThan(0)
      expect(perNode[0]! + perNode[1]!).toBe(ids.length)
      expect(read(activeOf("MetricsShared"))).toBe(ids.length)
    }))
})
