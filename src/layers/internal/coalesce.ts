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

/** @internal the reply slots of the batches sent as one message, by batch id; the oldest are forgotten first */
export class BatchReplies {
  private nextId = 0
  private readonly byId = new Map<number, ReadonlyArray<string>>()

  constructor(private readonly max: number) {}

  /** the id to reply to for a batch of these slots, or `undefined` when none of its frames has one */
  track(replyTos: ReadonlyArray<string>): number | undefined {
    if (replyTos.length === 0) return undefined
    const id = ++this.nextId
    if (this.byId.size >= this.max) this.byId.delete(this.byId.keys().next().value!)
    this.byId.set(id, replyTos)
    return id
  }

  /** the slots of batch `id`, once */
  take(id: number): ReadonlyArray<string> {
    const replyTos = this.byId.get(id)
    this.byId.delete(id)
    return replyTos ?? []
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
