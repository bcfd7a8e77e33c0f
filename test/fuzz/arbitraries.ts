/**
 * fast-check generators of hostile wire frames: every frame type of `src/layers/Codec.ts` (the
 * positional Q, X, I, E, C, T, S and the schema-encoded objects of `src/schema/Envelope.ts`)
 * and the binary layouts of `src/layers/internal/` (`pieces.ts`, `batches.ts`, `binaryItems.ts`),
 * each field usually valid and sometimes not: wrong types, huge, negative and non-finite
 * numbers, odd strings (spaces, CR/LF, unicode, empty, very long), prototype keys, deep
 * nesting; then structural mutations (a field missing or extra, a tag that is an object) and
 * byte mutations of the encoding (truncation, bit flips, garbage).
 */
import * as fc from "effect/FastCheck"
import { Deep, type Encoding, serialize, Verbatim } from "./wireBytes.ts"

/** identifiers the frames draw from, so frames meet real state (ids, kinds, open requests) */
export interface Pools {
  readonly sources: ReadonlyArray<string>
  readonly kinds: ReadonlyArray<string>
  readonly ids: ReadonlyArray<string>
  readonly tags: ReadonlyArray<string>
  readonly subjects: ReadonlyArray<string>
  readonly requestIds: ReadonlyArray<number>
  /** the kinds heartbeats announce (default `kinds`) */
  readonly heartbeatKinds?: ReadonlyArray<string>
}

export const defaultPools: Pools = {
  sources: ["n1", "n2-abc", "stranger"],
  kinds: ["K", "Other"],
  ids: ["", "a", "b"],
  tags: ["Echo", "Get"],
  subjects: ["fuzz.a", "fuzz.b.c"],
  requestIds: [0, 1, 2, 3]
}

// ---- hostile leaves --------------------------------------------------------------------------

/** strings that are not subject tokens, or are unusual ones */
export const oddStrings: ReadonlyArray<string> = [
  "",
  " ",
  "a b c",
  "a\r\nPUB troupe.default.discovery 2\r\nhi",
  "x\nPING",
  "\t",
  "a.b",
  ".",
  "*",
  ">",
  "a*",
  "ü",
  "日本",
  "😀",
  "\u0000",
  "\u2028",
  "\ud800",
  "__proto__",
  "toString",
  "constructor",
  "hasOwnProperty",
  "valueOf",
  "$troupe.b64",
  "Q",
  "Heartbeat"
]

export const oddString: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.constantFrom(...oddStrings), weight: 6 },
  { arbitrary: fc.string({ maxLength: 6 }), weight: 2 },
  { arbitrary: fc.string({ unit: "binary", maxLength: 6 }), weight: 2 },
  // (the corpus holds longer ones)
  { arbitrary: fc.constantFrom(300, 4096).map((n) => "x".repeat(n)), weight: 1 }
)

export const oddNumbers: ReadonlyArray<number> = [
  0,
  -0,
  -1,
  0.5,
  1.5,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 53),
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  -1e308,
  1e21,
  NaN,
  Infinity,
  -Infinity
]

export const oddNumber: fc.Arbitrary<number> = fc.oneof(
  { arbitrary: fc.constantFrom(...oddNumbers), weight: 4 },
  { arbitrary: fc.double(), weight: 1 },
  { arbitrary: fc.integer(), weight: 1 }
)

/** own properties named like `Object.prototype`'s, the way `JSON.parse` makes them */
const protoObject = (key: string, value: unknown): Record<string, unknown> => {
  const o: Record<string, unknown> = {}
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true })
  return o
}

export const protoObjects: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.constantFrom("__proto__", "toString", "constructor", "valueOf", "hasOwnProperty", "_tag").chain((key) =>
    fc.oneof(fc.constant(1), fc.constant("x"), fc.constant(protoObject("toString", 1)), fc.constant(null)).map((v) =>
      protoObject(key, v)
    )
  ),
  fc.constant(protoObject("_tag", protoObject("toString", 1)))
)

