/**
 * Streams between a producer and a consumer on (possibly) different nodes, with credit-based
 * flow control: the consumer grants a window of frames, the producer never sends a frame it has
 * no credit for, and the consumer grants more as its user pulls. Memory is bounded by the window
 * on both sides, whatever the stream's length.
 *
 * Used both ways: streamed replies (handler → caller) and streamed requests (caller → handler).
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import { hasProperty } from "effect/Predicate"
import * as Stream from "effect/Stream"

/** frames a consumer lets a producer send ahead of what it pulled */
export const WINDOW = 64
/** a pull takes at most this many buffered frames */
const MAX_FRAMES_PER_PULL = 16
/** a frame closes at this many elements… */
const MAX_ITEMS_PER_FRAME = 1024
/** …or once its binary (or string) elements reach this many bytes */
const MAX_FRAME_BYTES = 64 * 1024

const sizeOf = (item: unknown): number =>
  item instanceof Uint8Array ? item.byteLength : typeof item === "string" ? item.length : 16

/** runs `f` after the I/O callbacks of this event-loop turn (where there is no `setImmediate`, after a 0 ms timer) */
const afterIo: (f: () => void) => void = typeof setImmediate === "function"
  ? (f) => void setImmediate(f)
  : (f) => void setTimeout(f, 0)

/**
 * The consuming end: frames wait here (at most `window` of them) until the user pulls them.
 *
 * @internal
 */
export class Inbox {
  private readonly frames: Array<ReadonlyArray<unknown>> = []
  private head = 0
  private expected = 0
  private unacked = 0
  /** frames of the chunk the user holds (credited back at the next pull) */
  private handedOut = 0
  private outcome: Exit.Exit<void, unknown> | undefined
  private waiter: (() => void) | undefined
  /** the last time a frame arrived or the user pulled (for idle deadlines) */
  touched = 0

  constructor(
    private readonly window: number,
    /** grants the producer `credit` more frames */
    private readonly ack: (credit: number) => void,
    /** decodes the elements of one frame */
    private readonly decode: (items: ReadonlyArray<unknown>) => Either.Either<ReadonlyArray<unknown>, unknown>,
    /** the error for a broken stream */
    private readonly broken: (reason: string) => unknown,
    /** the clock of `touched` */
    private readonly now?: () => number
  ) {
    if (now !== undefined) this.touched = now()
  }

  /** frames received and not pulled yet */
  get buffered(): number {
    return this.frames.length - this.head
  }

  get isDone(): boolean {
    return this.outcome !== undefined
  }

  /** the number of frames received in order so far */
  get received(): number {
    return this.expected
  }

  /** A frame arrived; a frame out of sequence or beyond the window breaks the stream. */
  offer(seq: number, items: ReadonlyArray<unknown>): void {
    if (this.outcome !== undefined) return
    if (seq !== this.expected) {
      return this.fail(this.broken(
        seq < this.expected
          ? `frame ${seq} arrived twice or out of order (expected ${this.expected})`
          : `frames ${this.expected}..${seq - 1} are missing`
      ))
    }
    if (this.buffered >= this.window) {
      return this.fail(this.broken(`the producer sent beyond its credit of ${this.window} frames`))
    }
    this.expected++
    if (this.now !== undefined) this.touched = this.now()
    this.frames.push(items)
    this.wakeSoon()
  }

  /** The producer finished after `frames` frames (when known): the user gets what is buffered, then the end. */
  end(frames?: number): void {
    if (this.outcome !== undefined) return
    if (frames !== undefined && frames !== this.expected) {
      return this.fail(this.broken(`the producer sent ${frames} frames, ${this.expected} arrived`))
    }
    this.outcome = Exit.void
    this.wakeUp()
  }

  /**
   * The stream failed: the user gets the error at once (buffered frames are dropped), or, for
   * the producer's own failure (`afterBuffered`), after the elements it sent before it.
   */
  fail(error: unknown, afterBuffered = false): void {
    if (this.outcome !== undefined) return
    this.outcome = Exit.fail(error)
    if (!afterBuffered) {
      this.frames.length = 0
      this.head = 0
    }
    this.wakeUp()
  }

  private wakeUp(): void {
    const waiter = this.waiter
    if (waiter !== undefined) {
      this.waiter = undefined
      waiter()
    }
  }

  /**
   * A frame arrived: the user is woken once the frames that are already on their way (the rest
   * of this event-loop turn's socket reads) have arrived too, and takes them as one chunk. Woken
   * at once, it took one frame per pull, and a pull (the Stream's machinery and a fiber resume)
   * costs more than a frame of 64 KiB: measured over NATS, 1.0 frame per pull against 12.9, and
   * about 20 % more CPU per MiB.
   */
  private wakeSoon(): void {
    const waiter = this.waiter
    if (waiter !== undefined) {
      this.waiter = undefined
      afterIo(waiter)
    }
  }

