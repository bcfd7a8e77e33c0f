/**
 * `Codec` turns wire frames into bytes and back: JSON or MessagePack (msgpackr).
 *
 * Decoding is total: for any bytes, both return a frame or a typed failure, never a throw. They
 * check the bytes' structure before parsing (nesting at most 64 deep; for MessagePack, counts
 * and lengths that fit the data), then the frame against the `Frame` schema and the frame
 * rules (identifiers are subject tokens, counts whole numbers). The transports drop bytes that
 * are not a frame through `decodeFrame`, which builds no error and formats nothing.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { Packr } from "msgpackr"
import { Frame } from "../schema/Envelope.ts"
import { type DecodeError, EncodeError } from "../schema/Errors.ts"
import * as Encoding from "../schema/internal/encoding.ts"
import { base64Of } from "./internal/binary.ts"
import * as Frames from "./internal/frames.ts"
import { fromObject } from "./internal/objectFrames.ts"
import { jsonTooDeep, MAX_DEPTH, msgpackProblem } from "./internal/scan.ts"

/**
 * @since 0.1.0
 * @category models
 */
export interface CodecShape {
  /** `"json"` or `"msgpack"` (carried in logs and benchmarks) */
  readonly name: string
  readonly encode: (frame: Frame) => Either.Either<Uint8Array, EncodeError>
  readonly decode: (bytes: Uint8Array) => Either.Either<Frame, DecodeError>
}

/**
 * The error-free form of each `decode` built by `make` (and the built-in codecs), by the `decode`
 * function itself: a codec that wraps another and replaces its `decode` gets its own used.
 */
const framesOf = new WeakMap<CodecShape["decode"], (bytes: Uint8Array) => Frame | Malformed>()

/**
 * The codec used by transports that leave the process.
 *
 * @since 0.1.0
 * @category tags
 */
export class Codec extends Context.Tag("troupe/Codec")<Codec, CodecShape>() {}

const encodeFrameSchema = Schema.encodeEither(Frame)

/**
 * Why some bytes are not a frame, as the transports' drop path sees it: a constant reason, and
 * the detail (a parser's error, a schema's parse error) formatted only when `issue` is read.
 * Building one costs an allocation, where a `DecodeError` costs a stack trace.
 *
 * @since 0.5.0
 * @category models
 */
export class Malformed {
  private formatted: string | undefined
  constructor(
    /** what is wrong, in a few words */
    readonly reason: string,
    /** what the parser or the schema said, if anything */
    readonly detail?: unknown
  ) {}
  /** the reason and the formatted detail */
  get issue(): string {
    return this.formatted ??= this.detail === undefined
      ? this.reason
      : `${this.reason}: ${Encoding.issueOf(this.detail)}`
  }
  /** the same, as the public error */
  toDecodeError(): DecodeError {
    return Encoding.lazyDecodeError("frame", () => this.issue)
  }
}

/**
 * @since 0.5.0
 * @category guards
 */
export const isMalformed = (u: unknown): u is Malformed => u instanceof Malformed

/**
 * Decodes a frame without building an error: the frame, or why the bytes are not one. Never
 * throws, whatever the bytes. A codec built by `make` (and the built-in ones) decodes without
 * building a `DecodeError`; any other goes through its `decode`.
 *
 * @since 0.5.0
 * @category utils
 */
export const decodeFrame = (codec: CodecShape, bytes: Uint8Array): Frame | Malformed => {
  try {
    const fast = framesOf.get(codec.decode)
    if (fast !== undefined) return fast(bytes)
    const decoded = codec.decode(bytes)
    return Either.isRight(decoded) ? decoded.right : new Malformed(`${codec.name}: not a frame`, decoded.left)
  } catch (error) {
    return new Malformed(`${codec.name}: the codec threw`, error)
  }
}

/** the frame in a deserialized value, or why it is not one */
const frameOf = (value: unknown): Frame | Malformed => {
  const frame = Array.isArray(value) ? Frames.fromPositional(value) : fromObject(value)
  return typeof frame === "string" ? new Malformed(frame) : frame
}

/**
 * A codec on a serializer whose `deserialize` never throws: it returns the value or a
 * `Malformed` (the built-in codecs check the bytes' structure before they parse them).
 */
const makeChecked = (
  name: string,
  serialize: (value: unknown) => Uint8Array | Malformed,
  deserialize: (bytes: Uint8Array) => unknown
): CodecShape => {
  const decodeFrameOf = (bytes: Uint8Array): Frame | Malformed => {
    const value = deserialize(bytes)
    return value instanceof Malformed ? value : frameOf(value)
  }
  const decode: CodecShape["decode"] = (bytes) => {
    const frame = decodeFrameOf(bytes)
    return frame instanceof Malformed ? Either.left(frame.toDecodeError()) : Either.right(frame)
  }
  framesOf.set(decode, decodeFrameOf)
  return {
    name,
    encode: (frame) => {
      let plain: unknown = Frames.toPositional(frame)
      if (plain === undefined) {
        const encoded = encodeFrameSchema(frame)
        if (Either.isLeft(encoded)) {
          return Either.left(new EncodeError({ what: `${frame._tag} frame`, issue: Encoding.issueOf(encoded.left) }))
        }
        plain = encoded.right
      }
      try {
        const bytes = serialize(plain)
        return bytes instanceof Malformed
          ? Either.left(new EncodeError({ what: `${frame._tag} frame`, issue: bytes.issue }))
          : Either.right(bytes)
      } catch (error) {
        return Either.left(new EncodeError({ what: `${frame._tag} frame`, issue: Encoding.describe(error) }))
      }
    },
    decode
  }
}

