/**
 * The receiving end every serializing transport shares: the limits of a transport (message size,
 * chunk size, wire limit), and the path from wire bytes to frames (batches opened, pieces joined,
 * binary items read, the rest decoded by the `Codec`), which drops (counts, and reports at a
 * bounded rate) what cannot be decoded and never throws.
 *
 * @internal
 */
import type { Frame } from "../../schema/Envelope.ts"
import { PayloadTooLarge } from "../../schema/Errors.ts"
import { type CodecShape, decodeFrame, Malformed } from "../Codec.ts"
import { BATCH, decodeBatch } from "./batches.ts"
import { BINARY_ITEMS, decodeBinaryItems } from "./binaryItems.ts"
import * as Drops from "./drops.ts"
import type { FragmentLimits } from "./fragments.ts"
import { decodePiece, PIECE } from "./pieces.ts"
import { Reassembler } from "./reassembly.ts"

/** @internal the default per-message limit: 5 MiB */
export const DEFAULT_MAX_MESSAGE_BYTES = 5 * 1024 * 1024

/** @internal the default chunk size: frames larger than 16 KiB travel in pieces of 16 KiB */
export const DEFAULT_CHUNK_BYTES = 16 * 1024

/** @internal a transport's limits from its options and the largest message its wire carries */
export const resolveLimits = (
  options: { readonly maxMessageBytes?: number | undefined; readonly chunkBytes?: number | undefined },
  wireLimit: number
): FragmentLimits => {
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES
  const chunkBytes = Math.min(options.chunkBytes ?? DEFAULT_CHUNK_BYTES, wireLimit - 1024)
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 1) {
    throw new RangeError(`maxMessageBytes must be a whole number >= 1, got ${maxMessageBytes}`)
  }
  if (!Number.isInteger(chunkBytes) || chunkBytes < 256) {
    throw new RangeError(`chunkBytes must be a whole number >= 256 (and below the wire limit), got ${chunkBytes}`)
  }
  return { maxMessageBytes, chunkBytes, wireLimit }
}

/**
 * @internal Where a wire message's reply subject can be read. It is read only for a message
 * dropped as too large: nats.js decodes it on access, which every message should not pay for.
 */
export interface ReplySource {
  readonly reply?: string | undefined
}

const countOnly: Drops.Drop = () => Drops.malformedFrames.unsafeUpdate(1, [])

/**
 * @internal The receiving end of one subscription: decodes wire messages, joins the pieces of
 * large frames, drops (counts, and reports at a bounded rate) what cannot be decoded. It never
 * throws: whatever a frame makes throw, in decoding or in `onFrame`, is a drop too.
 */
export const makeReceiver = (
  codec: CodecShape,
  limits: FragmentLimits,
  onFrame: (frame: Frame) => void,
  onTooLarge?: (error: PayloadTooLarge, replyTo: string) => void,
  drop: Drops.Drop = countOnly,
  /** the subscription's partial messages (expired by `expireIn` of `reassembly.ts`); default one of its own */
  reassembler?: Reassembler
) => {
  const tooLarge = (size: number, source: ReplySource | undefined): void => {
    const replyTo = source?.reply
    if (onTooLarge !== undefined && replyTo) {
      onTooLarge(new PayloadTooLarge({ size, limit: limits.maxMessageBytes }), replyTo)
    }
  }
  const receiveOne = (bytes: Uint8Array, source?: ReplySource): void => {
    try {
      receive(bytes, source)
    } catch (defect) {
      drop(defect)
    }
  }
  const receive = (bytes: Uint8Array, source?: ReplySource): void => {
    if (bytes.byteLength > limits.maxMessageBytes) {
      drop(TOO_LARGE)
      return tooLarge(bytes.byteLength, source)
    }
    if (bytes[0] === BATCH) {
      const frames = decodeBatch(bytes)
      if (frames === undefined) return drop(BAD_BATCH)
      // each frame of a batch on its own: one that throws does not cost the others
      for (const frame of frames) if (frame[0] !== BATCH) receiveOne(frame)
      return
    }
    if (bytes[0] === PIECE) {
      const piece = decodePiece(bytes)
      if (piece === undefined) return drop(BAD_PIECE)
      reassembler ??= new Reassembler(limits.maxMessageBytes)
      // the first piece tells the size of the whole: the sender hears at once if it is too large
      if (piece.seq === 0 && piece.total > limits.maxMessageBytes) tooLarge(piece.total, source)
      const whole = reassembler.accept(piece)
      if (whole === undefined) return
      bytes = whole
    }
    if (bytes[0] === BINARY_ITEMS) {
      const items = decodeBinaryItems(bytes)
      return items === undefined ? drop(BAD_ITEMS) : onFrame(items)
    }
    const frame = decodeFrame(codec, bytes)
    if (frame instanceof Malformed) return drop(frame)
    if (frame._tag === "Chunk") return drop(STRAY_CHUNK)
    onFrame(frame)
  }
  return receiveOne
}

const TOO_LARGE = new Malformed("a message over the size limit")
const BAD_BATCH = new Malformed("a malformed batch")
const BAD_PIECE = new Malformed("a malformed piece of a large frame")
const BAD_ITEMS = new Malformed("a malformed binary Items frame")
const STRAY_CHUNK = new Malformed("a Chunk frame outside the binary piece layout")
