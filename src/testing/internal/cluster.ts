/**
 * A test cluster: the simulation, the faulty network, the nodes by name, and the operations of
 * `TestCluster` on them.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import type * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as Actor from "../../actors/Actor.ts"
import * as Codec from "../../layers/Codec.ts"
import { makeNetwork } from "../../layers/internal/inMemory.ts"
import type { Faults, StoreFaults, TestCluster, TestClusterOptions } from "../TestCluster.ts"
import { SettleTimeout } from "./errors.ts"
import { FaultyNetwork, noFaults } from "./network.ts"
import * as Nodes from "./nodes.ts"
import { derive, Prng } from "./prng.ts"
import { Simulation } from "./simulation.ts"
import { makeClusterStore } from "./store.ts"

/** the reports of the clusters made under `withReport` */
const currentReports = FiberRef.unsafeMake<Array<() => string> | undefined>(undefined)

/** @internal */
export const withReport = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    const reports: Array<() => string> = []
    return effect.pipe(
      Effect.locally(currentReports, reports),
      Effect.tapErrorCause((cause) =>
        Cause.isInterruptedOnly(cause) || reports.length === 0
          ? Effect.void
          : Console.error(reports.map((report) => report()).join("\n"))
      )
    )
  })

const millis = (input: Duration.DurationInput): number => Duration.toMillis(Duration.decode(input))

const checkProbability = (name: string, value: number | undefined): number => {
  const p = value ?? 0
  if (!(p >= 0 && p <= 1)) throw new RangeError(`TestCluster: ${name} must be a probability in [0, 1], got ${p}`)
  return p
}

/** what keeps the cluster from being settled, one reason per node; empty when settled */
const unsettled = (
  faulty: FaultyNetwork,
  incarnations: ReadonlyArray<Nodes.Incarnation>,
  heardSince: number | undefined
): Array<string> => {
  const running = incarnations.filter((i) => i.status === "running")
  const reasons: Array<string> = []
  for (const viewer of running) {
    if (!viewer.endpoint.connected) continue
    const expected = running.filter((other) => faulty.canTalk(viewer.endpoint, other.endpoint))
    const discovery = Nodes.discoveryOf(viewer)
    const members = (discovery.snapshot?.() ?? discovery.unsafeState()).members
    const wrong: Array<string> = []
    for (const other of expected) {
      const node = Nodes.nodeOf(other)
      const member = members.find((m) => m.nodeId === node.nodeId)
      if (member === undefined) wrong.push(`misses ${other.endpoint.label}`)
      else if (member.status !== "alive") wrong.push(`suspects ${other.endpoint.label}`)
      else if (heardSince !== undefined && other !== viewer && member.lastSeen <= heardSince) {
        wrong.push(`has not heard ${other.endpoint.label}`)
      } else if ([...member.kinds].sort().join() !== [...node.kinds()].sort().join()) {
        wrong.push(`has old kinds of ${other.endpoint.label}`)
      }
    }
    const known = new Set(expected.map((other) => Nodes.nodeOf(other).nodeId))
    for (const member of members) if (!known.has(member.nodeId)) wrong.push(`still lists ${member.nodeId}`)
    if (wrong.length > 0) reasons.push(`${viewer.endpoint.label} ${wrong.join(", ")}`)
  }
  if (faulty.inFlight > 0) reasons.push(`${faulty.inFlight} frames in flight`)
  return reasons
}

/** what the operations of one cluster share */
interface Cluster {
  readonly seed: number
  readonly names: ReadonlyArray<string>
  readonly sim: Simulation
  readonly faulty: FaultyNetwork
  readonly settings: Nodes.NodeSettings
  /** the running (or last) incarnation of each node, by name */
  readonly current: Map<string, Nodes.Incarnation>
}

