/**
 * A `Node` is one process-level runtime: it hosts the kinds whose layers are provided to it,
 * routes asks and tells (locally without copying, or over its `Transport`), and announces itself
 * to `Discovery`.
 *
 * @example
 * ```ts
 * const App = CounterLive.pipe(Layer.provideMerge(Node.inMemory))
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { ActorSystem } from "../actors/ActorSystem.ts"
import * as Topic from "../actors/Topic.ts"
import * as Discovery from "../layers/Discovery.ts"
import * as Persistence from "../layers/Persistence.ts"
import type * as Secure from "../layers/Secure.ts"
import * as Subject from "../layers/Subject.ts"
import * as Transport from "../layers/Transport.ts"
import type { PersistenceError, TransportError } from "../schema/Errors.ts"
import * as Metrics from "./internal/metrics.ts"
import * as internal from "./internal/node.ts"
import { natsPersistence, natsStack } from "./internal/stack.ts"

/**
 * @since 0.1.0
 * @category models
 */
export interface NodeShape {
  /** unique per process start: `<name>-<random>` */
  readonly nodeId: string
  readonly name: string
  readonly incarnation: string
  /** the kinds hosted here */
  readonly kinds: () => ReadonlyArray<string>
  /** live instances of a kind on this node */
  readonly activeInstances: (kind: string) => number
  /** whether the actor `(kind, id)` is active on this node */
  readonly isActive: (kind: string, id: string) => boolean
  /** remote asks waiting for their reply (a streamed reply this node consumes counts as one) */
  readonly pendingAsks: () => number
  /**
   * streams this node serves for others: streamed replies it produces and uploads it receives
   * or sends, until each ends, fails or is cancelled (@since 0.4.1)
   */
  readonly openStreams: () => number
  /** marks the node (not) serving in discovery: a draining node gets no new routes */
  readonly setServing: (serving: boolean) => Effect.Effect<void>
}

/**
 * The node's metrics (Effect `Metric`s, each labelled `kind`): `asks` and `askErrors` (counters
 * of ask attempts started here and of those that failed), `askLatency` (histogram of the
 * caller's round-trip time in ms), `mailboxDepth` and `activeActors` (gauges of the messages
 * waiting in the mailboxes and of the live instances of the kinds hosted in this process; they
 * move as messages queue and instances come and go, and the nodes of one process add up).
 *
 * @example
 * ```ts
 * const started = yield* Metric.value(Node.metrics.asks.pipe(Metric.tagged("kind", "Counter")))
 * ```
 *
 * @since 0.1.0
 * @category metrics
 */
export const metrics = {
  asks: Metrics.asks,
  askErrors: Metrics.askErrors,
  askLatency: Metrics.askLatency,
  mailboxDepth: Metrics.mailboxDepth,
  activeActors: Metrics.activeActors
} as const

/**
 * @since 0.1.0
 * @category tags
 */
export class Node extends Context.Tag("troupe/Node")<Node, NodeShape>() {}

/**
 * @since 0.1.0
 * @category models
 */
export interface NodeOptions {
  /** a readable name, the prefix of the node id; default `"node"` */
  readonly name?: string | undefined
  /** default timeout of every ask (overridable per call); default 30 seconds */
  readonly askTimeout?: Duration.DurationInput | undefined
  /** bound of the table of remote asks waiting for a reply; default 65536 */
  readonly maxPendingAsks?: number | undefined
  /** on shutdown, how long accepted work may finish before it is interrupted; default 10 seconds */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
  /** the address announced to discovery; default derived from the transport and node id */
  readonly address?: string | undefined
  /**
   * which asks run in a client span whose `traceparent` reaches the handler's span on any node.
   * An ask made inside a span (an HTTP request through the `Gateway`, `Effect.withSpan`) always
   * is. Default `"auto"`: every ask whose caller runs under a tracer other than Effect's built-in
   * one (an exporter such as `troupe/Telemetry` is installed). `true`: every ask; `false`: only
   * asks inside a span. A span costs 2.7–3.5× the CPU of a whole in-memory ask
   * (`bench/tracing-cost.ts`, README "Observability"), so nothing is traced when nobody collects.
   */
  readonly tracing?: boolean | "auto" | undefined
}

