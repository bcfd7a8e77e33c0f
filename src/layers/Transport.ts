/**
 * `Transport` moves frames between nodes by subject, with NATS semantics: every plain
 * subscriber of a subject gets a frame, and among subscribers sharing a queue group exactly one
 * does.
 *
 * `Transport.inMemory` is the embedded default: frames are handed over by reference (zero-copy)
 * inside one process. `layerInMemory({ serialize: true })` forces every frame through the
 * `Codec`, so a test suite can prove its payloads survive the wire before they meet NATS.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import type * as Metric from "effect/Metric"
import type * as Scope from "effect/Scope"
import type { Frame } from "../schema/Envelope.ts"
import { type EncodeError, PayloadTooLarge, TransportError } from "../schema/Errors.ts"
import { Codec, type CodecShape, decodeFrame, Malformed } from "./Codec.ts"
import * as Drops from "./internal/drops.ts"
import * as Batches from "./internal/batches.ts"
import * as BinaryItems from "./internal/binaryItems.ts"
import * as Fragments from "./internal/fragments.ts"
import * as Pieces from "./internal/pieces.ts"
import * as Nats from "./internal/nats.ts"
import * as Reassembly from "./internal/reassembly.ts"
import { prefixOf } from "./internal/subjects.ts"
import * as Subject from "./Subject.ts"

/**
 * @since 0.1.0
 * @category models
 */
export interface SubscribeOptions {
  /** deliver each frame to one member of this queue group instead of to every subscriber */
  readonly queue?: string | undefined
  /**
   * called with the (logical) subject of a reply slot when a frame published with that
   * `replyTo` reached no subscriber at all (NATS "no responders")
   */
  readonly onNoResponders?: ((subject: string) => void) | undefined
  /**
   * called when a frame published with a `replyTo` arrived larger than this transport's
   * `maxMessageBytes` and was dropped, so that its sender can be told rather than left waiting
   */
  readonly onTooLarge?: ((error: PayloadTooLarge, replyTo: string) => void) | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface PublishOptions {
  /**
   * a (logical) subject this node subscribes to: if nobody receives the frame, that
   * subscription's `onNoResponders` is told at once
   */
  readonly replyTo?: string | undefined
  /**
   * where the pieces of a frame larger than the chunk size go: a subject with one receiver (a
   * node's direct subject). Without it, such a frame travels whole, up to the wire's limit.
   */
  readonly fragmentTo?: string | undefined
}

/**
 * What a transport reports about its connection.
 *
 * @since 0.1.0
 * @category models
 */
export type TransportEvent = "disconnected" | "reconnected"

/**
 * @since 0.1.0
 * @category models
 */
export interface TransportShape {
  /** `"in-memory"`, `"nats"`, ... */
  readonly name: string
  /**
   * `true` when frames reach the other side by reference: bodies are then the payload values
   * themselves, never Schema-encoded.
   */
  readonly zeroCopy: boolean
  /** Publishes one frame to a (logical, namespace-less) subject. */
  readonly publish: (
    subject: string,
    frame: Frame,
    options?: PublishOptions
  ) => Effect.Effect<void, TransportError | EncodeError | PayloadTooLarge>
  /** `publish` without an Effect, for hot paths inside callbacks: returns the error, if any. */
  readonly unsafePublish: (
    subject: string,
    frame: Frame,
    options?: PublishOptions
  ) => TransportError | EncodeError | PayloadTooLarge | undefined
  /** Subscribes to a subject (NATS wildcards allowed) until the scope closes. */
  readonly subscribe: (
    subject: string,
    onFrame: (frame: Frame) => void,
    options?: SubscribeOptions
  ) => Effect.Effect<void, TransportError, Scope.Scope>
  /** Calls `listener` on every connection event until the scope closes. */
  readonly watch: (listener: (event: TransportEvent) => void) => Effect.Effect<void, never, Scope.Scope>
  /**
   * Whether frames can leave now. A transport without it is always connected (in memory). While
   * it is `false`, a publish fails with `TransportError` (`reason: "disconnected"`).
   *
   * @since 0.5.0
   */
  readonly isConnected?: (() => boolean) | undefined
  /**
   * Succeeds once the transport is connected (at once if it is), or fails with `TransportError`
   * (`reason: "disconnected"`) after `maxMillis` or the transport's own bound (NATS:
   * `reconnectWait`), whichever is shorter.
   *
   * @since 0.5.0
   */
  readonly awaitConnected?: ((maxMillis: number) => Effect.Effect<void, TransportError>) | undefined
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Transport extends Context.Tag("troupe/Transport")<Transport, TransportShape>() {}

/**
 * The default per-message limit: 5 MiB.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 5 * 1024 * 1024

/**
 * The default chunk size: frames larger than 16 KiB travel in pieces of 16 KiB.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_CHUNK_BYTES = 16 * 1024

/**
 * Frames that arrived but could not be decoded.
 *
 * @since 0.1.0
 * @category metrics
 */
export const malformedFrames: Metric.Metric.Counter<number> = Drops.malformedFrames

interface Subscription {
  readonly subject: string
  readonly queue: string | undefined
  /** `replyTo` is the logical reply subject the frame was published with, if any */
  readonly deliver: (frame: Frame | Uint8Array, replyTo?: string) => void
  readonly onNoResponders: ((subject: string) => void) | undefined
}

/**
 * One in-process network: every in-memory transport built on the same network can reach the
 * others, so several nodes can run in one process.
 *
 * @since 0.1.0
 * @category models
 */
export class InMemoryNetwork {
  private readonly exact = new Map<string, Array<Subscription>>()
  private readonly wildcard: Array<Subscription> = []
  private readonly fanOut = new Subject.FanOut()

