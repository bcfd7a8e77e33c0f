/**
 * The caller's side of the node: the entries of the pending table (`PendingAsk`,
 * `PendingStream`), the request frame, ask (local and remote) and tell, ask timeouts, the wait
 * for a reconnect, and the replies that settle pending asks.
 *
 * @internal
 */
import type * as Rpc from "@effect/rpc/Rpc"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type { Envelope } from "../../actors/ActorSystem.ts"
import {
  type ExitFrame,
  type ItemsFrame,
  ProtocolVersion,
  type RequestFrame,
  type WireExit
} from "../../schema/Envelope.ts"
import { AskTimeout, type EncodeError, MailboxFull, TransportError } from "../../schema/Errors.ts"
import type { Deadline } from "./deadlines.ts"
import { type EntityManager, type JobExit, makeJob } from "./entity.ts"
import * as Metrics from "./metrics.ts"
import { type NodeState, type PendingCall, sendInterrupt } from "./nodeState.ts"
import { rpcCodec } from "./rpcCodec.ts"
import type { Inbox } from "./streams.ts"

/**
 * The timeout of an ask started at `startedAt` (Clock millis).
 *
 * @internal
 */
export const timedOut = (state: NodeState, envelope: Envelope, startedAt: number): AskTimeout =>
  new AskTimeout({
    kind: envelope.definition.kind,
    id: envelope.id,
    tag: envelope.tag,
    elapsedMillis: state.deadlines.now() - startedAt
  })

/** @internal */
export const timeoutOf = (state: NodeState, envelope: Envelope): number =>
  envelope.timeout === undefined ? state.askTimeoutMillis : Duration.toMillis(envelope.timeout)

/**
 * Removes `entry` from the pending table and its deadline; `true` if it was still there.
 *
 * @internal
 */
export const forget = (state: NodeState, entry: PendingCall): boolean => {
  if (entry.deadline !== undefined) state.deadlines.remove(entry.deadline)
  return state.pending.delete(entry.requestId)
}

/**
 * The pending table's bound, as the error of a call that finds it full.
 *
 * @internal
 */
export const pendingFull = (state: NodeState, envelope: Envelope): MailboxFull | undefined =>
  state.pending.size >= state.config.maxPendingAsks
    ? new MailboxFull({
      kind: envelope.definition.kind,
      id: envelope.id,
      capacity: state.config.maxPendingAsks,
      queue: "pending-requests"
    })
    : undefined

type Target = string | undefined
type Resume = (exit: Exit.Exit<unknown, unknown>) => void

/** what every entry of the pending table knows of its call */
abstract class PendingEntry {
  deadline: Deadline | undefined = undefined
  readonly kind: string
  readonly id: string
  readonly rpc: Rpc.AnyWithProps
  /** Clock millis when the call started */
  readonly startedAt: number
  constructor(
    readonly state: NodeState,
    readonly requestId: number,
    readonly envelope: Envelope,
    readonly target: string | undefined
  ) {
    this.startedAt = state.deadlines.now()
    this.kind = envelope.definition.kind
    this.id = envelope.id
    this.rpc = envelope.definition.rpcs.get(envelope.tag)!
  }
}

/** one remote ask waiting for its reply; methods, not per-call closures, on the hot path */
class PendingAsk extends PendingEntry implements PendingCall {
  readonly isStream = false
  readonly producer = undefined
  constructor(state: NodeState, requestId: number, envelope: Envelope, target: Target, readonly resume: Resume) {
    super(state, requestId, envelope, target)
  }
  onDeadline(): void {
    this.deadline = undefined
    if (!this.state.pending.delete(this.requestId)) return
    sendInterrupt(this.state, this.kind, this.requestId)
    this.resume(Exit.fail(timedOut(this.state, this.envelope, this.startedAt)))
  }
  get cancel(): Effect.Effect<void> {
    return Effect.sync(() => {
      if (forget(this.state, this)) sendInterrupt(this.state, this.kind, this.requestId)
    })
  }
}

/**
 * A streamed reply being received: idle (not slow) producers time out.
 *
 * @internal
 */
