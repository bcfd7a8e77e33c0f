/**
 * The NATS transport on nats.js: one scoped connection, logical subjects under
 * `troupe.<namespace>.`, frames through the `Codec`, NATS queue groups, "no responders" reported
 * to the reply slot's subscription, and connection events for the node.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import { connect, DebugEvents, Events, type NatsConnection } from "nats"
import type { Frame } from "../../schema/Envelope.ts"
import { type EncodeError, type PayloadTooLarge, TransportError } from "../../schema/Errors.ts"
import type { CodecShape } from "../Codec.ts"
import type { NatsOptions, PublishOptions, TransportEvent, TransportShape } from "../Transport.ts"
import { Coalescer } from "./coalesce.ts"
import { type Drop, makeDrop } from "./drops.ts"
import { encodeBatch } from "./batches.ts"
import { type FragmentLimits, makeEncoder } from "./fragments.ts"
import { publishOf } from "./publish.ts"
import { type MakeReceiver, type Subscriber, subscribe } from "./natsSubscribe.ts"
import { makeReceiver as sharedReceiver, resolveLimits } from "./receive.ts"
import { Backoff, type Connection, disconnected, makeConnection } from "./reconnect.ts"
import * as Subject from "../Subject.ts"
import * as Subjects from "./subjects.ts"

/**
 * nats.js writes its pending output to the socket at once when it reaches `pendingLimit` (32 KiB
 * by default; the option exists but is not in its typings), otherwise at the end of the turn.
 * At 256 KiB a stream of 16 KiB pieces takes an eighth of the socket writes: about 18 % less CPU
 * per MiB streamed, measured in one process alternating both. Small frames are unaffected (they
 * are written at the end of the turn either way).
 */
const WRITE_BATCHING: object = { pendingLimit: 256 * 1024 }

const causeOf = (error: unknown) => (error instanceof Error ? error.message : String(error))

/**
 * @internal The NATS transport. `limitsOf` and `makeReceiver` default to the shared ones
 * (`receive.ts`); a test may pass its own to watch them.
 */
export const make = (
  codec: CodecShape,
  options: NatsOptions,
  limitsOf: (wireLimit: number) => FragmentLimits = (wireLimit) => resolveLimits(options, wireLimit),
  makeReceiver: MakeReceiver = sharedReceiver
): Effect.Effect<TransportShape, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const settings = yield* settingsOf(options)
    const backoff = new Backoff(settings.initialBackoffMillis, settings.maxBackoffMillis)
    const connection = yield* makeConnection(settings.reconnectWaitMillis)
    const nc = yield* connectTo(options, backoff)
    const limits = limitsOf(nc.info?.max_payload ?? 1024 * 1024)
    const log = Runtime.runFork(yield* Effect.runtime<never>())
    const clock = yield* Effect.clock
    yield* Effect.forkScoped(watchStatus(nc, backoff, connection))
    const { prefix } = settings
    const sender = yield* makeSender(nc, prefix, connection, codec, limits, options.coalesce ?? true, log, clock)
    const subscriber: Subscriber = { nc, prefix, codec, limits, clock, log, coalescer: sender.coalescer, makeReceiver }
    const transport: TransportShape = {
      name: `nats+${codec.name}`,
      zeroCopy: false,
      publish: publishOf(sender.publish),
      unsafePublish: sender.publish,
      subscribe: (subject, onFrame, subscribeOptions) => subscribe(subscriber, subject, onFrame, subscribeOptions),
      watch: connection.watch,
      isConnected: connection.isConnected,
      awaitConnected: connection.awaitConnected
    }
    return transport
  })

interface Settings {
  readonly prefix: string
  readonly initialBackoffMillis: number
  readonly maxBackoffMillis: number
  readonly reconnectWaitMillis: number
}

