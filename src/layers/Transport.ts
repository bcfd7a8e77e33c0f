/**
 * `Transport` moves frames between nodes by subject, with NATS semantics: every plain
 * subscriber of a subject gets a frame, and among subscribers sharing a queue group exactly one
 * does.
 *
 * `Transport.inMemory` is the embedded default: frames are handed over by reference (zero-copy)
 * inside one process. `layerInMemory({ serialize: true })` forces every frame through the
 * `Codec`, so a test suite can prove its payloads survive the wire before they meet NATS.
 *
 * This module is the contract (the service, its options, its constructors); the transports are
 * in `internal/inMemory.ts` and `internal/nats.ts`, and the receiving path they share in
 * `internal/receive.ts`.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Metric from "effect/Metric"
import type * as Scope from "effect/Scope"
import type { Frame } from "../schema/Envelope.ts"
import type { EncodeError, PayloadTooLarge, TransportError } from "../schema/Errors.ts"
import { Codec, type CodecShape } from "./Codec.ts"
import * as Drops from "./internal/drops.ts"
import * as InMemory from "./internal/inMemory.ts"
import * as Nats from "./internal/nats.ts"
import * as Publish from "./internal/publish.ts"
import * as Receive from "./internal/receive.ts"

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
  /**
   * the id of the node whose direct subject (`node.<id>`) this subscription is, for a transport
   * that must know its node (`Secure` seals and answers handshakes in its name) (@since 0.5.0)
   */
  readonly node?: string | undefined
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
export const DEFAULT_MAX_MESSAGE_BYTES: number = Receive.DEFAULT_MAX_MESSAGE_BYTES

/**
 * The default chunk size: frames larger than 16 KiB travel in pieces of 16 KiB.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_CHUNK_BYTES: number = Receive.DEFAULT_CHUNK_BYTES

/**
 * Frames that arrived but could not be decoded.
 *
 * @since 0.1.0
 * @category metrics
 */
export const malformedFrames: Metric.Metric.Counter<number> = Drops.malformedFrames

/**
 * One in-process network: every in-memory transport built on the same network can reach the
 * others, so several nodes can run in one process.
 *
 * @since 0.1.0
 * @category models
 */
export { InMemoryNetwork } from "./internal/inMemory.ts"

/**
 * Creates a fresh in-process network.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeNetwork: () => InMemory.InMemoryNetwork = InMemory.makeNetwork

/**
 * @since 0.1.0
 * @category models
 */
export interface InMemoryOptions {
  /** the network to join; default: a private one */
  readonly network?: InMemory.InMemoryNetwork | undefined
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
export const fromResult: <E>(error: E | undefined) => Effect.Effect<void, E> = Publish.fromResult

/**
 * A zero-copy in-memory transport on a network.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeInMemory: (options?: InMemoryOptions) => TransportShape = InMemory.makeInMemory

/**
 * An in-memory transport that encodes every frame with the `Codec` and decodes it on arrival,
 * exactly as a network transport would.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeInMemorySerialized: (codec: CodecShape, options?: InMemoryOptions) => TransportShape =
  InMemory.makeInMemorySerialized

// the shared receive path, for the tests and benchmarks that drive it directly
export {
  /** @internal */
  makeReceiver,
  /** @internal */
  type ReplySource,
  /** @internal */
  resolveLimits
} from "./internal/receive.ts"

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
  Layer.scoped(Transport, Effect.flatMap(Codec, (codec) => Nats.make(codec, options)))
