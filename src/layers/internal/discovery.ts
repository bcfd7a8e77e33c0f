/**
 * The two discovery implementations behind `Discovery.ts`:
 *
 * - the address remap (`TROUPE_ADDRESS_REMAP` or an option), applied to every announced address;
 * - the in-process registry (`makeInMemory`): exact membership, nodes leave with their scope;
 * - heartbeat membership over a `Transport` (`makeHeartbeat`): each local member heartbeats every
 *   period and a last time with `leaving: true`; peers are checked every period, turn `suspect`
 *   after `suspectAfter` silent periods of their own and are removed after `removeAfter`; late
 *   heartbeats of a departed incarnation are ignored for `removeAfter` periods (tombstones); a
 *   node that stops hearing its own heartbeats resubscribes.
 *
 * Option problems come back as a plain reason (a string); `Discovery.ts` turns it into a
 * `DiscoveryConfigError`, so this module needs nothing at runtime from the public one.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { type Envelope, Heartbeat, type HeartbeatFrame, ProtocolVersion } from "../../schema/Envelope.ts"
import type {
  AddressRemap,
  DiscoveryShape,
  DiscoveryState,
  HeartbeatOptions,
  InMemoryOptions,
  Member,
  Registry
} from "../Discovery.ts"
import * as Subject from "../Subject.ts"
import { Transport } from "../Transport.ts"
import { makeDrop } from "./drops.ts"

// ---- address remap ----------------------------------------------------------------------------

/** @internal */
export const REMAP_ENV = "TROUPE_ADDRESS_REMAP"

const remapShape = `a JSON object {"<node name or kind>": "host:port"}`

const checkRemap = (remap: unknown, source: string): Either.Either<AddressRemap, string> => {
  if (typeof remap !== "object" || remap === null || Array.isArray(remap)) {
    return Either.left(`${source} must be ${remapShape}, got ${JSON.stringify(remap)}`)
  }
  for (const [key, value] of Object.entries(remap)) {
    if (typeof value !== "string" || value.length === 0) {
      return Either.left(
        `${source} must be ${remapShape}: the entry "${key}" is ${JSON.stringify(value)}, not a non-empty string`
      )
    }
  }
  return Either.right(remap as AddressRemap)
}

const parseRemap = (json: string): Either.Either<AddressRemap, string> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(json)
  } catch (error) {
    const problem = error instanceof Error ? error.message : String(error)
    return Either.left(`${REMAP_ENV} is not valid JSON (${problem}); expected ${remapShape}`)
  }
  return checkRemap(parsed, REMAP_ENV)
}

/** the remap from `TROUPE_ADDRESS_REMAP` (unset or blank: none), read through Effect's `ConfigProvider` */
const remapFromEnv: Effect.Effect<AddressRemap, string> = Config.option(Config.string(REMAP_ENV)).pipe(
  Effect.mapError((error) => `cannot read ${REMAP_ENV}: ${error}`),
  Effect.flatMap(Option.match({
    onNone: (): Either.Either<AddressRemap, string> => Either.right({}),
    onSome: (json) => json.trim() === "" ? Either.right({}) : parseRemap(json)
  }))
)

/** the member's address after the remap: by node name first, then by kind */
const remapAddress = (
  remap: AddressRemap,
  name: string,
  kinds: ReadonlyArray<string>,
  address: string
): string => {
  if (Object.hasOwn(remap, name)) return remap[name]!
  for (const kind of kinds) if (Object.hasOwn(remap, kind)) return remap[kind]!
  return address
}

// ---- in-memory registry ----------------------------------------------------------------------

const modify = (registry: Registry, f: (members: ReadonlyArray<Member>, now: number) => ReadonlyArray<Member>) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    SubscriptionRef.update(registry.ref, (state) => {
      const next = { members: f(state.members, now), lastUpdated: now }
      registry.current = next
      return next
    }))

/** @internal see `Discovery.makeInMemory` */

