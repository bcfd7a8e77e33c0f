/**
 * The frames' plain forms, and what a decoded frame must satisfy before anything downstream
 * sees it.
 *
 * The hot frames (requests, plain replies, interrupts, events, chunks, items, sealed frames)
 * travel positionally, as arrays: no field names on the wire, no `Frame` schema on encode, a
 * check field by field on decode. Every other frame travels as its schema-encoded object (read
 * back in `objectFrames.ts`).
 *
 *   request    ["Q", v, source, requestId, kind, id, tag, headers | 0, flags, hops, body?]
 *   reply      ["X", v, source, requestId, outcome, value?]   outcome: 0 success, 1 failure
 *   interrupt  ["I", v, source, requestId]
 *   event      ["E", v, source, subject, headers | 0, body?]
 *   chunk      ["C", v, source, messageId, seq, last (0 | 1), bytes]
 *   items      ["T", v, source, requestId, seq, flags, items, failure?]   flags: 1 upload, 2 end
 *   sealed     ["S", v, source, mode, key, counter, subject | 0, body, sig?]
 *
 * `flags`: 1 = one-way; 2 = no body (an absent body is not the same as `null`); 4 = the caller
 * expects a streamed reply.
 *
 * Every identifier that can become part of a subject is one subject token (`source`: no space,
 * control character, dot or wildcard; `kind`, a heartbeat's name and kinds: `Subject.isToken`); numbers that count or name things are whole and in range
 * (request ids, sequence numbers, credit, hops, flags, modes, keys, counters); a subject is
 * concrete. A frame that breaks any of it is malformed, whatever its codec.
 *
 * @internal
 */
import { type Frame, type ItemsFrame, ProtocolVersion } from "../../schema/Envelope.ts"
import { isConcreteSubject, isSubjectSafe, isToken } from "../Subject.ts"

const REQUEST = "Q"
const REPLY = "X"
const INTERRUPT = "I"
const EVENT = "E"
const CHUNK = "C"
const ITEMS = "T"
const SEALED = "S"
/** @internal the flags of an `Items` frame, in its positional and binary layouts */
export const UPLOAD = 1
/** @internal */
export const END = 2
const ONE_WAY = 1
const NO_BODY = 2
const STREAM = 4
const EMPTY_HEADERS: Readonly<Record<string, string>> = Object.freeze({})

/**
 * @internal A frame's `source`: one subject token of any characters a subject can carry. It
 * cannot break a subject; where one is built from it, the node checks the token grammar
 * (`Subject.isToken`).
 */
export const isSource = isSubjectSafe

/** @internal a request id, message id, sequence number, credit or counter: a whole number >= 0 */
export const isCount = (u: unknown): u is number => typeof u === "number" && Number.isSafeInteger(u) && u >= 0

/** @internal a whole number from 0 to `max` */
export const isSmall = (u: unknown, max: number): u is number =>
  typeof u === "number" && Number.isInteger(u) && u >= 0 && u <= max

/** @internal a whole number that fits 32 bits */
export const isUint32 = (u: unknown): u is number => isSmall(u, 0xffffffff)

/** @internal the most kinds one heartbeat may announce */
export const MAX_KINDS = 4096

/** the longest incarnation, address or header a frame may carry */
const MAX_TEXT = 4096

/** the most headers one frame may carry */
const MAX_HEADERS = 64

/** @internal a string of at most `MAX_TEXT` characters */
export const isText = (u: unknown): u is string => typeof u === "string" && u.length <= MAX_TEXT

/** @internal a non-null object */
export const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

/** @internal a plain record of at most `MAX_HEADERS` string values (own keys only: nothing inherited is read) */
export const isHeaders = (u: unknown): u is Record<string, string> => {
  if (!isRecord(u) || Array.isArray(u) || u instanceof Uint8Array) return false
  let count = 0
  for (const key in u) {
    if (!Object.hasOwn(u, key)) return false
    if (++count > MAX_HEADERS || key.length > MAX_TEXT || !isText(u[key])) return false
  }
  return true
}

