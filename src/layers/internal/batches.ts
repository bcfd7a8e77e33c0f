/**
 * The batch layout: several whole frames for one subject in one wire message, the same in every
 * codec:
 *
 *   0xC2 | count (u32) | (length (u32) | frame bytes) × count
 *
 * 0xC2 (MessagePack's `false`) never starts a frame.
 *
 * @internal
 */
import { readLengthPrefixed, writeLengthPrefixed } from "./layout.ts"

/** @internal the first byte of a batch */
export const BATCH = 0xc2

/** @internal one wire message carrying `frames` (each an encoded frame) */
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