  /**
   * Everything buffered (up to `MAX_FRAMES_PER_PULL` frames) as one chunk: one pull, not one per
   * frame. The frames of a chunk are credited back at the next pull, once the user is done with
   * them, so the producer never runs more than the window ahead of the user.
   */
  private take(): Effect.Effect<Chunk.Chunk<unknown>, Option.Option<unknown>> | undefined {
    this.unacked += this.handedOut
    this.handedOut = 0
    if (this.unacked * 4 >= this.window && this.outcome === undefined) {
      const credit = this.unacked
      this.unacked = 0
      this.ack(credit)
    }
    if (this.head < this.frames.length) {
      const end = Math.min(this.frames.length, this.head + MAX_FRAMES_PER_PULL)
      const parts: Array<ReadonlyArray<unknown>> = []
      for (; this.head < end; this.head++) {
        const decoded = this.decode(this.frames[this.head]!)
        if (Either.isLeft(decoded)) {
          // the elements before it first; this frame fails the next pull
          if (parts.length > 0) break
          this.fail(decoded.left)
          return Effect.fail(Option.some(decoded.left))
        }
        this.frames[this.head] = undefined as never
        this.handedOut++
        parts.push(decoded.right)
      }
      if (this.head > 64 && this.head * 2 > this.frames.length) {
        this.frames.splice(0, this.head)
        this.head = 0
      }
      // the decoded arrays may be the producer's own (zero-copy): joined into a new one, never written to
      return Effect.succeed(Chunk.unsafeFromArray((parts.length === 1 ? parts[0]! : parts.flat()) as Array<unknown>))
    }
    const outcome = this.outcome
    if (outcome === undefined) return undefined
    return Exit.isSuccess(outcome) ? Effect.fail(Option.none()) : Effect.fail(Option.some(
      outcome.cause._tag === "Fail"
        ? outcome.cause.error
        : outcome.cause
    ))
  }

  private readonly wait: Effect.Effect<void> = Effect.async<void>((resume) => {
    this.waiter = () => resume(Effect.void)
    return Effect.sync(() => {
      this.waiter = undefined
    })
  })

  private readonly pull: Effect.Effect<Chunk.Chunk<unknown>, Option.Option<unknown>> = Effect.suspend(() => {
    if (this.now !== undefined) this.touched = this.now()
    return this.take() ?? Effect.zipRight(this.wait, this.pull)
  })

  /** The user's side. Consumed once. */
  readonly stream: Stream.Stream<unknown, unknown> = Stream.repeatEffectChunkOption(this.pull)
}

/**
 * The producing end: sends frames while it has credit, waits for more otherwise.
 *
 * @internal
 */
export class Outbox {
  private waiter: (() => void) | undefined
  private failure: unknown = undefined
  /** frames sent so far (the next frame's `seq`) */
  sent = 0

  constructor(
    private credit: number,
    /** sends one frame; returns an error when it could not be sent */
    private readonly send: (seq: number, items: ReadonlyArray<unknown>) => unknown
  ) {}

  grant(credit: number): void {
    // credit off the wire: only a whole, positive number of frames counts
    if (!Number.isSafeInteger(credit) || credit <= 0) return
    this.credit += credit
    const waiter = this.waiter
    if (waiter !== undefined) {
      this.waiter = undefined
      waiter()
    }
  }

  private readonly awaitCredit: Effect.Effect<void> = Effect.async<void>((resume) => {
    if (this.credit > 0) return resume(Effect.void)
    this.waiter = () => resume(Effect.void)
    return Effect.sync(() => {
      this.waiter = undefined
    })
  })

  private sendFrame(items: ReadonlyArray<unknown>): Effect.Effect<void, unknown> {
    const go = (): Effect.Effect<void, unknown> => {
      if (this.credit <= 0) return Effect.zipRight(this.awaitCredit, Effect.suspend(go))
      this.credit--
      const error = this.send(this.sent++, items)
      if (error !== undefined) {
        this.failure = error
        return Effect.fail(error)
      }
      return Effect.void
    }
    return Effect.suspend(go)
  }

  /** Sends the elements of one chunk, cut into frames, each when there is credit for it. */
  emit(chunk: Chunk.Chunk<unknown>): Effect.Effect<void, unknown> {
    const items = Chunk.toReadonlyArray(chunk)
    if (items.length === 0) return Effect.void
    const frames: Array<ReadonlyArray<unknown>> = []
    let start = 0
    let bytes = 0
    for (let i = 0; i < items.length; i++) {
      bytes += sizeOf(items[i])
      if (i + 1 - start >= MAX_ITEMS_PER_FRAME || bytes >= MAX_FRAME_BYTES) {
        frames.push(items.slice(start, i + 1))
        start = i + 1
        bytes = 0
      }
    }
    if (start < items.length) frames.push(start === 0 ? items : items.slice(start))
    return frames.length === 1
      ? this.sendFrame(frames[0]!)
      : Effect.forEach(frames, (frame) => this.sendFrame(frame), { discard: true })
  }

  /** the error that stopped sending, if any */
  get error(): unknown {
    return this.failure
  }
}

/**
 * Runs `stream` into `outbox`; succeeds with the number of frames sent.
 *
 * @internal
 */
export const pump = <E, R>(stream: Stream.Stream<unknown, E, R>, outbox: Outbox): Effect.Effect<number, unknown, R> =>
  Effect.map(Stream.runForEachChunk(stream, (chunk) => outbox.emit(chunk)), () => outbox.sent)

/**
 * What a handler of a streamed Rpc returns (a `Stream`, or an Effect of a `Mailbox`), as a Stream.
 *
 * @internal
 */
export const toStream = (result: unknown): Stream.Stream<unknown, unknown, unknown> =>
  hasProperty(result, Stream.StreamTypeId)
    ? result as Stream.Stream<unknown, unknown, unknown>
    : Stream.unwrapScoped(
      Effect.map(result as Effect.Effect<Mailbox.ReadonlyMailbox<unknown, unknown>>, Mailbox.toStream)
    )