const headersOrZero = (headers: Readonly<Record<string, string>>): unknown => {
  for (const _ in headers) return headers
  return 0
}

/** @internal the positional form of a hot frame; `undefined` for a frame that travels as an object */
export const toPositional = (frame: Frame): ReadonlyArray<unknown> | undefined => {
  switch (frame._tag) {
    case "Request": {
      const headers = headersOrZero(frame.headers)
      const flags = (frame.oneWay === true ? ONE_WAY : 0) | (frame.body === undefined ? NO_BODY : 0) |
        (frame.stream === true ? STREAM : 0)
      // each form written whole: a `push` onto a literal would grow its backing store to three
      // times its length, on every request
      return frame.body === undefined
        ? [
          REQUEST,
          frame.v,
          frame.source,
          frame.requestId,
          frame.kind,
          frame.id,
          frame.tag,
          headers,
          flags,
          frame.hops ?? 0
        ]
        : [
          REQUEST,
          frame.v,
          frame.source,
          frame.requestId,
          frame.kind,
          frame.id,
          frame.tag,
          headers,
          flags,
          frame.hops ?? 0,
          frame.body
        ]
    }
    case "Exit": {
      const exit = frame.exit
      if (exit._tag === "Error") return undefined
      const value = exit._tag === "Success" ? exit.value : exit.error
      const outcome = exit._tag === "Success" ? 0 : 1
      return value === undefined
        ? [REPLY, frame.v, frame.source, frame.requestId, outcome]
        : [REPLY, frame.v, frame.source, frame.requestId, outcome, value]
    }
    case "Interrupt":
      return [INTERRUPT, frame.v, frame.source, frame.requestId]
    case "Chunk":
      return [CHUNK, frame.v, frame.source, frame.requestId, frame.seq, frame.last ? 1 : 0, frame.body]
    case "Items": {
      const flags = (frame.upload === true ? UPLOAD : 0) | (frame.end === true ? END : 0)
      const head: Array<unknown> = [ITEMS, frame.v, frame.source, frame.requestId, frame.seq, flags, frame.items]
      if (frame.failure !== undefined) head.push(frame.failure)
      return head
    }
    case "Event": {
      const head: Array<unknown> = [EVENT, frame.v, frame.source, frame.subject, headersOrZero(frame.headers)]
      if (frame.body !== undefined) head.push(frame.body)
      return head
    }
    case "Sealed": {
      const head: Array<unknown> = [
        SEALED,
        frame.v,
        frame.source,
        frame.mode,
        frame.key,
        frame.counter,
        frame.subject ?? 0,
        frame.body
      ]
      if (frame.sig !== undefined) head.push(frame.sig)
      return head
    }
    default:
      return undefined
  }
}

/** @internal why a decoded array is not a frame (a constant: no message is built on the drop path) */
export type Problem = string

const fromSealed = (u: ReadonlyArray<unknown>, source: string): Frame | Problem => {
  const [, v, , mode, key, counter, subject, body, sig] = u
  if (
    !isSmall(mode, 7) || !isUint32(key) || !isCount(counter) || (subject !== 0 && !isConcreteSubject(subject)) ||
    !(body instanceof Uint8Array) || !(u.length === 8 || (u.length === 9 && sig instanceof Uint8Array))
  ) return "malformed Sealed frame"
  return {
    _tag: "Sealed",
    v: v as typeof ProtocolVersion,
    source,
    mode,
    key,
    counter,
    ...(subject === 0 ? {} : { subject: subject as string }),
    body,
    ...(u.length === 9 ? { sig: sig as Uint8Array } : {})
  }
}

