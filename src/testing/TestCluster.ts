/**
 * `TestCluster` runs N Troupe nodes in one process, on one in-memory network that encodes every
 * frame as on the wire, and injects the faults real NATS deployments have: lost frames, delay,
 * a dropped connection, partitions, crashes and restarts. It is deterministic: every fault is
 * drawn from a seeded generator, node ids come from the seed, and time is virtual. Time moves
 * only when every fiber of the cluster (the test's included) waits, to the next timer, so a
 * blocked ask simply lets time pass until its reply or its timeout. The same seed and the same
 * test give the same deliveries, and `cluster.report()` prints the seed and a trace of the frames.
 *
 * Import it from `troupe/testing`.
 *
 * @example
 * ```ts
 * import { it } from "@effect/vitest"
 * import { Effect } from "effect"
 * import { TestCluster } from "troupe/testing"
 *
 * it.scoped("a partition heals and the counter answers", () =>
 *   Effect.gen(function*() {
 *     const cluster = yield* TestCluster.make({ nodes: ["a", "b", "c"], seed: 42, layer: CounterLive })
 *     const counter = yield* cluster.client("a", Counter)
 *     yield* cluster.partition(["a"], ["b", "c"])
 *     yield* cluster.faults({ drop: 0.05, delay: ["1 millis", "50 millis"] })
 *     yield* cluster.crash("b")
 *     yield* cluster.restart("b")
 *     yield* cluster.heal
 *     yield* cluster.settle
 *     yield* counter("c-1").Increment({ by: 1 })
 *   }).pipe(TestCluster.withReport))
 * ```
 *
 * @since 0.5.0
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as Actor from "../actors/Actor.ts"
import type { ActorSystem } from "../actors/ActorSystem.ts"
import type * as Topic from "../actors/Topic.ts"
import type * as Discovery from "../layers/Discovery.ts"
import type * as Persistence from "../layers/Persistence.ts"
import type * as Transport from "../layers/Transport.ts"
import type * as Node from "../runtime/Node.ts"
import * as internal from "./internal/cluster.ts"
import type { SettleTimeout } from "./internal/errors.ts"

export {
  /**
   * `cluster.settle` found the cluster still unsettled when its time ran out.
   *
   * @since 0.5.0
   * @category errors
   */
  SettleTimeout
} from "./internal/errors.ts"

/**
 * @since 0.5.0
 * @category models
 */
export interface TestClusterOptions<Name extends string> {
  /** the nodes' names, each the name (and id prefix) of one node */
  readonly nodes: ReadonlyArray<Name>
  /** the seed of every fault and node id: the same seed replays the same run */
  readonly seed: number
  /**
   * the kinds every node hosts (`Actor.toLayer(...)`, merged); durable kinds get the cluster's
   * `Persistence` store, one for every node and incarnation (since 0.5.0)
   */
  readonly layer: Layer.Layer<never, never, ActorSystem | Topic.TopicBus | Persistence.Persistence>
  /** the wire encoding; default `"msgpack"` */
  readonly codec?: "msgpack" | "json" | undefined
  /** the discovery heartbeat period; default 1 second */
  readonly heartbeat?: Duration.DurationInput | undefined
  /** options of every node (`askTimeout`, `shutdownTimeout`, ...) */
  readonly node?: Omit<Node.NodeOptions, "name"> | undefined
  /** how many trace lines are kept (the last ones); default 1000 */
  readonly traceSize?: number | undefined
  /** how much virtual time `settle` may take before it fails with `SettleTimeout`; default 2 minutes */
  readonly settleTimeout?: Duration.DurationInput | undefined
  /**
   * what happens to the running nodes when the scope closes: `"stop"` (default) stops each
   * gracefully; `"abandon"` freezes them as a crash does, which is faster (property tests)
   */
  readonly onClose?: "stop" | "abandon" | undefined
  /**
   * how far virtual time may move on its own (everything waiting) past the last `advance`:
   * a test blocked on something outside the cluster stops here instead of running forever;
   * default 10 minutes
   */
  readonly autoAdvance?: Duration.DurationInput | undefined
}

/**
 * Faults applied to every frame between two different nodes (never to a node's frames to
 * itself), until changed or healed.
 *
 * @since 0.5.0
 * @category models
 */
export interface Faults {
  /** the probability that a frame is lost (a slow consumer, a lost connection); default 0 */
  readonly drop?: number | undefined
  /**
   * each frame's delay, drawn in `[min, max]`; frames of one publisher to one subscriber stay in
   * order, as NATS keeps them; default none
   */
  readonly delay?: readonly [Duration.DurationInput, Duration.DurationInput] | undefined
  /**
   * the probability that a frame arrives twice. Core NATS never duplicates a message: this is
   * not a NATS fault, and Troupe's guarantees are not claimed under it. It is there to test
   * your own idempotence (JetStream redeliveries, a retried request). Default 0.
   */
  readonly duplicate?: number | undefined
}

/**
 * Faults of the cluster's store, drawn from the seed for each operation of a node, until changed
 * or healed.
 *
 * @since 0.5.0
 * @category models
 */
export interface StoreFaults {
  /** the probability that an operation fails with `PersistenceError` before it is done; default 0 */
  readonly fail?: number | undefined
  /**
   * the probability that a write (`put`, `remove`) is done but its caller gets `PersistenceError`,
   * as when a JetStream answer times out; default 0
   */
  readonly lostReply?: number | undefined
}

