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
import { Packr } from "msgpackr"
import { Envelope, ProtocolVersion } from "../schema/Envelope.ts"
import { DecodeError, EncodeError } from "../schema/Errors.ts"

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

const optional = (u: unknown, type: "boolean" | "number") => u === undefined || typeof u === type

/**
 * The hot frames (requests, plain replies, interrupts) are plain data already: they skip the
 * envelope schema on encode and are checked field by field on decode. Every other frame goes
 * through the schema.
 */
const isPlainFrame = (frame: Envelope): boolean =>
  frame._tag === "Request" || frame._tag === "Interrupt" || (frame._tag === "Exit" && frame.exit._tag !== "Error")

const checkPlainFrame = (u: Record<string, unknown>): Envelope | undefined => {
  if (u.v !== ProtocolVersion || typeof u.source !== "string" || typeof u.requestId !== "number") return undefined
  switch (u._tag) {
    case "Request":
      return typeof u.kind === "string" && typeof u.id === "string" && typeof u.tag === "string" &&
          isHeaders(u.headers) && "body" in u && optional(u.oneWay, "boolean") && optional(u.hops, "number")
        ? u as unknown as Envelope
        : undefined
    case "Interrupt":
      return u as unknown as Envelope
    case "Exit": {
      const exit = u.exit
      return isRecord(exit) && ((exit._tag === "Success" && "value" in exit) || (exit._tag === "Failure" && "error" in exit))
        ? u as unknown as Envelope
        : undefined
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
    let plain: unknown = frame
    if (!isPlainFrame(frame)) {
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
    if (isRecord(value) && (value._tag === "Request" || value._tag === "Interrupt" || value._tag === "Exit")) {
      const checked = checkPlainFrame(value)
      if (checked !== undefined) return Either.right(checked)
    }
    return Either.mapLeft(decodeEnvelope(value), (error) => new DecodeError({ what: "frame", issue: issueOf(error) }))
  }
})

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder("utf-8", { fatal: true })
const BINARY = "$troupe.b64"

const jsonReplacer = function(this: unknown, _key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return { [BINARY]: Buffer.from(value).toString("base64") }
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

/**
 * The JSON codec (binary fields travel as base64).
 *
 * @since 0.1.0
 * @category codecs
 */
export const jsonCodec: CodecShape = make({
  name: "json",
  serialize: (value) => textEncoder.encode(JSON.stringify(value, jsonReplacer)),
  deserialize: (bytes) => {
    const text = textDecoder.decode(bytes)
    return text.includes(BINARY) ? JSON.parse(text, jsonReviver) : JSON.parse(text)
  }
})

/**
 * The MessagePack codec on msgpackr (binary fields travel natively).
 *
 * @since 0.1.0
 * @category codecs
 */
export const msgpackCodec: CodecShape = (() => {
  const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })
  return make({
    name: "msgpack",
    serialize: (value) => packr.pack(value),
    deserialize: (bytes) => packr.unpack(bytes)
  })
})()

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
