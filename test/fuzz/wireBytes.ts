/**
 * Hand-written JSON and MessagePack writers for fuzzing: unlike `JSON.stringify` and msgpackr
 * they write any depth of nesting without recursion (a `Deep` node), keep prototype keys such as
 * `__proto__` as plain keys, and carry `NaN`, `Infinity`, `-0`, bigints and bytes as each format
 * allows. Also an oracle: an independent reading of the wire layouts of `src/layers/Codec.ts`
 * and `src/layers/internal/` (`pieces.ts`, `batches.ts`, `binaryItems.ts`), saying whether bytes are a frame a receiver must drop
 * (and count) or may accept.
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { Packr } from "msgpackr"
import { Envelope } from "../../src/schema/Envelope.ts"

/** `depth` nested arrays (or objects `{"a": …}`) around `leaf`, written without recursion */
export class Deep {
  constructor(readonly depth: number, readonly leaf: unknown, readonly shape: "array" | "object") {}
  toJSON(): unknown {
    return { deep: this.depth, shape: this.shape }
  }
}

/** bytes written verbatim (already-encoded wire, such as a binary layout) */
export class Verbatim {
  constructor(readonly bytes: Uint8Array) {}
}

const BINARY = "$troupe.b64"

const jsonString = (s: string): string => JSON.stringify(s)

const jsonNumber = (n: number): string => (Number.isFinite(n) ? (Object.is(n, -0) ? "-0" : String(n)) : "null")

const jsonText = (value: unknown, out: Array<string>): void => {
  if (value instanceof Deep) {
    const open = value.shape === "array" ? "[" : "{\"a\":"
    const close = value.shape === "array" ? "]" : "}"
    out.push(open.repeat(value.depth))
    jsonText(value.leaf, out)
    out.push(close.repeat(value.depth))
    return
  }
  if (value === null || value === undefined) return void out.push("null")
  switch (typeof value) {
    case "boolean":
      return void out.push(value ? "true" : "false")
    case "number":
      return void out.push(jsonNumber(value))
    case "bigint":
      // a number too large for a double: the parser rounds it
      return void out.push(value.toString())
    case "string":
      return void out.push(jsonString(value))
  }
  if (value instanceof Uint8Array) {
    return void out.push(`{"${BINARY}":${jsonString(Buffer.from(value).toString("base64"))}}`)
  }
  if (Array.isArray(value)) {
    out.push("[")
    value.forEach((item, i) => {
      if (i > 0) out.push(",")
      jsonText(item, out)
    })
    return void out.push("]")
  }
  if (typeof value === "object") {
    out.push("{")
    let first = true
    for (const key of Object.keys(value)) {
      const item = (value as Record<string, unknown>)[key]
      if (item === undefined) continue
      if (!first) out.push(",")
      first = false
      out.push(jsonString(key), ":")
      jsonText(item, out)
    }
    return void out.push("}")
  }
  out.push("null")
}

const textEncoder = new TextEncoder()

/** the JSON text of `value` (as bytes) */
export const toJson = (value: unknown): Uint8Array => {
  const out: Array<string> = []
  jsonText(value, out)
  return textEncoder.encode(out.join(""))
}

class Writer {
  private buffer = new Uint8Array(256)
  private view = new DataView(this.buffer.buffer)
  length = 0
  private room(n: number): void {
    if (this.length + n <= this.buffer.byteLength) return
    let size = this.buffer.byteLength * 2
    while (size < this.length + n) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buffer.subarray(0, this.length))
    this.buffer = next
    this.view = new DataView(next.buffer)
  }
  byte(b: number): void {
    this.room(1)
    this.buffer[this.length++] = b
  }
  u16(n: number): void {
    this.room(2)
    this.view.setUint16(this.length, n)
    this.length += 2
  }
  u32(n: number): void {
    this.room(4)
    this.view.setUint32(this.length, n)
    this.length += 4
  }
  f64(n: number): void {
    this.room(8)
    this.view.setFloat64(this.length, n)
    this.length += 8
  }
  i64(n: bigint): void {
    this.room(8)
    this.view.setBigInt64(this.length, n)
    this.length += 8
  }
  u64(n: bigint): void {
    this.room(8)
    this.view.setBigUint64(this.length, n)
    this.length += 8
  }
  bytes(b: Uint8Array): void {
    this.room(b.byteLength)
    this.buffer.set(b, this.length)
    this.length += b.byteLength
  }
  result(): Uint8Array {
    return this.buffer.slice(0, this.length)
  }
}

