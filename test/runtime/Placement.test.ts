/**
 * Placement with heartbeat discovery over the in-memory transport, driven by TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import * as Actor from "../../src/actors/Actor.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as Transport from "../../src/layers/Transport.ts"
import * as Node from "../../src/runtime/Node.ts"
import { eventually } from "../fixtures/clock.ts"
import { makeProbeState, Probe, probeLayer } from "../fixtures/probe.ts"

/** A transport that can be cut off, as if its process had died without a goodbye. */
const crashable = (network: Transport.InMemoryNetwork) => {
  const inner = Transport.makeInMemory({ network })
  const switchboard = { dead: false }
  const transport: Transport.TransportShape = {
    ...inner,
    publish: (subject, frame, options) => (switchboard.dead ? Effect.void : inner.publish(subject, frame, options)),
    unsafePublish: (subject, frame, options) =>
      switchboard.dead ? undefined : inner.unsafePublish(subject, frame, options),
    subscribe: (subject, onFrame, options) =>
      inner.subscribe(subject, (frame) => {
        if (!switchboard.dead) onFrame(frame)
      }, options)
  }
  return { transport, switchboard }
}

const PERIOD = "1 second"

describe("placement", () => {
  it.scoped("3 nodes, 1000 ids: one crashes, every id answers again within 3 heartbeat periods, none on two nodes", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const nodes = yield* Effect.forEach(["n0", "n1", "n2"], (name) =>
        Effect.gen(function*() {
          const { switchboard, transport } = crashable(network)
          const context = yield* Layer.build(
            probeLayer(makeProbeState(), { label: name }).pipe(
              Layer.provideMerge(Node.layer({ name, askTimeout: "1 minute" })),
              Layer.provideMerge(Discovery.layer({ heartbeat: PERIOD })),
              Layer.provide(Layer.succeed(Transport.Transport, transport)),
              Layer.orDie
            )
          )
          return { name, switchboard, context, node: Context.get(context, Node.Node) }
        }))
      const [n0, n1, n2] = nodes as [typeof nodes[0], typeof nodes[0], typeof nodes[0]]
      const serving = () =>
        Discovery.servingMembers(Context.get(n0.context, Discovery.Discovery).unsafeState(), "Probe").length
      yield* TestClock.adjust(PERIOD)
      yield* eventually(() => serving() === 3, "all three nodes serve Probe")

      const probe = yield* Effect.provide(Actor.client(Probe), n0.context)
      const ids = Array.from({ length: 1000 }, (_, i) => `id-${i}`)
      const before = new Map<string, string>()
      for (const id of ids) before.set(id, yield* probe(id).Whoami())
      for (const n of nodes) expect([...before.values()].filter((owner) => owner === n.name).length).toBeGreaterThan(250)

      // n2 dies without a goodbye
      n2.switchboard.dead = true
      for (let period = 0; period < 3; period++) yield* TestClock.adjust(PERIOD)
      yield* eventually(() => serving() === 2, "n2 is suspect after 3 silent periods")

      for (const id of ids) {
        const owner = yield* probe(id).Whoami()
        if (before.get(id) === "n2") expect(["n0", "n1"]).toContain(owner)
        else expect(owner).toBe(before.get(id)) // the others did not move
      }
      for (const id of ids) {
        const active = [n0, n1].filter((n) => n.node.isActive("Probe", id))
        expect(active.length).toBe(1)
      }
    }))

  it.scoped("when a node joins, the actors it now owns move to it", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const build = (name: string) =>
        Layer.build(
          probeLayer(makeProbeState(), { label: name }).pipe(
            Layer.provideMerge(Node.layer({ name })),
            Layer.provideMerge(Discovery.layer({ heartbeat: PERIOD })),
            Layer.provide(Layer.succeed(Transport.Transport, Transport.makeInMemory({ network }))),
            Layer.orDie
          )
        )
      const a = yield* build("a")
      const probe = yield* Effect.provide(Actor.client(Probe), a)
      const ids = Array.from({ length: 200 }, (_, i) => `id-${i}`)
      for (const id of ids) yield* probe(id).Increment({ by: 1 })
      const nodeA = Context.get(a, Node.Node)
      expect(nodeA.activeInstances("Probe")).toBe(200)
      const b = yield* build("b")
      const nodeB = Context.get(b, Node.Node)
      yield* TestClock.adjust(PERIOD)
      yield* eventually(
        () => Discovery.servingMembers(Context.get(a, Discovery.Discovery).unsafeState(), "Probe").length === 2,
        "a sees b"
      )
      yield* eventually(() => nodeA.activeInstances("Probe") < 150, "a passivated what moved")
      const moved = ids.filter((id) => !nodeA.isActive("Probe", id))
      expect(moved.length).toBeGreaterThan(50)
      for (const id of moved) {
        expect(yield* probe(id).Whoami()).toBe("b")
        expect(nodeB.isActive("Probe", id)).toBe(true)
      }
      for (const id of ids) expect(nodeA.isActive("Probe", id) && nodeB.isActive("Probe", id)).toBe(false)
    }))
})
