/**
 * Frames into wire messages: a frame travels whole, or cut into pieces (`pieces.ts`) when it is
 * larger than `chunkBytes` (the last may be up to 1/32 larger: a frame just over a multiple of
 * the chunk size needs no tiny extra piece); an `Items` frame of bytes takes the binary layout
 * (`binaryItems.ts`) rather than the codec. A message never exceeds `maxMessageBytes` on either
 * side. The receiver's side, with its bounds on what strangers can make it hold, is
 * `reassembly.ts`.
 *
 * NATS delivers the messages of one publisher on one subject in order, so pieces are only ever
 * sent to a subject with a single receiver per message (a node's direct subject): a queue group
 * would scatter them.
 *
 * @internal
 */
import * as Either from "effect/Either"
import type { Frame, ItemsFrame } from "../../schema/Envelope.ts"
import { type EncodeError, PayloadTooLarge } from "../../schema/Errors.ts"
import type { CodecShape } from "../Codec.ts"
import { binaryItemsOf, binaryItemsSize, encodeBinaryItems, writeBinaryItems } from "./binaryItems.ts"
import { PieceWriter } from "./pieces.ts"

// moved: import them from `batches.ts`, `pieces.ts` and `reassembly.ts`
export { decodeBatch, encodeBatch } from "./batches.ts"
export { PIECE } from "./pieces.ts"
export { rejectedChunks } from "./reassembly.ts"

/** @internal */
export interface FragmentLimits {
  /** frames whose encoding is larger travel in pieces of this size */
  readonly chunkBytes: number
  /** the largest encoded frame accepted, on send and on arrival */
  readonly maxMessageBytes: number
  /** the largest single wire message (NATS `max_payload`) */
  readonly wireLimit: number
}

const textEncoder = new TextEncoder()

/**
 * Encodes a frame into the wire messages that carry it: one, or its pieces when it is larger
 * than `chunkBytes` and `fragmentable`.
 *
 * @internal
 */
export const makeEncoder = (codec: CodecShape, limits: FragmentLimits) => {
  let nextMessageId = 0
  // a transport speaks for one node: its id is encoded once
  let lastSource = ""
  let lastSourceBytes = new Uint8Array(0)
  let lastSourceWhole = true
  const sourceOf = (source: string): Uint8Array => {
    if (source !== lastSource) {
      lastSource = source
      const whole = textEncoder.encode(source)
      lastSourceWhole = whole.byteLength <= 255
      lastSourceBytes = whole.subarray(0, 255)
    }
    return lastSourceBytes
  }
  /** how a frame of `size` bytes travels: whole (0), in that many pieces, or not at all */
  const plan = (size: number, fragmentable: boolean): number | PayloadTooLarge => {
    if (size > limits.maxMessageBytes) return new PayloadTooLarge({ size, limit: limits.maxMessageBytes })
    if (size <= limits.chunkBytes) return 0
    if (!fragmentable) return size <= limits.wireLimit ? 0 : new PayloadTooLarge({ size, limit: limits.wireLimit })
    const chunk = limits.chunkBytes
    // a frame just over a multiple of the chunk size (an element of 64 KiB and the frame around
    // it) ends in a slightly larger last piece rather than in one more tiny message
    const slack = Math.min(chunk >> 5, Math.max(0, limits.wireLimit - chunk - 512))
    return Math.max(1, Math.ceil((size - slack) / chunk))
  }
  const writerOf = (source: Uint8Array, size: number, count: number): PieceWriter => {
    nextMessageId = (nextMessageId + 1) >>> 0
    return new PieceWriter(source, nextMessageId, size, limits.chunkBytes, count)
  }
  return (
    frame: Frame,
    fragmentable: boolean
  ): Either.Either<Uint8Array | ReadonlyArray<Uint8Array>, EncodeError | PayloadTooLarge> => {
    const items = binaryItemsOf(frame)
    const source = sourceOf(frame.source)
    if (items !== undefined && lastSourceWhole) {
      const size = binaryItemsSize(source, items)
      const count = plan(size, fragmentable)
      if (typeof count !== "number") return Either.left(count)
      if (count === 0) return Either.right(encodeBinaryItems(frame as ItemsFrame, source, items))
      const writer = writerOf(source, size, count)
      writeBinaryItems(writer, frame as ItemsFrame, source, items)
      return Either.right(writer.pieces())
    }
    const encoded = codec.encode(frame)
    if (Either.isLeft(encoded)) return encoded
    const bytes = encoded.right
    const count = plan(bytes.byteLength, fragmentable)
    if (typeof count !== "number") return Either.left(count)
    if (count === 0) return encoded
    const writer = writerOf(source, bytes.byteLength, count)
    writer.write(bytes)
    return Either.right(writer.pieces())
  }
}
