/**
 * Frames larger than one wire message: the sender cuts the encoded frame into pieces of
 * `chunkBytes` (the last may be up to 1/32 larger: a frame just over a multiple of the chunk size
 * needs no tiny extra piece), the receiver joins them again. A message never exceeds
 * `maxMessageBytes` on either side. The receiver's side, with its bounds on what strangers can make
 * it hold, is `reassembly.ts`.
 *
 * A piece has a fixed binary layout in every codec (it carries bytes of another frame, which
 * neither needs nor deserves a second encoding):
 *
 *   0xC1 | version | last (0 | 1) | source length | source (UTF-8) | message id (u32) | seq (u32)
 *        | total size of the frame (u32) | bytes
 *
 * The total lets the receiver check the frame's size at its first piece. It does not trust it
 * further: it reserves memory as the bytes arrive, copying each piece (no buffer of the
 * connection is kept alive until the last one).
 *
 * 0xC1 is a byte MessagePack never uses, and JSON frames start with `[` or `{`, so a receiver
 * tells a piece from a frame by its first byte.
 *
 * NATS delivers the messages of one publisher on one subject in order, so pieces are only ever
 * sent to a subject with a single receiver per message (a node's direct subject): a queue group
 * would scatter them.
 *
 * @internal
 */
import * as Either from "effect/Either"
import { type ChunkFrame, type Frame, type ItemsFrame, ProtocolVersion } from "../../schema/Envelope.ts"
import { type EncodeError, PayloadTooLarge } from "../../schema/Errors.ts"
import type { CodecShape } from "../Codec.ts"
import { isSource } from "./frames.ts"

export { Reassembler, rejectedChunks } from "./reassembly.ts"

/** @internal */
export interface FragmentLimits {
  /** frames whose encoding is larger travel in pieces of this size */
  readonly chunkBytes: number
  /** the largest encoded frame accepted, on send and on arrival */
  readonly maxMessageBytes: number
  /** the largest single wire message (NATS `max_payload`) */
  readonly wireLimit: number
}

/** @internal the first byte of a piece */
export const PIECE = 0xc1

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()

/** node ids are ASCII: read them without a TextDecoder (which costs more than the piece) */
const readSource = (bytes: Uint8Array, start: number, end: number): string => {
  for (let i = start; i < end; i++) if (bytes[i]! > 0x7f) return textDecoder.decode(bytes.subarray(start, end))
  return String.fromCharCode.apply(null, bytes.subarray(start, end) as unknown as Array<number>)
}

/** @internal a piece as it arrives: a `Chunk` frame and the size of the whole frame */
export interface Piece extends ChunkFrame {
  readonly total: number
}

const headOf = (source: Uint8Array) => 4 + source.byteLength + 12

/** writes `parts` from `at` as (length (u32) | bytes) each */
const writeLengthPrefixed = (bytes: Uint8Array, view: DataView, at: number, parts: ReadonlyArray<Uint8Array>): void => {
  for (const part of parts) {
    view.setUint32(at, part.byteLength)
    bytes.set(part, at + 4)
    at += 4 + part.byteLength
  }
}

/** the `count` (length (u32) | bytes) parts from `at` to the very end of `bytes`, as views; `undefined` if they do not fit exactly */
const readLengthPrefixed = (
  bytes: Uint8Array,
  view: DataView,
  at: number,
  count: number
): Array<Uint8Array> | undefined => {
  if (count * 4 > bytes.byteLength - at) return undefined
  const parts: Array<Uint8Array> = []
  for (let i = 0; i < count; i++) {
    if (at + 4 > bytes.byteLength) return undefined
    const length = view.getUint32(at)
    if (at + 4 + length > bytes.byteLength) return undefined
    parts.push(bytes.subarray(at + 4, at + 4 + length))
    at += 4 + length
  }
  return at === bytes.byteLength ? parts : undefined
}

/**
 * @internal the first byte of an `Items` frame whose elements are all bytes, in every codec:
 *
 *   0xC3 | version | flags (1 upload, 2 end) | source length | source (UTF-8) | request id (u32)
 *        | seq (u32) | count (u32) | (length (u32) | bytes) × count
 *
 * The elements are copied once into the message and read back as views of it: no codec pass over
 * bytes that only need carrying. 0xC3 (MessagePack's `true`) never starts a frame.
 */
