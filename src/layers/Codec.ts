/**
 * `Codec` turns wire frames into bytes and back: JSON or MessagePack (msgpackr).
 *
 * Both validate every decoded frame against the envelope schema, so a malformed frame from the
 * wire becomes a typed `DecodeError`, never a crash.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import { Packr } from "msgpackr"
import { Envelope, ProtocolVersion } from "../schema/Envelope.ts"
import { DecodeError, EncodeError } from "../schema/Errors.ts"
import { base64Of } from "./internal/binary.ts"

/**
 * @since 0.1.0
 * @category models
 */
export interface CodecShape {
  /** `"json"` or `"msgpack"` (carried in logs and benchmarks) */
  readonly name: string
  readonly encode: (frame: Envelope) => Either.Either<Uint8Array, EncodeError>
  readonly decode: (bytes: Uint8Array) => Either.Either<Envelope, DecodeError>
}

/**
 * The codec used by transports that leave the process.
 *
 * @since 0.1.0
 * @category tags
 */
export class Codec extends Context.Tag("troupe/Codec")<Codec, CodecShape>() {}

const encodeEnvelope = Schema.encodeEither(Envelope)
const decodeEnvelope = Schema.decodeUnknownEither(Envelope)

const issueOf = (error: unknown): string =>
  ParseResult.isParseError(error) ? ParseResult.TreeFormatter.formatErrorSync(error) : String(error)

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

const isHeaders = (u: unknown): boolean => {
  if (!isRecord(u)) return false
  for (const key in u) if (typeof u[key] !== "string") return false
  return true
}

/**
 * The hot frames (requests, plain replies, interrupts) travel positionally, as arrays: no field
 * names on the wire, no envelope schema on encode, a check field by field on decode. Every
 * other frame travels as its schema-encoded object.
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
 */
const REQUEST = "Q"
const REPLY = "X"
const INTERRUPT = "I"
const EVENT = "E"
const CHUNK = "C"
const ITEMS = "T"
const UPLOAD = 1
const END = 2
const SEALED = "S"

const headersOrZero = (headers: Readonly<Record<string, string>>): unknown => {
  for (const _ in headers) return headers
  return 0
}
const ONE_WAY = 1
const NO_BODY = 2
const STREAM = 4
const EMPTY_HEADERS: Readonly<Record<string, string>> = Object.freeze({})

const toPositional = (frame: Envelope): ReadonlyArray<unknown> | undefined => {
  switch (frame._tag) {
    case "Request": {
      const headers = headersOrZero(frame.headers)
      const flags = (frame.oneWay === true ? ONE_WAY : 0) | (frame.body === undefined ? NO_BODY : 0) |
        (frame.stream === true ? STREAM : 0)
      const head = [REQUEST, frame.v, frame.source, frame.requestId, frame.kind, frame.id, frame.tag, headers, flags,
        frame.hops ?? 0]
      if (frame.body !== undefined) head.push(frame.body)
      return head
    }
    case "Exit": {
      const exit = frame.exit
      if (exit._tag === "Error") return undefined
      const value = exit._tag === "Success" ? exit.value : exit.error
      const head: Array<unknown> = [REPLY, frame.v, frame.source, frame.requestId, exit._tag === "Success" ? 0 : 1]
      if (value !== undefined) head.push(value)
      return head
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
      const head: Array<unknown> = [SEALED, frame.v, frame.source, frame.mode, frame.key, frame.counter,
        frame.subject ?? 0, frame.body]
      if (frame.sig !== undefined) head.push(frame.sig)
      return head
    }
    default:
      return undefined
  }
}

const fromSealed = (u: ReadonlyArray<unknown>): Envelope | undefined => {
  const [, v, source, mode, key, counter, subject, body, sig] = u
  return v === ProtocolVersion && typeof source === "string" && typeof mode === "number" &&
      typeof key === "number" && typeof counter === "number" && (subject === 0 || typeof subject === "string") &&
      body instanceof Uint8Array && (u.length === 8 || (u.length === 9 && sig instanceof Uint8Array))
    ? {
      _tag: "Sealed",
      v,
      source,
      mode,
      key,
      counter,
      ...(subject === 0 ? {} : { subject }),
      body,
      ...(u.length === 9 ? { sig: sig as Uint8Array } : {})
    }
    : undefined
}

