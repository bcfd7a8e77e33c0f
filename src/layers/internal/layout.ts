/**
 * What the binary wire layouts (pieces, batches, binary items) share: a source node id read
 * back from its bytes, and runs of length-prefixed parts.
 *
 * @internal
 */

const textDecoder = new TextDecoder()

/** @internal node ids are ASCII: read them without a TextDecoder (which costs more than the piece) */
export const readSource = (bytes: Uint8Array, start: number, end: number): string => {
  for (let i = start; i < end; i++) if (bytes[i]! > 0x7f) return textDecoder.decode(bytes.subarray(start, end))
  return String.fromCharCode.apply(null, bytes.subarray(start, end) as unknown as Array<number>)
}

/** @internal writes `parts` from `at` as (length (u32) | bytes) each */
export const writeLengthPrefixed = (
  bytes: Uint8Array,
  view: DataView,
  at: number,
  parts: ReadonlyArray<Uint8Array>
): void => {
  for (const part of parts) {
    view.setUint32(at, part.byteLength)
    bytes.set(part, at + 4)
    at += 4 + part.byteLength
  }
}

/** @internal the `count` (length (u32) | bytes) parts from `at` to the very end of `bytes`, as views; `undefined` if they do not fit exactly */
export const readLengthPrefixed = (
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
