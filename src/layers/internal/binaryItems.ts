/**
 * The binary `Items` layout: an `Items` frame whose elements are all bytes travels in a fixed
 * layout, the same in every codec:
 *
 *   0xC3 | version | flags (1 upload, 2 end) | source length | source (UTF-8) | request id (u32)
 *        | seq (u32) | count (u32) | (length (u32) | bytes) × count
 *
 * The elements are copied once into the message and read back as views of it: no codec pass over
 * bytes that only need carrying. 0xC3 (MessagePack's `true`) never starts a frame.
 *
 * @internal
 */
import { type Frame, type ItemsFrame, ProtocolVersion } from "../../schema/Envelope.ts"
import { END, isSource, itemsFrame, UPLOAD } from "./frames.ts"
import { readLengthPrefixed, readSource, writeLengthPrefixed } from "./layout.ts"

/** @internal the first byte of an `Items` frame in the binary layout */
export const BINARY_ITEMS = 0xc3

/** @internal the elements of an `Items` frame that can travel in the binary layout, if it can */
export const binaryItemsOf = (frame: Frame): ReadonlyArray<Uint8Array> | undefined => {
  if (frame._tag !== "Items" || frame.failure !== undefined || frame.items.length === 0) return undefined
  for (const item of frame.items) if (!(item instanceof Uint8Array)) return undefined
  return frame.items as ReadonlyArray<Uint8Array>
}

/** @internal the size of the binary layout of `items` */
export const binaryItemsSize = (source: Uint8Array, items: ReadonlyArray<Uint8Array>): number => {
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
  bytes[at + 2] = (frame.upload === true ? UPLOAD : 0) | (frame.end === true ? END : 0)
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
  return itemsFrame(source, requestId, seq, items, flags, undefined)
}

/** @internal where the binary layout can be written in parts (the pieces of a large frame) */
export interface PartWriter {
  readonly write: (bytes: Uint8Array) => void
}

/** a 4-byte scratch for the length of each element written into pieces */
const lengthScratch = new Uint8Array(4)
const lengthView = new DataView(lengthScratch.buffer)
/** a scratch for the head of a binary `Items` frame written into pieces */
const headScratch = new Uint8Array(4 + 255 + 12)
const headView = new DataView(headScratch.buffer)

/** @internal writes an `Items` frame in the binary layout into `writer`, element by element */
export const writeBinaryItems = (
  writer: PartWriter,
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
