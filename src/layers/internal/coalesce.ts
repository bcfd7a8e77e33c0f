/**
 * Coalescing, as the NATS transport and `Secure` share it: the `Coalescer` owns the open
 * batches of encoded frames (one per subject, or one at all), their flush after the current
 * microtasks, the reply slots of the batches sent as one message, and the "no responders"
 * fan-out that tells each frame of a batch that reached nobody (and any other reply slot) to
 * the subscriptions listening for it. `Batch`, `BatchReplies` and `flushAfterMicrotasks` are
 * its parts.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Subject from "../Subject.ts"

/** @internal encoded frames for one subject, gathered in one event-loop turn */
export class Batch<K> {
  readonly frames: Array<Uint8Array> = []
  readonly replyTos: Array<string> = []
  /** the frames' bytes, each with its 4-byte length prefix */
  bytes = 0
  constructor(readonly subject: string, readonly key: K) {}

  add(frame: Uint8Array, replyTo: string | undefined): void {
    this.frames.push(frame)
    this.bytes += frame.byteLength + 4
    if (replyTo !== undefined) this.replyTos.push(replyTo)
  }
}

/**
 * @internal The reply slots of the batches sent as one message, by batch id, for "no responders"
 * to reach each frame of a batch that reached nobody. The server answers such a publish at once,
 * so slots need keeping only briefly: once more than `budget` slots are kept, the older of two
 * generations is dropped whole each `retainMillis` (a batch's slots then live that long to twice
 * that); below the budget they are kept however old (a reconnect may deliver the answer late).
 * A generation holds at most `max` batches. Kept by count alone, as before, under load they held
 * every batch's slots until 4096 batches later: tens of MiB for answers that never come. With
 * the default budget of 16,384 slots (about 70 bytes each), a transport keeps about 1 MiB, or
 * 2–4 s of its traffic when that is more.
 */
export class BatchReplies {
  private nextId = 0
  private current = new Map<number, ReadonlyArray<string>>()
  private previous = new Map<number, ReadonlyArray<string>>()
  private currentSlots = 0
  private previousSlots = 0
  private rotatedAt: number

  constructor(
    private readonly max: number,
    private readonly retainMillis = 2_000,
    private readonly budget = 16_384,
    private readonly now: () => number = Date.now
  ) {
    this.rotatedAt = now()
  }

  /** the id to reply to for a batch of these slots, or `undefined` when none of its frames has one */
  track(replyTos: ReadonlyArray<string>): number | undefined {
    if (replyTos.length === 0) return undefined
    const now = this.now()
    if (
      this.current.size >= this.max ||
      (now - this.rotatedAt >= this.retainMillis && this.currentSlots + this.previousSlots > this.budget)
    ) {
      this.previous = this.current
      this.previousSlots = this.currentSlots
      this.current = new Map()
      this.currentSlots = 0
      this.rotatedAt = now
    }
    const id = ++this.nextId
    this.current.set(id, replyTos)
    this.currentSlots += replyTos.length
    return id
  }

  /** the slots of batch `id`, once */
  take(id: number): ReadonlyArray<string> {
    let replyTos = this.current.get(id)
    if (replyTos !== undefined) {
      this.current.delete(id)
      this.currentSlots -= replyTos.length
      return replyTos
    }
    replyTos = this.previous.get(id)
    if (replyTos === undefined) return []
    this.previous.delete(id)
    this.previousSlots -= replyTos.length
    return replyTos
  }

  /** the reply slots kept (for tests) */
  get slots(): number {
    return this.currentSlots + this.previousSlots
  }
}

/**
 * @internal `flush` once after the fibers already scheduled have run (Effect runs them in one
 * microtask), however often it is asked for before then.
 */
export const flushAfterMicrotasks = (flush: () => void): () => void => {
  let scheduled = false
  const run = () => {
    scheduled = false
    flush()
  }
  return () => {
    if (scheduled) return
    scheduled = true
    queueMicrotask(run)
  }
}

/** @internal how a `Coalescer` batches and sends */
export interface CoalescerOptions<K, E> {
  /**
   * one open batch at all: a frame to another subject closes it, so the order of frames on the
   * connection is kept (the NATS transport); otherwise one per subject, flushed in the order
   * they were opened (`Secure`, whose batches go to a connection that keeps its own order)
   */
  readonly single: boolean
  /** the bytes a batch's container adds (counted from its opening) */
  readonly headerBytes: number
  /** the most bytes of a batch, its frames' length prefixes and its header included */
  readonly maxBytes: number
  /** the most frames of a batch */
  readonly maxFrames: number
  /** the batches kept for "no responders" in one generation (see `BatchReplies`) */
  readonly maxTracked: number
  /** sends a batch of one frame as that frame alone */
  readonly sendOne: (subject: string, key: K, frame: Uint8Array, replyTo: string | undefined) => E | undefined
  /** sends the frames of a batch as one message, answered at `replyTo` if it reaches nobody */
  readonly sendBatch: (
    subject: string,
    key: K,
    frames: ReadonlyArray<Uint8Array>,
    replyTo: string | undefined
  ) => E | undefined
  /** the reply slot of batch `id` (its last token is the id: see `unanswered`) */
  readonly replySlot: (id: number) => string
  /** a batch that could not be sent */
  readonly onUnsent: (count: number, subject: string, error: E) => void
}

