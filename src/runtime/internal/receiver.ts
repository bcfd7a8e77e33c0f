/**
 * The receiving side of the node: a request arriving for a hosted kind is checked, passed on
 * to its actor's owner if placement moved it (watched for "no responders"), decoded and
 * delivered to its manager; its reply (one `Exit`, or a streamed reply credited by the
 * consumer) goes back to the caller. Failed tells are logged, at most once a second.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Subject from "../../layers/Subject.ts"
import { malformedFrames } from "../../layers/Transport.ts"
import {
  type AckFrame,
  type ExitFrame,
  type InterruptFrame,
  type ItemsFrame,
  ProtocolVersion,
  type RequestFrame,
  type WireExit
} from "../../schema/Envelope.ts"
import { ActorNotFound, StreamError, type TransportError } from "../../schema/Errors.ts"
import { type EntityManager, type Job, type JobExit, makeJob } from "./entity.ts"
import { proveUnreachable } from "./liveness.ts"
import { type InboundUpload, type NodeState, UNREACHABLE_HEADER } from "./nodeState.ts"
import { type ItemCodec, type RpcCodec, rpcCodec } from "./rpcCodec.ts"
import { ownerOf } from "./routing.ts"
import { receiveUpload } from "./receiverUpload.ts"
import { Outbox, pump, toStream, WINDOW } from "./streams.ts"
import * as Subjects from "../../layers/internal/subjects.ts"

/** how long a forwarded request is watched for "no responders" (which NATS sends at once) */
const FORWARD_WATCH_MILLIS = 2_000
const MAX_TRACKED_FORWARDS = 10_000
/** how often a request may be passed on to the owner of its actor */
const MAX_FORWARDS = 2

/** an actor id or an Rpc tag off the wire, as it may appear in a log line (one line, bounded) */
const printable = (text: string): string =>
  text.length <= 200 && /^[\x20-\x7e]*$/.test(text) ? text : JSON.stringify(text.slice(0, 200))

const encodeExit = (state: NodeState, manager: EntityManager, tag: string, exit: JobExit): WireExit => {
  if (state.zeroCopy || exit._tag === "Error") return exit
  const codec = rpcCodec(manager.kind, manager.entity.definition.rpcs.get(tag)!)
  const encoded = exit._tag === "Success" ? codec.encodeSuccess(exit.value) : codec.encodeError(exit.error)
  if (Either.isLeft(encoded)) return { _tag: "Error", error: encoded.left }
  return exit._tag === "Success"
    ? { _tag: "Success", value: encoded.right }
    : { _tag: "Failure", error: encoded.right }
}

/**
 * The `Exit` frame that settles request `requestId` of its caller.
 *
 * @internal
 */
export const exitFrame = (state: NodeState, requestId: number, exit: WireExit): ExitFrame => ({
  _tag: "Exit",
  v: ProtocolVersion,
  source: state.nodeId,
  requestId,
  exit
})

/** failed tells are logged at most once a second (anyone on the broker can send tells) */
const logFailedTell = (state: NodeState, frame: RequestFrame, exit: WireExit): void =>
  state.failedTell((count) =>
    state.fork(Effect.logWarning(
      `tell ${frame.kind}/${printable(frame.id)}.${printable(frame.tag)} from ${printable(frame.source)} failed${
        count > 1 ? ` (and ${count - 1} more since the last report)` : ""
      }`,
      exit
    ))
  )

/**
 * Sends the outcome of `frame` to its caller (a tell's failure is only logged).
 *
 * @internal
 */
export const replyTo = (state: NodeState, frame: RequestFrame, exit: WireExit): void => {
  if (frame.oneWay === true) {
    if (exit._tag !== "Success") logFailedTell(state, frame, exit)
    return
  }
  // the codec let only a subject token through; this guards the subject we build from it
  if (!Subject.isToken(frame.source)) return malformedFrames.unsafeUpdate(1, [])
  const { transport } = state
  const subject = Subjects.node(frame.source)
  const out = exitFrame(state, frame.requestId, exit)
  const error = transport.unsafePublish(subject, out, { fragmentTo: subject })
  if (error === undefined) return
  // the reply cannot leave (over the size limit, not encodable): the caller gets that error,
  // in a frame that fits, instead of waiting for its timeout
  const told = (exit._tag !== "Error" || exit.error !== error) &&
    transport.unsafePublish(subject, { ...out, exit: { _tag: "Error", error } }, { fragmentTo: subject }) ===
      undefined
  state.fork(Effect.logWarning(
    told
      ? `the reply of ${frame.kind}/${printable(frame.id)}.${
        printable(frame.tag)
      } to ${frame.source} could not be sent; the caller was told why`
      : `could not publish Exit frame to ${subject}`,
    error
  ))
}

