/**
 * One node of a test cluster, incarnation by incarnation: its connection to the faulty network
 * (a serializing in-memory transport named `<node>#<n>`, wrapped so that a dropped connection
 * fails its publishes and tells its watchers, as `Transport.nats` does), heartbeat discovery, the
 * node and the user's kinds, built in a scope of its own on a scheduler of its own.
 *
 * A crash freezes that scheduler: the incarnation's fibers never run again (no leave heartbeat,
 * no finalizer, no reply), its subscriptions leave the network at once (as the broker drops a
 * dead connection's interest), and its scope is abandoned.
 *
 * @internal
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import type { ActorSystem } from "../../actors/ActorSystem.ts"
import type * as Topic from "../../actors/Topic.ts"
import type { CodecShape } from "../../layers/Codec.ts"
import * as Discovery from "../../layers/Discovery.ts"
import { Persistence } from "../../layers/Persistence.ts"
import { type InMemoryNetwork, makeInMemorySerialized } from "../../layers/internal/inMemory.ts"
import { disconnected, makeConnection } from "../../layers/internal/reconnect.ts"
import { Transport, type TransportShape } from "../../layers/Transport.ts"
import { NodeIdSuffix } from "../../runtime/internal/nodeState.ts"
import * as Node from "../../runtime/Node.ts"
import type { Endpoint, FaultyNetwork } from "./network.ts"
import type { ClusterStore } from "./store.ts"
import { derive, Prng } from "./prng.ts"
import type { Simulation } from "./simulation.ts"

/** @internal what a node of a test cluster provides */
export type NodeServices =
  | Node.Node
  | ActorSystem
  | Topic.TopicBus
  | Discovery.Discovery
  | Transport
  | Persistence

/** @internal */
export interface NodeSettings {
  readonly seed: number
  readonly network: InMemoryNetwork
  readonly faulty: FaultyNetwork
  readonly sim: Simulation
  readonly codec: CodecShape
  readonly heartbeat: Duration.DurationInput
  readonly options: Omit<Node.NodeOptions, "name">
  readonly kinds: Layer.Layer<never, never, ActorSystem | Topic.TopicBus | Persistence>
  /** the cluster's store, shared by every node and incarnation (it lives outside the nodes) */
  readonly store: ClusterStore
}

/** @internal one incarnation of a node */
export interface Incarnation {
  readonly name: string
  readonly number: number
  readonly endpoint: Endpoint
  readonly context: Context.Context<NodeServices>
  status: "running" | "crashed" | "stopped"
  readonly scope: Scope.CloseableScope
  readonly setConnected: (connected: boolean) => void
}

/** a serializing transport whose connection the kit drops and restores */
const connectable = (inner: TransportShape, endpoint: Endpoint) =>
  Effect.map(makeConnection(2000), (connection) => {
    const transport: TransportShape = {
      ...inner,
      publish: (subject, frame, options) =>
        endpoint.connected ? inner.publish(subject, frame, options) : Effect.fail(disconnected()),
      unsafePublish: (subject, frame, options) =>
        endpoint.connected ? inner.unsafePublish(subject, frame, options) : disconnected(),
      watch: connection.watch,
      isConnected: connection.isConnected,
      awaitConnected: connection.awaitConnected
    }
    const setConnected = (connected: boolean): void => {
      // a crashed or stopped node's code never runs again, not even its connection listeners
      if (!endpoint.alive || endpoint.connected === connected) return
      endpoint.connected = connected
      if (connected) connection.onReconnected()
      else connection.onDisconnected()
    }
    return { transport, setConnected }
  })

/** @internal builds incarnation `number` of node `name` */
export const start = (settings: NodeSettings, name: string, number: number): Effect.Effect<Incarnation> =>
  Effect.gen(function*() {
    const label = number === 1 ? name : `${name}#${number}`
    const endpoint: Endpoint = { node: name, label, alive: true, connected: true }
    settings.faulty.endpoints.set(label, endpoint)
    const inner = makeInMemorySerialized(settings.codec, { network: settings.network, endpoint: label })
    const { setConnected, transport } = yield* connectable(inner, endpoint)
    const layer = settings.kinds.pipe(
      Layer.provideMerge(Node.layer({ ...settings.options, name })),
      Layer.provideMerge(Discovery.layer({ heartbeat: settings.heartbeat, remap: {} })),
      Layer.provideMerge(Layer.succeed(Transport, transport)),
      Layer.provideMerge(Layer.succeed(Persistence, settings.store.shape)),
      Layer.orDie
    )
    const scope = yield* Scope.make()
    const incarnation = { name, number, endpoint, status: "running", scope, setConnected } as {
      -readonly [K in keyof Incarnation]: Incarnation[K]
    }
    // the node id's suffix comes from the seed, the name and the incarnation: placement repeats
    const ids = new Prng(derive(settings.seed, `${name}#${number}`))
    const scheduler = settings.sim.makeScheduler(() => incarnation.status === "crashed")
    settings.faulty.record(`${label} starts`)
    incarnation.context = yield* Layer.buildWithScope(layer, scope).pipe(
      Effect.provideService(NodeIdSuffix, () => ids.token(8)),
      Effect.withScheduler(scheduler)
    )
    return incarnation as Incarnation
  })

/** @internal abrupt: its fibers stop where they are, its frames stop, nothing runs on its way out */
export const crash = (settings: NodeSettings, incarnation: Incarnation): void => {
  if (incarnation.status !== "running") return
  incarnation.status = "crashed"
  incarnation.endpoint.alive = false
  settings.network.removeEndpoint(incarnation.endpoint.label)
  settings.faulty.record(`${incarnation.endpoint.label} crashes`)
}

/** @internal graceful: its scope closes (leave heartbeat, drained actors, finalizers) */
export const stop = (settings: NodeSettings, incarnation: Incarnation): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (incarnation.status !== "running") return Effect.void
    settings.faulty.record(`${incarnation.endpoint.label} stops`)
    return Effect.ensuring(
      Scope.close(incarnation.scope, Exit.void),
      Effect.sync(() => {
        incarnation.status = "stopped"
        incarnation.endpoint.alive = false
      })
    )
  })

/** @internal the node's own view of the cluster */
export const discoveryOf = (incarnation: Incarnation): Discovery.DiscoveryShape =>
  Context.get(incarnation.context, Discovery.Discovery)

/** @internal */
export const nodeOf = (incarnation: Incarnation): Node.NodeShape => Context.get(incarnation.context, Node.Node)