export const deep: fc.Arbitrary<Deep> = fc.record({
  // deeper than a recursive walk survives: 3,000 (the corpus holds 100,000)
  depth: fc.oneof({ arbitrary: fc.integer({ min: 2, max: 40 }), weight: 6 }, {
    arbitrary: fc.constant(3000),
    weight: 1
  }),
  shape: fc.constantFrom("array" as const, "object" as const),
  leaf: fc.constantFrom(0, "x", null)
}).map(({ depth, leaf, shape }) => new Deep(depth, leaf, shape))

const smallBytes = fc.uint8Array({ maxLength: 48 })

/** a value of the wrong type for any field */
export const wrongType: fc.Arbitrary<unknown> = fc.oneof(
  oddString,
  oddNumber,
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.constant([]),
  fc.constant({}),
  protoObjects,
  smallBytes,
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }),
  deep,
  fc.array(fc.oneof(oddNumber, oddString), { maxLength: 3 })
)

/** mostly `valid`, sometimes a hostile value of any type */
const field = <A>(valid: fc.Arbitrary<A>, hostile: fc.Arbitrary<unknown> = wrongType): fc.Arbitrary<unknown> =>
  fc.oneof({ arbitrary: valid, weight: 10 }, { arbitrary: hostile, weight: 1 })

const stringField = (pool: ReadonlyArray<string>) =>
  field(fc.constantFrom(...pool), fc.oneof({ arbitrary: oddString, weight: 2 }, { arbitrary: wrongType, weight: 1 }))

const numberField = (valid: fc.Arbitrary<number>) =>
  field(valid, fc.oneof({ arbitrary: oddNumber, weight: 2 }, { arbitrary: wrongType, weight: 1 }))

// ---- bodies and headers ----------------------------------------------------------------------

/** payloads: well-formed for the fuzz kinds' Rpcs, or any JSON value, or hostile */
export const body: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.record({ n: fc.oneof(fc.integer({ min: -5, max: 5 }), oddNumber) }), weight: 4 },
  { arbitrary: fc.record({ data: fc.constant("placeholder") }), weight: 1 },
  { arbitrary: fc.jsonValue({ maxDepth: 3 }), weight: 2 },
  { arbitrary: wrongType, weight: 2 }
)

const headerKey = fc.constantFrom("traceparent", "troupe-unreachable", "x-user", "__proto__", "toString", "")
const headerValue = fc.oneof(
  fc.constantFrom("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "stranger", "", "a b\r\n"),
  oddString
)

export const headers: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.constant(0), weight: 6 },
  {
    arbitrary: fc.array(fc.tuple(headerKey, headerValue), { maxLength: 3 }).map((entries) => {
      const o: Record<string, unknown> = {}
      for (const [k, v] of entries) {
        Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true })
      }
      return o
    }),
    weight: 3
  },
  { arbitrary: fc.constant({}), weight: 1 },
  { arbitrary: wrongType, weight: 1 }
)

const version = field(fc.constant(1), fc.oneof(fc.constantFrom(0, 2, "1", 1.0000001, 99), wrongType))

// ---- frames ----------------------------------------------------------------------------------

/** a generated frame: its plain value on the wire and a mutation of its bytes */
export interface FuzzFrame {
  readonly type: string
  readonly value: unknown
  readonly bytes: ByteMutation
}

export type ByteMutation =
  | { readonly _tag: "None" }
  | { readonly _tag: "Truncate"; readonly at: number }
  | { readonly _tag: "Flip"; readonly flips: ReadonlyArray<readonly [number, number]> }
  | { readonly _tag: "Append"; readonly extra: Uint8Array }
  | { readonly _tag: "FirstByte"; readonly byte: number }

/** several encoded frames in one message: the `0xC2` layout */
export class BatchOf {
  constructor(readonly frames: ReadonlyArray<unknown>, readonly countDelta: number) {}
  toJSON(): unknown {
    return { batch: this.frames, countDelta: this.countDelta }
  }
}

