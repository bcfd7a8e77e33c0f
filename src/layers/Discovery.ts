/**
 * `Discovery` knows which nodes are up, what they host and whether they serve. The runtime
 * routes with it (rendezvous placement of actors, round-robin of services) and users observe it
 * (`Discovery.state`, `Discovery.changes`, `Discovery.awaitServing`).
 *
 * Two implementations:
 * - `Discovery.layer()` (alias `Discovery.nats()`): membership by heartbeats over the node's
 *   `Transport`, with failure detection (`alive` → `suspect` → removed) and graceful leave;
 * - `Discovery.inMemory` / `Discovery.layerInMemory(registry)`: an exact in-process registry.
 *
 * Both report addresses after the address remap (`TROUPE_ADDRESS_REMAP`), so a node can be
 * reached under another name than the one it announces (containers, port forwards).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { NoAvailableNode } from "../schema/Errors.ts"
import * as internal from "./internal/discovery.ts"
import * as internalOptions from "./internal/discoveryOptions.ts"
import * as internalInMemory from "./internal/inMemoryDiscovery.ts"
import type { Transport } from "./Transport.ts"

/**
 * One node as discovery sees it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Member {
  readonly nodeId: string
  readonly name: string
  /** changes on every restart of the node, so nothing is routed to a predecessor */
  readonly incarnation: string
  /** the advertised address (after remapping) */
  readonly address: string
  readonly kinds: ReadonlyArray<string>
  readonly isServing: boolean
  readonly startedAt: number
  /**
   * local Clock time of the last heartbeat received; in `unsafeState()` as of the last change
   * of the state, in `Discovery.state` as of now
   */
  readonly lastSeen: number
  /** `suspect`: silent for `suspectAfter` heartbeat periods; routing skips it */
  readonly status: "alive" | "suspect"
}

/**
 * The whole membership, with the time it last changed.
 *
 * @since 0.1.0
 * @category models
 */
export interface DiscoveryState {
  readonly members: ReadonlyArray<Member>
  readonly lastUpdated: number
}

/**
 * What every discovery implementation provides.
 *
 * @since 0.1.0
 * @category models
 */
export interface DiscoveryShape {
  /** Announces a member until the scope closes. */
  readonly announce: (member: Omit<Member, "lastSeen" | "status">) => Effect.Effect<void, never, Scope.Scope>
  /** Updates what this node announces (kinds, serving flag). */
  readonly update: (
    nodeId: string,
    patch: Partial<Pick<Member, "kinds" | "isServing">>
  ) => Effect.Effect<void>
  /**
   * The current state, synchronously (hot path of routing): the same object until membership,
   * kinds, serving flags, statuses or addresses change.
   */
  readonly unsafeState: () => DiscoveryState
  /** The current state, then every change of it. */
  readonly changes: Stream.Stream<DiscoveryState>
  /** A fresh copy of the state with up-to-date `lastSeen` values (default: `unsafeState`). */
  readonly snapshot?: (() => DiscoveryState) | undefined
  /**
   * The transport proved a member unreachable (NATS "no responders" on its direct subject):
   * treat it as `suspect` now instead of after `suspectAfter` periods. Its next heartbeat makes
   * it alive again.
   */
  readonly reportUnreachable?: ((nodeId: string) => void) | undefined
}

/**
 * The membership service of a node.
 *
 * @since 0.1.0
 * @category tags
 */
export class Discovery extends Context.Tag("troupe/Discovery")<Discovery, DiscoveryShape>() {}

/**
 * Discovery cannot start: an option is out of range or `TROUPE_ADDRESS_REMAP` is malformed.
 *
 * @since 0.1.0
 * @category errors
 */
export class DiscoveryConfigError extends Schema.TaggedError<DiscoveryConfigError>()("DiscoveryConfigError", {
  reason: Schema.String
}) {
  override get message(): string {
    return `invalid discovery configuration: ${this.reason}`
  }
}

// ---- address remap ----------------------------------------------------------------------------

/**
 * The environment variable holding the default address remap: a JSON object
 * `{ "<node name or kind>": "host:port" }`.
 *
 * @since 0.1.0
 * @category constants
 */
export const REMAP_ENV: typeof internalOptions.REMAP_ENV = internalOptions.REMAP_ENV

/**
 * Replacement addresses by node name or by kind. A member's address becomes the entry for its
 * node name, or else the entry for the first of its kinds that has one.
 *
 * @since 0.1.0
 * @category models
 */
export type AddressRemap = Readonly<Record<string, string>>

// ---- in-memory registry ----------------------------------------------------------------------

/**
 * A shared in-process membership registry: every node of one in-memory network announces into
 * the same registry.
 *
 * @since 0.1.0
 * @category models
 */
export interface Registry {
  readonly ref: SubscriptionRef.SubscriptionRef<DiscoveryState>
  /** a synchronous mirror of `ref` */
  current: DiscoveryState
}

/**
 * Creates an empty registry, to share between the nodes of one process.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeRegistry: Effect.Effect<Registry> = Effect.map(
  SubscriptionRef.make<DiscoveryState>({ members: [], lastUpdated: 0 }),
  (ref) => ({ ref, current: { members: [], lastUpdated: 0 } })
)

/**
 * Options of the in-process registry discovery.
 *
 * @since 0.1.0
 * @category models
 */
export interface InMemoryOptions {
  /**
   * rewrites the addresses this discovery announces (the registry is shared, so the announcing
   * side's remap applies); default: none
   */
  readonly remap?: AddressRemap | undefined
}