/**
 * What a node of the cluster provides to an effect run `on` it.
 *
 * @since 0.5.0
 * @category models
 */
export type NodeServices =
  | Node.Node
  | ActorSystem
  | Topic.TopicBus
  | Discovery.Discovery
  | Transport.Transport
  | Persistence.Persistence

/**
 * The typed client `Actor.client(kind)` gives.
 *
 * @since 0.5.0
 * @category models
 */
export type ClientOf<K extends Actor.Any> = Effect.Effect.Success<ReturnType<typeof Actor.client<K>>>

/**
 * Counts of what happened to the frames between nodes.
 *
 * @since 0.5.0
 * @category models
 */
export interface Stats {
  readonly delivered: number
  readonly delayed: number
  readonly dropped: number
  readonly duplicated: number
  /** delayed frames whose receiver was gone (crashed, disconnected, partitioned) on arrival */
  readonly lost: number
  /** delayed frames not yet delivered */
  readonly inFlight: number
  /** timers of the simulation not yet fired (every node's sleeps, and the frames in flight) */
  readonly timers: number
  /** store operations of the nodes that failed (the store down, or `storeFaults`) */
  readonly storeFailures: number
}

/**
 * @since 0.5.0
 * @category models
 */
export interface TestCluster<Name extends string = string> {
  readonly seed: number
  readonly nodes: ReadonlyArray<Name>
  /** runs `effect` on the node's current incarnation (its `ActorSystem`, `Node`, `Discovery`, ...) */
  readonly on: (
    node: Name
  ) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, Exclude<R, NodeServices>>
  /** the typed client of `kind` on the node's current incarnation (`Actor.client`); after a restart, take a new one */
  readonly client: <K extends Actor.Any>(node: Name, kind: K) => Effect.Effect<ClientOf<K>>
  /** the node's current incarnation (`pendingAsks()`, `openStreams()`, `activeInstances(kind)`, ...) */
  readonly node: (node: Name) => Node.NodeShape
  /** whether the node's current incarnation runs, crashed or was stopped */
  readonly status: (node: Name) => "running" | "crashed" | "stopped"
  /** sets the faults of every frame between nodes (replacing the previous ones) */
  readonly faults: (faults: Faults) => Effect.Effect<void>
  /** splits the nodes into sides that cannot reach each other; nodes not named share a side */
  readonly partition: (...sides: ReadonlyArray<ReadonlyArray<Name>>) => Effect.Effect<void>
  /** drops the node's connection: its publishes fail, nothing reaches it, frames meanwhile are lost */
  readonly disconnect: (node: Name) => Effect.Effect<void>
  /** restores the node's connection */
  readonly reconnect: (node: Name) => Effect.Effect<void>
  /** abrupt: the node's fibers stop where they are; no leave heartbeat, no finalizer, no reply */
  readonly crash: (node: Name) => Effect.Effect<void>
  /** graceful: the node's scope closes (leave heartbeat, drained actors, finalizers) */
  readonly stop: (node: Name) => Effect.Effect<void>
  /** starts a new incarnation of the node (a new node id), after stopping a running one gracefully */
  readonly restart: (node: Name) => Effect.Effect<void>
  /**
   * the cluster's store, as the nodes share it (one in-memory store outside the nodes: it
   * survives crashes and restarts), read directly: never down, for a test to check what is stored
   */
  readonly store: Persistence.PersistenceShape
  /** the store goes down: every node's `get`, `put`, `remove` and `keys` fails with `PersistenceError` */
  readonly storeDown: Effect.Effect<void>
  /** the store is back */
  readonly storeUp: Effect.Effect<void>
  /** sets the store's faults (replacing the previous ones) */
  readonly storeFaults: (faults: StoreFaults) => Effect.Effect<void>
  /** no more faults, partitions, dropped connections, store outage or store faults (crashed nodes stay crashed) */
  readonly heal: Effect.Effect<void>
  /**
   * moves time until every running, connected node sees exactly the nodes it can reach (alive,
   * with their kinds) and no frame is in flight; fails with `SettleTimeout` after
   * `settleTimeout` of virtual time
   */
  readonly settle: Effect.Effect<void, SettleTimeout>
  /** moves virtual time forward, firing every timer due on the way, in order */
  readonly advance: (duration: Duration.DurationInput) => Effect.Effect<void>
  /** the last trace lines: `<virtual ms> <from>→<to> <frame> <fate>` and the kit's own events */
  readonly trace: () => ReadonlyArray<string>
  readonly stats: () => Stats
  /** the seed and the trace, ready to print */
  readonly report: () => string
}

/**
 * Builds the cluster in the current scope and moves the calling fiber into its simulation: from
 * here until the scope closes, its clock (and `TestClock`) is the cluster's virtual clock. The
 * nodes stop gracefully when the scope closes (see `onClose`).
 *
 * @since 0.5.0
 * @category constructors
 */
export const make: <const Name extends string>(
  options: TestClusterOptions<Name>
) => Effect.Effect<TestCluster<Name>, never, Scope.Scope> = internal.make

/**
 * The report of every cluster made inside `effect`, printed (with `Console.error`) when it fails:
 * the seed to replay and the trace of the frames. Wrap a test's body with it.
 *
 * @since 0.5.0
 * @category utils
 */
export const withReport: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R> = internal.withReport
