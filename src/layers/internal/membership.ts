/**
 * The membership table of heartbeat discovery: one entry per member heard (or announced here),
 * the tombstones of departed incarnations whose late heartbeats are ignored for `removeAfter`
 * periods, and suspicion: a peer silent for `suspectAfter` of its own periods turns `suspect`,
 * one silent for `removeAfter` is removed. Every visible change is published as a new
 * `DiscoveryState`.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as PubSub from "effect/PubSub"
import * as Stream from "effect/Stream"
import type { HeartbeatFrame } from "../../schema/Envelope.ts"
import type { DiscoveryState, Member } from "../Discovery.ts"
import { remapAddress, type ResolvedOptions } from "./discoveryOptions.ts"

/**
 * The longest heartbeat period taken from a peer: 10 of our own periods, and at least 10 s. The
 * nodes of one cluster run periods within 10 times of each other (a rolling change of period
 * included); a longer claim would keep a stranger's entry long after it fell silent.
 */
const maxPeerPeriodMillis = (ownPeriodMillis: number): number => Math.max(10 * ownPeriodMillis, 10_000)

/** the most members (and departed incarnations) tracked: a heartbeat from one more new node is dropped */
const MAX_MEMBERS = 10_000

/** A member as announced, before the table stamps it. @internal */
export type Announced = Omit<Member, "lastSeen" | "status">

/** one member as this discovery tracks it; `member` is what the current state shows */
interface Entry {
  member: Member
  lastSeen: number
  periodMillis: number
}

/** A member announced by this discovery (its truth is local, never taken from the wire). @internal */
export interface Local {
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

/** @internal */
export interface Membership {
  readonly config: ResolvedOptions
  readonly entries: Map<string, Entry>
  readonly locals: Map<string, Local>
  /** incarnations that left, until when their late heartbeats are ignored */
  readonly departed: Map<string, number>
  current: DiscoveryState
  readonly pubsub: PubSub.PubSub<DiscoveryState>
}

/** @internal */
export const makeMembership = (
  config: ResolvedOptions,
  pubsub: PubSub.PubSub<DiscoveryState>,
  at: number
): Membership => ({
  config,
  entries: new Map(),
  locals: new Map(),
  departed: new Map(),
  current: { members: [], lastUpdated: at },
  pubsub
})

const memberOf = (entry: Entry): Member =>
  entry.member.lastSeen === entry.lastSeen ? entry.member : { ...entry.member, lastSeen: entry.lastSeen }

/** Publishes the table as the new current state. @internal */
export const changed = (table: Membership, at: number): void => {
  const members: Array<Member> = []
  for (const entry of table.entries.values()) {
    entry.member = memberOf(entry)
    members.push(entry.member)
  }
  table.current = { members, lastUpdated: at }
  table.pubsub.unsafeOffer(table.current)
}

const sameKinds = (a: ReadonlyArray<string>, b: ReadonlyArray<string>): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Records a heartbeat (or a local change); true when the visible state changed. @internal */
export const upsert = (table: Membership, announced: Announced, periodMillis: number, at: number): boolean => {
  const address = remapAddress(table.config.remap, announced.name, announced.kinds, announced.address)
  const entry = table.entries.get(announced.nodeId)
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
  if (entry === undefined) table.entries.set(member.nodeId, { member, lastSeen: at, periodMillis })
  else entry.member = member
  return true
}

/** Late heartbeats of `incarnation` are ignored for `removeAfter` of its periods. @internal */
export const tombstone = (table: Membership, incarnation: string, periodMillis: number, at: number): void => {
  table.departed.set(incarnation, at + table.config.removeAfter * periodMillis)
}

/** A member seen alive just now (our own heartbeat sent or echoed back). @internal */
export const touch = (table: Membership, nodeId: string, at: number): void => {
  const entry = table.entries.get(nodeId)
  if (entry !== undefined) entry.lastSeen = at
}

/**
 * Takes in a well-formed heartbeat: our own echoed back, a peer's (new, changed or leaving), or
 * one to ignore (a departed or earlier incarnation). Returns the reason when it is dropped
 * because the table is full.
 *
 * @internal
 */
export const receive = (table: Membership, frame: HeartbeatFrame, at: number): string | undefined => {
  const local = table.locals.get(frame.source)
  if (local !== undefined) {
    // our own heartbeat echoed back: proof that we still hear the subject
    if (frame.incarnation === local.incarnation) {
      local.lastEcho = at
      touch(table, local.nodeId, at)
    }
    return
  }
  if (table.departed.has(frame.incarnation)) return
  const own = table.config.periodMillis
  const periodMillis = Number.isFinite(frame.periodMillis) && frame.periodMillis > 0
    ? Math.min(frame.periodMillis, maxPeerPeriodMillis(own))
    : own
  const entry = table.entries.get(frame.source)
  // strangers naming ever new nodes cannot grow the tables without bound
  if (entry === undefined && (frame.leaving === true ? table.departed.size : table.entries.size) >= MAX_MEMBERS) {
    return "a heartbeat from one node more than the 10,000 tracked"
  }
  if (frame.leaving === true) {
    tombstone(table, frame.incarnation, periodMillis, at)
    if (entry !== undefined && entry.member.incarnation === frame.incarnation) {
      table.entries.delete(frame.source)
      changed(table, at)
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
  if (upsert(table, announced, periodMillis, at)) changed(table, at)
}

/**
 * The periodic sweep: peers silent (since `listeningSince` at the earliest) for `suspectAfter`
 * of their periods turn suspect, for `removeAfter` are removed; expired tombstones go.
 *
 * @internal
 */
export const sweep = (table: Membership, at: number, listeningSince: number): void => {
  const { removeAfter, suspectAfter } = table.config
  let dirty = false
  for (const [nodeId, entry] of table.entries) {
    if (table.locals.has(nodeId)) continue
    const silence = at - Math.max(entry.lastSeen, listeningSince)
    if (silence >= removeAfter * entry.periodMillis) {
      table.entries.delete(nodeId)
      dirty = true
    } else if (silence >= suspectAfter * entry.periodMillis && entry.member.status === "alive") {
      entry.member = { ...entry.member, lastSeen: entry.lastSeen, status: "suspect" }
      dirty = true
    }
  }
  for (const [incarnation, until] of table.departed) if (until <= at) table.departed.delete(incarnation)
  if (dirty) changed(table, at)
}

/** The runtime could not reach `nodeId`: an alive peer turns suspect at once. @internal */
export const suspect = (table: Membership, nodeId: string, at: number): void => {
  const entry = table.entries.get(nodeId)
  if (entry === undefined || table.locals.has(nodeId) || entry.member.status !== "alive") return
  entry.member = { ...entry.member, lastSeen: entry.lastSeen, status: "suspect" }
  changed(table, at)
}

/** The table as of now (every `lastSeen` current). @internal */
export const snapshot = (table: Membership): DiscoveryState => ({
  members: Array.from(table.entries.values(), memberOf),
  lastUpdated: table.current.lastUpdated
})

/** The current state, then every change. @internal */
export const changes = (table: Membership): Stream.Stream<DiscoveryState> =>
  Stream.unwrapScoped(Effect.map(PubSub.subscribe(table.pubsub), (queue) =>
    Stream.concat(
      Stream.sync(() => table.current),
      Stream.fromQueue(queue)
    ).pipe(
      Stream.changesWith((a, b) => a === b)
    )))