/** how many senders of another protocol version are remembered as warned about */
const MAX_WARNED_VERSIONS = 1024
export const makeInMemory = (registry: Registry, options: InMemoryOptions = {}): DiscoveryShape => {
  const remap = options.remap ?? {}
  // the addresses as announced, so a change of kinds can be remapped again
  const announced = new Map<string, string>()
  return {
    announce: (member) =>
      Effect.acquireRelease(
        Effect.suspend(() => {
          announced.set(member.nodeId, member.address)
          return modify(registry, (members, now) => [
            ...members.filter((m) => m.nodeId !== member.nodeId),
            {
              ...member,
              address: remapAddress(remap, member.name, member.kinds, member.address),
              lastSeen: now,
              status: "alive"
            }
          ])
        }),
        () =>
          Effect.suspend(() => {
            announced.delete(member.nodeId)
            return modify(registry, (members) => members.filter((m) => m.nodeId !== member.nodeId))
          })
      ),
    update: (nodeId, patch) =>
      modify(registry, (members, now) =>
        members.map((m) => {
          if (m.nodeId !== nodeId) return m
          const next = { ...m, ...patch, lastSeen: now }
          const original = announced.get(nodeId)
          return original === undefined ? next : { ...next, address: remapAddress(remap, m.name, next.kinds, original) }
        })),
    unsafeState: () => registry.current,
    changes: registry.ref.changes
  }
}

/**
 * Discovery for one process (a private registry).
 *
 * @since 0.1.0
 * @category layers

// ---- heartbeat discovery ---------------------------------------------------------------------

/** @internal the heartbeat options, validated, with their defaults */
export interface ResolvedOptions {
  readonly period: Duration.Duration
  readonly periodMillis: number
  readonly suspectAfter: number
  readonly removeAfter: number
  readonly remap: AddressRemap
}

/** @internal validates the heartbeat options once; fails with the reason of the first problem */
export const resolveOptions = (options: HeartbeatOptions): Effect.Effect<ResolvedOptions, string> =>
  Effect.gen(function*() {
    const fail = (reason: string) => Effect.fail(reason)
    const period = Duration.decodeUnknown(options.heartbeat ?? Duration.seconds(1))
    if (Option.isNone(period) || !Duration.isFinite(period.value) || Duration.toMillis(period.value) <= 0) {
      return yield* fail(`heartbeat must be a positive, finite duration, got ${String(options.heartbeat)}`)
    }
    const suspectAfter = options.suspectAfter ?? 3
    const removeAfter = options.removeAfter ?? 5
    if (!Number.isFinite(suspectAfter) || suspectAfter <= 0) {
      return yield* fail(`suspectAfter must be a positive number of periods, got ${suspectAfter}`)
    }
    if (!Number.isFinite(removeAfter) || removeAfter < suspectAfter) {
      return yield* fail(
        `removeAfter must be a number of periods >= suspectAfter (${suspectAfter}), got ${removeAfter}`
      )
    }
    const remap = options.remap === undefined
      ? yield* remapFromEnv
      : yield* checkRemap(options.remap, "the remap option")
    return { period: period.value, periodMillis: Duration.toMillis(period.value), suspectAfter, removeAfter, remap }
  })

/** the logical subject of heartbeats (the transport adds `troupe.<namespace>.`) */
const subject = "discovery"

/** a node that hears nothing, not even its own heartbeat, for this many periods resubscribes */
const deafAfter = 2

/**
 * The longest heartbeat period taken from a peer: 10 of our own periods, and at least 10 s. The
 * nodes of one cluster run periods within 10 times of each other (a rolling change of period
 * included); a longer claim would keep a stranger's entry long after it fell silent.
 */
const maxPeerPeriodMillis = (ownPeriodMillis: number): number => Math.max(10 * ownPeriodMillis, 10_000)

/** the most members (and departed incarnations) tracked: a heartbeat from one more new node is dropped */
const MAX_MEMBERS = 10_000

type Announced = Omit<Member, "lastSeen" | "status">

/** one member as this discovery tracks it; `member` is what the current state shows */
interface Entry {
  member: Member
  lastSeen: number
  periodMillis: number
}

/** a member announced by this discovery (its truth is local, never taken from the wire) */
interface Local {
  readonly nodeId: string
  readonly name: string
  readonly incarnation: string
  /** as announced, before remapping */
  readonly address: string
  readonly startedAt: number
  kinds: ReadonlyArray<string>
  isServing: boolean
  /** when our own heartbeat last came back from the transport */
  lastEcho: number
}

const isHeartbeat = Schema.is(Heartbeat)

/** identifiers that become parts of subjects: a heartbeat with any other is dropped */
const hasTokens = (frame: HeartbeatFrame): boolean => {
  if (!Subject.isToken(frame.source) || !Subject.isToken(frame.name)) return false
  for (const kind of frame.kinds) if (!Subject.isToken(kind)) return false
  return true
}

/** one subscription to the heartbeats, and whether it was heard since it was made */
interface Listening {
  readonly scope: Scope.CloseableScope
}

