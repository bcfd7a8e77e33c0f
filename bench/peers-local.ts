/**
 * The in-process half of the peers suite: one call to a counter in the same process, for
 * Moleculer 0.15 (a local call), `@effect/cluster` (an entity call on `TestRunner`) and Troupe (an
 * ask on `Node.inMemory`), and Troupe's tell against the raw Effect `Queue` one-way.
 *
 * All three systems host the same `Counter` shape (`actors.ts`): `Increment({ by })` adds to the
 * counter's state and answers the new count. @effect/cluster 0.60.2 ships no benchmark of its
 * own (its repository has only a ShardManager benchmark), so its entity is this same shape: a
 * volatile (not persisted) `Entity.make("Counter", ...)` with a `Ref` of state, on
 * `TestRunner.layer` (in-memory sharding, message storage and runner storage).
 *
 * Calls are made one at a time (1 in flight), 20,000 a round; tells 50,000 a round, the round
 * ending once the actor has processed every one. 3 rounds after a warm-up, interleaved with their
 * order rotating.
 *
 * @since 0.5.0
 */
import { Entity, TestRunner } from "@effect/cluster"
import { Rpc } from "@effect/rpc"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import type { Context as MoleculerContext } from "moleculer"
import { Actor, type ActorSystem, Node } from "../src/index.ts"
import { Counter, CounterLive } from "./actors.ts"
import {
  type Budget,
  concurrentPromises,
  type Measurement,
  measureAll,
  rawQueueOneWay,
  sequential,
  type Spec
} from "./harness.ts"
import { moleculerBroker } from "./peers-nats.ts"

/** Each round stops at whichever comes first. */
const CALLS: Budget = { maxOps: 20_000, maxMillis: 4_000 }
const ONE_WAY: Budget = { maxOps: 50_000, maxMillis: 2_000 }
const ROUNDS = 3

// ---- Moleculer -------------------------------------------------------------------------------

const moleculerLocal = Effect.gen(function*() {
  let count = 0
  const broker = yield* moleculerBroker({ nodeID: "peers-local" }, (broker) => {
    broker.createService({
      name: "counter",
      actions: {
        increment: (ctx: MoleculerContext<{ readonly by: number }>) => (count += ctx.params.by)
      }
    })
  })
  return {
    name: "Moleculer local call (1 in flight)",
    budget: CALLS,
    round: (budget) =>
      Effect.promise(() => concurrentPromises(budget, 1, () => broker.call("counter.increment", { by: 1 })))
  } satisfies Spec
})

// ---- @effect/cluster -------------------------------------------------------------------------

const ClusterCounter = Entity.make("Counter", [
  Rpc.make("Increment", { payload: { by: Schema.Number }, success: Schema.Number }),
  Rpc.make("Get", { success: Schema.Number })
])

const ClusterCounterLive = ClusterCounter.toLayer(Effect.gen(function*() {
  const count = yield* Ref.make(0)
  return {
    Increment: ({ payload }) => Ref.updateAndGet(count, (n) => n + payload.by),
    Get: () => Ref.get(count)
  }
}))

const clusterCall = Effect.gen(function*() {
  const cluster = yield* Layer.build(ClusterCounterLive.pipe(Layer.provideMerge(TestRunner.layer)))
  const makeClient = yield* Effect.provide(ClusterCounter.client, cluster)
  const counter = makeClient("c-1")
  // the first call waits for the runner to take its shards
  yield* counter.Increment({ by: 1 })
  return {
    name: "@effect/cluster TestRunner entity call (1 in flight)",
    budget: CALLS,
    round: (budget) => sequential(budget, () => counter.Increment({ by: 1 }))
  } satisfies Spec
})

// ---- Troupe ----------------------------------------------------------------------------------

type NodeContext = Context.Context<ActorSystem.ActorSystem>

const troupeAsk = (node: NodeContext): Spec => ({
  name: "Troupe in-memory ask (1 in flight)",
  budget: CALLS,
  round: (budget) =>
    Effect.gen(function*() {
      const counter = yield* Actor.client(Counter)
      const target = counter("c-1")
      return yield* sequential(budget, () => target.Increment({ by: 1 }))
    }).pipe(Effect.provide(node))
})

/**
 * Tells in a loop to one actor; the round ends when a final `Get` (queued behind every tell)
 * shows the actor has processed all the accepted ones. `lost` counts accepted tells the actor
 * never counted.
 */
const troupeTell = (node: NodeContext, lost: { count: number }): Spec => ({
  name: "Troupe in-memory tell (until processed)",
  budget: ONE_WAY,
  round: (budget) =>
    Effect.gen(function*() {
      const counter = yield* Actor.client(Counter)
      const target = counter("t-1")
      const before = yield* target.Get()
      const start = performance.now()
      const sent = yield* sequential(budget, () => Actor.tell(target.Increment({ by: 1 })))
      const after = yield* target.Get()
      const millis = performance.now() - start
      lost.count += sent.ops - (after - before)
      return { ...sent, millis }
    }).pipe(Effect.provide(node))
})

const rawOneWay = rawQueueOneWay("raw Effect Queue one-way offer/take", ONE_WAY)

// ---- the phase -------------------------------------------------------------------------------

/**
 * What the in-process phase measured.
 *
 * @since 0.5.0
 * @category models
 */
export interface LocalFigures {
  readonly moleculer: Measurement
  readonly cluster: Measurement
  readonly ask: Measurement
  readonly queue: Measurement
  readonly tell: Measurement
  /** accepted tells the actor never counted */
  readonly lostTells: number
}

/**
 * Runs the in-process phase in its own scope (the brokers stopped, the nodes closed).
 *
 * @since 0.5.0
 * @category phases
 */
export const localPhase: Effect.Effect<LocalFigures, unknown> = Effect.scoped(Effect.gen(function*() {
  const node: NodeContext = yield* Layer.build(CounterLive.pipe(Layer.provideMerge(Node.inMemory)))
  const specs = [yield* moleculerLocal, yield* clusterCall, troupeAsk(node)]
  console.log("  -- in process, 1 in flight")
  const [moleculer, cluster, ask] = yield* measureAll(specs, { rounds: ROUNDS, warmups: 1, order: "rotate" })
  console.log("  -- in process, one-way")
  const lost = { count: 0 }
  const [queue, tell] = yield* measureAll([rawOneWay, troupeTell(node, lost)], { rounds: ROUNDS, warmups: 1 })
  return { moleculer: moleculer!, cluster: cluster!, ask: ask!, queue: queue!, tell: tell!, lostTells: lost.count }
}))
