/**
 * The listening side of heartbeat discovery: the subscription to the heartbeat subject, the intake
 * of its frames (protocol version, shape, subject tokens), and the periodic check that sweeps the
 * membership table and resubscribes a node that stops hearing even its own heartbeats (deaf). A
 * resubscription is a candidate until it is heard; the subscription in use stays open meanwhile,
 * so the frames already on their way to it are read, not dropped (heartbeats are idempotent).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { type Envelope, Heartbeat, type HeartbeatFrame, ProtocolVersion } from "../../schema/Envelope.ts"
import * as Subject from "../Subject.ts"
import type { Drop } from "./drops.ts"
import { beatAll, type Sender, subject } from "./heartbeatSender.ts"
import { receive, sweep } from "./membership.ts"

/** a node that hears nothing, not even its own heartbeat, for this many periods resubscribes */
const deafAfter = 2

/** how many senders of another protocol version are remembered as warned about */
const MAX_WARNED_VERSIONS = 1024

/** one subscription to the heartbeats */
interface Listening {
  readonly scope: Scope.CloseableScope
}

/** @internal */
export interface Listener {
  readonly sender: Sender
  /** the scope of the discovery layer, which every subscription's scope is forked from */
  readonly layerScope: Scope.Scope
  readonly runFork: (effect: Effect.Effect<void>) => unknown
  readonly drop: Drop
  readonly warnedVersions: Set<string>
  /** the subscription in use */
  subscription: Listening | undefined
  /** a resubscription not heard yet */
  candidate: Listening | undefined
  /** silence before this time is not held against anyone: we were not listening */
  listeningSince: number
  /** when a subscription last delivered anything: proof that we still hear the subject */
  heardAt: number
  /** when the membership check is due (a check that runs much later found the node busy) */
  checkDue: number
}

/** @internal */
export const makeListener = (
  sender: Sender,
  layerScope: Scope.Scope,
  runFork: (effect: Effect.Effect<void>) => unknown,
  drop: Drop
): Listener => {
  const at = sender.now()
  return {
    sender,
    layerScope,
    runFork,
    drop,
    warnedVersions: new Set(),
    subscription: undefined,
    candidate: undefined,
    listeningSince: at,
    heardAt: at,
    checkDue: at + sender.table.config.periodMillis
  }
}

const isHeartbeat = Schema.is(Heartbeat)

/** identifiers that become parts of subjects: a heartbeat with any other is dropped */
const hasTokens = (frame: HeartbeatFrame): boolean => {
  if (!Subject.isToken(frame.source) || !Subject.isToken(frame.name)) return false
  for (const kind of frame.kinds) if (!Subject.isToken(kind)) return false
  return true
}

/** Warns once per sender and version about heartbeats of another protocol version. */
const warnVersion = (listener: Listener, source: unknown, version: unknown): void => {
  const key = `${String(source)}@${String(version)}`
  if (listener.warnedVersions.has(key)) return
  // anyone on the subject can send heartbeats under any name: the memory of whom we
  // warned about is bounded (past it, a sender may be warned about again)
  if (listener.warnedVersions.size >= MAX_WARNED_VERSIONS) listener.warnedVersions.clear()
  listener.warnedVersions.add(key)
  listener.runFork(Effect.logWarning(
    `discovery: ignoring heartbeats of ${String(source)}, protocol version ${
      String(version)
    } (ours: ${ProtocolVersion})`
  ))
}

const onFrame = (listener: Listener, frame: Envelope): void => {
  try {
    if (frame._tag !== "Heartbeat") return
    const version: unknown = (frame as { readonly v?: unknown }).v
    if (version !== ProtocolVersion) return warnVersion(listener, frame.source, version)
    // a node id that is not a subject token would poison every caller's routing
    if (!isHeartbeat(frame) || !hasTokens(frame)) return listener.drop("a malformed heartbeat")
    const dropped = receive(listener.sender.table, frame, listener.sender.now())
    if (dropped !== undefined) listener.drop(dropped)
  } catch (error) {
    // the last resort: a bad frame must never break the subscription
    listener.drop(error)
  }
}

/** the one in use gives way to a candidate once the candidate is heard */
const promote = (listener: Listener, listening: Listening): void => {
  const previous = listener.subscription
  listener.subscription = listening
  listener.candidate = undefined
  if (previous !== undefined) listener.runFork(Scope.close(previous.scope, Exit.void))
}

/** Subscribes to the heartbeats (again); a failure is logged and retried at the next check. @internal */
export const subscribe = (listener: Listener): Effect.Effect<void> =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(listener.layerScope, ExecutionStrategy.sequential)
    const listening: Listening = { scope }
    const deliver = (frame: Envelope): void => {
      listener.heardAt = listener.sender.now()
      if (listener.candidate === listening) promote(listener, listening)
      onFrame(listener, frame)
    }
    const exit = yield* Effect.exit(Scope.extend(listener.sender.transport.subscribe(subject, deliver), scope))
    if (Exit.isFailure(exit)) {
      yield* Scope.close(scope, Exit.void)
      return yield* Effect.logWarning(`discovery: cannot subscribe to heartbeats, retrying every period`, exit.cause)
    }
    listener.listeningSince = listener.sender.now()
    if (listener.subscription === undefined) {
      listener.subscription = listening
      return
    }
    // a resubscription: an unheard earlier candidate goes, the one in use stays until this is heard
    const stale = listener.candidate
    listener.candidate = listening
    if (stale !== undefined) yield* Scope.close(stale.scope, Exit.void)
    // our own heartbeat is the first frame it can hear
    yield* beatAll(listener.sender)
  })

/** Deaf: nothing heard, not even our own heartbeat, for `deafAfter` periods (any frame proves it alive). */
const isDeaf = (listener: Listener, at: number): boolean => {
  let deaf = listener.subscription === undefined
  const limit = deafAfter * listener.sender.table.config.periodMillis
  for (const local of listener.sender.table.locals.values()) {
    if (at - Math.max(local.lastEcho, listener.heardAt, listener.listeningSince) >= limit) deaf = true
  }
  return deaf
}

/** The periodic membership check: sweep the table, resubscribe when deaf. @internal */
export const check = (listener: Listener): Effect.Effect<void> =>
  Effect.suspend(() => {
    // while our connection is down we hear no one: silence proves nothing about the others,
    // who stay members (routing to a kind known a moment ago gives NoAvailableNode, not
    // ActorNotFound), and resubscribing could not help
    if (listener.sender.transport.isConnected?.() === false) return Effect.void
    const at = listener.sender.now()
    // a check that runs a period late found the event loop busy (a flood to drain, a long
    // callback): the frames of that time wait in the socket, so the silence is not held
    // against anyone (nor against our own subscription)
    if (at - listener.checkDue > listener.sender.table.config.periodMillis) listener.listeningSince = at
    sweep(listener.sender.table, at, listener.listeningSince)
    return isDeaf(listener, at)
      ? Effect.zipRight(
        Effect.logWarning("discovery: no heartbeat (not even our own) was heard lately, resubscribing"),
        subscribe(listener)
      )
      : Effect.void
  })