const requestFrame = (p: Pools) =>
  fc.record({
    v: version,
    source: stringField(p.sources),
    requestId: numberField(fc.constantFrom(...p.requestIds)),
    kind: stringField(p.kinds),
    id: stringField(p.ids),
    tag: stringField(p.tags),
    headers,
    flags: numberField(fc.constantFrom(0, 1, 2, 3, 4, 5, 6, 7)),
    hops: numberField(fc.constantFrom(0, 0, 1, 2, 3)),
    body
  }).map(({ body, flags, headers, hops, id, kind, requestId, source, tag, v }) => {
    const head: Array<unknown> = ["Q", v, source, requestId, kind, id, tag, headers, flags, hops]
    if (typeof flags !== "number" || (flags & 2) === 0) head.push(body)
    return head
  })

const replyFrame = (p: Pools) =>
  fc.record({
    v: version,
    source: stringField(p.sources),
    requestId: numberField(fc.constantFrom(...p.requestIds)),
    outcome: field(fc.constantFrom(0, 1), fc.oneof(fc.constantFrom(2, -1, "0"), wrongType)),
    value: fc.option(body, { nil: undefined })
  }).map(({ outcome, requestId, source, v, value }) => {
    const head: Array<unknown> = ["X", v, source, requestId, outcome]
    if (value !== undefined) head.push(value)
    return head
  })

const interruptFrame = (p: Pools) =>
  fc.tuple(version, stringField(p.sources), numberField(fc.constantFrom(...p.requestIds))).map((
    [v, source, requestId]
  ) => [
    "I",
    v,
    source,
    requestId
  ])

const eventFrame = (p: Pools) =>
  fc.record({
    v: version,
    source: stringField(p.sources),
    subject: stringField(p.subjects),
    headers,
    body: fc.option(body, { nil: undefined })
  }).map(({ body, headers, source, subject, v }) => {
    const head: Array<unknown> = ["E", v, source, subject, headers]
    if (body !== undefined) head.push(body)
    return head
  })

const chunkFrame = (p: Pools) =>
  fc.tuple(
    version,
    stringField(p.sources),
    numberField(fc.constantFrom(...p.requestIds)),
    numberField(fc.nat(4)),
    field(fc.constantFrom(0, 1)),
    field(smallBytes)
  ).map(([v, source, requestId, seq, last, bytes]) => ["C", v, source, requestId, seq, last, bytes])

const itemsFrame = (p: Pools) =>
  fc.record({
    v: version,
    source: stringField(p.sources),
    requestId: numberField(fc.constantFrom(...p.requestIds)),
    seq: numberField(fc.nat(70)),
    flags: numberField(fc.constantFrom(0, 1, 2, 3)),
    items: field(fc.array(fc.oneof(fc.integer({ min: -3, max: 3 }), smallBytes, body), { maxLength: 4 })),
    failure: fc.option(field(fc.constantFrom("boom", "")), { nil: undefined })
  }).map(({ failure, flags, items, requestId, seq, source, v }) => {
    const head: Array<unknown> = ["T", v, source, requestId, seq, flags, items]
    if (failure !== undefined) head.push(failure)
    return head
  })

const sealedFrame = (p: Pools) =>
  fc.record({
    v: version,
    source: stringField(p.sources),
    mode: numberField(fc.constantFrom(0, 1, 2, 4, 5, 6, 3, 7, 8)),
    key: numberField(fc.constantFrom(0, 1, 2 ** 32 - 1)),
    counter: numberField(fc.constantFrom(0, 1, 2, 2 ** 53)),
    subject: field(fc.oneof(fc.constant(0), fc.constantFrom(...p.subjects), fc.constantFrom("discovery", "actor.K"))),
    body: field(fc.uint8Array({ minLength: 0, maxLength: 64 })),
    sig: fc.option(field(fc.uint8Array({ minLength: 0, maxLength: 64 })), { nil: undefined })
  }).map(({ body, counter, key, mode, sig, source, subject, v }) => {
    const head: Array<unknown> = ["S", v, source, mode, key, counter, subject, body]
    if (sig !== undefined) head.push(sig)
    return head
  })

/** an own-property object (keys such as `__proto__` stay plain keys) */
const objectOf = (entries: Record<string, unknown>): Record<string, unknown> => {
  const o: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(entries)) {
    if (v !== undefined) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true })
  }
  return o
}

