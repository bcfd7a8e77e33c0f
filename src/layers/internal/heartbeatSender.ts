/**
 * The sending side of heartbeat discovery: the members announced here, each heartbeating every
 * period and a last time with `leaving: true` when its scope closes; a change of kinds or of
 * serving goes out at once.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { type HeartbeatFrame, ProtocolVersion } from "../../schema/Envelope.ts"
import type { Member } from "../Discovery.ts"
import type { TransportShape } from "../Transport.ts"
import { changed, type Local, type Membership, tombstone, touch, upsert } from "./membership.ts"
import * as Subjects from "./subjects.ts"

/** the logical subject of heartbeats (the transport adds `troupe.<namespace>.`) @internal */
export const subject = Subjects.DISCOVERY

/** What the sending side works with. @internal */
export interface Sender {
  readonly table: Membership
  readonly transport: TransportShape
  readonly now: () => number
}

const heartbeatOf = (sender: Sender, local: Local, leaving: boolean): HeartbeatFrame => ({
  _tag: "Heartbeat",
  v: ProtocolVersion,
  source: local.nodeId,
  name: local.name,
  incarnation: local.incarnation,
  address: local.address,
  kinds: local.kinds,
  isServing: local.isServing,
  startedAt: local.startedAt,
  periodMillis: sender.table.config.periodMillis,
  ...(leaving ? { leaving: true } : {})
})

const publish = (sender: Sender, local: Local, leaving: boolean): Effect.Effect<void> =>
  // nothing leaves while the connection is down (the reconnect beats at once)
  sender.transport.isConnected?.() === false ? Effect.void : sender.transport.publish(
    subject,
    heartbeatOf(sender, local, leaving)
  ).pipe(
    Effect.catchAll((error) =>
      Effect.logWarning(`discovery: the heartbeat of ${local.nodeId} was not published`, error)
    ),
    Effect.catchAllDefect((defect) =>
      Effect.logWarning(`discovery: the heartbeat of ${local.nodeId} was not published`, defect)
    )
  )

/** Publishes a heartbeat of a member still announced by this discovery. @internal */
export const beat = (sender: Sender, local: Local): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (sender.table.locals.get(local.nodeId) !== local) return Effect.void
    touch(sender.table, local.nodeId, sender.now())
    return publish(sender, local, false)
  })

/** Heartbeats of every member announced here. @internal */
export const beatAll = (sender: Sender): Effect.Effect<void> =>
  Effect.suspend(() =>
    Effect.forEach([...sender.table.locals.values()], (local) => beat(sender, local), { discard: true })
  )

/**
 * Announces `member` for the life of the scope: in the table at once, a heartbeat every period,
 * and a leaving heartbeat (and a tombstone) when the scope closes.
 *
 * @internal
 */
export const announce = (
  sender: Sender,
  member: Omit<Member, "lastSeen" | "status">
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { locals, entries, config } = sender.table
    const local: Local = {
      nodeId: member.nodeId,
      name: member.name,
      incarnation: member.incarnation,
      address: member.address,
      startedAt: member.startedAt,
      kinds: [...member.kinds],
      isServing: member.isServing,
      lastEcho: sender.now()
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        const at = sender.now()
        locals.set(local.nodeId, local)
        upsert(sender.table, local, config.periodMillis, at)
        changed(sender.table, at)
      }),
      () =>
        Effect.suspend(() => {
          if (locals.get(local.nodeId) !== local) return Effect.void
          const at = sender.now()
          locals.delete(local.nodeId)
          entries.delete(local.nodeId)
          tombstone(sender.table, local.incarnation, config.periodMillis, at)
          changed(sender.table, at)
          return publish(sender, local, true)
        })
    )
    yield* beat(sender, local)
    // forked after the release above, so it stops before the leaving heartbeat goes out
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Effect.sleep(config.period), beat(sender, local))))
  })

/** A member announced here changed its kinds or serving: the table and the peers learn it now. @internal */
export const update = (
  sender: Sender,
  nodeId: string,
  patch: Partial<Pick<Member, "kinds" | "isServing">>
): Effect.Effect<void> =>
  Effect.suspend(() => {
    const local = sender.table.locals.get(nodeId)
    if (local === undefined) return Effect.void
    if (patch.kinds !== undefined) local.kinds = [...patch.kinds]
    if (patch.isServing !== undefined) local.isServing = patch.isServing
    const at = sender.now()
    if (upsert(sender.table, local, sender.table.config.periodMillis, at)) changed(sender.table, at)
    return beat(sender, local)
  })
