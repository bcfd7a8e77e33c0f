/**
 * The piece layout: a frame larger than one wire message travels as pieces of `chunkBytes`,
 * each carrying a share of the encoded frame (it carries bytes of another frame, which needs no
 * second encoding), the same in every codec:
 *
 *   0xC1 | version | last (0 | 1) | source length | source (UTF-8) | message id (u32) | seq (u32)
 *        | total size of the frame (u32) | bytes
 *
 * The total lets the receiver check the frame's size at its first piece. It does not trust it
 * further: it reserves memory as the bytes arrive, copying each piece (no buffer of the
 * connection is kept alive until the last one); see `reassembly.ts`.
 *
 * 0xC1 is a byte MessagePack never uses, and JSON frames start with `[` or `{`, so a receiver
 * tells a piece from a frame by its first byte.
 *
 * @internal
 */
import { type ChunkFrame, ProtocolVersion } from "../../schema/Envelope.ts"
import { isSource } from "./frames.ts"
import { readSource } from "./layout.ts"

/** @internal the first byte of a piece */
export const PIECE = 0xc1

/** @internal a piece as it arrives: a `Chunk` frame and the size of the whole frame */
export interface Piece extends ChunkFrame {
  readonly total: number
}

/** @internal the size of the head of a piece from `source` */
export const headOf = (source: Uint8Array) => 4 + source.byteLength + 12

/**
 * The pieces of one frame of `size` bytes, laid out back to back in one buffer (each its head,
 * then its share of the frame), and filled in order as the frame is written: a frame's bytes go
 * straight into its pieces, with no whole copy of the frame in between and one allocation for
 * all of them.
 *
 * @internal
 */
export class PieceWriter {
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
