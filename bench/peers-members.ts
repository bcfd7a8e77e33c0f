/**
 * The cost of a growing cluster, in the peers suite: what one ask costs, routing included, with
 * 1, 10, 100 and 1,000 members in discovery, and what one node spends on discovery with 100 and
 * 1,000 peers heartbeating.
 *
 * **Ask cost.** One node per size, each on its own in-memory registry (`Discovery.layerInMemory`)
 * and zero-copy in-memory transport, hosting `Counter`. Before the node starts, `N - 1`
 * simulated members are announced into its registry: alive, serving, and hosting `Counter` too,
 * so that routing an ask to an actor id computes the rendezvous owner over all `N` serving
 * members, as it would in a real cluster. The asks go to 8 actor ids that this node owns among
 * the `N` (found with the runtime's own `owner` function), so they run locally and the figure is
 * the ask plus its routing, not a network. Routing reads the same `unsafeState()` object that the
 * heartbeat discovery keeps between changes, so the registry stands for a steady cluster. 20,000
 * asks a round, 1 in flight, 3 rounds after a warm-up, the four sizes interleaved with their
 * order rotating; the target is the cost (1 / rate) with 1,000 members < 1.5x the cost with 1.
 *
 * **Discovery CPU.** A real node in another process (`peers-discovery-node.ts`, `Node.layerNats`
 * with the default 1-second heartbeat) on its own nats-server; this process publishes the
 * heartbeats of 100, then 1,000 simulated peers at the default period: each peer once a second
 * at its own phase (the period cut into 1,000 slots of 1 ms, the peers spread evenly over them),
 * each its own NATS message of the frame encoded by Troupe's codec, as a peer's transport sends
 * its heartbeat, so they are frames the node decodes and checks like any other. (A delivery
 * wakes the node, and a wake costs more than a frame: bunching the heartbeats into a few slots
 * a second, or into Troupe's coalesced batches, would understate the cost of independent
 * peers.) The node reports `process.cpuUsage()` every 250 ms; the figure is its CPU per second
 * of wall time over a 3-second window, once the peers have joined (the window right after they
 * join is reported too: every join changes the state). The idle node (no peers) is measured the
 * same way first. A plain nats.js process (`peers-discovery-raw.ts`) receives and decodes the same
 * heartbeats in the same windows: its CPU is the floor of receiving them on this machine.
 *
 * @since 0.5.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import { connect } from "nats"
import { Actor, type ActorSystem, Codec, Discovery, Envelope, Node, Transport } from "../src/index.ts"
import { owner } from "../src/runtime/internal/placement.ts"
import type { NodeChild } from "../testing/nats.ts"
import { Counter, CounterLive } from "./actors.ts"
import { type Budget, type Measurement, measureAll, sequential, type Spec } from "./harness.ts"
import { child, natsServer, ready } from "./nats.ts"
import { DISCOVERY_NAMESPACE } from "./peers-kinds.ts"

/**
 * The cluster sizes the ask is measured at.
 *
 * @since 0.5.0
 * @category constants
 */
export const SIZES = [1, 10, 100, 1_000] as const
const ASKS: Budget = { maxOps: 20_000, maxMillis: 3_000 }
const ROUNDS = 3
/** actor ids asked in turn, each owned by the measured node */
const IDS = 8

// ---- ask cost --------------------------------------------------------------------------------

/** the `Announced` shape of a simulated member of the cluster of `size` */
const fakeMember = (size: number, i: number) => ({
  nodeId: `fake-${size}-${i}`,
  name: `fake-${i}`,
  incarnation: `fake-${size}-${i}.1`,
  address: `memory://fake-${size}-${i}`,
  kinds: [Counter.kind],
  isServing: true,
  startedAt: 0
})

/**
 * `count` actor ids whose owner among `nodes` is `self`. A candidate must beat every other node
 * one to one (rendezvous hashing: the owner is the node of highest weight), which rejects most
 * candidates after a comparison or two; each id found is checked with `owner` over all `nodes`.
 */
const ownedIds = (nodes: ReadonlyArray<string>, self: string, count: number): Array<string> => {
  const others = nodes.filter((node) => node !== self)
  const ids: Array<string> = []
  for (let j = 0; ids.length < count && j < 2_000_000; j++) {
    const id = `m-${j}`
    if (others.every((other) => owner([self, other], id) === self) && owner(nodes, id) === self) ids.push(id)
  }
  return ids
}