interface NoRespondersListener {
  readonly pattern: string
  readonly callback: (subject: string) => void
}

/**
 * @internal Consecutive frames to one subject within one event-loop turn, sent as one message:
 * the open batches, their flush once the fibers already scheduled have run, and "no
 * responders" to each frame's reply slot.
 */
export class Coalescer<K, E> {
  private open = new Map<string, Batch<K>>()
  private readonly replies: BatchReplies
  private readonly listeners: Array<NoRespondersListener> = []
  private readonly scheduleFlush = flushAfterMicrotasks(() => this.flushAll())

  constructor(private readonly options: CoalescerOptions<K, E>) {
    this.replies = new BatchReplies(options.maxTracked)
  }

  /** adds `frame` to the open batch for `subject` sealed or sent with `key` (opening one if needed) */
  add(subject: string, key: K, frame: Uint8Array, replyTo: string | undefined): void {
    const options = this.options
    if (options.single && this.open.size > 0 && !this.open.has(subject)) this.flushAll()
    let batch = this.open.get(subject)
    if (
      batch !== undefined &&
      (batch.key !== key || batch.frames.length >= options.maxFrames ||
        batch.bytes + frame.byteLength + 4 > options.maxBytes)
    ) {
      this.flush(batch)
      batch = undefined
    }
    if (batch === undefined) {
      batch = new Batch(subject, key)
      batch.bytes = options.headerBytes
      this.open.set(subject, batch)
      this.scheduleFlush()
    }
    batch.add(frame, replyTo)
  }

  /** sends what must leave before a frame sent to `subject` unbatched */
  closeFor(subject: string): void {
    if (this.options.single) {
      if (this.open.size > 0) this.flushAll()
      return
    }
    const batch = this.open.get(subject)
    if (batch !== undefined) this.flush(batch)
  }

  /** sends every open batch, in the order they were opened */
  flushAll(): void {
    if (this.open.size === 0) return
    const open = this.open
    this.open = new Map()
    for (const batch of open.values()) this.send(batch)
  }

  private flush(batch: Batch<K>): void {
    this.open.delete(batch.subject)
    this.send(batch)
  }

  private send(batch: Batch<K>): void {
    const options = this.options
    let error: E | undefined
    if (batch.frames.length === 1) {
      error = options.sendOne(batch.subject, batch.key, batch.frames[0]!, batch.replyTos[0])
    } else {
      const id = this.replies.track(batch.replyTos)
      error = options.sendBatch(
        batch.subject,
        batch.key,
        batch.frames,
        id === undefined ? undefined : options.replySlot(id)
      )
    }
    if (error !== undefined) options.onUnsent(batch.frames.length, batch.subject, error)
  }

  /** "no responders" to the reply slot of a batch: to each of its frames' reply slots */
  unanswered(slot: string): void {
    for (const replyTo of this.replies.take(Number(slot.slice(slot.lastIndexOf(".") + 1)))) {
      this.noRespondersTo(replyTo)
    }
  }

  /** as the server would have said of a frame: nobody is listening at `replyTo` */
  noRespondersTo(replyTo: string): void {
    for (const listener of this.listeners) {
      if (Subject.matches(listener.pattern, replyTo)) listener.callback(replyTo)
    }
  }

  /** tells `callback` of the reply slots matching `pattern` that hear "no responders"; returns its removal */
  listen(pattern: string, callback: (subject: string) => void): () => void {
    const listener = { pattern, callback }
    this.listeners.push(listener)
    return () => {
      const index = this.listeners.indexOf(listener)
      if (index >= 0) this.listeners.splice(index, 1)
    }
  }

  /** `listen` for the life of the current scope */
  listenScoped(pattern: string, callback: (subject: string) => void): Effect.Effect<void, never, Scope.Scope> {
    return Effect.acquireRelease(
      Effect.sync(() => this.listen(pattern, callback)),
      (remove) => Effect.sync(remove)
    ).pipe(Effect.asVoid)
  }
}