const settingsOf = (options: TestClusterOptions<string>, seed: number): Cluster => {
  const sim = new Simulation({ start: 0, autoAdvanceMillis: millis(options.autoAdvance ?? "10 minutes") })
  const network = makeNetwork()
  const faulty = new FaultyNetwork(sim, new Prng(derive(seed, "faults")), options.traceSize ?? 1000)
  network.hook = faulty
  const settings: Nodes.NodeSettings = {
    seed,
    network,
    faulty,
    sim,
    codec: options.codec === "json" ? Codec.jsonCodec : Codec.msgpackCodec,
    heartbeat: options.heartbeat ?? "1 second",
    options: options.node ?? {},
    kinds: options.layer,
    store: makeClusterStore(new Prng(derive(seed, "store")), (line) => faulty.record(line))
  }
  return { seed, names: [...options.nodes], sim, faulty, settings, current: new Map() }
}

/** from here on, the calling fiber (the test) and every node it starts run in the simulation */
const enterSimulation = (sim: Simulation): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    yield* Effect.addFinalizer(() => Effect.sync(() => sim.close()))
    yield* Effect.locallyScoped(FiberRef.currentScheduler, sim.makeScheduler())
    yield* Effect.locallyScopedWith(
      DefaultServices.currentServices,
      (services) => Context.add(Context.add(services, Clock.Clock, sim), TestClock.TestClock, sim)
    )
  })

const launch = (c: Cluster, name: string, number: number) =>
  Effect.map(Nodes.start(c.settings, name, number), (incarnation) => {
    c.current.set(name, incarnation)
  })

const incarnationOf = (c: Cluster, name: string): Nodes.Incarnation => {
  const incarnation = c.current.get(name)
  if (incarnation === undefined) throw new RangeError(`TestCluster: no node "${name}" (nodes: ${c.names.join(", ")})`)
  return incarnation
}

const op = (f: () => void): Effect.Effect<void> => Effect.sync(f)

/**
 * Advances virtual time in steps of a quarter heartbeat until the views are right and stay right
 * for a heartbeat period in which every node heard from every node it should see.
 */
const settleOf = (c: Cluster, settleMillis: number): Effect.Effect<void, SettleTimeout> =>
  Effect.gen(function*() {
    const { faulty, sim } = c
    const periodMillis = millis(c.settings.heartbeat)
    const stepMillis = Math.max(1, Math.floor(periodMillis / 4))
    const startedAt = sim.unsafeCurrentTimeMillis()
    yield* sim.advance(0)
    let since: number | undefined = undefined
    for (;;) {
      const now = sim.unsafeCurrentTimeMillis()
      const windowDone = since !== undefined && now - since >= periodMillis
      const reasons = unsettled(faulty, [...c.current.values()], windowDone ? since : undefined)
      if (reasons.length === 0 && windowDone) return
      if (reasons.length === 0) since ??= now
      else since = undefined
      const elapsed = sim.unsafeCurrentTimeMillis() - startedAt
      if (elapsed >= settleMillis) {
        faulty.record(`settle gave up: ${reasons.join("; ")}`)
        return yield* new SettleTimeout({ seed: c.seed, afterMillis: elapsed, reasons })
      }
      yield* sim.advance(stepMillis)
    }
  })

type NodeOps<Name extends string> = Pick<
  TestCluster<Name>,
  "on" | "client" | "node" | "status" | "crash" | "stop" | "restart"
>

/** the nodes: providing one, crashing, stopping and restarting it */
const nodeOps = <Name extends string>(c: Cluster): NodeOps<Name> => ({
  on: (name) => (effect) => Effect.suspend(() => Effect.provide(effect, incarnationOf(c, name).context)),
  client: (name, kind) =>
    Effect.suspend(() => Effect.provide(Actor.client(kind), incarnationOf(c, name).context)) as never,
  node: (name) => Nodes.nodeOf(incarnationOf(c, name)),
  status: (name) => incarnationOf(c, name).status,
  crash: (name) => op(() => Nodes.crash(c.settings, incarnationOf(c, name))),
  stop: (name) => Effect.suspend(() => Nodes.stop(c.settings, incarnationOf(c, name))),
  restart: (name) =>
    Effect.suspend(() => {
      const previous = incarnationOf(c, name)
      return Effect.zipRight(Nodes.stop(c.settings, previous), launch(c, name, previous.number + 1))
    })
})

type FaultOps<Name extends string> = Pick<
  TestCluster<Name>,
  "faults" | "partition" | "disconnect" | "reconnect" | "store" | "storeDown" | "storeUp" | "storeFaults" | "heal"