export const BINARY_ITEMS = 0xc3

const UPLOAD_FLAG = 1
const END_FLAG = 2

/** the elements of an `Items` frame that can travel in the binary layout, if it can */
const binaryItemsOf = (frame: Frame): ReadonlyArray<Uint8Array> | undefined => {
  if (frame._tag !== "Items" || frame.failure !== undefined || frame.items.length === 0) return undefined
  for (const item of frame.items) if (!(item instanceof Uint8Array)) return undefined
  return frame.items as ReadonlyArray<Uint8Array>
}

/** the size of the binary layout of `items` */
const binaryItemsSize = (source: Uint8Array, items: ReadonlyArray<Uint8Array>): number => {
  let size = 4 + source.byteLength + 12 + 4 * items.length
  for (const item of items) size += item.byteLength
  return size
}

/** writes the head of the binary layout (up to the first element's length) into `bytes` at `at` */
const writeBinaryItemsHead = (
  bytes: Uint8Array,
  view: DataView,
  at: number,
  frame: ItemsFrame,
  source: Uint8Array,
  count: number
): number => {
  bytes[at] = BINARY_ITEMS
  bytes[at + 1] = ProtocolVersion
  bytes[at + 2] = (frame.upload === true ? UPLOAD_FLAG : 0) | (frame.end === true ? END_FLAG : 0)
  bytes[at + 3] = source.byteLength
  bytes.set(source, at + 4)
  at += 4 + source.byteLength
  view.setUint32(at, frame.requestId)
  view.setUint32(at + 4, frame.seq)
  view.setUint32(at + 8, count)
  return at + 12
}

/** @internal an `Items` frame of bytes in the binary layout (`source` at most 255 bytes of UTF-8) */
export const encodeBinaryItems = (
  frame: ItemsFrame,
  source: Uint8Array,
  items: ReadonlyArray<Uint8Array>
): Uint8Array => {
  const bytes = new Uint8Array(binaryItemsSize(source, items))
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  writeLengthPrefixed(bytes, view, writeBinaryItemsHead(bytes, view, 0, frame, source, items.length), items)
  return bytes
}

/** @internal the `Items` frame in the binary layout (its elements views of `bytes`), or `undefined` when malformed */
export const decodeBinaryItems = (bytes: Uint8Array): ItemsFrame | undefined => {
  if (bytes.byteLength < 16 || bytes[0] !== BINARY_ITEMS || bytes[1] !== ProtocolVersion || bytes[2]! > 3) {
    return undefined
  }
  const flags = bytes[2]!
  const sourceEnd = 4 + bytes[3]!
  if (bytes.byteLength < sourceEnd + 12) return undefined
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const requestId = view.getUint32(sourceEnd)
  const seq = view.getUint32(sourceEnd + 4)
  const count = view.getUint32(sourceEnd + 8)
  const items = count === 0 ? undefined : readLengthPrefixed(bytes, view, sourceEnd + 12, count)
  if (items === undefined) return undefined
  // the source becomes part of a subject (credit goes back to it): one token with no space, no
  // control character, no wildcard (the node checks the token grammar where it builds the subject)
  const source = readSource(bytes, 4, sourceEnd)
  if (!isSource(source)) return undefined
  return {
    _tag: "Items",
    v: ProtocolVersion,
    source,
    requestId,
    seq,
    items,
    ...((flags & UPLOAD_FLAG) !== 0 ? { upload: true } : {}),
    ...((flags & END_FLAG) !== 0 ? { end: true } : {})
  }
}

/**
 * The pieces of one frame of `size` bytes, laid out back to back in one buffer (each its head,
 * then its share of the frame), and filled in order as the frame is written: a frame's bytes go
 * straight into its pieces, with no whole copy of the frame in between and one allocation for
 * all of them.
 */
class PieceWriter {
  private readonly slab: Uint8Array
  private readonly head: number
  private written = 0