const tagField = (tag: string) => field(fc.constant(tag), fc.oneof(oddString, protoObjects, wrongType))

const ackFrame = (p: Pools) =>
  fc.record({
    _tag: tagField("Ack"),
    v: version,
    source: stringField(p.sources),
    requestId: numberField(fc.constantFrom(...p.requestIds)),
    credit: numberField(fc.constantFrom(1, 16, 64)),
    upload: fc.option(field(fc.boolean()), { nil: undefined })
  }).map(objectOf)

const heartbeatFrame = (p: Pools) =>
  fc.record({
    _tag: tagField("Heartbeat"),
    v: version,
    source: stringField(p.sources),
    name: stringField(["n1", "n2"]),
    incarnation: stringField(["n1.1", "n2.7"]),
    address: stringField(["in-memory://n1", "nats://127.0.0.1:4222"]),
    kinds: field(fc.array(stringField(p.heartbeatKinds ?? p.kinds), { maxLength: 3 })),
    isServing: field(fc.boolean()),
    startedAt: numberField(fc.constantFrom(0, 1000)),
    periodMillis: numberField(fc.constantFrom(1000, 500)),
    leaving: fc.option(field(fc.boolean()), { nil: undefined })
  }).map(objectOf)

const handshakeFrame = (p: Pools) =>
  fc.record({
    _tag: tagField("Handshake"),
    v: version,
    source: stringField(p.sources),
    step: numberField(fc.constantFrom(1, 2, 3, 4, 5, 9)),
    body: field(handshakeBody)
  }).map(objectOf)

/** length-prefixed parts, as handshake bodies are made, with lengths that may lie */
export const handshakeBody: fc.Arbitrary<Uint8Array> = fc.record({
  parts: fc.array(
    fc.oneof(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ minLength: 4, maxLength: 4 }),
      fc.uint8Array({ maxLength: 40 }),
      fc.constantFrom("default", "other").map((s) => new TextEncoder().encode(s))
    ),
    { maxLength: 7 }
  ),
  lie: fc.option(fc.tuple(fc.nat(6), fc.constantFrom(0, 2 ** 32 - 1, 5 * 1024 * 1024, 1)), { nil: undefined })
}).map(({ lie, parts }) => {
  const size = parts.reduce((n, part) => n + 4 + part.byteLength, 0)
  const bytes = new Uint8Array(size)
  const view = new DataView(bytes.buffer)
  let at = 0
  parts.forEach((part, i) => {
    view.setUint32(at, lie !== undefined && lie[0] === i ? lie[1] : part.byteLength)
    bytes.set(part, at + 4)
    at += 4 + part.byteLength
  })
  return bytes
})

/** the schema-encoded (object) forms of the hot frames, which every codec also reads */
const objectFrames = (p: Pools) =>
  fc.oneof(
    fc.record({
      _tag: tagField("Request"),
      v: version,
      source: stringField(p.sources),
      requestId: numberField(fc.constantFrom(...p.requestIds)),
      kind: stringField(p.kinds),
      id: stringField(p.ids),
      tag: stringField(p.tags),
      headers: field(fc.constant({})),
      body,
      oneWay: fc.option(field(fc.boolean()), { nil: undefined }),
      stream: fc.option(field(fc.boolean()), { nil: undefined }),
      hops: fc.option(numberField(fc.nat(3)), { nil: undefined })
    }).map(objectOf),
    fc.record({
      _tag: tagField("Exit"),
      v: version,
      source: stringField(p.sources),
      requestId: numberField(fc.constantFrom(...p.requestIds)),
      exit: field(
        fc.oneof(
          fc.record({ _tag: fc.constant("Success"), value: body }),
          fc.record({ _tag: fc.constant("Failure"), error: body }),
          fc.record({
            _tag: fc.constant("Error"),
            error: fc.oneof(
              fc.record({
                _tag: fc.constant("ActorNotFound"),
                kind: stringField(p.kinds),
                id: stringField(p.ids),
                node: stringField(p.sources)
              }),
              fc.record({
                _tag: fc.constant("AskTimeout"),
                kind: stringField(p.kinds),
                id: stringField(p.ids),
                elapsedMillis: numberField(fc.nat())
              }),
              fc.record({
                _tag: field(fc.constantFrom("RemoteDefect", "DecodeError", "Nope")),
                message: stringField(["m"])
              }),
              protoObjects
            )
          })
        ),
        fc.oneof(protoObjects, wrongType)
      )
    }).map(objectOf),
    fc.record({
      _tag: tagField("Items"),
      v: version,
      source: stringField(p.sources),
      requestId: numberField(fc.constantFrom(...p.requestIds)),
      seq: numberField(fc.nat(3)),
      items: field(fc.array(body, { maxLength: 3 })),
      upload: fc.option(field(fc.boolean()), { nil: undefined }),
      end: fc.option(field(fc.boolean()), { nil: undefined })
    }).map(objectOf),
    fc.record({
      _tag: tagField("Event"),
      v: version,
      source: stringField(p.sources),
      subject: stringField(p.subjects),
      headers: field(fc.constant({})),
      body
    }).map(objectOf)
  )

