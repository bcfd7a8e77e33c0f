/**
 * Joins the pieces of large frames (their layout is in `fragments.ts`) with bounded state, since
 * anyone who can publish on the broker can send pieces under any sender's name:
 *
 * - **Memory follows the bytes that arrived, not the size a first piece announces.** A partial
 *   message starts with a copy of its first piece and grows geometrically (×8) up to its
 *   announced total: it reserves at most 8× what arrived, and the announced total is only
 *   checked against `maxMessageBytes`. A 40-byte piece announcing 5 MiB holds its 24 bytes.
 *   (A frame of 4 pieces is allocated once at its second piece; a 5 MiB one grows 3 times.)
 * - **Partial messages expire** on Effect's `Clock`: one that receives no piece for `idleMillis`
 *   (10 s) is dropped. Its subscription's fiber (`expireIn`) sleeps only while some are held.
 * - **Per sender**: at most `maxSenderMessages` (4) partial messages and `maxSenderBytes`
 *   (`maxMessageBytes`) reserved. A sender over either drops its own oldest partial message,
 *   never another sender's. (A sender publishes the pieces of one frame back to back, and one
 *   publisher's messages on one subject arrive in order, so an honest sender has one partial
 *   message per subscription; the others are the remains of a broken one.)
 * - **Per subscription**: at most `maxPartialMessages` (1024) and `maxPartialBytes` (8 ×
 *   `maxMessageBytes`). Over either, the partial message idle the longest goes, among those that
 *   only have their first piece before any that has more: a flood of forged first pieces (under
 *   many names) evicts its own kind before a frame whose pieces keep arriving.
 *
 * Every piece or message dropped is counted in `troupe_chunks_rejected`, tagged with its
 * `reason`.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type * as Scope from "effect/Scope"
import type { Piece } from "./pieces.ts"

/**
 * Pieces (or partial messages) dropped on arrival, by `reason`:
 * - `missing`: a piece whose predecessor never arrived (a gap, or no first piece): its message
 *   is dropped;
 * - `duplicate`: a piece that already arrived (ignored, the message kept);
 * - `too-large`: a first piece announcing more than `maxMessageBytes`;
 * - `inconsistent`: a piece whose announced total differs from its first piece's, that carries
 *   no bytes or more than the total, or a last piece that leaves the total unfilled (and a
 *   piece before the last that fills it): its message is dropped;
 * - `expired`: a partial message that received no piece for the idle time;
 * - `sender-limit`: a sender's oldest partial message, dropped when that sender went over its
 *   own count or bytes;
 * - `evicted`: a partial message dropped to keep the subscription's count and bytes bounded.
 *
 * @internal
 */
export const rejectedChunks = Metric.counter("troupe_chunks_rejected", {
  description:
    "pieces of large frames dropped on arrival (missing, duplicate, too-large, inconsistent, expired, sender-limit, evicted)"
})

const counters = new Map<string, Metric.Metric.Counter<number>>()

const reject = (reason: string): undefined => {
  let counter = counters.get(reason)
  if (counter === undefined) {
    counter = rejectedChunks.pipe(Metric.tagged("reason", reason))
    counters.set(reason, counter)
  }
  counter.unsafeUpdate(1, [])
  return undefined
}

/** the factor by which a partial message's buffer grows */
const GROWTH = 8

/** @internal */
export interface ReassemblyOptions {
  /** the subscription's partial messages, at most; default 1024 */
  readonly maxPartialMessages?: number | undefined
  /** the bytes the subscription's partial messages reserve, at most; default 8 × `maxMessageBytes` */
  readonly maxPartialBytes?: number | undefined
  /** one sender's partial messages, at most; default 4 */
  readonly maxSenderMessages?: number | undefined
  /** the bytes one sender's partial messages reserve, at most; default `maxMessageBytes` */
  readonly maxSenderBytes?: number | undefined
  /** a partial message that receives no piece for this long is dropped; default 10 s */
  readonly idleMillis?: number | undefined
  /** where the time comes from; default Effect's live clock (`expireIn` sets the subscription's) */
  readonly clock?: Clock.Clock | undefined
}