/** A node with `size - 1` simulated peers in its discovery, and its spec. */
const sizedNode = (size: number) =>
  Effect.gen(function*() {
    const registry = yield* Discovery.makeRegistry
    const announcer = Discovery.makeInMemory(registry)
    for (let i = 1; i < size; i++) yield* announcer.announce(fakeMember(size, i))
    const node: Context.Context<Node.Node | ActorSystem.ActorSystem> = yield* Layer.build(
      CounterLive.pipe(
        Layer.provideMerge(Node.layer({ name: `peers-members-${size}` })),
        Layer.provide(Layer.merge(Transport.inMemory, Discovery.layerInMemory(registry)))
      )
    )
    const self = Context.get(node, Node.Node).nodeId
    const servingNow = () => Discovery.servingMembers(registry.current, Counter.kind).map((m) => m.nodeId)
    for (let attempt = 0; servingNow().length !== size && attempt < 500; attempt++) yield* Effect.sleep("10 millis")
    const serving = servingNow()
    if (serving.length !== size) return yield* Effect.dieMessage(`${serving.length} of ${size} members serve Counter`)
    const ids = ownedIds(serving, self, IDS)
    if (ids.length < IDS) {
      return yield* Effect.dieMessage(`found only ${ids.length} ids owned by the node among ${size}`)
    }
    const counter = yield* Effect.provide(Actor.client(Counter), node)
    const clients = ids.map((id) => counter(id))
    // every id must be served here: an ask routed to a simulated member would never be answered
    for (const client of clients) yield* client.Increment({ by: 1 }, { timeout: "2 seconds" })
    const spec: Spec = {
      name: `Troupe ask, ${size.toLocaleString("en-US")} member${size === 1 ? "" : "s"} in discovery`,
      budget: ASKS,
      round: (budget) => sequential(budget, (i) => clients[i % IDS]!.Increment({ by: 1 }))
    }
    return spec
  })

// ---- discovery CPU ---------------------------------------------------------------------------

/** the default heartbeat period, and the slots it is cut into (a peer beats in one slot a period) */
const PERIOD_MILLIS = 1_000
const SLOTS = 1_000
const WINDOW_MILLIS = 3_000
const JOIN_MILLIS = 2_500

/**
 * One node's discovery CPU over a window.
 *
 * @since 0.5.0
 * @category models
 */
export interface DiscoveryCpu {
  readonly peers: number
  /** CPU milliseconds per second of wall time */
  readonly msPerSecond: number
  /** the same, in the window right after the peers joined */
  readonly joinMsPerSecond: number
  /** members the node's discovery listed at the end of the window (the node included) */
  readonly members: number
  /** changes of the node's discovery state per second, in the window */
  readonly changesPerSecond: number
  /** the raw nats.js process receiving the same heartbeats, CPU ms per second in the window */
  readonly rawMsPerSecond: number
  /** heartbeats the raw process received per second in the window */
  readonly rawHeartbeatsPerSecond: number
  /** heartbeats that could not be published */
  readonly unpublished: number
}

interface CpuSample {
  readonly at: number
  readonly micros: number
  readonly members: number
  readonly changes: number
}

const parseCpu = (line: string): CpuSample | undefined => {
  const [word, at, micros, members, changes] = line.trim().split(" ")
  return word === "cpu"
    ? { at: Number(at), micros: Number(micros), members: Number(members), changes: Number(changes) }
    : undefined
}

interface CpuFigure {
  readonly msPerSecond: number
  /** the third field of the last sample */
  readonly members: number
  /** the per-second growth of the third field */
  readonly membersPerSecond: number
  readonly changesPerSecond: number
}

/** a process's CPU per second between its first and last samples of `lines` */
const cpuOf = (lines: ReadonlyArray<string>): CpuFigure => {
  const samples = lines.map(parseCpu).filter((s): s is CpuSample => s !== undefined)
  const first = samples[0]
  const last = samples[samples.length - 1]
  if (first === undefined || last === undefined || last.at <= first.at) {
    return { msPerSecond: Number.NaN, members: Number.NaN, membersPerSecond: Number.NaN, changesPerSecond: Number.NaN }
  }
  const seconds = (last.at - first.at) / 1000
  return {
    msPerSecond: (last.micros - first.micros) / 1000 / seconds,
    members: last.members,
    membersPerSecond: (last.members - first.members) / seconds,
    changesPerSecond: (last.changes - first.changes) / seconds
  }
}

/** the CPU per second of each process over the same next `millis`, from the samples they print */
const cpuOver = (processes: ReadonlyArray<NodeChild>, millis: number) =>
  Effect.gen(function*() {
    const from = processes.map((p) => p.lines.length)
    yield* Effect.sleep(millis)
    return processes.map((p, i) => cpuOf(p.lines.slice(from[i])))
  })

const heartbeatOf = (i: number, startedAt: number): Envelope.HeartbeatFrame => ({
  _tag: "Heartbeat",
  v: Envelope.ProtocolVersion,
  source: `peer-${i}`,
  name: `peer-${i}`,
  incarnation: `peer-${i}.${startedAt.toString(36)}`,
  address: `nats://peer-${i}`,
  kinds: [Counter.kind],
  isServing: true,
  startedAt,
  periodMillis: PERIOD_MILLIS
})