const header = (w: Writer, n: number, fix: number, fixMax: number, b16: number, b32: number): void => {
  if (n <= fixMax) w.byte(fix | n)
  else if (n <= 0xffff) {
    w.byte(b16)
    w.u16(n)
  } else {
    w.byte(b32)
    w.u32(n)
  }
}

const packInto = (w: Writer, value: unknown): void => {
  if (value instanceof Deep) {
    for (let i = 0; i < value.depth; i++) {
      if (value.shape === "array") w.byte(0x91)
      else {
        w.byte(0x81)
        w.byte(0xa1)
        w.byte(0x61)
      }
    }
    return packInto(w, value.leaf)
  }
  if (value instanceof Verbatim) return w.bytes(value.bytes)
  if (value === null) return w.byte(0xc0)
  if (value === undefined) {
    // msgpackr's `undefined`: fixext 1, type 0
    w.byte(0xd4)
    w.byte(0)
    return w.byte(0)
  }
  switch (typeof value) {
    case "boolean":
      return w.byte(value ? 0xc3 : 0xc2)
    case "number": {
      if (Number.isInteger(value) && !Object.is(value, -0) && value >= 0 && value < 128) return w.byte(value)
      if (Number.isInteger(value) && value < 0 && value >= -32) return w.byte(value & 0xff)
      if (Number.isInteger(value) && value >= 0 && value <= 0xffffffff) {
        w.byte(0xce)
        return w.u32(value)
      }
      w.byte(0xcb)
      return w.f64(value)
    }
    case "bigint":
      if (value >= 0n && value < 2n ** 64n) {
        w.byte(0xcf)
        return w.u64(value)
      }
      w.byte(0xd3)
      return w.i64(BigInt.asIntN(64, value))
    case "string": {
      const bytes = textEncoder.encode(value)
      if (bytes.byteLength < 32) w.byte(0xa0 | bytes.byteLength)
      else if (bytes.byteLength <= 0xff) {
        w.byte(0xd9)
        w.byte(bytes.byteLength)
      } else header(w, bytes.byteLength, 0xa0, -1, 0xda, 0xdb)
      return w.bytes(bytes)
    }
  }
  if (value instanceof Uint8Array) {
    if (value.byteLength <= 0xff) {
      w.byte(0xc4)
      w.byte(value.byteLength)
    } else header(w, value.byteLength, 0, -1, 0xc5, 0xc6)
    return w.bytes(value)
  }
  if (Array.isArray(value)) {
    header(w, value.length, 0x90, 15, 0xdc, 0xdd)
    for (const item of value) packInto(w, item)
    return
  }
  if (typeof value === "object") {
    const keys = Object.keys(value)
    header(w, keys.length, 0x80, 15, 0xde, 0xdf)
    for (const key of keys) {
      packInto(w, key)
      packInto(w, (value as Record<string, unknown>)[key])
    }
    return
  }
  w.byte(0xc0)
}

/** the MessagePack encoding of `value` */
export const toMsgpack = (value: unknown): Uint8Array => {
  const w = new Writer()
  packInto(w, value)
  return w.result()
}

export type Encoding = "json" | "msgpack"

export const encodings: ReadonlyArray<Encoding> = ["json", "msgpack"]

/** `value` on the wire in `encoding` (a `Verbatim` value is its own bytes in both) */
export const serialize = (value: unknown, encoding: Encoding): Uint8Array =>
  value instanceof Verbatim ? value.bytes : encoding === "json" ? toJson(value) : toMsgpack(value)

export const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex")

// ---- the oracle ------------------------------------------------------------------------------

/**
 * A subject token by the NATS grammar: not empty, no `.`, no wildcard, no whitespace and no
 * control character. Node ids, kinds and reply slots must be one before a node uses them.
 */
export const isToken = (s: unknown): boolean =>
  // eslint-disable-next-line no-control-regex
  typeof s === "string" && s.length > 0 && !/[\s.*>\u0000-\u001f\u007f]/u.test(s)

/** A subject (tokens joined by `.`, no wildcard) that a frame may name. */
export const isSubject = (s: unknown): boolean => typeof s === "string" && s.split(".").every(isToken)

const oraclePackr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })
const fatalDecoder = new TextDecoder("utf-8", { fatal: true })

const reviver = (_key: string, value: unknown): unknown => {
  if (typeof value === "object" && value !== null && Object.hasOwn(value, BINARY)) {
    const b64 = (value as Record<string, unknown>)[BINARY]
    if (typeof b64 === "string") return new Uint8Array(Buffer.from(b64, "base64"))
  }
  return value
}

