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
import { owner } from "../../src/runtime/internal/placement.ts"

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
      for (const n of nodes) {
        expect([...before.values()].filter((owner) => owner === n.name).length).toBeGreaterThan(250)
      }

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

/** rendezvous weights computed the plain way: the whole key hashed for every member */
const referenceOwner = (nodeIds: ReadonlyArray<string>, id: string): string | undefined => {
  let best: string | undefined
  let bestWeight = -1
  for (const nodeId of nodeIds) {
    const key = `${nodeId}\u0000${id}`
    let hash = 0x811c9dc5
    for (let i = 0; i < key.length; i++) {
      hash ^= key.charCodeAt(i)
      hash = Math.imul(hash, 0x01000193)
    }
    hash ^= hash >>> 16
    hash = Math.imul(hash, 0x85ebca6b)
    hash ^= hash >>> 13
    hash = Math.imul(hash, 0xc2b2ae35)
    hash ^= hash >>> 16
    const weight = hash >>> 0
    if (weight > bestWeight || (weight === bestWeight && best !== undefined && nodeId < best)) {
      best = nodeId
      bestWeight = weight
    }
  }
  return best
}

describe("rendezvous owner", () => {
  it("matches hashing the whole key for every member, remembered or not, for any membership", () => {
    const memberships = [
      [],
      ["solo"],
      ["a", "b"],
      Array.from({ length: 10 }, (_, i) => `node-${i}`),
      Array.from({ length: 1000 }, (_, i) => `n${(i * 7919) % 1000}-${i.toString(36)}`)
    ]
    for (const members of memberships) {
      for (let round = 0; round < 2; round++) {
        // the second round is answered from what the first remembered
        for (let i = 0; i < 5_000; i++) {
          const id = i % 3 === 0 ? `acct-${i}` : `ü${i}\u0000x`
          expect(owner(members, id)).toBe(referenceOwner(members, id))
        }
      }
    }
  })

  it("a new membership array is worked out afresh: an id moves when its owner leaves", () => {
    const members = Array.from({ length: 20 }, (_, i) => `node-${i}`)
    const ids = Array.from({ length: 500 }, (_, i) => `id-${i}`)
    const before = ids.map((id) => owner(members, id)!)
    const gone = before[0]!
    const after = members.filter((m) => m !== gone)
    ids.forEach((id, i) => {
      const now = owner(after, id)
      expect(now).toBe(referenceOwner(after, id))
      if (before[i] !== gone) expect(now).toBe(before[i])
      else expect(now).not.toBe(gone)
    })
  })
})