const fromRequest = (u: ReadonlyArray<unknown>, source: string, requestId: number): Frame | Problem => {
  const [, , , , kind, id, rpcTag, headers, flags, hops] = u
  if (
    !isToken(kind) || typeof id !== "string" || typeof rpcTag !== "string" || !isSmall(flags, 7) ||
    !isSmall(hops, 255) || (headers !== 0 && !isHeaders(headers)) ||
    u.length !== ((flags & NO_BODY) !== 0 ? 10 : 11)
  ) return "malformed Request frame"
  return {
    _tag: "Request",
    v: ProtocolVersion,
    source,
    requestId,
    kind,
    id,
    tag: rpcTag,
    headers: headers === 0 ? EMPTY_HEADERS : headers,
    body: u[10],
    ...((flags & ONE_WAY) !== 0 ? { oneWay: true } : {}),
    ...((flags & STREAM) !== 0 ? { stream: true } : {}),
    ...(hops > 0 ? { hops } : {})
  }
}

/** @internal an `Items` frame from its fields as they travel (`flags`: `UPLOAD`, `END`) */
export const itemsFrame = (
  source: string,
  requestId: number,
  seq: number,
  items: ReadonlyArray<unknown>,
  flags: number,
  failure: string | undefined
): ItemsFrame => ({
  _tag: "Items",
  v: ProtocolVersion,
  source,
  requestId,
  seq,
  items,
  ...((flags & UPLOAD) !== 0 ? { upload: true } : {}),
  ...((flags & END) !== 0 ? { end: true } : {}),
  ...(failure !== undefined ? { failure } : {})
})

const fromItems = (u: ReadonlyArray<unknown>, source: string, requestId: number): Frame | Problem => {
  const [, , , , seq, flags, items, failure] = u
  if (
    !isCount(seq) || !isSmall(flags, 3) || !Array.isArray(items) ||
    (u.length === 8 ? !isText(failure) : u.length !== 7)
  ) return "malformed Items frame"
  return itemsFrame(source, requestId, seq, items, flags, typeof failure === "string" ? failure : undefined)
}

/** @internal the frame in the positional form `u`, or why it is not one */
export const fromPositional = (u: ReadonlyArray<unknown>): Frame | Problem => {
  const [tag, v, source] = u
  if (typeof tag !== "string") return "a frame whose tag is not a string"
  if (v !== ProtocolVersion) return "a frame of another protocol version"
  if (!isSource(source)) return "a frame whose source is not one subject token"
  if (tag === EVENT) {
    const [, , , subject, headers] = u
    return isConcreteSubject(subject) && (headers === 0 || isHeaders(headers)) && u.length >= 5 && u.length <= 6
      ? {
        _tag: "Event",
        v,
        source,
        subject,
        headers: headers === 0 ? EMPTY_HEADERS : headers,
        body: u[5]
      }
      : "malformed Event frame"
  }
  if (tag === SEALED) return fromSealed(u, source)
  const requestId = u[3]
  if (!isCount(requestId)) return "a frame whose request id is not a whole number >= 0"
  switch (tag) {
    case REQUEST:
      return fromRequest(u, source, requestId)
    case REPLY: {
      const outcome = u[4]
      if ((outcome !== 0 && outcome !== 1) || u.length > 6) return "malformed Exit frame"
      return {
        _tag: "Exit",
        v,
        source,
        requestId,
        exit: outcome === 0 ? { _tag: "Success", value: u[5] } : { _tag: "Failure", error: u[5] }
      }
    }
    case INTERRUPT:
      return u.length === 4 ? { _tag: "Interrupt", v, source, requestId } : "malformed Interrupt frame"
    case CHUNK: {
      const [, , , , seq, last, body] = u
      return isCount(seq) && (last === 0 || last === 1) && body instanceof Uint8Array && u.length === 7
        ? { _tag: "Chunk", v, source, requestId, seq, last: last === 1, body }
        : "malformed Chunk frame"
    }
    case ITEMS:
      return fromItems(u, source, requestId)
  }
  return "a frame of an unknown tag"
}
