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
 * @internal The reply slots of the batches sent as one message, by batch id, kept until "no
 * responders" can no longer be on its way: the server answers a publish that reaches nobody at
 * once, so a batch's slots are kept for `retainMillis` to twice that (two generations, the older
 * dropped whole), and at most `max` batches per generation. Kept by count alone, they held every
 * batch's slots until 4096 batches later: tens of MiB under load, for answers that never come.
 */
export class BatchReplies {
  private nextId = 0
  private current = new Map<number, ReadonlyArray<string>>()
  private previous = new Map<number, ReadonlyArray<string>>()
  private rotatedAt: number

  constructor(
    private readonly max: number,
    private readonly retainMillis = 2_000,
    private readonly now: () => number = Date.now
  ) {
    this.rotatedAt = now()
  }

  /** the id to reply to for a batch of these slots, or `undefined` when none of its frames has one */
  track(replyTos: ReadonlyArray<string>): number | undefined {
    if (replyTos.length === 0) return undefined
    const now = this.now()
    if (now - this.rotatedAt >= this.retainMillis || this.current.size >= this.max) {
      this.previous = this.current
      this.current = new Map()
      this.rotatedAt = now
    }
    const id = ++this.nextId
    this.current.set(id, replyTos)
    return id
  }

  /** the slots of batch `id`, once */
  take(id: number): ReadonlyArray<string> {
    const replyTos = this.current.get(id) ?? this.previous.get(id)
    if (replyTos === undefined) return []
    if (!this.current.delete(id)) this.previous.delete(id)
    return replyTos
  }

  /** the batches whose slots are kept (for tests) */
  get size(): number {
    return this.current.size + this.previous.size
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