const resolve = (options: NodeOptions | undefined): internal.NodeConfig => {
  const maxPendingAsks = options?.maxPendingAsks ?? 65536
  if (!Number.isInteger(maxPendingAsks) || maxPendingAsks < 1) {
    throw new RangeError(`maxPendingAsks must be a whole number >= 1, got ${maxPendingAsks}`)
  }
  const name = options?.name ?? "node"
  // the node id is the name, "-" and 8 more characters: a token too
  if (!Subject.isToken(name) || name.length > Subject.MAX_TOKEN_LENGTH - 9) {
    throw new TypeError(`node name "${name}" must match [A-Za-z0-9_-]{1,246} (it becomes a subject token)`)
  }
  return {
    name,
    askTimeout: Duration.decode(options?.askTimeout ?? "30 seconds"),
    maxPendingAsks,
    shutdownTimeout: Duration.decode(options?.shutdownTimeout ?? "10 seconds"),
    address: options?.address,
    tracing: options?.tracing ?? "auto"
  }
}

/**
 * A node on the `Transport` and `Discovery` it is given. Provides `Node` and the
 * `ActorSystem` that `Actor.toLayer` and `Actor.client` use, and the `TopicBus` of `Topic`.
 * Topic routing rules come from an optional `Topic.routes(...)` layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options?: NodeOptions
): Layer.Layer<Node | ActorSystem | Topic.TopicBus, TransportError, Transport.Transport | Discovery.Discovery> =>
  Layer.scopedContext(Effect.gen(function*() {
    const config = resolve(options)
    const routes = Option.getOrElse(yield* Effect.serviceOption(Topic.Routes), () => [])
    const handle = yield* internal.make(config, yield* Transport.Transport, yield* Discovery.Discovery, routes)
    const { system, topics, ...node } = handle
    return Context.make(Node, node).pipe(Context.add(ActorSystem, system), Context.add(Topic.TopicBus, topics))
  }))

/**
 * What `Node.layerInMemory` and `Node.inMemory` provide.
 *
 * @since 0.5.0
 * @category models
 */
export type InMemoryNodeServices = Node | ActorSystem | Topic.TopicBus | Persistence.Persistence

/**
 * The embedded default in one layer: a node on a private zero-copy in-memory transport,
 * in-process discovery, and a private in-memory `Persistence` store (provided too, since 0.5.0;
 * like the transport, the nodes built in one layer graph share it).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerInMemory = (options?: NodeOptions): Layer.Layer<InMemoryNodeServices> =>
  layer(options).pipe(
    Layer.provideMerge(Persistence.inMemory),
    Layer.provide(Layer.merge(Transport.inMemory, Discovery.inMemory)),
    Layer.orDie
  )

/**
 * `layerInMemory()` with every default.
 *
 * @since 0.1.0
 * @category layers
 */
export const inMemory: Layer.Layer<InMemoryNodeServices> = layerInMemory()

/**
 * The options of `Secure.layer` under `Node.layerNats` (its namespace is the node's).
 *
 * @since 0.3.0
 * @category models
 */
export type NatsSecureOptions = Omit<Secure.SecureOptions, "namespace">

/**
 * @since 0.1.0
 * @category models
 */
