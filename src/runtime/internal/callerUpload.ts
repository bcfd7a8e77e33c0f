/**
 * The caller's side of a streamed request (an upload): the streamed field of the payload is sent
 * as `Items` frames after the request, as the handler's node grants credit.
 *
 * @internal
 */
import type { Envelope } from "../../actors/ActorSystem.ts"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Stream from "effect/Stream"
import * as Subjects from "../../layers/internal/subjects.ts"
import { type AckFrame, type ItemsFrame, ProtocolVersion } from "../../schema/Envelope.ts"
import { type NodeState, type OutgoingUpload, send } from "./nodeState.ts"
import type { RpcCodec } from "./rpcCodec.ts"
import { Outbox, pump } from "./streams.ts"

/**
 * Sends the streamed field of request `requestId` as `Items` frames, as the handler grants credit.
 *
 * @internal
 */
export const uploadPump = (
  state: NodeState,
  requestId: number,
  envelope: Envelope,
  codec: RpcCodec
): Effect.Effect<void> => {
  const upload = codec.upload!
  const source = (envelope.payload as Record<string, unknown>)[upload.field] as Stream.Stream<unknown, unknown>
  const itemsFrame = (seq: number, items: ReadonlyArray<unknown>, end?: { failure?: string }): ItemsFrame => ({
    _tag: "Items",
    v: ProtocolVersion,
    source: state.nodeId,
    requestId,
    seq,
    items,
    upload: true,
    ...(end === undefined ? {} : { end: true }),
    ...(end?.failure === undefined ? {} : { failure: end.failure })
  })
  const sending: OutgoingUpload = {
    handler: undefined,
    outbox: new Outbox(0, (seq, items) => {
      const encoded = upload.encode(items)
      if (Either.isLeft(encoded)) return encoded.left
      // the outbox sends only once a grant named the handler
      const subject = Subjects.node(sending.handler!)
      // our reply slot: a frame too large for the handler's node fails this call there
      return state.transport.unsafePublish(subject, itemsFrame(seq, encoded.right as ReadonlyArray<unknown>), {
        fragmentTo: subject,
        replyTo: state.noRespondersPrefix + requestId
      })
    })
  }
  state.uploads.set(requestId, sending)
  return pump(source, sending.outbox).pipe(
    Effect.matchCauseEffect({
      onSuccess: (frames) =>
        // an upload that ended before any grant sent nothing, and has no handler to tell
        sending.handler === undefined
          ? Effect.void
          : Effect.sync(() => send(state, Subjects.node(sending.handler!), itemsFrame(frames, [], {}))),
      onFailure: (cause) =>
        Cause.isInterruptedOnly(cause) || sending.handler === undefined
          ? Effect.void
          : Effect.sync(() => {
            const error = Cause.squash(cause)
            const failure = error instanceof Error ? error.message : String(error)
            send(state, Subjects.node(sending.handler!), itemsFrame(sending.outbox.sent, [], { failure }))
          })
    }),
    Effect.ensuring(Effect.sync(() => state.uploads.delete(requestId)))
  )
}

/**
 * Credit for one of our uploads: its first grant names the handler's node.
 *
 * @internal
 */
export const onUploadAck = (state: NodeState, frame: AckFrame): void => {
  const upload = state.uploads.get(frame.requestId)
  if (upload === undefined) return
  upload.handler ??= frame.source
  if (upload.handler === frame.source) upload.outbox.grant(frame.credit)
}