  /** @internal */
  add(sub: Subscription): () => void {
    const list = Subject.isPattern(sub.subject) ? this.wildcard : this.listFor(sub.subject)
    list.push(sub)
    return () => {
      const index = list.indexOf(sub)
      if (index >= 0) list.splice(index, 1)
      if (list !== this.wildcard && list.length === 0) this.exact.delete(sub.subject)
    }
  }

  /**
   * @internal Routes a frame; when nobody received it and `replyTo` is given, tells the
   * subscriptions of `replyTo` (NATS "no responders").
   */
  routeWithReply(subject: string, frame: Frame | Uint8Array, replyTo: string | undefined, prefix: string): void {
    if (this.route(subject, frame, replyTo) > 0 || replyTo === undefined) return
    const full = prefix + replyTo
    for (const sub of [...(this.exact.get(full) ?? []), ...this.wildcard]) {
      if (sub.onNoResponders !== undefined && Subject.matches(sub.subject, full)) sub.onNoResponders(replyTo)
    }
  }

  /** @internal returns the number of subscriptions the frame was handed to */
  route(subject: string, frame: Frame | Uint8Array, replyTo?: string): number {
    const direct = this.exact.get(subject)
    // copies: a delivery may subscribe or unsubscribe synchronously
    const matching: Array<Subscription> = direct === undefined ? [] : direct.slice()
    for (const sub of this.wildcard) if (Subject.matches(sub.subject, subject)) matching.push(sub)
    const receivers = matching.length === 1 && matching[0]!.queue === undefined
      ? matching
      : this.fanOut.select(matching, subject, (sub) => sub.queue)
    for (const sub of receivers) sub.deliver(frame, replyTo)
    return receivers.length
  }

  /** The number of live subscriptions (for leak checks in tests). */
  get subscriptionCount(): number {
    let count = this.wildcard.length
    for (const list of this.exact.values()) count += list.length
    return count
  }