/**
 * Builds a codec from a serializer of plain values. On arrival, frames are checked against the
 * `Frame` schema and the frame rules (identifiers are subject tokens, counts whole numbers);
 * whatever `deserialize` throws becomes a `DecodeError`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: {
  readonly name: string
  readonly serialize: (value: unknown) => Uint8Array
  readonly deserialize: (bytes: Uint8Array) => unknown
}): CodecShape =>
  makeChecked(options.name, options.serialize, (bytes) => {
    try {
      return options.deserialize(bytes)
    } catch (error) {
      return new Malformed(`${options.name}: cannot parse`, error)
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

/**
 * Whether `value` is written the same with and without `jsonReplacer`: no bytes, no bigint, no
 * `toJSON` (whose result the replacer would see), at most `MAX_DEPTH` levels (deeper, or a
 * cycle, goes through the replacer and fails as before). A replacer is a call from
 * `JSON.stringify` into JavaScript for every key; the frames of the hot path have none of these
 * values, and this look at them costs a fraction of those calls.
 */
const plainJson = (value: unknown, depth: number): boolean => {
  if (typeof value !== "object" || value === null) return typeof value !== "bigint"
  if (
    depth >= MAX_DEPTH || value instanceof Uint8Array || typeof (value as { toJSON?: unknown }).toJSON === "function"
  ) {
    return false
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!plainJson(value[i], depth + 1)) return false
    return true
  }
  for (const key of Object.keys(value)) {
    if (!plainJson((value as Record<string, unknown>)[key], depth + 1)) return false
  }
  return true
}

const jsonReviver = (_key: string, value: unknown): unknown => {
  if (typeof value === "object" && value !== null && BINARY in value) {
    const b64 = (value as Record<string, unknown>)[BINARY]
    if (typeof b64 === "string") return new Uint8Array(Buffer.from(b64, "base64"))
  }
  return value
}

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })

const TOO_DEEP = `nested deeper than ${MAX_DEPTH} levels`

const parseJson = (bytes: Uint8Array): unknown => {
  if (jsonTooDeep(bytes)) return new Malformed(`json: ${TOO_DEEP}`)
  // a syntax error's stack trace is most of what rejecting garbage costs, and nobody reads it
  const stackTraceLimit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    const text = textDecoder.decode(bytes)
    return text.includes(BINARY) ? JSON.parse(text, jsonReviver) : JSON.parse(text)
  } catch (error) {
    return new Malformed("json: cannot parse", error)
  } finally {
    Error.stackTraceLimit = stackTraceLimit
  }
}

const parseMsgpack = (bytes: Uint8Array): unknown => {
  const problem = msgpackProblem(bytes)
  if (problem !== undefined) return new Malformed(`msgpack: ${problem}`)
  try {
    return packr.unpack(bytes)
  } catch (error) {
    return new Malformed("msgpack: cannot parse", error)
  }
}

/**
 * Either codec reads both formats: a frame is an array or an object, which JSON starts with `[`
 * or `{` and MessagePack with a container byte, never those. So a node that encodes with one
 * still understands a peer that encodes with the other (during a rolling change of codec).
 */
const deserializeAny = (bytes: Uint8Array): unknown =>
  bytes[0] === 0x5b || bytes[0] === 0x7b ? parseJson(bytes) : parseMsgpack(bytes)

/**
 * The JSON codec (binary fields travel as base64).
 *
 * @since 0.1.0
 * @category codecs
 */
export const jsonCodec: CodecShape = makeChecked("json", (value) => {
  const bytes = textEncoder.encode(
    plainJson(value, 0) ? JSON.stringify(value) : JSON.stringify(value, jsonReplacer)
  )
  // what the receiver would refuse fails here, typed, rather than as a timeout there
  return jsonTooDeep(bytes) ? new Malformed(TOO_DEEP) : bytes
}, deserializeAny)

/**
 * The MessagePack codec on msgpackr (binary fields travel natively).
 *
 * @since 0.1.0
 * @category codecs
 */
export const msgpackCodec: CodecShape = makeChecked("msgpack", (value) => {
  const bytes = packr.pack(value)
  // fewer bytes than levels cannot nest too deep
  if (bytes.length <= MAX_DEPTH) return bytes
  const problem = msgpackProblem(bytes)
  return problem === undefined ? bytes : new Malformed(problem)
}, deserializeAny)

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
 * A `DecodeError` whose `issue` is computed when it is first read (formatting a schema's parse
 * error costs far more than the decoding that failed): an error nobody looks at costs no message.
 *
 * @since 0.5.0
 * @category errors
 */
export const lazyDecodeError: (what: string, issue: () => string) => DecodeError = Encoding.lazyDecodeError

/**
 * Encodes a value with a schema, as a typed `EncodeError` on failure.
 *
 * @since 0.1.0
 * @category utils
 */
export const encodeWith = Encoding.encodeWith

/**
 * Decodes a value with a schema, as a typed `DecodeError` on failure.
 *
 * @since 0.1.0
 * @category utils
 */
export const decodeWith = Encoding.decodeWith