const discoveryCpu = Effect.scoped(Effect.gen(function*() {
  const server = yield* natsServer
  const [node, raw] = yield* Effect.all([
    child("peers-discovery-node.ts", [server.url]),
    child("peers-discovery-raw.ts", [server.url])
  ])
  yield* Effect.all([ready(node!, "discovery node"), ready(raw!, "raw heartbeat subscriber")], { concurrency: 2 })
  const nc = yield* Effect.acquireRelease(
    Effect.promise(() => connect({ servers: server.url, name: "bench-peers-heartbeats" })),
    (nc) => Effect.promise(() => nc.drain().catch(() => nc.close()))
  )
  const startedAt = Date.now()
  // each peer's heartbeat encoded once, as Troupe's transport encodes a frame it sends alone
  const frames = yield* Effect.forEach(
    Array.from({ length: 1_000 }, (_, i) => heartbeatOf(i, startedAt)),
    (frame) => Codec.msgpackCodec.encode(frame)
  )
  const subject = `troupe.${DISCOVERY_NAMESPACE}.discovery`
  let unpublished = 0
  /** the peers beating in each slot; peer `i` of `n` beats in slot `floor(i * SLOTS / n)` */
  let bySlot: ReadonlyArray<ReadonlyArray<number>> = []
  const setPeers = (count: number) => {
    const slots = Array.from({ length: SLOTS }, (): Array<number> => [])
    for (let i = 0; i < count; i++) slots[Math.floor((i * SLOTS) / count)]!.push(i)
    bySlot = slots
  }
  // every slot is published once a period, late slots caught up at the next tick (as a network
  // would deliver what piled up), so a loaded publisher never makes a peer skip a beat
  const origin = performance.now()
  let published = 0
  yield* Effect.forkScoped(Effect.repeat(
    Effect.sync(() => {
      const due = Math.floor((performance.now() - origin) / (PERIOD_MILLIS / SLOTS))
      for (; published <= due; published++) {
        for (const i of bySlot[published % SLOTS] ?? []) {
          try {
            nc.publish(subject, frames[i]!)
          } catch {
            unpublished++
          }
        }
      }
    }),
    Schedule.fixed("1 millis")
  ))

  const measure = (count: number) =>
    Effect.gen(function*() {
      setPeers(count)
      unpublished = 0
      const [join] = yield* cpuOver([node!], JOIN_MILLIS)
      const [steady, rawSteady] = yield* cpuOver([node!, raw!], WINDOW_MILLIS)
      const result: DiscoveryCpu = {
        peers: count,
        msPerSecond: steady!.msPerSecond,
        joinMsPerSecond: join!.msPerSecond,
        members: steady!.members,
        changesPerSecond: steady!.changesPerSecond,
        rawMsPerSecond: rawSteady!.msPerSecond,
        rawHeartbeatsPerSecond: rawSteady!.membersPerSecond,
        unpublished
      }
      return result
    })
  console.log("  -- discovery CPU of one node")
  const idle = yield* measure(0)
  const hundred = yield* measure(100)
  const thousand = yield* measure(1_000)
  for (const figure of [idle, hundred, thousand]) {
    console.log(
      `  ${`discovery, ${figure.peers} peers heartbeating`.padEnd(52)} ${figure.msPerSecond.toFixed(2).padStart(12)} ` +
        `CPU ms/s   (join window ${figure.joinMsPerSecond.toFixed(2)}, ${figure.members} members seen, ` +
        `${figure.changesPerSecond.toFixed(1)} state changes/s; raw nats.js subscriber ` +
        `${figure.rawMsPerSecond.toFixed(2)} ms/s for ${Math.round(figure.rawHeartbeatsPerSecond)} heartbeats/s)`
    )
  }
  return { idle, hundred, thousand }
}))

// ---- the phase -------------------------------------------------------------------------------

/**
 * What the membership phase measured.
 *
 * @since 0.5.0
 * @category models
 */
export interface MembersFigures {
  /** the ask at each of `SIZES`, in that order */
  readonly asks: ReadonlyArray<Measurement>
  readonly cpu: {
    readonly idle: DiscoveryCpu
    readonly hundred: DiscoveryCpu
    readonly thousand: DiscoveryCpu
  }
}

/**
 * Runs the membership phase in its own scope.
 *
 * @since 0.5.0
 * @category phases
 */
export const membersPhase: Effect.Effect<MembersFigures, unknown> = Effect.gen(function*() {
  const asks = yield* Effect.scoped(Effect.gen(function*() {
    const specs = yield* Effect.forEach(SIZES, sizedNode)
    console.log("  -- ask cost as the cluster grows (1 in flight)")
    return yield* measureAll(specs, { rounds: ROUNDS, warmups: 1, order: "rotate" })
  }))
  const cpu = yield* discoveryCpu
  return { asks, cpu }
})
