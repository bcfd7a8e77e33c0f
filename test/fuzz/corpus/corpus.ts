/**
 * The regression corpus: frames that once broke a receiver (the examples of issue 13 and the
 * counterexamples the fuzz suite found), as JSON text, hex bytes, or deep nesting written out.
 */
import { readFileSync } from "node:fs"

export type CorpusPath = "direct" | "actor" | "interrupt" | "discovery" | "topic" | "stream" | "handshake" | "sealed"

export interface CorpusEntry {
  readonly name: string
  /** the receive paths it is delivered to */
  readonly paths: ReadonlyArray<CorpusPath>
  /** `drop`: must be dropped and counted; `any`: must only not break anything */
  readonly expect: "drop" | "any"
  readonly text?: string
  readonly hex?: string
  readonly deep?: {
    readonly open: string
    readonly close: string
    readonly depth: number
    readonly leaf: string
    readonly prefix?: string
    readonly suffix?: string
  }
  readonly deepHex?: { readonly unit: string; readonly depth: number; readonly leaf: string }
}

export const corpus: ReadonlyArray<CorpusEntry> = JSON.parse(
  readFileSync(new URL("./frames.json", import.meta.url), "utf8")
)

const encoder = new TextEncoder()

/** the bytes of a corpus entry */
export const bytesOf = (entry: CorpusEntry): Uint8Array => {
  if (entry.text !== undefined) return encoder.encode(entry.text)
  if (entry.hex !== undefined) return new Uint8Array(Buffer.from(entry.hex, "hex"))
  if (entry.deep !== undefined) {
    const d = entry.deep
    return encoder.encode(
      (d.prefix ?? "") + d.open.repeat(d.depth) + d.leaf + d.close.repeat(d.depth) + (d.suffix ?? "")
    )
  }
  if (entry.deepHex !== undefined) {
    const d = entry.deepHex
    return new Uint8Array(Buffer.from(d.unit.repeat(d.depth) + d.leaf, "hex"))
  }
  throw new Error(`corpus entry "${entry.name}" has no bytes`)
}