const fromPositional = (u: ReadonlyArray<unknown>): Envelope | undefined => {
  const [tag, v, source, requestId] = u
  if (tag === EVENT) {
    const [, , , subject, headers] = u
    return v === ProtocolVersion && typeof source === "string" && typeof subject === "string" &&
        (headers === 0 || isHeaders(headers)) && u.length <= 6
      ? {
        _tag: "Event",
        v,
        source,
        subject,
        headers: headers === 0 ? EMPTY_HEADERS : headers as Record<string, string>,
        body: u[5]
      }
      : undefined
  }
  if (tag === SEALED) return fromSealed(u)
  if (v !== ProtocolVersion || typeof source !== "string" || typeof requestId !== "number") return undefined
  switch (tag) {
    case REQUEST: {
      const [, , , , kind, id, rpcTag, headers, flags, hops] = u
      if (
        typeof kind !== "string" || typeof id !== "string" || typeof rpcTag !== "string" ||
        typeof flags !== "number" || typeof hops !== "number" || (headers !== 0 && !isHeaders(headers)) ||
        u.length !== ((flags & NO_BODY) !== 0 ? 10 : 11)
      ) return undefined
      return {
        _tag: "Request",
        v,
        source,
        requestId,
        kind,
        id,
        tag: rpcTag,
        headers: headers === 0 ? EMPTY_HEADERS : headers as Record<string, string>,
        body: u[10],
        ...((flags & ONE_WAY) !== 0 ? { oneWay: true } : {}),
        ...((flags & STREAM) !== 0 ? { stream: true } : {}),
        ...(hops > 0 ? { hops } : {})
      }
    }
    case REPLY: {
      const outcome = u[4]
      if ((outcome !== 0 && outcome !== 1) || u.length > 6) return undefined
      return {
        _tag: "Exit",
        v,
        source,
        requestId,
        exit: outcome === 0 ? { _tag: "Success", value: u[5] } : { _tag: "Failure", error: u[5] }
      }
    }
    case INTERRUPT:
      return u.length === 4 ? { _tag: "Interrupt", v, source, requestId } : undefined
    case CHUNK: {
      const [, , , , seq, last, body] = u
      return typeof seq === "number" && (last === 0 || last === 1) && body instanceof Uint8Array && u.length === 7
        ? { _tag: "Chunk", v, source, requestId, seq, last: last === 1, body }
        : undefined
    }
    case ITEMS: {
      const [, , , , seq, flags, items, failure] = u
      if (
        typeof seq !== "number" || typeof flags !== "number" || !Array.isArray(items) ||
        (u.length === 8 ? typeof failure !== "string" : u.length !== 7)
      ) return undefined
      return {
        _tag: "Items",
        v,
        source,
        requestId,
        seq,
        items,
        ...((flags & UPLOAD) !== 0 ? { upload: true } : {}),
        ...((flags & END) !== 0 ? { end: true } : {}),
        ...(typeof failure === "string" ? { failure } : {})
      }
    }
  }
  return undefined
}

