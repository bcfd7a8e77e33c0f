/**
 * The handler's side of a streamed request (an upload received): the elements the caller sends
 * in `Items` frames feed the handler's stream, and credit goes back as the handler pulls.
 *
 * @internal
 */
import type * as Either from "effect/Either"
import { type AckFrame, type ItemsFrame, ProtocolVersion, type RequestFrame } from "../../schema/Envelope.ts"
import { type DecodeError, StreamError } from "../../schema/Errors.ts"
import { watchIdle } from "./idle.ts"
import { type InboundUpload, type NodeState, send } from "./nodeState.ts"
import { Inbox, WINDOW } from "./streams.ts"
import * as Subjects from "../../layers/internal/subjects.ts"

/**
 * The handler's side of a streamed request: grants the caller credit as the handler pulls.
 *
 * @internal
 */
export const receiveUpload = (
  state: NodeState,
  frame: RequestFrame,
  key: string,
  decode: (items: ReadonlyArray<unknown>) => Either.Either<ReadonlyArray<unknown>, DecodeError>
): InboundUpload => {
  const broken = (reason: string) => new StreamError({ kind: frame.kind, id: frame.id, tag: frame.tag, reason })
  const grant = (credit: number) => {
    const ack: AckFrame = {
      _tag: "Ack",
      v: ProtocolVersion,
      source: state.nodeId,
      requestId: frame.requestId,
      credit,
      upload: true
    }
    send(state, Subjects.node(frame.source), ack)
  }
  const inbox = new Inbox(WINDOW, grant, decode, broken, () => state.deadlines.now())
  // a caller that goes silent (it died, or lost its connection) fails the handler's stream
  const stopWatching = watchIdle(
    state.deadlines,
    inbox,
    state.askTimeoutMillis,
    (idle) => inbox.fail(broken(`the caller ${frame.source} sent nothing for ${idle} ms`))
  )
  const upload: InboundUpload = {
    inbox,
    source: frame.source,
    broken,
    close: () => {
      stopWatching()
      if (state.inboundUploads.get(key) === upload) state.inboundUploads.delete(key)
      inbox.fail(broken("the handler finished"))
    }
  }
  state.inboundUploads.set(key, upload)
  grant(WINDOW)
  return upload
}

/**
 * Elements (or the end) of a streamed request this node handles.
 *
 * @internal
 */
export const onUploadItems = (state: NodeState, frame: ItemsFrame): void => {
  const upload = state.inboundUploads.get(`${frame.source}:${frame.requestId}`)
  if (upload === undefined) return
  if (frame.failure !== undefined) {
    return upload.inbox.fail(upload.broken(`the caller's stream failed: ${frame.failure}`))
  }
  return frame.end === true ? upload.inbox.end(frame.seq) : upload.inbox.offer(frame.seq, frame.items)
}
