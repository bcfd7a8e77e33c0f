import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import { Packr } from "msgpackr"
import * as Codec from "../../src/layers/Codec.ts"
import { type Envelope, ProtocolVersion } from "../../src/schema/Envelope.ts"
import { MailboxFull } from "../../src/schema/Errors.ts"

const frames: ReadonlyArray<Envelope> = [
  {
    _tag: "Request",
    v: ProtocolVersion,
    source: "a",
    requestId: 7,
    kind: "K",
    id: "i",
    tag: "T",
    headers: { traceparent: "00-1-2-01" },
    body: { nested: [1, "two", null] }
  },
  {
    _tag: "Exit",
    v: ProtocolVersion,
    source: "b",
    requestId: 7,
    exit: { _tag: "Error", error: new MailboxFull({ kind: "K", id: "i", capacity: 1, queue: "mailbox" }) }
  },
  {
    _tag: "Request",
    v: ProtocolVersion,
    source: "a",
    requestId: 8,
    kind: "K",
    id: "i",
    tag: "S",
    headers: {},
    body: 1,
    stream: true
  },
  {
    _tag: "Chunk",
    v: ProtocolVersion,
    source: "a",
    requestId: 1,
    seq: 0,
    body: new Uint8Array([0, 1, 255]),
    last: true
  },
  { _tag: "Event", v: ProtocolVersion, source: "a", subject: "orders.eu", headers: { h: "1" }, body: { total: 1 } },
  { _tag: "Event", v: ProtocolVersion, source: "a", subject: "tick", headers: {}, body: 7 }
]

describe.each([Codec.jsonCodec, Codec.msgpackCodec])("Codec $name", (codec) => {
  it("round-trips every kind of frame, errors as typed instances and bytes as bytes", () => {
    for (const frame of frames) {
      const bytes = Either.getOrThrow(codec.encode(frame))
      const back = Either.getOrThrow(codec.decode(bytes))
      // msgpackr hands binary back as a Buffer (a Uint8Array); compare the bytes
      const plain = back._tag === "Chunk" ? { ...back, body: new Uint8Array(back.body) } : back
      expect(plain).toEqual(frame)
    }
    const exit = Either.getOrThrow(codec.decode(Either.getOrThrow(codec.encode(frames[1]!))))
    expect(exit._tag === "Exit" && exit.exit._tag === "Error" && exit.exit.error).toBeInstanceOf(MailboxFull)
  })

  it("carries a Buffer (and a view into a larger buffer) as its bytes", () => {
    const backing = Buffer.from([9, 9, 1, 2, 3, 9])
    const bodies = [Buffer.from([0, 1, 255]), new Uint8Array(backing.buffer, backing.byteOffset + 2, 3)]
    for (const body of bodies) {
      const frame: Envelope = {
        _tag: "Event",
        v: ProtocolVersion,
        source: "a",
        subject: "s",
        headers: {},
        body: { body }
      }
      const back = Either.getOrThrow(codec.decode(Either.getOrThrow(codec.encode(frame))))
      const carried = back._tag === "Event" ? (back.body as { body: unknown }).body : undefined
      expect(carried).toBeInstanceOf(Uint8Array)
      expect([...(carried as Uint8Array)]).toEqual([...body])
    }
  })

  it("rejects garbage and frames of the wrong shape with DecodeError", () => {
    const garbage = codec.decode(new Uint8Array([0xc1, 0x7b, 0x00]))
    expect(Either.isLeft(garbage) && garbage.left._tag).toBe("DecodeError")
    const wrong = codec.decode(Either.getOrThrow(Codec.msgpackCodec.encode(frames[0]!)).slice(0, 5))
    expect(Either.isLeft(wrong)).toBe(true)
    // a frame of another protocol version, or with a field of the wrong type, is refused
    const foreign = (frame: unknown) =>
      codec.decode(codec.name === "json" ? new TextEncoder().encode(JSON.stringify(frame)) : new Packr().pack(frame))
    for (
      const bad of [
        { ...frames[0]!, v: 99 },
        { ...frames[0]!, requestId: "7" },
        { ...frames[0]!, headers: { a: 1 } },
        { ...frames[1]!, exit: { _tag: "Exploded" } },
        { _tag: "Nonsense", v: 1 },
        // positional hot frames of the wrong shape
        ["Q", 1, "a", 1, "K", "i", "T", 0, 0, 0], // says it has a body, has none
        ["Q", 1, "a", 1, "K", "i", "T", { h: 1 }, 2, 0],
        ["X", 1, "a", 1, 7, "v"],
        ["I", 1, "a"],
        ["Z", 1, "a", 1],
        ["E", 1, "a", 7, 0, 1]
      ]
    ) {
      const decoded = foreign(bad)
      expect(Either.isLeft(decoded) && decoded.left._tag).toBe("DecodeError")
    }
    // an error that is not a Troupe error cannot be encoded
    const notTroupe = codec.encode({ ...frames[1]!, exit: { _tag: "Error", error: new Error("x") } } as never)
    expect(Either.isLeft(notTroupe) && notTroupe.left._tag).toBe("EncodeError")
  })
})