/**
 * Builds a codec from a serializer of plain values. Frames are checked against the envelope
 * schema on both sides.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: {
  readonly name: string
  readonly serialize: (value: unknown) => Uint8Array
  readonly deserialize: (bytes: Uint8Array) => unknown
}): CodecShape => ({
  name: options.name,
  encode: (frame) => {
    let plain: unknown = toPositional(frame)
    if (plain === undefined) {
      const encoded = encodeEnvelope(frame)
      if (Either.isLeft(encoded)) {
        return Either.left(new EncodeError({ what: `${frame._tag} frame`, issue: issueOf(encoded.left) }))
      }
      plain = encoded.right
    }
    try {
      return Either.right(options.serialize(plain))
    } catch (error) {
      return Either.left(new EncodeError({ what: `${frame._tag} frame`, issue: String(error) }))
    }
  },
  decode: (bytes) => {
    let value: unknown
    try {
      value = options.deserialize(bytes)
    } catch (error) {
      return Either.left(new DecodeError({ what: "frame", issue: `${options.name}: ${String(error)}` }))
    }
    if (Array.isArray(value)) {
      const frame = fromPositional(value)
      return frame === undefined
        ? Either.left(new DecodeError({ what: "frame", issue: `malformed ${String(value[0])} frame` }))
        : Either.right(frame)
    }
    return Either.mapLeft(decodeEnvelope(value), (error) => new DecodeError({ what: "frame", issue: issueOf(error) }))
  }
})

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder("utf-8", { fatal: true })
const BINARY = "$troupe.b64"

const jsonReplacer = function(this: unknown, key: string, value: unknown): unknown {
  const base64 = base64Of(this, key, value)
  if (base64 !== undefined) return { [BINARY]: base64 }
  if (typeof value === "bigint") throw new TypeError("JSON cannot carry a bigint: use a Schema that encodes it")
  return value
}

const jsonReviver = (_key: string, value: unknown): unknown => {
  if (typeof value === "object" && value !== null && BINARY in value) {
    const b64 = (value as Record<string, unknown>)[BINARY]
    if (typeof b64 === "string") return new Uint8Array(Buffer.from(b64, "base64"))
  }
  return value
}

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })

const parseJson = (bytes: Uint8Array): unknown => {
  const text = textDecoder.decode(bytes)
  return text.includes(BINARY) ? JSON.parse(text, jsonReviver) : JSON.parse(text)
}

/**
 * Either codec reads both formats: a frame is an array or an object, which JSON starts with `[`
 * or `{` and MessagePack with a container byte, never those. So a node that encodes with one
 * still understands a peer that encodes with the other (during a rolling change of codec).
 */
const deserializeAny = (bytes: Uint8Array): unknown =>
  bytes[0] === 0x5b || bytes[0] === 0x7b ? parseJson(bytes) : packr.unpack(bytes)

/**
 * The JSON codec (binary fields travel as base64).
 *
 * @since 0.1.0
 * @category codecs
 */
export const jsonCodec: CodecShape = make({
  name: "json",
  serialize: (value) => textEncoder.encode(JSON.stringify(value, jsonReplacer)),
  deserialize: deserializeAny
})

/**
 * The MessagePack codec on msgpackr (binary fields travel natively).
 *
 * @since 0.1.0
 * @category codecs
 */
export const msgpackCodec: CodecShape = make({
  name: "msgpack",
  serialize: (value) => packr.pack(value),
  deserialize: deserializeAny
})

/**
 * JSON on the wire.
 *
 * @since 0.1.0
 * @category layers
 */
export const json: Layer.Layer<Codec> = Layer.succeed(Codec, jsonCodec)

/**
 * MessagePack on the wire (msgpackr).
 *
 * @since 0.1.0
 * @category layers
 */
export const msgpack: Layer.Layer<Codec> = Layer.succeed(Codec, msgpackCodec)

/**
 * Encodes a value with a schema, as a typed `EncodeError` on failure.
 *
 * @since 0.1.0
 * @category utils
 */
export const encodeWith = <A, I>(schema: Schema.Schema<A, I, never>, what: string) => {
  // a schema whose encoded form is its type (no transformation) has nothing to encode: the value
  // goes as it is, and the receiver, which decodes (and so validates) it, reports a mismatch
  if (SchemaAST.encodedAST(schema.ast) === schema.ast) {
    return (value: unknown): Either.Either<I, EncodeError> => Either.right(value as I)
  }
  const encode = Schema.encodeUnknownEither(schema)
  return (value: unknown): Either.Either<I, EncodeError> =>
    Either.mapLeft(encode(value), (error) => new EncodeError({ what, issue: issueOf(error) }))
}

/**
 * Decodes a value with a schema, as a typed `DecodeError` on failure.
 *
 * @since 0.1.0
 * @category utils
 */
export const decodeWith = <A, I>(schema: Schema.Schema<A, I, never>, what: string) => {
  const decode = Schema.decodeUnknownEither(schema)
  return (value: unknown): Either.Either<A, DecodeError> =>
    Either.mapLeft(decode(value), (error) => new DecodeError({ what, issue: issueOf(error) }))
}