interface Partial {
  readonly key: string
  readonly sender: Sender
  /** the size announced by the first piece */
  readonly total: number
  /** the seq expected next */
  next: number
  /** bytes filled so far */
  filled: number
  /** room for `filled` bytes and more, up to `total` */
  frame: Uint8Array
  /** when its last piece arrived (the clock's millis) */
  lastSeen: number
  /** it has more than its first piece */
  proven: boolean
}

interface Sender {
  readonly name: string
  /** its partial messages, oldest first */
  readonly partials: Array<Partial>
  bytes: number
}

/**
 * Joins the pieces arriving on one subscription. `accept` returns the whole encoded frame once
 * its last piece arrived, `undefined` otherwise.
 *
 * @internal
 */
export class Reassembler {
  /** partial messages with only their first piece, idle the longest first */
  private readonly fresh = new Map<string, Partial>()
  /** partial messages with more, idle the longest first */
  private readonly proven = new Map<string, Partial>()
  private readonly senders = new Map<string, Sender>()
  private bytes = 0
  private clock: Clock.Clock
  /** told when the first partial message is held (the expiry fiber waits for it) */
  private onHold: () => void = () => {}
  private readonly maxPartialMessages: number
  private readonly maxPartialBytes: number
  private readonly maxSenderMessages: number
  private readonly maxSenderBytes: number
  readonly idleMillis: number

  constructor(private readonly maxMessageBytes: number, options: ReassemblyOptions = {}) {
    this.maxPartialMessages = options.maxPartialMessages ?? 1024
    this.maxPartialBytes = options.maxPartialBytes ?? 8 * maxMessageBytes
    this.maxSenderMessages = options.maxSenderMessages ?? 4
    this.maxSenderBytes = options.maxSenderBytes ?? maxMessageBytes
    this.idleMillis = options.idleMillis ?? 10_000
    this.clock = options.clock ?? Clock.make()
  }

  /** the bytes reserved by partial messages */
  get heldBytes(): number {
    return this.bytes
  }

  /** the number of partial messages */
  get heldMessages(): number {
    return this.fresh.size + this.proven.size
  }

  /** the bytes reserved by the partial messages of `sender` */
  heldBytesOf(sender: string): number {
    return this.senders.get(sender)?.bytes ?? 0
  }

  /** the number of partial messages of `sender` */
  heldMessagesOf(sender: string): number {
    return this.senders.get(sender)?.partials.length ?? 0
  }

  /** @internal used by `expireIn`: the subscription's clock, and who to wake when a partial message is held */
  attach(clock: Clock.Clock, onHold: () => void): void {
    this.clock = clock
    this.onHold = onHold
  }

  accept(piece: Piece): Uint8Array | undefined {
    const key = `${piece.source}/${piece.requestId}`
    const entry = this.proven.get(key) ?? this.fresh.get(key)
    return entry === undefined ? this.first(key, piece) : this.next(entry, piece)
  }

  private first(key: string, piece: Piece): Uint8Array | undefined {
    if (piece.seq !== 0) return reject("missing") // its beginning never came (or it was dropped)
    if (piece.total > this.maxMessageBytes) return reject("too-large")
    const body = piece.body
    const size = body.byteLength
    if (size === 0 || size > piece.total || (size === piece.total) !== piece.last) return reject("inconsistent")
    if (piece.last) return body // a frame in one piece: no worse than the frame itself
    let sender = this.senders.get(piece.source)
    if (sender === undefined) {
      sender = { name: piece.source, partials: [], bytes: 0 }
      this.senders.set(piece.source, sender)
    }
    const entry: Partial = {
      key,
      sender,
      total: piece.total,
      next: 1,
      filled: size,
      frame: body.slice(),
      lastSeen: this.clock.unsafeCurrentTimeMillis(),
      proven: false
    }
    this.fresh.set(key, entry)
    sender.partials.push(entry)
    sender.bytes += size
    this.bytes += size
    this.bound(entry)
    if (this.heldMessages === 1) this.onHold()
    return undefined
  }