const sameKinds = (a: ReadonlyArray<string>, b: ReadonlyArray<string>): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** @internal see `Discovery.makeHeartbeat` (the options are validated there) */
export const makeHeartbeat = (
  config: ResolvedOptions
): Effect.Effect<DiscoveryShape, never, Transport | Scope.Scope> =>
  Effect.gen(function*() {
    const transport = yield* Transport
    const clock = yield* Effect.clock
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const layerScope = yield* Effect.scope
    const pubsub = yield* Effect.acquireRelease(PubSub.unbounded<DiscoveryState>(), PubSub.shutdown)
    const now = () => clock.unsafeCurrentTimeMillis()

    const entries = new Map<string, Entry>()
    const locals = new Map<string, Local>()
    /** incarnations that left, until when their late heartbeats are ignored */
    const departed = new Map<string, number>()
    const warnedVersions = new Set<string>()
    let current: DiscoveryState = { members: [], lastUpdated: now() }
    /** the subscription in use */
    let subscription: Listening | undefined
    /**
     * a resubscription not heard yet: the one in use stays open until it is, so the frames
     * already on their way to it are read, not dropped (both deliver meanwhile: heartbeats
     * are idempotent)
     */
    let candidate: Listening | undefined
    /** silence before this time is not held against anyone: we were not listening */
    let listeningSince = now()
    /** when a subscription last delivered anything: proof that we still hear the subject */
    let heardAt = now()
    /** when the membership check is due (a check that runs much later found the node busy) */
    let checkDue = now() + config.periodMillis
    const drop = makeDrop("discovery", clock, runFork)

    const memberOf = (entry: Entry): Member =>
      entry.member.lastSeen === entry.lastSeen ? entry.member : { ...entry.member, lastSeen: entry.lastSeen }

    const changed = (at: number): void => {
      const members: Array<Member> = []
      for (const entry of entries.values()) {
        entry.member = memberOf(entry)
        members.push(entry.member)
      }
      current = { members, lastUpdated: at }
      pubsub.unsafeOffer(current)
    }

    /** records a heartbeat (or a local change); true when the visible state changed */
    const upsert = (announced: Announced, periodMillis: number, at: number): boolean => {
      const address = remapAddress(config.remap, announced.name, announced.kinds, announced.address)
      const entry = entries.get(announced.nodeId)
      if (entry !== undefined) {
        entry.lastSeen = at
        entry.periodMillis = periodMillis
        const m = entry.member
        if (
          m.status === "alive" && m.incarnation === announced.incarnation && m.name === announced.name &&
          m.address === address && m.isServing === announced.isServing && m.startedAt === announced.startedAt &&
          sameKinds(m.kinds, announced.kinds)
        ) return false
      }
      const member: Member = {
        nodeId: announced.nodeId,
        name: announced.name,
        incarnation: announced.incarnation,
        address,
        kinds: [...announced.kinds],
        isServing: announced.isServing,
        startedAt: announced.startedAt,
        lastSeen: at,
        status: "alive"
      }
      if (entry === undefined) entries.set(member.nodeId, { member, lastSeen: at, periodMillis })
      else entry.member = member
      return true
    }

    const tombstone = (incarnation: string, periodMillis: number, at: number): void => {
      departed.set(incarnation, at + config.removeAfter * periodMillis)
    }

    const receive = (frame: HeartbeatFrame): void => {
      const at = now()
      const local = locals.get(frame.source)
      if (local !== undefined) {
        // our own heartbeat echoed back: proof that we still hear the subject
        if (frame.incarnation === local.incarnation) {
          local.lastEcho = at
          const entry = entries.get(local.nodeId)
          if (entry !== undefined) entry.lastSeen = at
        }
        return
      }
      if (departed.has(frame.incarnation)) return
      const periodMillis = Number.isFinite(frame.periodMillis) && frame.periodMillis > 0
        ? Math.min(frame.periodMillis, maxPeerPeriodMillis(config.periodMillis))
        : config.periodMillis
      const entry = entries.get(frame.source)
      // strangers naming ever new nodes cannot grow the tables without bound
      if (entry === undefined && (frame.leaving === true ? departed.size : entries.size) >= MAX_MEMBERS) {
        return drop("a heartbeat from one node more than the 10,000 tracked")
      }
      if (frame.leaving === true) {
        tombstone(frame.incarnation, periodMillis, at)
        if (entry !== undefined && entry.member.incarnation === frame.incarnation) {
          entries.delete(frame.source)
          changed(at)
        }
        return
      }
      // a late heartbeat of an earlier incarnation of the node
      if (
        entry !== undefined && entry.member.incarnation !== frame.incarnation &&
        frame.startedAt < entry.member.startedAt
      ) return
      const announced: Announced = {
        nodeId: frame.source,
        name: frame.name,
        incarnation: frame.incarnation,
        address: frame.address,
        kinds: frame.kinds,
        isServing: frame.isServing,
        startedAt: frame.startedAt
      }
      if (upsert(announced, periodMillis, at)) changed(at)
    }

    const onFrame = (frame: Envelope): void => {
      try {
        if (frame._tag !== "Heartbeat") return
        const version: unknown = (frame as { readonly v?: unknown }).v
        if (version !== ProtocolVersion) {
          const key = `${String(frame.source)}@${String(version)}`
          if (!warnedVersions.has(key)) {
            // anyone on the subject can send heartbeats under any name: the memory of whom we
            // warned about is bounded (past it, a sender may be warned about again)
            if (warnedVersions.size >= MAX_WARNED_VERSIONS) warnedVersions.clear()
            warnedVersions.add(key)
            runFork(Effect.logWarning(
              `discovery: ignoring heartbeats of ${String(frame.source)}, protocol version ${
                String(version)
              } (ours: ${ProtocolVersion})`
            ))
          }
          return
        }
        // a node id that is not a subject token would poison every caller's routing
        if (!isHeartbeat(frame) || !hasTokens(frame)) return drop("a malformed heartbeat")
        receive(frame)
      } catch (error) {
        // the last resort: a bad frame must never break the subscription
        drop(error)
      }
    }

    /** the one in use gives way to a candidate once the candidate is heard */
    const promote = (listening: Listening): void => {
      const previous = subscription
      subscription = listening
      candidate = undefined
      if (previous !== undefined) runFork(Scope.close(previous.scope, Exit.void))
    }

    const subscribe: Effect.Effect<void> = Effect.gen(function*() {
      const scope = yield* Scope.fork(layerScope, ExecutionStrategy.sequential)
      const listening: Listening = { scope }
      const deliver = (frame: Envelope): void => {
        heardAt = now()
        if (candidate === listening) promote(listening)
        onFrame(frame)
      }
      const exit = yield* Effect.exit(Scope.extend(transport.subscribe(subject, deliver), scope))
      if (Exit.isFailure(exit)) {
        yield* Scope.close(scope, Exit.void)
        return yield* Effect.logWarning(`discovery: cannot subscribe to heartbeats, retrying every period`, exit.cause)
      }
      listeningSince = now()
      if (subscription === undefined) {
        subscription = listening
        return
      }
      // a resubscription: an unheard earlier candidate goes, the one in use stays until this is heard
      const stale = candidate
      candidate = listening
      if (stale !== undefined) yield* Scope.close(stale.scope, Exit.void)
      // our own heartbeat is the first frame it can hear
      yield* Effect.forEach([...locals.values()], beat, { discard: true })
    })

    const heartbeatOf = (local: Local, leaving: boolean): HeartbeatFrame => ({
      _tag: "Heartbeat",
      v: ProtocolVersion,
      source: local.nodeId,
      name: local.name,
      incarnation: local.incarnation,
      address: local.address,
      kinds: local.kinds,
      isServing: local.isServing,
      startedAt: local.startedAt,
      periodMillis: config.periodMillis,
      ...(leaving ? { leaving: true } : {})
    })

    const publish = (local: Local, leaving: boolean): Effect.Effect<void> =>
      // nothing leaves while the connection is down (the reconnect beats at once)
      transport.isConnected?.() === false ? Effect.void : transport.publish(subject, heartbeatOf(local, leaving)).pipe(
        Effect.catchAll((error) =>
          Effect.logWarning(`discovery: the heartbeat of ${local.nodeId} was not published`, error)
        ),
        Effect.catchAllDefect((defect) =>
          Effect.logWarning(`discovery: the heartbeat of ${local.nodeId} was not published`, defect)
        )
      )

    /** publishes a heartbeat of a member still announced by this discovery */
    const beat = (local: Local): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (locals.get(local.nodeId) !== local) return Effect.void
        const entry = entries.get(local.nodeId)
        if (entry !== undefined) entry.lastSeen = now()
        return publish(local, false)
      })

    const check: Effect.Effect<void> = Effect.suspend(() => {
      // while our connection is down we hear no one: silence proves nothing about the others,
      // who stay members (routing to a kind known a moment ago gives NoAvailableNode, not
      // ActorNotFound), and resubscribing could not help
      if (transport.isConnected?.() === false) return Effect.void
      const at = now()
      // a check that runs a period late found the event loop busy (a flood to drain, a long
      // callback): the frames of that time wait in the socket, so the silence is not held
      // against anyone (nor against our own subscription)
      if (at - checkDue > config.periodMillis) listeningSince = at
      let dirty = false
      for (const [nodeId, entry] of entries) {
        if (locals.has(nodeId)) continue
        const silence = at - Math.max(entry.lastSeen, listeningSince)
        if (silence >= config.removeAfter * entry.periodMillis) {
          entries.delete(nodeId)
          dirty = true
        } else if (silence >= config.suspectAfter * entry.periodMillis && entry.member.status === "alive") {
          entry.member = { ...entry.member, lastSeen: entry.lastSeen, status: "suspect" }
          dirty = true
        }
      }
      for (const [incarnation, until] of departed) if (until <= at) departed.delete(incarnation)
      if (dirty) changed(at)
      // deaf: nothing heard, not even our own heartbeat, for `deafAfter` periods (any frame a
      // subscription delivers proves it alive)
      let deaf = subscription === undefined
      for (const local of locals.values()) {
        if (at - Math.max(local.lastEcho, heardAt, listeningSince) >= deafAfter * config.periodMillis) deaf = true
      }
      return deaf
        ? Effect.zipRight(
          Effect.logWarning("discovery: no heartbeat (not even our own) was heard lately, resubscribing"),
          subscribe
        )
        : Effect.void
    })

    yield* subscribe
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(
      Effect.suspend(() => {
        checkDue = now() + config.periodMillis
        return Effect.sleep(config.period)
      }),
      Effect.catchAllDefect(check, (defect) => Effect.logError("discovery: membership check failed", defect))
    )))
    // peers may have suspected us while the connection was down: tell them at once; and the
    // silence of the others while we could not hear them is not held against them
    yield* transport.watch((event) => {
      if (event !== "reconnected") return
      listeningSince = now()
      runFork(Effect.forEach([...locals.values()], beat, { discard: true }))
    })

    const shape: DiscoveryShape = {
      reportUnreachable: (nodeId) => {
        const entry = entries.get(nodeId)
        if (entry === undefined || locals.has(nodeId) || entry.member.status !== "alive") return
        entry.member = { ...entry.member, lastSeen: entry.lastSeen, status: "suspect" }
        changed(now())
      },
      announce: (member) =>
        Effect.gen(function*() {
          const local: Local = {
            nodeId: member.nodeId,
            name: member.name,
            incarnation: member.incarnation,
            address: member.address,
            startedAt: member.startedAt,
            kinds: [...member.kinds],
            isServing: member.isServing,
            lastEcho: now()
          }
          yield* Effect.acquireRelease(
            Effect.sync(() => {
              const at = now()
              locals.set(local.nodeId, local)
              upsert(local, config.periodMillis, at)
              changed(at)
            }),
            () =>
              Effect.suspend(() => {
                if (locals.get(local.nodeId) !== local) return Effect.void
                const at = now()
                locals.delete(local.nodeId)
                entries.delete(local.nodeId)
                tombstone(local.incarnation, config.periodMillis, at)
                changed(at)
                return publish(local, true)
              })
          )
          yield* beat(local)
          // forked after the release above, so it stops before the leaving heartbeat goes out
          yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Effect.sleep(config.period), beat(local))))
        }),
      update: (nodeId, patch) =>
        Effect.suspend(() => {
          const local = locals.get(nodeId)
          if (local === undefined) return Effect.void
          if (patch.kinds !== undefined) local.kinds = [...patch.kinds]
          if (patch.isServing !== undefined) local.isServing = patch.isServing
          const at = now()
          if (upsert(local, config.periodMillis, at)) changed(at)
          return beat(local)
        }),
      unsafeState: () => current,
      changes: Stream.unwrapScoped(Effect.map(PubSub.subscribe(pubsub), (queue) =>
        Stream.concat(
          Stream.sync(() => current),
          Stream.fromQueue(queue)
        ).pipe(
          Stream.changesWith((a, b) => a === b)
        ))),
      snapshot: () => ({
        members: Array.from(entries.values(), memberOf),
        lastUpdated: current.lastUpdated
      })
    }
    return shape
  })