/** placement: the owner may have changed since the sender looked; pass it on (bounded) */
const forwardIfMoved = (state: NodeState, frame: RequestFrame): boolean => {
  const target = ownerOf(state, frame.kind, frame.id)
  const hops = frame.hops ?? 0
  if (target === undefined || target === state.nodeId || hops >= MAX_FORWARDS) return false
  const forwardedFrame: RequestFrame = { ...frame, hops: hops + 1 }
  let watch: string | undefined
  if (frame.oneWay !== true && state.forwarded.size < MAX_TRACKED_FORWARDS) {
    // "no responders" comes back to us, the publisher: then we handle it ourselves
    const key = `${frame.source}.${frame.requestId}`
    const deadline = state.deadlines.add(FORWARD_WATCH_MILLIS, () => state.forwarded.delete(key))
    state.forwarded.set(key, { frame: forwardedFrame, target, deadline })
    watch = `${state.forwardPrefix}${key}`
  }
  const error = state.transport.unsafePublish(
    Subjects.node(target),
    forwardedFrame,
    watch ? { replyTo: watch } : undefined
  )
  if (error !== undefined) replyTo(state, frame, { _tag: "Error", error })
  return true
}

/**
 * "No responders" for a request we passed on: its target is gone, and we route it again.
 *
 * @internal
 */
export const onForwardUnanswered = (state: NodeState, subject: string): void => {
  const key = subject.slice(state.forwardPrefix.length)
  const entry = state.forwarded.get(key)
  if (entry === undefined) return
  state.forwarded.delete(key)
  state.deadlines.remove(entry.deadline)
  proveUnreachable(state, entry.target)
  onRequest(state, entry.frame) // routed again, without the node that is gone
}

/**
 * A caller that knows the Rpc only by name (the CLI, a gateway route by name) may expect the
 * wrong kind of reply: it gets a StreamError saying so, not a frame count or a stream that breaks
 * on its first frame. A one-way message to a streaming Rpc is refused the same way (nothing would
 * read the stream; a typed client cannot send one).
 */
const mismatchedReply = (frame: RequestFrame, codec: RpcCodec): StreamError | undefined =>
  (frame.stream === true) === (codec.items !== undefined) ? undefined : new StreamError({
    kind: frame.kind,
    id: frame.id,
    tag: frame.tag,
    reason: codec.items !== undefined
      ? "this Rpc replies with a stream: call it as a stream"
      : "this Rpc replies once: call it with ask, not as a stream"
  })

/** at most this many nodes named in one `troupe-unreachable` header are taken */
const MAX_UNREACHABLE_NAMED = 4

/**
 * The caller proved these nodes gone (space-separated): claims about nodes we know of, never
 * names that would grow our tables, and a bounded number of them.
 */
const takeUnreachable = (state: NodeState, header: string): void => {
  if (header.length > MAX_UNREACHABLE_NAMED * (Subject.MAX_TOKEN_LENGTH + 1)) return
  const members = state.discovery.unsafeState().members
  for (const node of header.split(" ", MAX_UNREACHABLE_NAMED)) {
    if (node !== state.nodeId && Subject.isToken(node) && members.some((m) => m.nodeId === node)) {
      proveUnreachable(state, node)
    }
  }
}

/**
 * A request arriving for a kind hosted here (or for an actor this node no longer owns).
 *
 * @internal
 */
export const onRequest = (state: NodeState, frame: RequestFrame): void => {
  // the codec let only subject tokens through; these become subjects below
  if (!Subject.isToken(frame.source) || !Subject.isToken(frame.kind)) return malformedFrames.unsafeUpdate(1, [])
  const unreachable = frame.headers[UNREACHABLE_HEADER]
  if (unreachable !== undefined) takeUnreachable(state, unreachable)
  const manager = state.managers.get(frame.kind)
  if (manager === undefined || state.closed) {
    return replyTo(state, frame, {
      _tag: "Error",
      error: new ActorNotFound({ kind: frame.kind, id: frame.id, node: state.nodeId })
    })
  }
  if (manager.isActor && forwardIfMoved(state, frame)) return
  const rpc = manager.entity.definition.rpcs.get(frame.tag)
  const codec = rpc === undefined ? undefined : rpcCodec(frame.kind, rpc)
  const mismatch = codec === undefined ? undefined : mismatchedReply(frame, codec)
  if (mismatch !== undefined) return replyTo(state, frame, { _tag: "Error", error: mismatch })
  deliver(state, frame, manager, codec)
}

