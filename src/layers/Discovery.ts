/**
 * `Discovery` knows which nodes are up, what they host and whether they serve. The runtime
 * routes with it (rendezvous placement of actors, round-robin of services) and users observe it
 * (`Discovery.state`, `Discovery.changes`, `Discovery.awaitServing`).
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { NoAvailableNode } from "../schema/Errors.ts"

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
  readonly lastSeen: number
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
  /** The current state, synchronously (hot path of routing). */
  readonly unsafeState: () => DiscoveryState
  readonly changes: Stream.Stream<DiscoveryState>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Discovery extends Context.Tag("troupe/Discovery")<Discovery, DiscoveryShape>() {}

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
 * @since 0.1.0
 * @category constructors
 */
export const makeRegistry: Effect.Effect<Registry> = Effect.map(
  SubscriptionRef.make<DiscoveryState>({ members: [], lastUpdated: 0 }),
  (ref) => ({ ref, current: { members: [], lastUpdated: 0 } })
)

const modify = (registry: Registry, f: (members: ReadonlyArray<Member>, now: number) => ReadonlyArray<Member>) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    SubscriptionRef.update(registry.ref, (state) => {
      const next = { members: f(state.members, now), lastUpdated: now }
      registry.current = next
      return next
    }))

/**
 * Discovery over a shared in-process registry (membership is exact: nodes leave when their
 * scope closes).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeInMemory = (registry: Registry): DiscoveryShape => ({
  announce: (member) =>
    Effect.acquireRelease(
      modify(registry, (members, now) => [
        ...members.filter((m) => m.nodeId !== member.nodeId),
        { ...member, lastSeen: now, status: "alive" }
      ]),
      () => modify(registry, (members) => members.filter((m) => m.nodeId !== member.nodeId))
    ),
  update: (nodeId, patch) =>
    modify(registry, (members, now) =>
      members.map((m) => (m.nodeId === nodeId ? { ...m, ...patch, lastSeen: now } : m))),
  unsafeState: () => registry.current,
  changes: registry.ref.changes
})

/**
 * Discovery for one process (a private registry).
 *
 * @since 0.1.0
 * @category layers
 */
export const inMemory: Layer.Layer<Discovery> = Layer.effect(Discovery, Effect.map(makeRegistry, makeInMemory))

/**
 * Discovery on a shared registry (several nodes in one process).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerInMemory = (registry: Registry): Layer.Layer<Discovery> =>
  Layer.succeed(Discovery, makeInMemory(registry))

/**
 * The current discovery state.
 *
 * @since 0.1.0
 * @category accessors
 */
export const state: Effect.Effect<DiscoveryState, never, Discovery> = Effect.map(
  Discovery,
  (discovery) => discovery.unsafeState()
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
 * The serving members hosting a kind.
 *
 * @since 0.1.0
 * @category utils
 */
export const servingMembers = (state: DiscoveryState, kind: string): ReadonlyArray<Member> =>
  state.members.filter((m) => m.isServing && m.kinds.includes(kind))

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