// ---- binary layouts --------------------------------------------------------------------------

/** a piece (0xC1): possibly a forged first piece announcing a huge frame */
const pieceFrame = (p: Pools) =>
  fc.record({
    version: fc.oneof({ arbitrary: fc.constant(1), weight: 9 }, { arbitrary: fc.nat(255), weight: 1 }),
    last: fc.oneof({ arbitrary: fc.constantFrom(0, 1), weight: 9 }, { arbitrary: fc.nat(255), weight: 1 }),
    source: fc.oneof(fc.constantFrom(...p.sources), oddString.filter((s) => s.length < 200)),
    messageId: fc.constantFrom(0, 1, 2, 2 ** 32 - 1),
    seq: fc.constantFrom(0, 0, 1, 2, 2 ** 32 - 1),
    total: fc.constantFrom(0, 16, 64, 5 * 1024 * 1024, 5 * 1024 * 1024 + 1, 2 ** 32 - 1),
    body: fc.uint8Array({ maxLength: 64 }),
    cut: fc.option(fc.nat(20), { nil: undefined })
  }).map(({ body, cut, last, messageId, seq, source, total, version }) => {
    const src = new TextEncoder().encode(source).subarray(0, 255)
    const bytes = new Uint8Array(4 + src.byteLength + 12 + body.byteLength)
    const view = new DataView(bytes.buffer)
    bytes[0] = 0xc1
    bytes[1] = version
    bytes[2] = last
    bytes[3] = src.byteLength
    bytes.set(src, 4)
    view.setUint32(4 + src.byteLength, messageId >>> 0)
    view.setUint32(8 + src.byteLength, seq >>> 0)
    view.setUint32(12 + src.byteLength, total >>> 0)
    bytes.set(body, 16 + src.byteLength)
    return new Verbatim(cut === undefined ? bytes : bytes.subarray(0, Math.min(cut, bytes.byteLength)))
  })

/** an Items frame of bytes in the binary layout (0xC3) */
const binaryItemsFrame = (p: Pools) =>
  fc.record({
    version: fc.oneof({ arbitrary: fc.constant(1), weight: 9 }, { arbitrary: fc.nat(255), weight: 1 }),
    flags: fc.oneof({ arbitrary: fc.constantFrom(0, 1, 2, 3), weight: 9 }, { arbitrary: fc.nat(255), weight: 1 }),
    source: fc.oneof(fc.constantFrom(...p.sources), oddString.filter((s) => s.length < 200)),
    requestId: fc.constantFrom(...p.requestIds.filter((n) => n >= 0 && Number.isInteger(n))),
    seq: fc.constantFrom(0, 1, 2 ** 32 - 1),
    items: fc.array(fc.uint8Array({ maxLength: 16 }), { maxLength: 3 }),
    countDelta: fc.oneof({ arbitrary: fc.constant(0), weight: 8 }, {
      arbitrary: fc.constantFrom(-1, 1, 1000000),
      weight: 1
    })
  }).map(({ countDelta, flags, items, requestId, seq, source, version }) => {
    const src = new TextEncoder().encode(source).subarray(0, 255)
    let size = 4 + src.byteLength + 12
    for (const item of items) size += 4 + item.byteLength
    const bytes = new Uint8Array(size)
    const view = new DataView(bytes.buffer)
    bytes[0] = 0xc3
    bytes[1] = version
    bytes[2] = flags
    bytes[3] = src.byteLength
    bytes.set(src, 4)
    let at = 4 + src.byteLength
    view.setUint32(at, requestId >>> 0)
    view.setUint32(at + 4, seq >>> 0)
    view.setUint32(at + 8, Math.max(0, items.length + countDelta) >>> 0)
    at += 12
    for (const item of items) {
      view.setUint32(at, item.byteLength)
      bytes.set(item, at + 4)
      at += 4 + item.byteLength
    }
    return new Verbatim(bytes)
  })