>

/** the faults of the network and of the store, and healing them all */
const faultOps = <Name extends string>(c: Cluster): FaultOps<Name> => {
  const { faulty } = c
  const store = c.settings.store
  return {
    faults: (faults: Faults) =>
      op(() => {
        const [low, high] = faults.delay === undefined ? [0, 0] : faults.delay.map(millis)
        if (!(low! >= 0 && high! >= low!)) throw new RangeError(`TestCluster: delay must be [min, max], min <= max`)
        faulty.faults = {
          drop: checkProbability("drop", faults.drop),
          delayMin: Math.round(low!),
          delayMax: Math.round(high!),
          duplicate: checkProbability("duplicate", faults.duplicate)
        }
        faulty.record(`faults ${JSON.stringify(faults)}`)
      }),
    partition: (...sides) =>
      op(() => {
        const map = new Map<string, number>()
        sides.forEach((side, i) => side.forEach((name) => map.set(incarnationOf(c, name).name, i)))
        faulty.sides = map
        faulty.record(`partition ${sides.map((side) => `[${side.join(",")}]`).join(" ")}`)
      }),
    disconnect: (name) =>
      op(() => {
        faulty.record(`${incarnationOf(c, name).endpoint.label} disconnects`)
        incarnationOf(c, name).setConnected(false)
      }),
    reconnect: (name) =>
      op(() => {
        faulty.record(`${incarnationOf(c, name).endpoint.label} reconnects`)
        incarnationOf(c, name).setConnected(true)
      }),
    store: store.direct,
    storeDown: op(() => {
      store.up = false
      faulty.record("the store goes down")
    }),
    storeUp: op(() => {
      store.up = true
      faulty.record("the store is back")
    }),
    storeFaults: (faults: StoreFaults) =>
      op(() => {
        store.faults = {
          fail: checkProbability("fail", faults.fail),
          lostReply: checkProbability("lostReply", faults.lostReply)
        }
        faulty.record(`store faults ${JSON.stringify(faults)}`)
      }),
    heal: op(() => {
      store.up = true
      store.faults = { fail: 0, lostReply: 0 }
      faulty.faults = noFaults
      faulty.sides = undefined
      faulty.record("heal")
      for (const incarnation of c.current.values()) {
        if (incarnation.status === "running") incarnation.setConnected(true)
      }
    })
  }
}

/** @internal */
export const make = <const Name extends string>(
  options: TestClusterOptions<Name>
): Effect.Effect<TestCluster<Name>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const names = [...options.nodes]
    if (names.length === 0 || new Set(names).size !== names.length) {
      return yield* Effect.dieMessage(`TestCluster: nodes must be distinct names, got ${JSON.stringify(names)}`)
    }
    const c = settingsOf(options, options.seed >>> 0)
    const { faulty, seed, sim } = c
    yield* enterSimulation(sim)
    yield* Effect.addFinalizer(() =>
      options.onClose === "abandon"
        ? Effect.sync(() => c.current.forEach((incarnation) => Nodes.crash(c.settings, incarnation)))
        : Effect.forEach([...c.current.values()], (incarnation) => Nodes.stop(c.settings, incarnation), {
          discard: true
        })
    )
    for (const name of names) yield* launch(c, name, 1)
    const cluster: TestCluster<Name> = {
      seed,
      nodes: names as ReadonlyArray<Name>,
      ...nodeOps<Name>(c),
      ...faultOps<Name>(c),
      settle: settleOf(c, millis(options.settleTimeout ?? "2 minutes")),
      advance: (duration) => Effect.suspend(() => sim.advance(millis(duration))),
      trace: () => faulty.trace(),
      stats: () => ({
        ...faulty.stats,
        inFlight: faulty.inFlight,
        timers: sim.pendingTimers,
        storeFailures: c.settings.store.failed
      }),
      report: () =>
        [`TestCluster seed ${seed}: the last ${faulty.trace().length} frames (virtual time, from→to, frame, fate)`]
          .concat(faulty.trace().map((line) => `  ${line}`)).join("\n")
    }
    ;(yield* FiberRef.get(currentReports))?.push(cluster.report)
    yield* sim.advance(0)
    return cluster
  })