/** decodes the request (its streamed field, if any, becomes an upload received) and delivers it */
const deliver = (state: NodeState, frame: RequestFrame, manager: EntityManager, codec: RpcCodec | undefined): void => {
  const key = `${frame.source}:${frame.requestId}`
  let payload = frame.body
  let upload: InboundUpload | undefined
  if (!state.zeroCopy && codec !== undefined) {
    let body = frame.body
    if (codec.upload !== undefined && frame.oneWay !== true) {
      upload = receiveUpload(state, frame, key, codec.upload.decode)
      body = { ...(body as object), [codec.upload.field]: upload.inbox.stream }
    }
    const decoded = codec.decodePayload(body)
    if (Either.isLeft(decoded)) {
      upload?.close()
      return replyTo(state, frame, { _tag: "Error", error: decoded.left })
    }
    payload = decoded.right
  }
  let outbox: Outbox | undefined
  /** what this request holds, released once its job is done or cancelled */
  const release = () => {
    state.inbound.delete(key)
    upload?.close()
    if (outbox !== undefined) state.outbound.delete(key)
  }
  const job = makeJob(frame.tag, payload, frame.headers, (exit) => {
    release()
    // the stream could not be sent: that is the transport's error, not the handler's
    if (
      outbox !== undefined && exit._tag === "Failure" && outbox.error !== undefined && exit.error === outbox.error
    ) {
      return replyTo(state, frame, { _tag: "Error", error: outbox.error as TransportError })
    }
    replyTo(state, frame, encodeExit(state, manager, frame.tag, exit))
  }, !state.zeroCopy)
  // the caller gave up (an Interrupt, or its node went away): no reply, but the same release
  job.onCancelled = release
  if (codec?.items !== undefined && frame.oneWay !== true) {
    outbox = streamReply(state, frame, key, codec.items, manager, job)
  }
  if (frame.oneWay !== true) state.inbound.set(key, { manager, job })
  manager.deliver(frame.id, job)
}

/** the producer's side of a streamed reply: `Items` frames to the consumer, as it grants credit */
const streamReply = (
  state: NodeState,
  frame: RequestFrame,
  key: string,
  itemsCodec: ItemCodec,
  manager: EntityManager,
  job: Job
): Outbox => {
  const subject = Subjects.node(frame.source)
  // the consumer's reply slot: a frame too large for the consumer fails its stream there
  const itemsOptions = { fragmentTo: subject, replyTo: Subjects.replySlot(frame.source, frame.requestId) }
  const producer = new Outbox(WINDOW, (seq, items) => {
    let body: unknown = items
    if (!state.zeroCopy) {
      const encoded = itemsCodec.encode(items)
      if (Either.isLeft(encoded)) return encoded.left
      body = encoded.right
    }
    const out: ItemsFrame = {
      _tag: "Items",
      v: ProtocolVersion,
      source: state.nodeId,
      requestId: frame.requestId,
      seq,
      items: body as ReadonlyArray<unknown>
    }
    return state.transport.unsafePublish(subject, out, itemsOptions)
  })
  state.outbound.set(key, { outbox: producer, consumer: frame.source, manager, job })
  job.consume = (result) => pump(toStream(result), producer)
  return producer
}

/**
 * Credit from the consumer of a streamed reply this node produces.
 *
 * @internal
 */
export const onStreamAck = (state: NodeState, frame: AckFrame): void => {
  state.outbound.get(`${frame.source}:${frame.requestId}`)?.outbox.grant(frame.credit)
}

/**
 * The caller gave up on a request this node handles.
 *
 * @internal
 */
export const onInterrupt = (state: NodeState, frame: InterruptFrame): void => {
  const key = `${frame.source}:${frame.requestId}`
  const entry = state.inbound.get(key)
  if (entry === undefined) return
  state.inbound.delete(key)
  state.fork(entry.manager.cancel(entry.job))
}