/** the options checked: the namespace, the reconnect backoff and wait */
const settingsOf = (options: NatsOptions): Effect.Effect<Settings, TransportError> => {
  const namespace = options.namespace ?? Subjects.DEFAULT_NAMESPACE
  if (!Subjects.isNamespace(namespace)) {
    return Effect.fail(new TransportError({ reason: `invalid namespace "${namespace}" (one subject token)` }))
  }
  const initial = Duration.toMillis(options.reconnectBackoff?.initial ?? "100 millis")
  const max = Duration.toMillis(options.reconnectBackoff?.max ?? "5 seconds")
  if (!(initial > 0) || !(max >= initial) || !Number.isFinite(max)) {
    return Effect.fail(
      new TransportError({
        reason: `reconnectBackoff must have 0 < initial <= max (finite), got ${initial} ms and ${max} ms`
      })
    )
  }
  const reconnectWait = Duration.decodeUnknown(options.reconnectWait ?? "2 seconds")
  if (Option.isNone(reconnectWait) || !Duration.isFinite(reconnectWait.value)) {
    return Effect.fail(
      new TransportError({ reason: `reconnectWait must be a finite duration, got ${String(options.reconnectWait)}` })
    )
  }
  return Effect.succeed({
    prefix: Subjects.prefixOf(namespace),
    initialBackoffMillis: initial,
    maxBackoffMillis: max,
    reconnectWaitMillis: Duration.toMillis(reconnectWait.value)
  })
}

/** the connection, in the scope: drained (bounded) and closed on release */
const connectTo = (
  options: NatsOptions,
  backoff: Backoff
): Effect.Effect<NatsConnection, TransportError, Scope.Scope> => {
  const servers = typeof options.servers === "string" ? [options.servers] : [...options.servers]
  return Effect.acquireRelease(
    Effect.tryPromise({
      try: () =>
        connect({
          servers,
          ...(options.name !== undefined ? { name: options.name } : {}),
          reconnect: true,
          maxReconnectAttempts: -1,
          // exponential backoff with jitter, in dial attempts; reset once connected again
          reconnectDelayHandler: () => backoff.delay(),
          timeout: Duration.toMillis(options.connectTimeout ?? "5 seconds"),
          pingInterval: 10_000,
          ...WRITE_BATCHING
        }),
      catch: (error) => new TransportError({ reason: `cannot connect to ${servers.join(", ")}: ${causeOf(error)}` })
    }),
    (connection) =>
      Effect.promise(() => connection.drain().catch(() => connection.close())).pipe(
        Effect.timeoutOption(options.drainTimeout ?? "5 seconds"),
        Effect.zipRight(Effect.promise(() => connection.close().catch(() => undefined)))
      )
  )
}

/** the connection's status events: the backoff's dial count, the connection state (which tells the node's listeners) */
const watchStatus = (
  nc: NatsConnection,
  backoff: Backoff,
  connection: Connection
): Effect.Effect<void> =>
  Effect.promise(async () => {
    for await (const status of nc.status()) {
      // nats.js reports each dial of its reconnect loop as `reconnecting`
      if (status.type === DebugEvents.Reconnecting) backoff.onDial()
      const event: TransportEvent | undefined = status.type === Events.Disconnect
        ? "disconnected"
        : status.type === Events.Reconnect
        ? "reconnected"
        : undefined
      if (event === undefined) continue
      if (event === "reconnected") {
        backoff.reset()
        connection.onReconnected()
      } else {
        connection.onDisconnected()
      }
    }
  })

/** writes an encoded frame to the connection, under the namespace prefix */
const publishWireOf = (nc: NatsConnection, prefix: string, connection: Connection) =>
(
  subject: string,
  bytes: Uint8Array,
  replyTo: string | undefined
): TransportError | undefined => {
  // a batch closed after the connection was lost
  if (!connection.isConnected()) return disconnected()
  // the last guard before the socket: a space or a line break in a subject would make the
  // server close the connection (or inject a protocol command)
  if (!Subject.isConcreteSubject(subject) || (replyTo !== undefined && !Subject.isConcreteSubject(replyTo))) {
    return new TransportError({ reason: `cannot publish to the invalid subject ${JSON.stringify(subject)}` })
  }
  try {
    nc.publish(prefix + subject, bytes, replyTo === undefined ? undefined : { reply: prefix + replyTo })
    return undefined
  } catch (error) {
    return new TransportError({ reason: `publish to ${subject} failed: ${causeOf(error)}` })
  }
}

