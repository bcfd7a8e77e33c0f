/**
 * Liveness: proving a node unreachable ("no responders" on its subject, or a caller's word for
 * a node we know), failing the calls that waited on a node that is gone or on a lost
 * connection, abandoning the streams of a peer that went away, and rebalancing actors when
 * membership changes.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { NoAvailableNode, TransportError } from "../../schema/Errors.ts"
import { type NodeState, sendInterrupt } from "./nodeState.ts"
import { owner } from "./placement.ts"
import { servingNodes } from "./routing.ts"

/** how long after "no responders" proved a node gone its other pending asks may still get theirs */
const UNREACHABLE_GRACE_MILLIS = 250

/**
 * Fails the pending call `only` (or every pending call) with `error`, telling a handler that
 * may still run to stop.
 *
 * @internal
 */
export const failPending = (state: NodeState, error: TransportError | NoAvailableNode, only?: number): void => {
  const ids = only === undefined ? [...state.pending.keys()] : [only]
  for (const requestId of ids) {
    const entry = state.pending.get(requestId)
    if (entry === undefined) continue
    state.pending.delete(requestId)
    if (entry.deadline !== undefined) state.deadlines.remove(entry.deadline)
    // a producer waits for this caller's credit, an upload's handler for its elements: if
    // their node is alive after all, they must not wait forever (nor an actor's mailbox)
    if (!state.closed && (entry.isStream || state.uploads.has(requestId))) sendInterrupt(state, entry.kind, requestId)
    entry.resume(Exit.fail(error))
  }
}

/**
 * `target` was found gone: discovery hears of it, and the calls sent to it before the proof
 * that get no "no responders" of their own within a moment fail.
 *
 * @internal
 */
export const proveUnreachable = (state: NodeState, target: string): void => {
  state.discovery.reportUnreachable?.(target)
  if (state.provenUnreachable.has(target)) return
  state.provenUnreachable.add(target)
  // requests sent before the proof that get no "no responders" of their own within a moment
  // reached the node before it died (or were lost with it): their outcome is unknown
  const provenAt = state.deadlines.now()
  state.deadlines.add(UNREACHABLE_GRACE_MILLIS, () => {
    for (const [requestId, entry] of state.pending) {
      if (entry.target === target && entry.startedAt <= provenAt) {
        failPending(
          state,
          new TransportError({ reason: `node ${target} went away while the ask was pending` }),
          requestId
        )
      }
    }
  })
}

/**
 * "No responders" on the reply slot `subject` of one of our calls: it reached no one.
 *
 * @internal
 */
export const onNoResponders = (state: NodeState, subject: string): void => {
  const requestId = Number(subject.slice(state.noRespondersPrefix.length))
  const entry = state.pending.get(requestId)
  if (entry === undefined) return
  const unreachable = entry.target
  if (unreachable !== undefined) proveUnreachable(state, unreachable)
  const error = new NoAvailableNode({ kind: entry.kind, id: entry.id })
  if (unreachable !== undefined) state.noResponders.set(error, unreachable)
  failPending(state, error, requestId)
}

/**
 * When membership changes, actors this node no longer owns move (passivate here, activate on
 * their new owner at their next message).
 *
 * @internal
 */
export const rebalance = (state: NodeState): void => {
  for (const manager of state.managers.values()) {
    if (!manager.isActor) continue
    const nodes = servingNodes(state, manager.kind)
    manager.evict((id) => {
      const target = owner(nodes, id)
      return target !== undefined && target !== state.nodeId
    })
  }
}

/**
 * Asks waiting on a node that is no longer alive would only time out: they fail now (a node
 * found gone by "no responders" is left to that mechanism: each request that reached no one gets
 * its own "no responders", and may be sent again; a request it may have received fails once the
 * node is removed). Streams to or from a peer that went away end too.
 *
 * @internal
 */
export const abandonLost = (state: NodeState): void => {
  const members = state.discovery.unsafeState().members
  const alive = new Set(members.filter((m) => m.status === "alive").map((m) => m.nodeId))
  const present = new Set(members.map((m) => m.nodeId))
  for (const unreachable of state.provenUnreachable) {
    if (!present.has(unreachable)) state.provenUnreachable.delete(unreachable)
  }
  for (const upload of state.inboundUploads.values()) {
    // an absent caller may just use another registry: its silence is judged by the idle deadline
    if (present.has(upload.source) && !alive.has(upload.source)) {
      upload.inbox.fail(upload.broken(`the caller ${upload.source} went away`))
    }
  }
  // a producer waiting for credit from a consumer that is gone would wait forever
  for (const stream of state.outbound.values()) {
    if (present.has(stream.consumer) && !alive.has(stream.consumer)) state.fork(stream.manager.cancel(stream.job))
  }
  for (const [requestId, entry] of state.pending) {
    // a service's request may go to any instance: its node is known once it answers (the
    // producer of a streamed reply, the handler granting credit for an upload), and judged
    // only if listed (an absent one may just use another registry)
    const answering = entry.isStream ? entry.producer : state.uploads.get(requestId)?.handler
    const target = entry.target ?? (answering !== undefined && present.has(answering) ? answering : undefined)
    if (target !== undefined && !alive.has(target) && !(present.has(target) && state.provenUnreachable.has(target))) {
      failPending(
        state,
        new TransportError({ reason: `node ${target} stopped answering while the ask was pending` }),
        requestId
      )
    }
  }
}

/**
 * A lost connection fails every pending call (nothing sent before it will be answered).
 *
 * @internal
 */
export const watchConnection = (state: NodeState): Effect.Effect<void, never, Scope.Scope> =>
  state.transport.watch((event) => {
    if (event === "disconnected") {
      failPending(
        state,
        new TransportError({ reason: `node ${state.nodeId} lost its connection while the ask was pending` })
      )
    }
  })

/**
 * Each membership change rebalances actors and abandons lost work.
 *
 * @internal
 */
export const watchMembership = (state: NodeState): Effect.Effect<void, never, Scope.Scope> =>
  Effect.asVoid(Effect.forkScoped(Stream.runForEach(state.discovery.changes, () =>
    Effect.sync(() => {
      rebalance(state)
      abandonLost(state)
    }))))

/**
 * On shutdown: what is still pending fails, and no interrupt is sent any more.
 *
 * @internal
 */
export const close = (state: NodeState): void => {
  state.closed = true
  failPending(state, new TransportError({ reason: `node ${state.nodeId} shut down while the ask was pending` }))
}