describe("Codec interop", () => {
  it("each codec reads frames written by the other", () => {
    for (const frame of frames) {
      const fromJson = Either.getOrThrow(Codec.msgpackCodec.decode(Either.getOrThrow(Codec.jsonCodec.encode(frame))))
      const fromMsgpack = Either.getOrThrow(Codec.jsonCodec.decode(Either.getOrThrow(Codec.msgpackCodec.encode(frame))))
      for (const back of [fromJson, fromMsgpack]) {
        expect(back._tag === "Chunk" ? { ...back, body: new Uint8Array(back.body) } : back).toEqual(frame)
      }
    }
  })
})

describe("decoding is total: any bytes give a frame or a typed failure", () => {
  const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })
  const text = (s: string) => new TextEncoder().encode(s)
  const both = [Codec.jsonCodec, Codec.msgpackCodec] as const
  const plainOf = (codec: Codec.CodecShape) =>
    codec.name === "json" ? (u: unknown) => text(JSON.stringify(u)) : (u: unknown) => packr.pack(u)

  /** decodes through both entry points, which must agree and never throw */
  const rejects = (codec: Codec.CodecShape, bytes: Uint8Array) => {
    const decoded = codec.decode(bytes)
    expect(Either.isLeft(decoded)).toBe(true)
    if (Either.isLeft(decoded)) {
      expect(decoded.left._tag).toBe("DecodeError")
      expect(decoded.left.issue.length).toBeGreaterThan(0)
    }
    const frame = Codec.decodeFrame(codec, bytes)
    expect(Codec.isMalformed(frame)).toBe(true)
    return Codec.isMalformed(frame) ? frame.issue : ""
  }

  it("the inputs that threw: an object with a non-function toString, in every position", () => {
    // jsonCodec.decode('[{"toString":1}]') threw a TypeError out of the NATS callback
    for (const codec of both) {
      const plain = plainOf(codec)
      rejects(codec, plain([{ toString: 1 }]))
      rejects(codec, plain([{ _tag: { toString: 1 } }]))
      rejects(codec, plain({ _tag: { toString: 1 } }))
      rejects(codec, plain({ _tag: "Heartbeat", v: 1, source: { toString: 1 } }))
      rejects(codec, plain(["Q", 1, { toString: 1 }, 1, "K", "i", "T", 0, 2, 0]))
    }
  })

  it("deep nesting is rejected before parsing, in both codecs, and refused on encode", () => {
    const deep = text("[".repeat(100_000) + "]".repeat(100_000))
    expect(rejects(Codec.jsonCodec, deep)).toContain("nested deeper than 64")
    const deepObject = text("{\"a\":".repeat(100_000) + "1" + "}".repeat(100_000))
    rejects(Codec.jsonCodec, deepObject)
    const deepPack = new Uint8Array(100_001).fill(0x91)
    deepPack[100_000] = 0x01
    expect(rejects(Codec.msgpackCodec, deepPack)).toContain("nested deeper than 64")
    let nested: unknown = 1
    for (let i = 0; i < 80; i++) nested = [nested]
    let fine: unknown = 1
    for (let i = 0; i < 50; i++) fine = [fine]
    const request = (body: unknown): Envelope => ({
      _tag: "Request",
      v: ProtocolVersion,
      source: "a",
      requestId: 1,
      kind: "K",
      id: "i",
      tag: "T",
      headers: {},
      body
    })
    for (const codec of both) {
      const refused = codec.encode(request(nested))
      expect(Either.isLeft(refused) && refused.left._tag === "EncodeError").toBe(true)
      const encoded = codec.encode(request(fine))
      if (Either.isLeft(encoded)) throw encoded.left
      expect(Either.getOrThrow(codec.decode(encoded.right))).toMatchObject({ _tag: "Request", body: fine })
    }
  })

  it("MessagePack counts and lengths must fit the data; extension types frames do not use are refused", () => {
    // 5 bytes announcing 2^24 elements: msgpackr looped over them for about 200 ms
    expect(rejects(Codec.msgpackCodec, new Uint8Array([0xdd, 0x00, 0xff, 0xff, 0xff]))).toContain(
      "count larger than the data"
    )
    rejects(Codec.msgpackCodec, new Uint8Array([0xdc, 0xff, 0xff]))
    rejects(Codec.msgpackCodec, new Uint8Array([0xdb, 0xff, 0xff, 0xff, 0xff, 0x61]))
    rejects(Codec.msgpackCodec, new Uint8Array([0x91, 0x01, 0x02])) // bytes after the value
    rejects(Codec.msgpackCodec, new Uint8Array([0x92, 0xc1, 0x01])) // a byte MessagePack never uses
    // msgpackr's error (0x65), regexp (0x78) and record (0x72) extensions build objects no frame carries
    rejects(Codec.msgpackCodec, new Uint8Array([0x91, 0xd4, 0x65, 0x00]))
    rejects(Codec.msgpackCodec, new Uint8Array([0x91, 0xd4, 0x72, 0x40]))
    const withDate = Codec.msgpackCodec.encode({
      _tag: "Request",
      v: ProtocolVersion,
      source: "a",
      requestId: 1,
      kind: "K",
      id: "i",
      tag: "T",
      headers: {},
      body: { at: new Date(1234), none: undefined }
    })
    // the two extensions the encoder writes (timestamps, undefined) still decode
    expect(Either.getOrThrow(Codec.msgpackCodec.decode(Either.getOrThrow(withDate)))).toMatchObject({
      body: { at: new Date(1234) }
    })
  })

  it("identifiers that become subjects must be subject tokens; subjects concrete", () => {
    for (const codec of both) {
      const plain = plainOf(codec)
      for (const source of ["a b c", "a\r\nb", "", "a.b", "a*", "s".repeat(256), 7]) {
        rejects(codec, plain(["Q", 1, source, 1, "K", "i", "T", 0, 2, 0]))
        rejects(codec, plain(["X", 1, source, 1, 0]))
        rejects(codec, plain({ _tag: "Ack", v: 1, source, requestId: 1, credit: 1 }))
      }
      for (const kind of ["a b", "a.b", "x\n", ""]) rejects(codec, plain(["Q", 1, "src", 1, kind, "i", "T", 0, 2, 0]))
      const heartbeat = {
        _tag: "Heartbeat",
        v: 1,
        source: "n-1",
        name: "n",
        incarnation: "n-1.1",
        address: "in-memory://n",
        kinds: ["K"],
        isServing: true,
        startedAt: 0,
        periodMillis: 1000
      }
      expect(Either.getOrThrow(codec.decode(plain(heartbeat)))).toMatchObject({ _tag: "Heartbeat", source: "n-1" })
      rejects(codec, plain({ ...heartbeat, source: "n 1" }))
      rejects(codec, plain({ ...heartbeat, name: "n\r\n" }))
      rejects(codec, plain({ ...heartbeat, kinds: ["K", "x y"] }))
      for (const subject of ["a b", "a.*", "a.>", "a..b", ".a", ""]) {
        rejects(codec, plain(["E", 1, "src", subject, 0, 1]))
      }
      expect(Either.getOrThrow(codec.decode(plain(["E", 1, "src", "prices.eur", 0, 1])))).toMatchObject({
        subject: "prices.eur"
      })
    }
  })

  it("numbers that count or name things are whole and in range; flags and booleans are what they say", () => {
    for (const codec of both) {
      const plain = plainOf(codec)
      for (const id of [-1, 1.5, Number.MAX_SAFE_INTEGER + 2, "1", null]) {
        rejects(codec, plain(["Q", 1, "src", id, "K", "i", "T", 0, 2, 0]))
        rejects(codec, plain(["I", 1, "src", id]))
      }
      rejects(codec, plain(["Q", 1, "src", 1, "K", "i", "T", 0, 2, 1e9])) // hops
      rejects(codec, plain(["Q", 1, "src", 1, "K", "i", "T", 0, 64, 0])) // flags
      rejects(codec, plain(["T", 1, "src", 1, -1, 0, []])) // seq
      rejects(codec, plain(["T", 1, "src", 1, 0, 9, []])) // flags
      rejects(codec, plain({ _tag: "Ack", v: 1, source: "src", requestId: 1, credit: -3 }))
      rejects(codec, plain({ _tag: "Ack", v: 1, source: "src", requestId: 1, credit: 1, upload: "yes" }))
      rejects(codec, plain({ _tag: "Handshake", v: 1, source: "src", step: 1.5, body: new Uint8Array(1) }))
      rejects(
        codec,
        plain({ _tag: "Exit", v: 1, source: "src", requestId: 1, exit: { _tag: "Error", error: { _tag: "Nope" } } })
      )
      rejects(
        codec,
        plain({
          _tag: "Exit",
          v: 1,
          source: "src",
          requestId: 1,
          exit: { _tag: "Error", error: { _tag: "MailboxFull", kind: 1 } }
        })
      )
    }
    // NaN and infinities travel in MessagePack
    for (const n of [Number.NaN, Infinity, -Infinity]) {
      rejects(Codec.msgpackCodec, packr.pack(["Q", 1, "src", n, "K", "i", "T", 0, 2, 0]))
      rejects(Codec.msgpackCodec, packr.pack(["S", 1, "src", 0, 1, n, 0, new Uint8Array(16)]))
    }
  })

  it("prototype keys are plain data: nothing inherited is read, nothing is polluted", () => {
    for (const codec of both) {
      const json =
        "{\"_tag\":\"Request\",\"v\":1,\"source\":\"src\",\"requestId\":1,\"kind\":\"K\",\"id\":\"i\",\"tag\":\"T\"," +
        "\"headers\":{\"__proto__\":\"x\",\"constructor\":\"y\",\"toString\":\"z\"},\"body\":{\"__proto__\":{\"polluted\":true}}}"
      const bytes = codec.name === "json"
        ? text(json)
        : packr.pack(JSON.parse(json))
      const frame = Either.getOrThrow(codec.decode(bytes))
      expect(frame._tag).toBe("Request")
      expect(({} as Record<string, unknown>).polluted).toBeUndefined()
      rejects(
        codec,
        codec.name === "json"
          ? text("{\"__proto__\":{\"_tag\":\"Ack\"}}")
          : packr.pack(JSON.parse("{\"__proto__\":{\"_tag\":\"Ack\"}}"))
      )
      rejects(codec, plainOf(codec)({ constructor: 1, toString: 2, _tag: "toString" }))
    }
  })

  it("a rejection builds no message until one is read; the public DecodeError still carries it", () => {
    const bytes = text(
      JSON.stringify({
        _tag: "Exit",
        v: 1,
        source: "src",
        requestId: 1,
        exit: { _tag: "Error", error: { _tag: "MailboxFull", kind: 1 } }
      })
    )
    const frame = Codec.decodeFrame(Codec.jsonCodec, bytes)
    expect(Codec.isMalformed(frame) && frame.reason).toContain("runtime error")
    const decoded = Codec.jsonCodec.decode(bytes)
    if (Either.isRight(decoded)) throw new Error("decoded")
    const error = decoded.left
    expect(error.what).toBe("frame")
    expect(error.message).toBe(`cannot decode frame: ${error.issue}`)
    expect(JSON.parse(JSON.stringify(error))).toMatchObject({ _tag: "DecodeError", what: "frame", issue: error.issue })
    let formatted = 0
    const lazy = Codec.lazyDecodeError("payload", () => {
      formatted++
      return "why"
    })
    expect(formatted).toBe(0)
    expect([lazy.issue, lazy.issue, lazy.message]).toEqual(["why", "why", "cannot decode payload: why"])
    expect(formatted).toBe(1)
  })

  it("a custom codec whose deserializer throws, or returns garbage, fails typed", () => {
    const throwing = Codec.make({
      name: "throwing",
      serialize: () => new Uint8Array(0),
      deserialize: () => {
        throw { toString: 1 }
      }
    })
    rejects(throwing, new Uint8Array([1]))
    const garbage = Codec.make({
      name: "garbage",
      serialize: () => new Uint8Array(0),
      deserialize: () => [{ toString: 1 }]
    })
    rejects(garbage, new Uint8Array([1]))
  })
})