// ---- mutations -------------------------------------------------------------------------------

const structural = (value: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> =>
  fc.oneof(
    { arbitrary: value, weight: 12 },
    // an element or key missing, or one too many
    { arbitrary: fc.tuple(value, fc.nat(12)).map(([v, i]) => dropOne(v, i)), weight: 1 },
    { arbitrary: fc.tuple(value, wrongType).map(([v, extra]) => addOne(v, extra)), weight: 1 },
    // the tag (first element) an object with prototype keys: `[{"toString":1}]`, `[{"_tag":{"toString":1}}]`
    {
      arbitrary: fc.tuple(value, protoObjects).map(([v, tag]) => (Array.isArray(v) ? [tag, ...v.slice(1)] : v)),
      weight: 1
    },
    // wrapped in nesting
    {
      arbitrary: fc.tuple(
        value,
        fc.oneof({ arbitrary: fc.integer({ min: 1, max: 20 }), weight: 3 }, { arbitrary: fc.constant(3000), weight: 1 })
      ).map(([v, depth]) => new Deep(depth, v, "array")),
      weight: 1
    }
  )

const dropOne = (value: unknown, index: number): unknown => {
  if (Array.isArray(value)) return value.length === 0 ? value : value.filter((_, i) => i !== index % value.length)
  if (typeof value === "object" && value !== null) {
    const keys = Object.keys(value)
    if (keys.length === 0) return value
    const drop = keys[index % keys.length]
    return objectOf(
      Object.fromEntries(keys.filter((k) => k !== drop).map((k) => [k, (value as Record<string, unknown>)[k]]))
    )
  }
  return value
}

const addOne = (value: unknown, extra: unknown): unknown => {
  if (Array.isArray(value)) return [...value, extra]
  if (typeof value === "object" && value !== null) {
    const o = objectOf(value as Record<string, unknown>)
    Object.defineProperty(o, "__proto__", { value: extra ?? 1, enumerable: true, writable: true, configurable: true })
    return o
  }
  return value
}

const byteMutation: fc.Arbitrary<ByteMutation> = fc.oneof(
  { arbitrary: fc.constant({ _tag: "None" } as const), weight: 14 },
  {
    arbitrary: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }).map((at) => ({
      _tag: "Truncate" as const,
      at
    })),
    weight: 2
  },
  {
    arbitrary: fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), fc.nat(7)), {
      minLength: 1,
      maxLength: 3
    })
      .map((flips) => ({ _tag: "Flip" as const, flips })),
    weight: 2
  },
  {
    arbitrary: fc.uint8Array({ minLength: 1, maxLength: 8 }).map((extra) => ({ _tag: "Append" as const, extra })),
    weight: 1
  },
  {
    arbitrary: fc.constantFrom(0xc1, 0xc2, 0xc3, 0x5b, 0x7b, 0x00, 0xff).map((byte) => ({
      _tag: "FirstByte" as const,
      byte
    })),
    weight: 1
  }
)

