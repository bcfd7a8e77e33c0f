/**
 * The caller's side of a streamed reply: the stream of an actor or service hosted here (through
 * an in-process outbox), or of a remote one (a `PendingStream` that grants its producer credit).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { Envelope } from "../../actors/ActorSystem.ts"
import { type AckFrame, ProtocolVersion } from "../../schema/Envelope.ts"
import { StreamError } from "../../schema/Errors.ts"
import { forget, PendingStream, pendingFull, requestFrame, timedOut, timeoutOf } from "./caller.ts"
import { uploadPump } from "./callerUpload.ts"
import { type EntityManager, makeJob } from "./entity.ts"
import { watchIdle } from "./idle.ts"
import { type NodeState, send, sendInterrupt } from "./nodeState.ts"
import { rpcCodec } from "./rpcCodec.ts"
import { Inbox, Outbox, pump, toStream, WINDOW } from "./streams.ts"
import * as Subjects from "../../layers/internal/subjects.ts"

const brokenStream = (envelope: Envelope) => (reason: string) =>
  new StreamError({ kind: envelope.definition.kind, id: envelope.id, tag: envelope.tag, reason })

/**
 * The streamed reply of an actor or service hosted here.
 *
 * @internal
 */
export const streamLocal = (
  state: NodeState,
  manager: EntityManager,
  envelope: Envelope
): Effect.Effect<Stream.Stream<unknown, unknown>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { deadlines } = state
    const timeoutMillis = timeoutOf(state, envelope)
    const startedAt = deadlines.now()
    const inbox: Inbox = new Inbox(
      WINDOW,
      (credit) => outbox.grant(credit),
      Either.right,
      brokenStream(envelope),
      () => deadlines.now()
    )
    const outbox = new Outbox(WINDOW, (seq, items) => inbox.offer(seq, items))
    const job = makeJob(envelope.tag, envelope.payload, envelope.headers ?? {}, (exit) => {
      stopWatching()
      if (exit._tag === "Success") inbox.end(exit.value as number)
      else inbox.fail(exit.error, true)
    })
    job.consume = (result) => pump(toStream(result), outbox)
    const stopWatching = watchIdle(deadlines, inbox, timeoutMillis, () =>
      manager.unsafeCancel(job, () =>
        inbox.fail(timedOut(state, envelope, startedAt))))
    manager.deliver(envelope.id, job)
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        stopWatching()
        return job.state === "done" ? Effect.void : manager.cancel(job)
      })
    )
    return inbox.stream
  })

/**
 * A streamed reply requested over the transport, received in a `PendingStream`.
 *
 * @internal
 */
export const streamRemote = (
  state: NodeState,
  subject: string,
  target: string | undefined,
  direct: string,
  envelope: Envelope
): Effect.Effect<Stream.Stream<unknown, unknown>, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const kind = envelope.definition.kind
    const full = pendingFull(state, envelope)
    if (full !== undefined) return yield* full
    const requestId = ++state.nextRequestId
    const frame = requestFrame(state, envelope, requestId, false, true)
    if (Either.isLeft(frame)) return yield* frame.left
    const rpc = envelope.definition.rpcs.get(envelope.tag)!
    const codec = rpcCodec(kind, rpc)
    const inbox = new Inbox(
      WINDOW,
      (credit) => {
        if (entry.producer === undefined) return
        const ack: AckFrame = { _tag: "Ack", v: ProtocolVersion, source: state.nodeId, requestId, credit }
        send(state, Subjects.node(entry.producer), ack)
      },
      state.zeroCopy ? Either.right : codec.items!.decode,
      brokenStream(envelope),
      () => state.deadlines.now()
    )
    const entry = new PendingStream(state, requestId, envelope, target, inbox)
    state.pending.set(requestId, entry)
    if (Number.isFinite(entry.timeoutMillis)) entry.deadline = state.deadlines.add(entry.timeoutMillis, entry)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        if (forget(state, entry)) sendInterrupt(state, kind, requestId)
      })
    )
    if (codec.upload !== undefined && !state.zeroCopy) {
      yield* Effect.forkScoped(uploadPump(state, requestId, envelope, codec))
    }
    const error = state.transport.unsafePublish(subject, frame.right, {
      replyTo: state.noRespondersPrefix + requestId,
      fragmentTo: direct
    })
    if (error !== undefined) return yield* error
    return inbox.stream
  })
