/**
 * The codecs under hostile bytes: every generated frame of every type, in both encodings, through
 * both codecs. Decoding is total (a value or a typed `DecodeError`, never a throw), agrees with
 * an independent reading of the wire layouts, and what it returns is a valid envelope. Also the
 * reassembly of pieces: memory is reserved as bytes arrive, not as a header announces.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as fc from "effect/FastCheck"
import * as Schema from "effect/Schema"
import * as Codec from "../../src/layers/Codec.ts"
import { decodePiece, type Piece } from "../../src/layers/internal/pieces.ts"
import { Reassembler } from "../../src/layers/internal/reassembly.ts"
import { Envelope } from "../../src/schema/Envelope.ts"
import { defaultPools, frames, type FrameType, wireOf } from "./arbitraries.ts"
import { bytesOf, corpus } from "./corpus/corpus.ts"
import { check, FRAMES_PER_PATH, parameters } from "./settings.ts"
import { encodings, hex, judge } from "./wireBytes.ts"

const codecs = [Codec.jsonCodec, Codec.msgpackCodec]

const everyType: Record<FrameType, number> = {
  Q: 4,
  X: 3,
  I: 2,
  E: 2,
  C: 1,
  T: 2,
  S: 2,
  Ack: 2,
  Heartbeat: 3,
  Handshake: 1,
  Objects: 3,
  Piece: 0,
  BinaryItems: 0
}

const isEnvelope = Schema.is(Envelope)

/** decodes, turning a throw into a failure that names the bytes */
const decodeOrReport = (codec: Codec.CodecShape, bytes: Uint8Array) => {
  try {
    return codec.decode(bytes)
  } catch (error) {
    throw new Error(`${codec.name}.decode threw ${String(error).slice(0, 200)} on ${hex(bytes.subarray(0, 256))}`)
  }
}

describe("codec fuzz", () => {
  it("decoding is total, agrees with the wire layouts, and returns valid envelopes", async () => {
    let seen = 0
    await check(
      "codec.decode (json, msgpack)",
      fc.property(frames(defaultPools, everyType), (frame) => {
        for (const encoding of encodings) {
          const bytes = wireOf(frame, encoding)
          const { verdict } = judge(bytes, { receiver: false })
          for (const codec of codecs) {
            const decoded = decodeOrReport(codec, bytes)
            seen++
            if (verdict === "malformed") {
              expect(
                Either.isLeft(decoded),
                `${codec.name} accepted a malformed ${frame.type} frame ${hex(bytes.subarray(0, 256))}`
              ).toBe(true)
            }
            if (Either.isRight(decoded)) {
              expect(
                verdict,
                `${codec.name} accepted a ${frame.type} frame the layouts reject: ${hex(bytes.subarray(0, 256))}`
              ).not.toBe("malformed")
              expect(isEnvelope(decoded.right), `${codec.name} returned a frame that is not an envelope`).toBe(true)
            } else {
              expect(decoded.left._tag).toBe("DecodeError")
            }
          }
        }
      }),
      parameters(FRAMES_PER_PATH)
    )
    expect(seen).toBeGreaterThanOrEqual(FRAMES_PER_PATH * 4)
  })

  it("random bytes decode to a value or a DecodeError", async () => {
    await check(
      "codec.decode random bytes",
      fc.property(
        fc.uint8Array({ maxLength: 96 }),
        fc.constantFrom(0x5b, 0x7b, 0x91, 0x93, 0x81, 0xdc, 0xc1),
        (bytes, first) => {
          const withHead = new Uint8Array([first, ...bytes])
          for (const input of [bytes, withHead]) for (const codec of codecs) decodeOrReport(codec, input)
        }
      ),
      parameters(FRAMES_PER_PATH / 2)
    )
  })

  it.each(corpus.map((entry) => [entry.name, entry] as const))("corpus: %s", (_name, entry) => {
    const bytes = bytesOf(entry)
    for (const codec of codecs) {
      const decoded = decodeOrReport(codec, bytes)
      if (entry.expect === "drop" && judge(bytes, { receiver: false }).verdict === "malformed") {
        expect(Either.isLeft(decoded)).toBe(true)
      }
    }
  })

  it("partial messages hold no more memory than the bytes that arrived", async () => {
    const limit = 5 * 1024 * 1024
    const piece = fc.record({
      source: fc.constantFrom("a", "b", "c"),
      requestId: fc.nat(20),
      seq: fc.constantFrom(0, 0, 0, 1, 2),
      total: fc.constantFrom(64, 1024, limit, limit + 1),
      last: fc.boolean(),
      body: fc.uint8Array({ maxLength: 64 })
    })
    await check(
      "Reassembler",
      fc.property(fc.array(piece, { minLength: 1, maxLength: 200 }), (pieces) => {
        const reassembler = new Reassembler(limit)
        // the bytes of each partial message that arrived (upper bound: every body accepted)
        let arrived = 0
        for (const p of pieces) {
          const accepted: Piece = { _tag: "Chunk", v: 1, ...p }
          arrived += p.body.byteLength + 64
          reassembler.accept(accepted)
          expect(reassembler.heldBytes, `held ${reassembler.heldBytes} bytes after ${arrived} arrived`)
            .toBeLessThanOrEqual(arrived)
        }
      }),
      parameters(200)
    )
  })

  it("a piece's header is read or refused, never thrown on", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        const withHead = new Uint8Array([0xc1, 1, 0, ...bytes])
        decodePiece(withHead)
        decodePiece(bytes)
      }),
      parameters(2000)
    )
  })
})