/**
 * Discovery over a shared in-process registry (membership is exact: nodes leave when their
 * scope closes).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeInMemory: (registry: Registry, options?: InMemoryOptions) => DiscoveryShape =
  internalInMemory.makeInMemory

/**
 * Discovery for one process (a private registry).
 *
 * @since 0.1.0
 * @category layers
 */
export const inMemory: Layer.Layer<Discovery> = Layer.effect(
  Discovery,
  Effect.map(makeRegistry, (registry) => makeInMemory(registry))
)

/**
 * Discovery on a shared registry (several nodes in one process).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerInMemory = (registry: Registry, options?: InMemoryOptions): Layer.Layer<Discovery> =>
  Layer.succeed(Discovery, makeInMemory(registry, options))

// ---- heartbeat discovery ---------------------------------------------------------------------

/**
 * Options of the heartbeat discovery, validated once when the layer is built.
 *
 * @since 0.1.0
 * @category models
 */
export interface HeartbeatOptions {
  /**
   * how often each announced member heartbeats and peers are checked; default 1 second
   * (a string such as `"500 millis"` is checked when the layer is built)
   */
  readonly heartbeat?: Duration.DurationInput | string | undefined
  /** a member silent for this many of its own heartbeat periods is `suspect`; default 3 */
  readonly suspectAfter?: number | undefined
  /** a member silent for this many of its own heartbeat periods is removed; default 5 */
  readonly removeAfter?: number | undefined
  /** `{ "<node name or kind>": "host:port" }`; default: parsed from `TROUPE_ADDRESS_REMAP` */
  readonly remap?: AddressRemap | undefined
}

/**
 * Heartbeat discovery on the `Transport` of the context, in the current scope: each announced
 * member publishes a `Heartbeat` on the subject `discovery` at once and then every period, and a
 * final one with `leaving: true` when its scope closes. Every received heartbeat adds or
 * refreshes its member (`lastSeen` is the local Clock time of receipt); every period the
 * members silent for `suspectAfter` of their own periods turn `suspect` and those silent for
 * `removeAfter` periods are removed. Heartbeats of another protocol version or that fail to
 * decode are ignored. A node that stops hearing its own heartbeats resubscribes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeHeartbeat = (
  options: HeartbeatOptions = {}
): Effect.Effect<DiscoveryShape, DiscoveryConfigError, Transport | Scope.Scope> =>
  Effect.flatMap(
    Effect.mapError(internalOptions.resolveOptions(options), (reason) => new DiscoveryConfigError({ reason })),
    internal.makeHeartbeat
  )

/**
 * Heartbeat discovery over the node's `Transport` (see `makeHeartbeat`): works on every
 * transport, in memory or over NATS. Options are validated once; a malformed
 * `TROUPE_ADDRESS_REMAP` fails the layer with `DiscoveryConfigError`.
 *
 * @example
 * ```ts
 * const Infra = Discovery.layer({ heartbeat: "500 millis", suspectAfter: 3, removeAfter: 5 }).pipe(
 *   Layer.provideMerge(Transport.inMemory)
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: HeartbeatOptions): Layer.Layer<Discovery, DiscoveryConfigError, Transport> =>
  Layer.scoped(Discovery, makeHeartbeat(options))

/**
 * Heartbeat discovery for nodes on `Transport.nats`: heartbeats travel on
 * `troupe.<namespace>.discovery`. The same layer as `Discovery.layer`.
 *
 * @example
 * ```ts
 * const App = Layer.mergeAll(CounterLive, GreeterLive).pipe(
 *   Layer.provide(Node.layer({ name: "node-a" })),
 *   Layer.provide(Discovery.nats()),
 *   Layer.provideMerge(Transport.nats({ servers: "nats://127.0.0.1:4222" })),
 *   Layer.provide(Codec.msgpack)
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const nats: (options?: HeartbeatOptions) => Layer.Layer<Discovery, DiscoveryConfigError, Transport> = layer

// ---- accessors -------------------------------------------------------------------------------

/**
 * The current discovery state, with up-to-date `lastSeen` values.
 *
 * @since 0.1.0
 * @category accessors
 */
export const state: Effect.Effect<DiscoveryState, never, Discovery> = Effect.map(
  Discovery,
  (discovery) => discovery.snapshot?.() ?? discovery.unsafeState()
)

/**
 * Every change of the discovery state, starting with the current one.
 *
 * @since 0.1.0
 * @category accessors
 */
export const changes: Stream.Stream<DiscoveryState, never, Discovery> = Stream.unwrap(
  Effect.map(Discovery, (discovery) => discovery.changes)
)

/**
 * The live, serving members hosting a kind (`suspect` members are skipped).
 *
 * @since 0.1.0
 * @category utils
 */
export const servingMembers = (state: DiscoveryState, kind: string): ReadonlyArray<Member> =>
  state.members.filter((m) => m.status === "alive" && m.isServing && m.kinds.includes(kind))

/**
 * Waits until at least one serving node hosts `kind`; fails with `NoAvailableNode` after
 * `timeout` (default 30 seconds).
 *
 * @since 0.1.0
 * @category accessors
 */
export const awaitServing = (
  kind: string,
  options?: { readonly timeout?: Duration.DurationInput | undefined }
): Effect.Effect<ReadonlyArray<Member>, NoAvailableNode, Discovery> =>
  changes.pipe(
    Stream.map((s) => servingMembers(s, kind)),
    Stream.filter((members) => members.length > 0),
    Stream.runHead,
    Effect.flatMap(Option.match({
      onNone: () => Effect.fail(new NoAvailableNode({ kind, id: "" })),
      onSome: Effect.succeed
    })),
    Effect.timeoutFail({
      duration: options?.timeout ?? Duration.seconds(30),
      onTimeout: () => new NoAvailableNode({ kind, id: "" })
    })
  )