  private listFor(subject: string): Array<Subscription> {
    let list = this.exact.get(subject)
    if (list === undefined) {
      list = []
      this.exact.set(subject, list)
    }
    return list
  }
}

/**
 * Creates a fresh in-process network.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeNetwork = (): InMemoryNetwork => new InMemoryNetwork()

/**
 * @since 0.1.0
 * @category models
 */
export interface InMemoryOptions {
  /** the network to join; default: a private one */
  readonly network?: InMemoryNetwork | undefined
  /** the subject namespace, so apps sharing a network do not see each other; default `"default"` */
  readonly namespace?: string | undefined
  /** the per-message limit when serializing; default 5 MiB */
  readonly maxMessageBytes?: number | undefined
  /** when serializing, frames larger than this travel in pieces; default 16 KiB */
  readonly chunkBytes?: number | undefined
}

/**
 * Lifts the result of `unsafePublish` into an Effect.
 *
 * @since 0.1.0
 * @category utils
 */
export const fromResult = <E>(error: E | undefined): Effect.Effect<void, E> =>
  error === undefined ? Effect.void : Effect.fail(error)

const subscribeWith = (
  network: InMemoryNetwork,
  prefix: string,
  subject: string,
  makeDeliver: (drop: Drops.Drop) => (frame: Frame | Uint8Array, replyTo?: string) => void,
  options: SubscribeOptions | undefined
): Effect.Effect<void, TransportError, Scope.Scope> =>
  Subject.isValidSubject(subject, true)
    ? Effect.flatMap(Drops.makeDropEffect(prefix + subject), (drop) => {
      const deliver = makeDeliver(drop)
      return Effect.acquireRelease(
        Effect.sync(() =>
          network.add({
            subject: prefix + subject,
            queue: options?.queue,
            // the last resort: whatever a frame makes throw here is a counted drop, never the publisher's
            deliver: (frame, replyTo) => {
              try {
                deliver(frame, replyTo)
              } catch (defect) {
                drop(defect)
              }
            },
            onNoResponders: options?.onNoResponders
          })
        ),
        (remove) => Effect.sync(remove)
      )
    })
    : Effect.fail(new TransportError({ reason: `invalid subject "${subject}"` }))

/**
 * A zero-copy in-memory transport on a network.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeInMemory = (options: InMemoryOptions = {}): TransportShape => {
  const network = options.network ?? makeNetwork()
  const prefix = prefixOf(options.namespace)
  return {
    name: "in-memory",
    zeroCopy: true,
    publish: (subject, frame, publishOptions) =>
      Effect.sync(() => network.routeWithReply(prefix + subject, frame, publishOptions?.replyTo, prefix)),
    unsafePublish: (subject, frame, publishOptions) => {
      network.routeWithReply(prefix + subject, frame, publishOptions?.replyTo, prefix)
      return undefined
    },
    subscribe: (subject, onFrame, subscribeOptions) =>
      subscribeWith(
        network,
        prefix,
        subject,
        () => onFrame as (frame: Frame | Uint8Array) => void,
        subscribeOptions
      ),
    watch: () => Effect.void
  }
}

/**
 * An in-memory transport that encodes every frame with the `Codec` and decodes it on arrival,
 * exactly as a network transport would.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeInMemorySerialized = (codec: CodecShape, options: InMemoryOptions = {}): TransportShape => {
  const network = options.network ?? makeNetwork()
  const prefix = prefixOf(options.namespace)
  const limits = resolveLimits(options, Infinity)
  const encode = Fragments.makeEncoder(codec, limits)
  const unsafePublish: TransportShape["unsafePublish"] = (subject, frame, publishOptions) => {
    const fragmentTo = publishOptions?.fragmentTo
    const encoded = encode(frame, fragmentTo !== undefined)
    if (Either.isLeft(encoded)) return encoded.left
    const wire = encoded.right
    if (wire instanceof Uint8Array) {
      network.routeWithReply(prefix + subject, wire, publishOptions?.replyTo, prefix)
    } else {
      // only a first piece carries the reply subject (see `Nats.make`)
      for (let i = 0; i < wire.length; i++) {
        network.routeWithReply(prefix + fragmentTo!, wire[i]!, i === 0 ? publishOptions?.replyTo : undefined, prefix)
      }
    }
    return undefined
  }
  return {
    name: `in-memory+${codec.name}`,
    zeroCopy: false,
    publish: (subject, frame, publishOptions) =>
      Effect.suspend(() => fromResult(unsafePublish(subject, frame, publishOptions))),
    unsafePublish,
    subscribe: (subject, onFrame, subscribeOptions) => {
      const reassembler = new Reassembly.Reassembler(limits.maxMessageBytes)
      return Effect.zipRight(
        Reassembly.expireIn(reassembler),
        subscribeWith(network, prefix, subject, (drop) => {
          const receive = makeReceiver(codec, limits, onFrame, subscribeOptions?.onTooLarge, drop, reassembler)
          return (bytes, replyTo) =>
            receive(bytes as Uint8Array, replyTo === undefined ? undefined : { reply: replyTo })
        }, subscribeOptions)
      )
    },
    watch: () => Effect.void
  }
}

/** @internal */
export const resolveLimits = (
  options: { readonly maxMessageBytes?: number | undefined; readonly chunkBytes?: number | undefined },
  wireLimit: number
): Fragments.FragmentLimits => {
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES
  const chunkBytes = Math.min(options.chunkBytes ?? DEFAULT_CHUNK_BYTES, wireLimit - 1024)
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 1) {
    throw new RangeError(`maxMessageBytes must be a whole number >= 1, got ${maxMessageBytes}`)
  }
  if (!Number.isInteger(chunkBytes) || chunkBytes < 256) {
    throw new RangeError(`chunkBytes must be a whole number >= 256 (and below the wire limit), got ${chunkBytes}`)
  }
  return { maxMessageBytes, chunkBytes, wireLimit }
}

/**
 * @internal Where a wire message's reply subject can be read. It is read only for a message
 * dropped as too large: nats.js decodes it on access, which every message should not pay for.
 */
export interface ReplySource {
  readonly reply?: string | undefined
}

const countOnly: Drops.Drop = () => Drops.malformedFrames.unsafeUpdate(1, [])

/**
 * @internal The receiving end of one subscription: decodes wire messages, joins the pieces of
 * large frames, drops (counts, and reports at a bounded rate) what cannot be decoded. It never
 * throws: whatever a frame makes throw, in decoding or in `onFrame`, is a drop too.
 */
export const makeReceiver = (
  codec: CodecShape,
  limits: Fragments.FragmentLimits,
  onFrame: (frame: Frame) => void,
  onTooLarge?: (error: PayloadTooLarge, replyTo: string) => void,
  drop: Drops.Drop = countOnly,
  /** the subscription's partial messages (expired by `Reassembly.expireIn`); default one of its own */
  reassembler?: Reassembly.Reassembler
) => {
  const tooLarge = (size: number, source: ReplySource | undefined): void => {
    const replyTo = source?.reply
    if (onTooLarge !== undefined && replyTo) {
      onTooLarge(new PayloadTooLarge({ size, limit: limits.maxMessageBytes }), replyTo)
    }
  }
  const receiveOne = (bytes: Uint8Array, source?: ReplySource): void => {
    try {
      receive(bytes, source)
    } catch (defect) {
      drop(defect)
    }
  }
  const receive = (bytes: Uint8Array, source?: ReplySource): void => {
    if (bytes.byteLength > limits.maxMessageBytes) {
      drop(TOO_LARGE)
      return tooLarge(bytes.byteLength, source)
    }
    if (bytes[0] === Batches.BATCH) {
      const frames = Batches.decodeBatch(bytes)
      if (frames === undefined) return drop(BAD_BATCH)
      // each frame of a batch on its own: one that throws does not cost the others
      for (const frame of frames) if (frame[0] !== Batches.BATCH) receiveOne(frame)
      return
    }
    if (bytes[0] === Pieces.PIECE) {
      const piece = Pieces.decodePiece(bytes)
      if (piece === undefined) return drop(BAD_PIECE)
      reassembler ??= new Reassembly.Reassembler(limits.maxMessageBytes)
      // the first piece tells the size of the whole: the sender hears at once if it is too large
      if (piece.seq === 0 && piece.total > limits.maxMessageBytes) tooLarge(piece.total, source)
      const whole = reassembler.accept(piece)
      if (whole === undefined) return
      bytes = whole
    }
    if (bytes[0] === BinaryItems.BINARY_ITEMS) {
      const items = BinaryItems.decodeBinaryItems(bytes)
      return items === undefined ? drop(BAD_ITEMS) : onFrame(items)
    }
    const frame = decodeFrame(codec, bytes)
    if (frame instanceof Malformed) return drop(frame)
    if (frame._tag === "Chunk") return drop(STRAY_CHUNK)
    onFrame(frame)
  }
  return receiveOne
}

const TOO_LARGE = new Malformed("a message over the size limit")
const BAD_BATCH = new Malformed("a malformed batch")
const BAD_PIECE = new Malformed("a malformed piece of a large frame")
const BAD_ITEMS = new Malformed("a malformed binary Items frame")
const STRAY_CHUNK = new Malformed("a Chunk frame outside the binary piece layout")

/**
 * The embedded default: a private zero-copy in-memory network.
 *
 * @since 0.1.0
 * @category layers
 */
export const inMemory: Layer.Layer<Transport> = Layer.sync(Transport, () => makeInMemory())

/**
 * An in-memory transport on a given network (to run several nodes in one process), zero-copy
 * unless `serialize` is set, in which case every frame goes through the `Codec`.
 *
 * @example
 * ```ts
 * const network = Transport.makeNetwork()
 * const a = Transport.layerInMemory({ network })
 * const b = Transport.layerInMemory({ network, serialize: true }).pipe(Layer.provide(Codec.msgpack))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export function layerInMemory(
  options: InMemoryOptions & { readonly serialize: true }
): Layer.Layer<Transport, never, Codec>
export function layerInMemory(
  options?: InMemoryOptions & { readonly serialize?: false | undefined }
): Layer.Layer<Transport>
export function layerInMemory(
  options: InMemoryOptions & { readonly serialize?: boolean | undefined } = {}
): Layer.Layer<Transport, never, Codec> {
  return options.serialize === true
    ? Layer.effect(Transport, Effect.map(Codec, (codec) => makeInMemorySerialized(codec, options)))
    : Layer.sync(Transport, () => makeInMemory(options))
}

/**
 * @since 0.1.0
 * @category models
 */
export interface NatsOptions {
  /** one or more `nats://host:port` URLs */
  readonly servers: string | ReadonlyArray<string>
  /** the connection name shown by the server */
  readonly name?: string | undefined
  /** the subject namespace (`troupe.<namespace>.…`), so apps sharing a NATS do not see each other; default `"default"` */
  readonly namespace?: string | undefined
  /** the largest frame accepted (sent or received), in bytes; default 5 MiB */
  readonly maxMessageBytes?: number | undefined
  /**
   * frames larger than this travel in pieces (capped by the server's `max_payload`); default
   * 16 KiB
   */
  readonly chunkBytes?: number | undefined
  /** reconnect backoff: exponential with jitter from `initial` (100 ms) to `max` (5 s) */
  readonly reconnectBackoff?: {
    readonly initial?: Duration.DurationInput | undefined
    readonly max?: Duration.DurationInput | undefined
  } | undefined
  /**
   * frames published to one subject in one event-loop turn travel as one NATS message (each
   * frame still gets its own "no responders"); default `true`
   */
  readonly coalesce?: boolean | undefined
  /**
   * while the connection is down, how long a new ask or stream request waits for the reconnect
   * before it fails with `TransportError` (`reason: "disconnected"`); `0` fails it at once.
   * Default 2 seconds. (A tell, or any other frame, fails at once: nats.js would drop it.)
   *
   * @since 0.5.0
   */
  readonly reconnectWait?: Duration.DurationInput | undefined
  /** how long the first connection may take; default 5 seconds */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** how long draining the connection may take on release; default 5 seconds */
  readonly drainTimeout?: Duration.DurationInput | undefined
}

/**
 * A transport over a real NATS server: the connection is a scoped resource (drained and closed
 * on release) that reconnects with backoff; frames are encoded with the `Codec`; a frame over
 * the limit fails with `PayloadTooLarge` before it is sent.
 *
 * @example
 * ```ts
 * const transport = Transport.nats({ servers: "nats://127.0.0.1:4222" }).pipe(Layer.provide(Codec.msgpack))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const nats = (options: NatsOptions): Layer.Layer<Transport, TransportError, Codec> =>
  Layer.scoped(
    Transport,
    Effect.flatMap(Codec, (codec) =>
      Nats.make(codec, options, (wireLimit) => resolveLimits(options, wireLimit), makeReceiver))
  )