export class PendingStream extends PendingEntry implements PendingCall {
  readonly isStream = true
  /** the node producing the stream, known from its first frame */
  producer: string | undefined = undefined
  /** how long the producer may stay silent while the consumer waits */
  readonly timeoutMillis: number
  constructor(state: NodeState, requestId: number, envelope: Envelope, target: Target, readonly inbox: Inbox) {
    super(state, requestId, envelope, target)
    this.timeoutMillis = timeoutOf(state, envelope)
  }
  resume(exit: Exit.Exit<unknown, unknown>): void {
    if (Exit.isFailure(exit)) {
      this.inbox.fail(Option.getOrElse(Cause.failureOption(exit.cause), () => Cause.squash(exit.cause)))
    } else this.inbox.end()
  }
  onExit(exit: WireExit): void {
    if (exit._tag === "Success") return this.inbox.end(exit.value as number)
    // the producer's own end: the elements it sent before it come first
    if (exit._tag === "Error" || this.state.zeroCopy) return this.inbox.fail(exit.error, true)
    const decoded = rpcCodec(this.kind, this.rpc).decodeError(exit.error)
    this.inbox.fail(Either.isLeft(decoded) ? decoded.left : decoded.right, true)
  }
  onDeadline(): void {
    this.deadline = undefined
    const { deadlines, pending } = this.state
    if (!pending.has(this.requestId)) return
    const idle = deadlines.now() - this.inbox.touched
    if (this.inbox.buffered > 0 || idle < this.timeoutMillis) {
      // the consumer is slow, or the producer spoke lately: not a timeout
      this.deadline = deadlines.add(Math.max(1, this.timeoutMillis - idle), this)
      return
    }
    pending.delete(this.requestId)
    sendInterrupt(this.state, this.kind, this.requestId)
    this.inbox.fail(timedOut(this.state, this.envelope, this.startedAt))
  }
}

const jobExitToEffect = (exit: JobExit): Effect.Effect<unknown, unknown> =>
  exit._tag === "Success" ? Exit.succeed(exit.value) : Exit.fail(exit.error)

/**
 * An ask of an actor or service hosted here, without copying.
 *
 * @internal
 */
export const askLocal = (
  state: NodeState,
  manager: EntityManager,
  envelope: Envelope
): Effect.Effect<unknown, unknown> =>
  Effect.async<unknown, unknown>((callback) => {
    const { deadlines } = state
    const resume = Metrics.observeAsk(envelope.definition.kind, callback)
    const startedAt = deadlines.now()
    const timeoutMillis = timeoutOf(state, envelope)
    let deadline: Deadline | undefined
    const job = makeJob(envelope.tag, envelope.payload, envelope.headers ?? {}, (exit) => {
      if (deadline !== undefined) deadlines.remove(deadline)
      resume(jobExitToEffect(exit))
    })
    if (Number.isFinite(timeoutMillis)) {
      deadline = deadlines.add(timeoutMillis, () => {
        deadline = undefined
        manager.unsafeCancel(job, () => resume(Exit.fail(timedOut(state, envelope, startedAt))))
      })
    }
    manager.deliver(envelope.id, job)
    return Effect.suspend(() => {
      if (deadline !== undefined) deadlines.remove(deadline)
      return manager.cancel(job)
    })
  })

/** the headers of a request sent without any (shared: nothing writes to a frame's headers) */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({})

/**
 * The `Request` frame of `envelope` (its payload encoded unless the transport is zero-copy).
 *
 * @internal
 */
export const requestFrame = (
  state: NodeState,
  envelope: Envelope,
  requestId: number,
  oneWay: boolean,
  stream = false
): Either.Either<RequestFrame, EncodeError> => {
  const rpc = envelope.definition.rpcs.get(envelope.tag)!
  let body = envelope.payload
  if (!state.zeroCopy) {
    const codec = rpcCodec(envelope.definition.kind, rpc)
    const encoded = codec.encodePayload(envelope.payload)
    if (Either.isLeft(encoded)) return Either.left(encoded.left)
    body = encoded.right
    // a streamed field travels in `Items` frames after the request
    if (codec.upload !== undefined) body = { ...(body as object), [codec.upload.field]: null }
  }
  const frame: { -readonly [K in keyof RequestFrame]: RequestFrame[K] } = {
    _tag: "Request",
    v: ProtocolVersion,
    source: state.nodeId,
    requestId,
    kind: envelope.definition.kind,
    id: envelope.id,
    tag: envelope.tag,
    headers: envelope.headers ?? NO_HEADERS,
    body
  }
  if (oneWay) frame.oneWay = true
  if (stream) frame.stream = true
  return Either.right(frame)
}