/** applies a byte mutation to an encoding */
export const mutate = (bytes: Uint8Array, mutation: ByteMutation): Uint8Array => {
  switch (mutation._tag) {
    case "None":
      return bytes
    case "Truncate":
      return bytes.slice(0, Math.floor(mutation.at * bytes.byteLength))
    case "Flip": {
      const out = bytes.slice()
      if (out.byteLength === 0) return out
      for (const [at, bit] of mutation.flips) out[Math.floor(at * out.byteLength)]! ^= 1 << bit
      return out
    }
    case "Append": {
      const out = new Uint8Array(bytes.byteLength + mutation.extra.byteLength)
      out.set(bytes)
      out.set(mutation.extra, bytes.byteLength)
      return out
    }
    case "FirstByte": {
      const out = bytes.slice()
      if (out.byteLength > 0) out[0] = mutation.byte
      return out
    }
  }
}

/** the wire bytes of a generated frame in `encoding` (batches hold frames of that encoding) */
export const wireOf = (frame: FuzzFrame, encoding: Encoding): Uint8Array => {
  const value = frame.value
  if (value instanceof BatchOf) {
    const inner = value.frames.map((f) => serialize(f, encoding))
    let size = 5
    for (const f of inner) size += 4 + f.byteLength
    const bytes = new Uint8Array(size)
    const view = new DataView(bytes.buffer)
    bytes[0] = 0xc2
    view.setUint32(1, Math.max(0, inner.length + value.countDelta) >>> 0)
    let at = 5
    for (const f of inner) {
      view.setUint32(at, f.byteLength)
      bytes.set(f, at + 4)
      at += 4 + f.byteLength
    }
    return mutate(bytes, frame.bytes)
  }
  return mutate(serialize(value, encoding), frame.bytes)
}

/** the frame types, by name */
export const frameTypes = (p: Pools) => ({
  Q: requestFrame(p),
  X: replyFrame(p),
  I: interruptFrame(p),
  E: eventFrame(p),
  C: chunkFrame(p),
  T: itemsFrame(p),
  S: sealedFrame(p),
  Ack: ackFrame(p),
  Heartbeat: heartbeatFrame(p),
  Handshake: handshakeFrame(p),
  Objects: objectFrames(p),
  Piece: pieceFrame(p),
  BinaryItems: binaryItemsFrame(p)
})

export type FrameType = keyof ReturnType<typeof frameTypes>

/**
 * Frames of the given types (weights: how often each), mutated; some messages are batches of
 * such frames, a few are random bytes.
 */
export const frames = (
  p: Pools,
  weights: Partial<Record<FrameType, number>>,
  options: { readonly batches?: boolean } = {}
): fc.Arbitrary<FuzzFrame> => {
  const all = frameTypes(p)
  const chosen = (Object.entries(weights) as Array<[FrameType, number]>).filter(([, w]) => w > 0)
  const one = fc.oneof(...chosen.map(([type, weight]) => ({
    // binary layouts are mutated as bytes only
    arbitrary: (type === "Piece" || type === "BinaryItems" ? all[type] : structural(all[type])).map((value) => ({
      type,
      value
    })),
    weight
  })))
  const positionalTypes = chosen.filter(([type]) => type.length === 1 || type === "Ack" || type === "Heartbeat")
  const batchable = positionalTypes.length > 0 ? fc.oneof(...positionalTypes.map(([type]) => all[type])) : undefined
  const variants: Array<fc.WeightedArbitrary<{ readonly type: string; readonly value: unknown }>> = [
    { arbitrary: one, weight: 40 },
    {
      arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes) => ({
        type: "random bytes",
        value: new Verbatim(bytes)
      })),
      weight: 2
    }
  ]
  if (batchable !== undefined && options.batches !== false) {
    variants.push({
      arbitrary: fc.tuple(
        fc.array(batchable, { minLength: 1, maxLength: 4 }),
        fc.oneof(
          { arbitrary: fc.constant(0), weight: 8 },
          { arbitrary: fc.constantFrom(-1, 1, 2 ** 31), weight: 1 }
        )
      ).map(([framesOf, delta]) => ({ type: "batch", value: new BatchOf(framesOf, delta) })),
      weight: 2
    })
  }
  return fc.tuple(fc.oneof(...variants), byteMutation).map(([{ type, value }, bytes]) => ({ type, value, bytes }))
}