export interface NatsNodeOptions extends NodeOptions {
  /** one or more `nats://host:port` URLs */
  readonly servers: string | ReadonlyArray<string>
  /** the subject namespace shared by the nodes of one app; default `"default"` */
  readonly namespace?: string | undefined
  /** `"msgpack"` (default) or `"json"` */
  readonly codec?: "msgpack" | "json" | undefined
  /** discovery heartbeat period; default 1 second */
  readonly heartbeat?: Duration.DurationInput | undefined
  /** the largest encoded frame sent or accepted, in bytes; default 5 MiB */
  readonly maxMessageBytes?: number | undefined
  /**
   * while the connection to NATS is down, how long a new ask or stream request waits for the
   * reconnect before it fails with `TransportError` (`reason: "disconnected"`); `0` fails it at
   * once. Default 2 seconds. A tell fails at once. (@since 0.5.0)
   */
  readonly reconnectWait?: Duration.DurationInput | undefined
  /** seal all traffic with `Secure.layer` (its namespace is the node's); the layer then provides `Secure` too */
  readonly secure?: NatsSecureOptions | undefined
  /**
   * keep durable state in a JetStream key-value bucket on the node's servers (`Persistence.natsKv`,
   * on a connection of its own); the layer then provides `Persistence` too. The servers must run
   * JetStream (`nats-server -js`). (@since 0.5.0)
   */
  readonly persistence?: Persistence.NatsKvSettings | undefined
}

/**
 * What `Node.layerNats` provides (and, with `secure`, `Secure` as well).
 *
 * @since 0.3.0
 * @category models
 */
export type NatsNodeServices = Node | ActorSystem | Topic.TopicBus | Discovery.Discovery

/**
 * How building `Node.layerNats` can fail.
 *
 * @since 0.3.0
 * @category models
 */
export type NatsNodeError =
  | TransportError
  | Discovery.DiscoveryConfigError
  | Secure.SecureConfigError
  | PersistenceError

/**
 * A node over NATS in one layer: `Transport.nats`, the codec and `Discovery.nats`, wired in the
 * order they need each other. Provides `Node`, `ActorSystem`, `TopicBus` and `Discovery`; with
 * `secure` (known to be set where the layer is built), also `Secure`: this node's public key,
 * its peer sessions and rejection counts; with `persistence`, also `Persistence`: a JetStream
 * key-value store on the same servers.
 *
 * @example
 * ```ts
 * const App = CounterLive.pipe(Layer.provideMerge(Node.layerNats({ servers: "nats://127.0.0.1:4222", name: "a" })))
 *
 * const Sealed = Node.layerNats({ servers, name: "b", secure: { identity, trust: [keyOfA] } })
 * const announce = Effect.flatMap(Secure.Secure, (secure) => Console.log(secure.publicKey))
 *
 * const Durable = Node.layerNats({ servers, name: "c", persistence: { replicas: 3 } })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export function layerNats(
  options: NatsNodeOptions & {
    readonly secure: NatsSecureOptions
    readonly persistence: Persistence.NatsKvSettings
  }
): Layer.Layer<NatsNodeServices | Secure.Secure | Persistence.Persistence, NatsNodeError>
export function layerNats(
  options: NatsNodeOptions & { readonly secure: NatsSecureOptions }
): Layer.Layer<NatsNodeServices | Secure.Secure, NatsNodeError>
export function layerNats(
  options: NatsNodeOptions & { readonly persistence: Persistence.NatsKvSettings }
): Layer.Layer<NatsNodeServices | Persistence.Persistence, NatsNodeError>
export function layerNats(options: NatsNodeOptions): Layer.Layer<NatsNodeServices, NatsNodeError>
export function layerNats(options: NatsNodeOptions): Layer.Layer<NatsNodeServices, NatsNodeError> {
  // with `secure`, the stack provides `Secure` as well (as the overloads promise)
  const stack: Layer.Layer<Transport.Transport | Discovery.Discovery, NatsNodeError> = options.secure === undefined
    ? natsStack(options)
    : natsStack({ ...options, secure: options.secure })
  // the store sits under the node, so the node's own pieces find it too
  const under: Layer.Layer<Transport.Transport | Discovery.Discovery, NatsNodeError> = options.persistence === undefined
    ? stack
    : Layer.merge(stack, natsPersistence({ ...options, persistence: options.persistence }))
  return layer(options).pipe(Layer.provideMerge(under))
}