describe("JSON codec: a frame with nothing special skips the replacer", () => {
  const request = (body: unknown): Envelope => ({
    _tag: "Request",
    v: ProtocolVersion,
    source: "a",
    requestId: 1,
    kind: "K",
    id: "i",
    tag: "T",
    headers: {},
    body
  })
  const bodyOf = (frame: Envelope): unknown => {
    const back = Either.getOrThrow(Codec.jsonCodec.decode(Either.getOrThrow(Codec.jsonCodec.encode(frame))))
    return back._tag === "Request" ? back.body : undefined
  }

  it("bytes deep in arrays, bytes a toJSON returns and a Date travel as they did; a bigint is an EncodeError", () => {
    expect(bodyOf(request({ a: 1, b: [2, "three", null, { c: true }] }))).toEqual({
      a: 1,
      b: [2, "three", null, { c: true }]
    })
    const deep = bodyOf(request({ list: [[{ bytes: new Uint8Array([1, 2, 3]) }]] })) as {
      list: Array<Array<{ bytes: unknown }>>
    }
    expect(deep.list[0]![0]!.bytes).toBeInstanceOf(Uint8Array)
    expect([...(deep.list[0]![0]!.bytes as Uint8Array)]).toEqual([1, 2, 3])
    const viaToJSON = bodyOf(request({ wrapped: { toJSON: () => ({ bytes: new Uint8Array([7]) }) } })) as {
      wrapped: { bytes: unknown }
    }
    expect(viaToJSON.wrapped.bytes).toBeInstanceOf(Uint8Array)
    expect(bodyOf(request({ at: new Date(0) }))).toEqual({ at: "1970-01-01T00:00:00.000Z" })
    const bigint = Codec.jsonCodec.encode(request({ n: 1n }))
    expect(Either.isLeft(bigint) && bigint.left._tag).toBe("EncodeError")
  })

  it("a value nested deeper than the limit, or a cycle, fails as an EncodeError as before", () => {
    let deep: unknown = 1
    for (let i = 0; i < 100; i++) deep = [deep]
    const tooDeep = Codec.jsonCodec.encode(request(deep))
    expect(Either.isLeft(tooDeep) && tooDeep.left._tag).toBe("EncodeError")
    const cycle: Record<string, unknown> = {}
    cycle["self"] = cycle
    const cyclic = Codec.jsonCodec.encode(request(cycle))
    expect(Either.isLeft(cyclic) && cyclic.left._tag).toBe("EncodeError")
  })
})
