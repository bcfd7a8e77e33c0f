/**
 * Structural checks of encoded frames before they are parsed: both parsers recurse (msgpackr in
 * JavaScript, and everything that walks a parsed value after it, a Schema or `String()`), and
 * msgpackr trusts the element counts it reads (five bytes announcing 2^24 elements cost it
 * about 200 ms before it finds the data missing). These scans are iterative, allocate nothing,
 * and stop at the first problem.
 *
 * @internal
 */

/**
 * How deeply arrays and objects may nest in one frame. The envelope itself takes one to three
 * levels; the rest is the payload's (about 60 levels of user data).
 *
 * @internal
 */
export const MAX_DEPTH = 64

/**
 * Whether the JSON text in `bytes` nests arrays and objects deeper than `max`. A text shorter
 * than `2 * max + 2` bytes cannot, and is not scanned. Brackets inside strings do not count;
 * the multi-byte characters of UTF-8 never contain the ASCII bytes looked for.
 *
 * @internal
 */
export const jsonTooDeep = (bytes: Uint8Array, max: number = MAX_DEPTH): boolean => {
  const n = bytes.length
  if (n < 2 * max + 2) return false
  let depth = 0
  for (let i = 0; i < n; i++) {
    const c = bytes[i]!
    if (c === 0x22) {
      for (i++; i < n; i++) {
        const d = bytes[i]!
        if (d === 0x5c) i++
        else if (d === 0x22) break
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true
    } else if (c === 0x5d || c === 0x7d) {
      depth--
    }
  }
  return false
}

/** the values still to read in each open container (index 0: the one top-level value) */
const remaining = new Float64Array(MAX_DEPTH + 2)

/**
 * Why the MessagePack in `bytes` is not one well-formed value nested at most `max` deep, or
 * `undefined` when it is. Besides the depth it checks that every length and count fits in what
 * is left (each element takes at least one byte), that nothing follows the value, and that the
 * only extension types are the two Troupe's encoder writes (0: `undefined`, -1: a timestamp):
 * msgpackr's other extensions build objects (errors, regular expressions, typed arrays,
 * records, sets, references) that no frame carries.
 *
 * @internal
 */
export const msgpackProblem = (bytes: Uint8Array, max: number = MAX_DEPTH): string | undefined => {
  const n = bytes.length
  const limit = Math.min(max, MAX_DEPTH)
  let pos = 0
  let depth = 0
  remaining[0] = 1
  for (;;) {
    if (remaining[depth] === 0) {
      if (depth === 0) return pos === n ? undefined : "bytes after the value"
      depth--
      continue
    }
    remaining[depth]--
    if (pos >= n) return "truncated"
    const b = bytes[pos++]!
    // positive and negative fixints
    if (b <= 0x7f || b >= 0xe0) continue
    const problem = readHeader(bytes, pos, b)
    if (problem !== undefined) return problem
    pos += header.advance
    if (header.count >= 0) {
      if (header.count > n - pos) return "a count larger than the data"
      if (header.count > 0) {
        if (++depth > limit) return `nested deeper than ${limit}`
        remaining[depth] = header.count
      }
    } else {
      if (header.skip > n - pos) return "truncated"
      pos += header.skip
    }
  }
}

/**
 * What the header of the value read last says: `count` elements follow it (-1: it is not a
 * container) after `advance` more header bytes, or `skip` bytes (its length bytes and data).
 * One shared record: the scan allocates nothing.
 */
const header = { count: -1, skip: 0, advance: 0 }

const sized = (skip: number): undefined => {
  header.skip = skip
  return undefined
}

/** reads the header of the value whose first byte `b` precedes `pos` into `header`; a problem, or undefined */
const readHeader = (bytes: Uint8Array, pos: number, b: number): string | undefined => {
  const n = bytes.length
  header.count = -1
  header.skip = 0
  header.advance = 0
  if (b <= 0x8f) header.count = (b & 0x0f) * 2
  else if (b <= 0x9f) header.count = b & 0x0f
  else if (b <= 0xbf) header.skip = b & 0x1f
  else {
    switch (b) {
      case 0xc0: // nil
      case 0xc2: // false
      case 0xc3: // true
        return undefined
      case 0xc4: // bin 8
      case 0xd9: // str 8
        return pos + 1 > n ? "truncated" : sized(1 + bytes[pos]!)
      case 0xc5: // bin 16
      case 0xda: // str 16
        return pos + 2 > n ? "truncated" : sized(2 + ((bytes[pos]! << 8) | bytes[pos + 1]!))
      case 0xc6: // bin 32
      case 0xdb: // str 32
        return pos + 4 > n ? "truncated" : sized(4 + uint32(bytes, pos))
      case 0xc7: // ext 8
      case 0xc8: // ext 16
      case 0xc9: // ext 32
        return extension(bytes, pos, b === 0xc7 ? 1 : b === 0xc8 ? 2 : 4)
      case 0xca: // float 32
      case 0xce: // uint 32
      case 0xd2: // int 32
        return sized(4)
      case 0xcb: // float 64
      case 0xcf: // uint 64
      case 0xd3: // int 64
        return sized(8)
      case 0xcc: // uint 8
      case 0xd0: // int 8
        return sized(1)
      case 0xcd: // uint 16
      case 0xd1: // int 16
        return sized(2)
      case 0xd4: // fixext 1
      case 0xd5: // fixext 2
      case 0xd6: // fixext 4
      case 0xd7: // fixext 8
      case 0xd8: { // fixext 16
        const length = 1 << (b - 0xd4)
        if (pos + 1 > n) return "truncated"
        if (!allowedExtension(bytes[pos]!, length)) return "an extension type frames do not use"
        return sized(1 + length)
      }
      case 0xdc: // array 16
      case 0xde: // map 16
        if (pos + 2 > n) return "truncated"
        header.count = ((bytes[pos]! << 8) | bytes[pos + 1]!) * (b === 0xde ? 2 : 1)
        header.advance = 2
        return undefined
      case 0xdd: // array 32
      case 0xdf: // map 32
        if (pos + 4 > n) return "truncated"
        header.count = uint32(bytes, pos) * (b === 0xdf ? 2 : 1)
        header.advance = 4
        return undefined
      default: // 0xc1: never used
        return "a byte MessagePack never uses"
    }
  }
  return undefined
}

/** ext 8/16/32: a length of `size` bytes, a type byte, the data */
const extension = (bytes: Uint8Array, pos: number, size: number): string | undefined => {
  if (pos + size + 1 > bytes.length) return "truncated"
  const length = size === 1 ? bytes[pos]! : size === 2 ? (bytes[pos]! << 8) | bytes[pos + 1]! : uint32(bytes, pos)
  if (!allowedExtension(bytes[pos + size]!, length)) return "an extension type frames do not use"
  return sized(size + 1 + length)
}

const uint32 = (bytes: Uint8Array, at: number): number =>
  bytes[at]! * 0x1000000 + ((bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!)

/** extension 0 (msgpackr's `undefined`, one byte) and -1 (a timestamp of 4, 8 or 12 bytes) */
const allowedExtension = (type: number, length: number): boolean =>
  (type === 0x00 && length === 1) || (type === 0xff && (length === 4 || length === 8 || length === 12))