  private next(entry: Partial, piece: Piece): Uint8Array | undefined {
    if (piece.seq < entry.next) return reject("duplicate")
    if (piece.seq > entry.next) {
      this.drop(entry)
      return reject("missing")
    }
    const size = piece.body.byteLength
    const end = entry.filled + size
    if (piece.total !== entry.total || size === 0 || end > entry.total || (end === entry.total) !== piece.last) {
      this.drop(entry)
      return reject("inconsistent")
    }
    const capacity = entry.frame.byteLength
    if (end > capacity) {
      const grown = new Uint8Array(Math.min(entry.total, Math.max(end, GROWTH * capacity)))
      grown.set(entry.frame.subarray(0, entry.filled))
      entry.frame = grown
      entry.sender.bytes += grown.byteLength - capacity
      this.bytes += grown.byteLength - capacity
    }
    entry.frame.set(piece.body, entry.filled)
    entry.filled = end
    entry.next++
    if (piece.last) {
      // the buffer grew to exactly the total on the way (it never grows beyond)
      this.drop(entry)
      return entry.frame
    }
    entry.lastSeen = this.clock.unsafeCurrentTimeMillis()
    // the most recently active last, for expiry and eviction
    if (entry.proven) {
      this.proven.delete(entry.key)
    } else {
      entry.proven = true
      this.fresh.delete(entry.key)
    }
    this.proven.set(entry.key, entry)
    if (end > capacity) this.bound(entry)
    return undefined
  }

  /** enforces the sender's and then the subscription's bounds, sparing `entry` (the one just grown) */
  private bound(entry: Partial): void {
    const sender = entry.sender
    while (sender.partials.length > this.maxSenderMessages || sender.bytes > this.maxSenderBytes) {
      const oldest = sender.partials[0] === entry ? sender.partials[1] : sender.partials[0]
      if (oldest === undefined) break
      this.drop(oldest)
      reject("sender-limit")
    }
    while (this.heldMessages > this.maxPartialMessages || this.bytes > this.maxPartialBytes) {
      const victim = oldestBut(this.fresh, entry) ?? oldestBut(this.proven, entry)
      if (victim === undefined) break
      this.drop(victim)
      reject("evicted")
    }
  }

  /**
   * Drops the partial messages idle for `idleMillis` or more at `now`; returns how long until
   * the next one would expire, or `undefined` when none is held.
   */
  sweep(now: number = this.clock.unsafeCurrentTimeMillis()): number | undefined {
    const deadline = now - this.idleMillis
    for (const tier of [this.fresh, this.proven]) {
      for (const entry of tier.values()) {
        if (entry.lastSeen > deadline) break
        this.drop(entry)
        reject("expired")
      }
    }
    const fresh = this.fresh.values().next()
    const proven = this.proven.values().next()
    if (fresh.done === true && proven.done === true) return undefined
    const oldest = Math.min(
      fresh.done === true ? Infinity : fresh.value.lastSeen,
      proven.done === true ? Infinity : proven.value.lastSeen
    )
    return oldest + this.idleMillis - now
  }

  private drop(entry: Partial): void {
    if (!(entry.proven ? this.proven : this.fresh).delete(entry.key)) return
    const sender = entry.sender
    const partials = sender.partials
    partials.splice(partials.indexOf(entry), 1)
    sender.bytes -= entry.frame.byteLength
    this.bytes -= entry.frame.byteLength
    if (partials.length === 0) this.senders.delete(sender.name)
  }
}

/** the entry of `tier` idle the longest, other than `except` */
const oldestBut = (tier: Map<string, Partial>, except: Partial): Partial | undefined => {
  for (const entry of tier.values()) if (entry !== except) return entry
  return undefined
}

/**
 * Expires the partial messages of `reassembler` on the Clock of the calling fiber (a TestClock in
 * tests), from a fiber of the scope that sleeps only while some are held.
 *
 * @internal
 */
export const expireIn = (reassembler: Reassembler): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const held = yield* Effect.makeLatch(false)
    reassembler.attach(clock, () => held.unsafeOpen())
    const sweep = Effect.suspend(() => {
      const wait = reassembler.sweep(clock.unsafeCurrentTimeMillis())
      if (wait !== undefined) return Effect.sleep(wait)
      held.unsafeClose()
      return Effect.void
    })
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(held.await, sweep)))
  })