/** a batch that reached nobody: each of its frames' reply slots hears "no responders" */
const subscribeBatchSlot = (
  nc: NatsConnection,
  prefix: string,
  batchSlot: string,
  coalescer: Coalescer<undefined, TransportError>,
  drop: Drop
): Effect.Effect<void, TransportError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.try({
      try: () =>
        nc.subscribe(`${prefix}${batchSlot}.*`, {
          callback: (error, msg) => {
            // a callback that throws stops nats.js's reader: nothing may escape
            try {
              if (error !== null || msg.data.length !== 0 || msg.headers?.code !== 503) return
              coalescer.unanswered(msg.subject.slice(prefix.length))
            } catch (defect) {
              drop(defect)
            }
          }
        }),
      catch: (error) => new TransportError({ reason: `subscribe to ${batchSlot} failed: ${causeOf(error)}` })
    }),
    (subscription) => Effect.sync(() => subscription.unsubscribe())
  )

/**
 * The sending side: frames encoded (in pieces past the chunk size) and written to the
 * connection. Consecutive frames to one subject in one event-loop turn go as one NATS message (a
 * frame to another subject closes the batch, so the connection's order of frames is kept); a
 * batch never exceeds the chunk size, so it never travels in pieces. "No responders" to a batch
 * reaches each of its frames' reply slots, through the coalescer's listeners.
 */
const makeSender = (
  nc: NatsConnection,
  prefix: string,
  connection: Connection,
  codec: CodecShape,
  limits: FragmentLimits,
  coalesce: boolean,
  log: (effect: Effect.Effect<void>) => unknown,
  clock: Clock.Clock
): Effect.Effect<
  { readonly publish: TransportShape["unsafePublish"]; readonly coalescer: Coalescer<undefined, TransportError> },
  TransportError,
  Scope.Scope
> => {
  const encode = makeEncoder(codec, limits)
  const publishWire = publishWireOf(nc, prefix, connection)
  const batchSlot = `_batch.${Math.random().toString(36).slice(2, 10)}`
  const coalescer = new Coalescer<undefined, TransportError>({
    single: true,
    // the batch container's 5-byte header counts towards the chunk size
    headerBytes: 5,
    maxBytes: limits.chunkBytes,
    maxFrames: Number.POSITIVE_INFINITY,
    maxTracked: 4096,
    sendOne: (subject, _, frame, replyTo) => publishWire(subject, frame, replyTo),
    sendBatch: (subject, _, frames, replyTo) => publishWire(subject, encodeBatch(frames), replyTo),
    replySlot: (id) => `${batchSlot}.${id}`,
    onUnsent: (count, subject, error) => log(Effect.logWarning(`${count} frame(s) to ${subject} were not sent`, error))
  })
  const publish = (
    subject: string,
    frame: Frame,
    publishOptions?: PublishOptions
  ): TransportError | EncodeError | PayloadTooLarge | undefined => {
    // nats.js would buffer the frame and discard it at its next dial: it never leaves
    if (!connection.isConnected()) return disconnected()
    const fragmentTo = publishOptions?.fragmentTo
    const encoded = encode(frame, fragmentTo !== undefined)
    if (Either.isLeft(encoded)) return encoded.left
    const wire = encoded.right
    const replyTo = publishOptions?.replyTo
    if (wire instanceof Uint8Array && coalesce && wire.byteLength <= limits.chunkBytes / 2) {
      coalescer.add(subject, undefined, wire, replyTo)
      return undefined
    }
    // what is not batched keeps its order behind what is
    coalescer.closeFor(subject)
    if (wire instanceof Uint8Array) return publishWire(subject, wire, replyTo)
    // only a first piece carries the reply subject: the receiver learns the frame's size (and
    // answers one too large) from it, and one "no responders" is enough; the others are
    // shorter to write, route and parse
    for (let i = 0; i < wire.length; i++) {
      const error = publishWire(fragmentTo!, wire[i]!, i === 0 ? replyTo : undefined)
      if (error !== undefined) return error
    }
    return undefined
  }
  const drop = makeDrop(`${prefix}${batchSlot}.*`, clock, log)
  return Effect.as(subscribeBatchSlot(nc, prefix, batchSlot, coalescer, drop), { publish, coalescer })
}
