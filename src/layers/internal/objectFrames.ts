/**
 * The object form of a frame: how a frame without a positional form (an `Exit` with a runtime
 * error, `Ack`, `Heartbeat`, `Handshake`) travels, and how any frame is read when it arrives as
 * an object. Field by field, like the positional forms (`frames.ts`), and only known fields are
 * read or copied: no schema runs on the drop path, except for the runtime error an `Exit`
 * carries.
 *
 * @internal
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import { type Frame, ProtocolVersion } from "../../schema/Envelope.ts"
import { TroupeError } from "../../schema/Errors.ts"
import { isConcreteSubject, isToken } from "../Subject.ts"
import { isCount, isHeaders, isRecord, isSmall, isSource, isText, isUint32, MAX_KINDS, type Problem } from "./frames.ts"

const decodeTroupeError = Schema.decodeUnknownEither(TroupeError)
const TROUPE_ERRORS = new Set<string>(
  (TroupeError.ast as SchemaAST.Union).types.map((member) => {
    const tag = SchemaAST.getPropertySignatures(member).find((p) => p.name === "_tag")?.type
    return tag !== undefined && SchemaAST.isLiteral(tag) ? String(tag.literal) : ""
  })
)

const optionalBoolean = (u: unknown): u is boolean | undefined => u === undefined || typeof u === "boolean"

/** copies the optional `true` flags of `u` that are set */
const flag = (name: string, value: unknown): Record<string, true> | undefined =>
  value === true ? { [name]: true } : undefined

/** what every frame carries, checked */
interface Common {
  readonly v: typeof ProtocolVersion
  readonly source: string
}

type Reader = (u: Record<string, unknown>, common: Common) => Frame | Problem

const readHeartbeat: Reader = (u, common) => {
  const { name, incarnation, address, kinds, isServing, startedAt, periodMillis, leaving } = u
  if (
    !isToken(name) || !isText(incarnation) || incarnation.length === 0 || !isText(address) ||
    !Array.isArray(kinds) || kinds.length > MAX_KINDS || typeof isServing !== "boolean" ||
    typeof startedAt !== "number" || !Number.isFinite(startedAt) || typeof periodMillis !== "number" ||
    !Number.isFinite(periodMillis) || !optionalBoolean(leaving)
  ) return "malformed Heartbeat frame"
  for (const kind of kinds) if (!isToken(kind)) return "a heartbeat announcing a kind that is not a subject token"
  return {
    _tag: "Heartbeat",
    ...common,
    name,
    incarnation,
    address,
    kinds: kinds as Array<string>,
    isServing,
    startedAt,
    periodMillis,
    ...flag("leaving", leaving)
  }
}

const readAck: Reader = (u, common) => {
  const { requestId, credit, upload } = u
  return isCount(requestId) && isCount(credit) && optionalBoolean(upload)
    ? { _tag: "Ack", ...common, requestId, credit, ...flag("upload", upload) }
    : "malformed Ack frame"
}

const readHandshake: Reader = (u, common) => {
  const { step, body } = u
  return isSmall(step, 255) && body instanceof Uint8Array
    ? { _tag: "Handshake", ...common, step, body }
    : "malformed Handshake frame"
}

const readExit: Reader = (u, common) => {
  const { requestId, exit } = u
  if (!isCount(requestId) || !isRecord(exit)) return "malformed Exit frame"
  const outcome = exit._tag
  if (outcome === "Success") {
    return { _tag: "Exit", ...common, requestId, exit: { _tag: "Success", value: exit.value } }
  }
  if (outcome === "Failure") {
    return { _tag: "Exit", ...common, requestId, exit: { _tag: "Failure", error: exit.error } }
  }
  const error = exit.error
  if (outcome !== "Error" || !isRecord(error) || typeof error._tag !== "string" || !TROUPE_ERRORS.has(error._tag)) {
    return "malformed Exit frame"
  }
  try {
    const decoded = decodeTroupeError(error)
    return Either.isRight(decoded)
      ? { _tag: "Exit", ...common, requestId, exit: { _tag: "Error", error: decoded.right } }
      : "an Exit frame whose runtime error does not match its schema"
  } catch {
    return "an Exit frame whose runtime error does not match its schema"
  }
}

