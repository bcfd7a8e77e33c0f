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
  { _tag: "Chunk", v: ProtocolVersion, source: "a", requestId: 1, seq: 0, body: new Uint8Array([0, 1, 255]), last: true },
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
      const frame: Envelope = { _tag: "Event", v: ProtocolVersion, source: "a", subject: "s", headers: {}, body: { body } }
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