/** the value of a frame's bytes, or `undefined` when they are not a value of either format */
const parse = (bytes: Uint8Array): { readonly value: unknown } | undefined => {
  try {
    if (bytes[0] === 0x5b || bytes[0] === 0x7b) {
      const text = fatalDecoder.decode(bytes)
      return { value: text.includes(BINARY) ? JSON.parse(text, reviver) : JSON.parse(text) }
    }
    return { value: oraclePackr.unpack(bytes) }
  } catch {
    return undefined
  }
}

/** nesting depth of a parsed value (bounded walk: stops counting past `limit`) */
const depthOf = (value: unknown, limit: number): number => {
  let max = 0
  const stack: Array<[unknown, number]> = [[value, 0]]
  while (stack.length > 0) {
    const [v, d] = stack.pop()!
    if (d > max) max = d
    if (max > limit) return max
    if (typeof v === "object" && v !== null && !(v instanceof Uint8Array)) {
      for (const child of Object.values(v)) stack.push([child, d + 1])
    }
  }
  return max
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

/** as the codec reads them: any object whose enumerable properties are all strings (an empty array too) */
const isHeaders = (u: unknown): boolean => {
  if (!isRecord(u)) return false
  for (const key in u) if (typeof u[key] !== "string") return false
  return true
}

/** what a receiver must do with a message */
export type Verdict =
  /** not a frame of the protocol: dropped and counted */
  | "malformed"
  /** a frame, but an identifier in it is not a subject token: dropped and counted */
  | "bad-identifier"
  /** a well-formed frame */
  | "valid"
  /** either may be right (deep nesting near the bound, a piece whose fate depends on others) */
  | "unknown"

/** nesting beyond this: a bounded decoder may refuse it */
const DEPTH_GREY = 16

const positional = (u: ReadonlyArray<unknown>, receiver: boolean): Verdict => {
  const [tag, v, source, requestId] = u
  const src = (): Verdict => (isToken(source) ? "valid" : "bad-identifier")
  if (v !== 1 || typeof source !== "string") return "malformed"
  switch (tag) {
    case "E": {
      const [, , , subject, headers] = u
      if (typeof subject !== "string" || !(headers === 0 || isHeaders(headers)) || u.length > 6 || u.length < 5) {
        return "malformed"
      }
      return isSubject(subject) ? src() : "bad-identifier"
    }
    case "S": {
      const [, , , mode, key, counter, subject, body, sig] = u
      if (
        typeof mode !== "number" || typeof key !== "number" || typeof counter !== "number" ||
        !(subject === 0 || typeof subject === "string") || !(body instanceof Uint8Array) ||
        !(u.length === 8 || (u.length === 9 && sig instanceof Uint8Array))
      ) return "malformed"
      return subject === 0 || isSubject(subject) ? src() : "bad-identifier"
    }
  }
  if (typeof requestId !== "number") return "malformed"
  switch (tag) {
    case "Q": {
      const [, , , , kind, id, rpcTag, headers, flags, hops] = u
      if (
        typeof kind !== "string" || typeof id !== "string" || typeof rpcTag !== "string" ||
        typeof flags !== "number" || typeof hops !== "number" || !(headers === 0 || isHeaders(headers)) ||
        u.length !== ((flags & 2) !== 0 ? 10 : 11)
      ) return "malformed"
      // an unknown kind is answered (ActorNotFound), never used as a subject
      return src()
    }
    case "X":
      return (u[4] === 0 || u[4] === 1) && u.length >= 5 && u.length <= 6 ? src() : "malformed"
    case "I":
      return u.length === 4 ? src() : "malformed"
    case "C": {
      const [, , , , seq, last, body] = u
      if (typeof seq !== "number" || (last !== 0 && last !== 1) || !(body instanceof Uint8Array) || u.length !== 7) {
        return "malformed"
      }
      // a codec reads it; a receiver drops it (pieces have their own layout)
      return receiver ? "malformed" : src()
    }
    case "T": {
      const [, , , , seq, flags, items, failure] = u
      if (
        typeof seq !== "number" || typeof flags !== "number" || !Array.isArray(items) ||
        (u.length === 8 ? typeof failure !== "string" : u.length !== 7)
      ) return "malformed"
      return src()
    }
  }
  return "malformed"
}

const decodeEnvelope = Schema.decodeUnknownEither(Envelope)

const objectFrame = (u: unknown, receiver: boolean): Verdict => {
  let decoded: Either.Either<Envelope, unknown>
  try {
    decoded = decodeEnvelope(u)
  } catch {
    // the schema itself choked on the value: it is certainly no frame
    return "malformed"
  }
  if (Either.isLeft(decoded)) return "malformed"
  const frame = decoded.right
  if (frame._tag === "Chunk" && receiver) return "malformed"
  if (!isToken(frame.source)) return "bad-identifier"
  if (frame._tag === "Heartbeat" && !frame.kinds.every(isToken)) return "bad-identifier"
  if (frame._tag === "Event" && !isSubject(frame.subject)) return "bad-identifier"
  if (frame._tag === "Sealed" && frame.subject !== undefined && !isSubject(frame.subject)) return "bad-identifier"
  return "valid"
}

const readU32 = (bytes: Uint8Array, at: number): number =>
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(at)

const sourceToken = (bytes: Uint8Array, start: number, end: number): Verdict => {
  try {
    return isToken(fatalDecoder.decode(bytes.subarray(start, end))) ? "valid" : "bad-identifier"
  } catch {
    return "bad-identifier"
  }
}

/** the length-prefixed parts from `at` to the end, if they fit exactly */
const parts = (bytes: Uint8Array, at: number, count: number): Array<Uint8Array> | undefined => {
  if (count * 4 > bytes.byteLength - at) return undefined
  const out: Array<Uint8Array> = []
  for (let i = 0; i < count; i++) {
    if (at + 4 > bytes.byteLength) return undefined
    const length = readU32(bytes, at)
    if (at + 4 + length > bytes.byteLength) return undefined
    out.push(bytes.subarray(at + 4, at + 4 + length))
    at += 4 + length
  }
  return at === bytes.byteLength ? out : undefined
}

/**
 * How many drops (at least) the receiver must count for `bytes`, and the verdict. A batch's
 * frames are judged one by one; a piece is judged by its header only (the rest depends on the
 * pieces before it).
 */
export const judge = (
  bytes: Uint8Array,
  options: { readonly receiver?: boolean; readonly maxMessageBytes?: number } = {}
): { readonly verdict: Verdict; readonly drops: number } => {
  const receiver = options.receiver ?? true
  const maxMessageBytes = options.maxMessageBytes ?? 5 * 1024 * 1024
  const of = (verdict: Verdict) => ({ verdict, drops: verdict === "malformed" || verdict === "bad-identifier" ? 1 : 0 })
  if (bytes.byteLength > maxMessageBytes) return of("malformed")
  if (bytes.byteLength === 0) return of("malformed")
  switch (bytes[0]) {
    case 0xc2: {
      if (bytes.byteLength < 5) return of("malformed")
      const frames = parts(bytes, 5, readU32(bytes, 1))
      if (frames === undefined) return of("malformed")
      let drops = 0
      let verdict = "valid" as Verdict
      for (const frame of frames) {
        if (frame[0] === 0xc2) continue
        const inner = judge(frame, options)
        drops += inner.drops
        // the batch's verdict: its worst frame's
        if (inner.verdict !== "valid" && verdict !== "unknown") verdict = inner.verdict
      }
      return { verdict, drops }
    }
    case 0xc1: {
      if (bytes.byteLength < 16 || bytes[1] !== 1 || bytes[2]! > 1 || bytes.byteLength < 16 + bytes[3]!) {
        return of("malformed")
      }
      return { verdict: sourceToken(bytes, 4, 4 + bytes[3]!) === "valid" ? "unknown" : "bad-identifier", drops: 0 }
    }
    case 0xc3: {
      if (bytes.byteLength < 16 || bytes[1] !== 1 || bytes[2]! > 3) return of("malformed")
      const end = 4 + bytes[3]!
      if (bytes.byteLength < end + 12) return of("malformed")
      const count = readU32(bytes, end + 8)
      if (count === 0 || parts(bytes, end + 12, count) === undefined) return of("malformed")
      return of(sourceToken(bytes, 4, end))
    }
  }
  const parsed = parse(bytes)
  if (parsed === undefined) return of("malformed")
  const verdict = Array.isArray(parsed.value) ? positional(parsed.value, receiver) : objectFrame(parsed.value, receiver)
  // a frame nested deeper than a bounded decoder may read: dropping it is as right as taking it
  return of(verdict !== "malformed" && depthOf(parsed.value, DEPTH_GREY) > DEPTH_GREY ? "unknown" : verdict)
}