const readInterrupt: Reader = (u, common) =>
  isCount(u.requestId)
    ? { _tag: "Interrupt", ...common, requestId: u.requestId }
    : "malformed Interrupt frame"

const readRequest: Reader = (u, common) => {
  const { requestId, kind, id, tag: rpcTag, headers, oneWay, stream, hops } = u
  if (
    !isCount(requestId) || !isToken(kind) || typeof id !== "string" || typeof rpcTag !== "string" ||
    !isHeaders(headers) || !optionalBoolean(oneWay) || !optionalBoolean(stream) ||
    (hops !== undefined && !isSmall(hops, 255))
  ) return "malformed Request frame"
  return {
    _tag: "Request",
    ...common,
    requestId,
    kind,
    id,
    tag: rpcTag,
    headers,
    body: u.body,
    ...flag("oneWay", oneWay),
    ...flag("stream", stream),
    ...(typeof hops === "number" && hops > 0 ? { hops } : {})
  }
}

const readChunk: Reader = (u, common) => {
  const { requestId, seq, body, last } = u
  return isCount(requestId) && isCount(seq) && body instanceof Uint8Array && typeof last === "boolean"
    ? { _tag: "Chunk", ...common, requestId, seq, body, last }
    : "malformed Chunk frame"
}

const readItems: Reader = (u, common) => {
  const { requestId, seq, items, upload, end, failure } = u
  if (
    !isCount(requestId) || !isCount(seq) || !Array.isArray(items) || !optionalBoolean(upload) ||
    !optionalBoolean(end) || (failure !== undefined && !isText(failure))
  ) return "malformed Items frame"
  return {
    _tag: "Items",
    ...common,
    requestId,
    seq,
    items,
    ...flag("upload", upload),
    ...flag("end", end),
    ...(typeof failure === "string" ? { failure } : {})
  }
}

const readEvent: Reader = (u, common) => {
  const { subject, headers } = u
  return isConcreteSubject(subject) && isHeaders(headers)
    ? { _tag: "Event", ...common, subject, headers, body: u.body }
    : "malformed Event frame"
}

const readSealed: Reader = (u, common) => {
  const { mode, key, counter, subject, body, sig } = u
  if (
    !isSmall(mode, 7) || !isUint32(key) || !isCount(counter) ||
    (subject !== undefined && !isConcreteSubject(subject)) ||
    !(body instanceof Uint8Array) || (sig !== undefined && !(sig instanceof Uint8Array))
  ) return "malformed Sealed frame"
  return {
    _tag: "Sealed",
    ...common,
    mode,
    key,
    counter,
    ...(subject === undefined ? {} : { subject: subject as string }),
    body,
    ...(sig === undefined ? {} : { sig: sig as Uint8Array })
  }
}

/** the reader of each tag (a Map: a tag off the wire such as `constructor` finds nothing inherited) */
const readers = new Map<string, Reader>([
  ["Heartbeat", readHeartbeat],
  ["Ack", readAck],
  ["Handshake", readHandshake],
  ["Exit", readExit],
  ["Interrupt", readInterrupt],
  ["Request", readRequest],
  ["Chunk", readChunk],
  ["Items", readItems],
  ["Event", readEvent],
  ["Sealed", readSealed]
])

/** @internal the frame in the object form `u`, or why it is not one */
export const fromObject = (u: unknown): Frame | Problem => {
  if (!isRecord(u) || Array.isArray(u) || u instanceof Uint8Array) {
    return "a frame that is neither an array nor an object"
  }
  const { _tag: tag, v, source } = u
  if (typeof tag !== "string") return "a frame whose tag is not a string"
  if (v !== ProtocolVersion) return "a frame of another protocol version"
  if (!isSource(source)) return "a frame whose source is not one subject token"
  const reader = readers.get(tag)
  return reader === undefined ? "a frame of an unknown tag" : reader(u, { v, source })
}