  constructor(
    source: Uint8Array,
    messageId: number,
    private readonly size: number,
    private readonly chunk: number,
    private readonly count: number
  ) {
    const head = this.head = headOf(source)
    const slab = this.slab = new Uint8Array(size + count * head)
    const view = new DataView(slab.buffer, slab.byteOffset, slab.byteLength)
    for (let seq = 0; seq < count; seq++) {
      const at = seq * (chunk + head)
      slab[at] = PIECE
      slab[at + 1] = ProtocolVersion
      slab[at + 2] = seq === count - 1 ? 1 : 0
      slab[at + 3] = source.byteLength
      slab.set(source, at + 4)
      view.setUint32(at + 4 + source.byteLength, messageId)
      view.setUint32(at + 8 + source.byteLength, seq)
      view.setUint32(at + 12 + source.byteLength, size)
    }
  }

  /** the next bytes of the frame */
  write(bytes: Uint8Array): void {
    let from = 0
    while (from < bytes.byteLength) {
      const at = this.written
      const seq = Math.min(Math.floor(at / this.chunk), this.count - 1)
      const end = seq === this.count - 1 ? this.size : (seq + 1) * this.chunk
      const n = Math.min(bytes.byteLength - from, end - at)
      this.slab.set(n === bytes.byteLength ? bytes : bytes.subarray(from, from + n), at + (seq + 1) * this.head)
      from += n
      this.written += n
    }
  }

  /** the pieces, once the whole frame was written */
  pieces(): Array<Uint8Array> {
    const pieces: Array<Uint8Array> = []
    const stride = this.chunk + this.head
    for (let seq = 0; seq < this.count; seq++) {
      pieces.push(this.slab.subarray(seq * stride, seq === this.count - 1 ? this.slab.byteLength : (seq + 1) * stride))
    }
    return pieces
  }
}

/** a 4-byte scratch for the length of each element written into pieces */
const lengthScratch = new Uint8Array(4)
const lengthView = new DataView(lengthScratch.buffer)
/** a scratch for the head of a binary `Items` frame written into pieces */
const headScratch = new Uint8Array(4 + 255 + 12)
const headView = new DataView(headScratch.buffer)

/** writes an `Items` frame in the binary layout into `writer`, element by element */
const writeBinaryItems = (
  writer: PieceWriter,
  frame: ItemsFrame,
  source: Uint8Array,
  items: ReadonlyArray<Uint8Array>
): void => {
  writer.write(headScratch.subarray(0, writeBinaryItemsHead(headScratch, headView, 0, frame, source, items.length)))
  for (const item of items) {
    lengthView.setUint32(0, item.byteLength)
    writer.write(lengthScratch)
    writer.write(item)
  }
}

/** @internal the piece in `bytes`, or `undefined` when it is malformed */
export const decodePiece = (bytes: Uint8Array): Piece | undefined => {
  if (bytes.byteLength < 16 || bytes[0] !== PIECE || bytes[1] !== ProtocolVersion || bytes[2]! > 1) return undefined
  const sourceLength = bytes[3]!
  const head = 4 + sourceLength + 12
  if (bytes.byteLength < head) return undefined
  const view = new DataView(bytes.buffer, bytes.byteOffset + 4 + sourceLength, 12)
  const source = readSource(bytes, 4, 4 + sourceLength)
  if (!isSource(source)) return undefined
  return {
    _tag: "Chunk",
    v: ProtocolVersion,
    source,
    requestId: view.getUint32(0),
    seq: view.getUint32(4),
    total: view.getUint32(8),
    last: bytes[2] === 1,
    body: bytes.subarray(head)
  }
}

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

/**
 * @internal the first byte of a batch: several whole frames for one subject in one wire message
 *
 *   0xC2 | count (u32) | (length (u32) | frame bytes) × count
 */
export const BATCH = 0xc2

/** @internal */
export const encodeBatch = (frames: ReadonlyArray<Uint8Array>): Uint8Array => {
  let size = 5
  for (const frame of frames) size += 4 + frame.byteLength
  const bytes = new Uint8Array(size)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  bytes[0] = BATCH
  view.setUint32(1, frames.length)
  writeLengthPrefixed(bytes, view, 5, frames)
  return bytes
}

/** @internal the frames of a batch (views of `bytes`), or `undefined` when it is malformed */
export const decodeBatch = (bytes: Uint8Array): ReadonlyArray<Uint8Array> | undefined => {
  if (bytes.byteLength < 5 || bytes[0] !== BATCH) return undefined
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  return readLengthPrefixed(bytes, view, 5, view.getUint32(1))
}
