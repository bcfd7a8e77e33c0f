/**
 * A small seeded pseudo-random generator (mulberry32): the kit draws every fault from it, so one
 * seed gives one sequence of fates. Never `Math.random`.
 *
 * @internal
 */

/** @internal */
export class Prng {
  private state: number

  constructor(seed: number) {
    this.state = seed >>> 0
  }

  /** a number in [0, 1) */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** a whole number in [min, max] */
  between(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1))
  }

  /** `length` characters of [0-9a-z] */
  token(length: number): string {
    let out = ""
    for (let i = 0; i < length; i++) out += Math.floor(this.next() * 36).toString(36)
    return out
  }
}

/** @internal a 32-bit hash of a seed and some text (FNV-1a), to derive independent streams */
export const derive = (seed: number, text: string): number => {
  let hash = (0x811c9dc5 ^ (seed >>> 0)) >>> 0
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash
}
