/**
 * What the NATS transport and `Secure` share to coalesce frames: a batch of encoded frames for
 * one subject (with the reply slots of those that have one), the reply slots of the batches sent
 * as one message (so "no responders" to the batch reaches each of its frames), and a flush run
 * once after the current microtasks.
 *
 * @internal
 */

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