/**
 * An ask sent over the transport, waiting in the pending table for its `Exit` frame.
 *
 * @internal
 */
export const askRemote = (
  state: NodeState,
  subject: string,
  target: string | undefined,
  direct: string,
  envelope: Envelope,
  presetRequestId?: number
): Effect.Effect<unknown, unknown> =>
  Effect.async<unknown, unknown>((callback) => {
    const resume = Metrics.observeAsk(envelope.definition.kind, callback)
    const full = pendingFull(state, envelope)
    if (full !== undefined) return resume(Exit.fail(full))
    const requestId = presetRequestId ?? ++state.nextRequestId
    const frame = requestFrame(state, envelope, requestId, false)
    if (Either.isLeft(frame)) return resume(Exit.fail(frame.left))
    const entry = new PendingAsk(state, requestId, envelope, target, resume)
    // the reply slot exists before the request leaves
    state.pending.set(requestId, entry)
    const timeoutMillis = timeoutOf(state, envelope)
    if (Number.isFinite(timeoutMillis)) entry.deadline = state.deadlines.add(timeoutMillis, entry)
    const error = state.transport.unsafePublish(subject, frame.right, {
      replyTo: state.noRespondersPrefix + requestId,
      fragmentTo: direct
    })
    if (error !== undefined) {
      forget(state, entry)
      return resume(Exit.fail(error))
    }
    return entry.cancel
  })

/**
 * While the transport is down, nothing published would leave: a new remote call waits for
 * the reconnect (bounded by the transport's `reconnectWait` and the call's own timeout) and
 * is routed again, or fails with `TransportError` "disconnected". Never a silent timeout.
 *
 * @internal
 */
export const afterReconnect = <A, E, R>(
  state: NodeState,
  envelope: Envelope,
  then: (envelope: Envelope) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | TransportError, R> => {
  const timeoutMillis = timeoutOf(state, envelope)
  const startedAt = state.deadlines.now()
  const waited = state.transport.awaitConnected === undefined
    ? Effect.fail(new TransportError({ reason: "disconnected" }))
    : state.transport.awaitConnected(timeoutMillis)
  return Effect.matchEffect(waited, {
    onFailure: (error) => {
      Metrics.askRejected(envelope.definition.kind)
      return Effect.fail(error)
    },
    onSuccess: () => {
      if (!Number.isFinite(timeoutMillis)) return then(envelope)
      const left = Math.max(1, timeoutMillis - (state.deadlines.now() - startedAt))
      return then({ ...envelope, timeout: Duration.millis(left) })
    }
  })
}

/**
 * The reply to one of our asks or streams: settles its pending entry.
 *
 * @internal
 */
export const onExit = (state: NodeState, frame: ExitFrame): void => {
  const entry = state.pending.get(frame.requestId)
  if (entry === undefined) return // timed out or interrupted meanwhile
  state.pending.delete(frame.requestId)
  if (entry.deadline !== undefined) state.deadlines.remove(entry.deadline)
  if (entry instanceof PendingStream) return entry.onExit(frame.exit)
  const exit = frame.exit
  let result: Exit.Exit<unknown, unknown>
  if (exit._tag === "Error") {
    result = Exit.fail(exit.error)
  } else if (state.zeroCopy) {
    result = exit._tag === "Success" ? Exit.succeed(exit.value) : Exit.fail(exit.error)
  } else {
    const codec = rpcCodec(entry.kind, (entry as PendingAsk).rpc)
    const decoded = exit._tag === "Success" ? codec.decodeSuccess(exit.value) : codec.decodeError(exit.error)
    result = Either.isLeft(decoded)
      ? Exit.fail(decoded.left)
      : exit._tag === "Success"
      ? Exit.succeed(decoded.right)
      : Exit.fail(decoded.right)
  }
  entry.resume(result)
}

/**
 * Elements of a streamed reply we consume: its first frame names the producer.
 *
 * @internal
 */
export const onStreamItems = (state: NodeState, frame: ItemsFrame): void => {
  const entry = state.pending.get(frame.requestId)
  if (!(entry instanceof PendingStream)) return
  entry.producer ??= frame.source
  if (entry.producer === frame.source) entry.inbox.offer(frame.seq, frame.items)
}
