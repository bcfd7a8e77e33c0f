/**
 * The NATS transport on nats.js: one scoped connection, logical subjects under
 * `troupe.<namespace>.`, frames through the `Codec`, NATS queue groups, "no responders" reported
 * to the reply slot's subscription, and connection events for the node.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import { connect, type Msg, type NatsConnection } from "nats"
import type { Envelope } from "../../schema/Envelope.ts"
import { type EncodeError, type PayloadTooLarge, TransportError } from "../../schema/Errors.ts"
import type { CodecShape } from "../Codec.ts"
import type { NatsOptions, PublishOptions, SubscribeOptions, TransportEvent, TransportShape } from "../Transport.ts"
import { type FragmentLimits, makeEncoder } from "./fragments.ts"
import * as Subject from "../Subject.ts"

const causeOf = (error: unknown) => (error instanceof Error ? error.message : String(error))

/** @internal */
export const make = (
  codec: CodecShape,
  options: NatsOptions,
  limitsOf: (wireLimit: number) => FragmentLimits,
  makeReceiver: (
    codec: CodecShape,
    limits: FragmentLimits,
    onFrame: (frame: Envelope) => void
  ) => (bytes: Uint8Array) => void
): Effect.Effect<TransportShape, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const namespace = options.namespace ?? "default"
    if (!Subject.isValidSubject(namespace, false) || namespace.includes(".")) {
      return yield* Effect.fail(new TransportError({ reason: `invalid namespace "${namespace}" (one subject token)` }))
    }
    const prefix = `troupe.${namespace}.`
    const initial = Duration.toMillis(options.reconnectBackoff?.initial ?? "100 millis")
    const max = Duration.toMillis(options.reconnectBackoff?.max ?? "5 seconds")
    let attempt = 0
    const servers = typeof options.servers === "string" ? [options.servers] : [...options.servers]
    const nc: NatsConnection = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          connect({
            servers,
            ...(options.name !== undefined ? { name: options.name } : {}),
            reconnect: true,
            maxReconnectAttempts: -1,
            // exponential backoff with jitter; reset once connected again
            reconnectDelayHandler: () => {
              const delay = Math.min(max, initial * 2 ** Math.min(attempt++, 16))
              return delay / 2 + Math.random() * (delay / 2)
            },
            timeout: Duration.toMillis(options.connectTimeout ?? "5 seconds"),
            pingInterval: 10_000
          }),
        catch: (error) => new TransportError({ reason: `cannot connect to ${servers.join(", ")}: ${causeOf(error)}` })
      }),
      (connection) =>
        Effect.promise(() => connection.drain().catch(() => connection.close())).pipe(
          Effect.timeoutOption(options.drainTimeout ?? "5 seconds"),
          Effect.zipRight(Effect.promise(() => connection.close().catch(() => undefined)))
        )
    )
    const limits = limitsOf(nc.info?.max_payload ?? 1024 * 1024)
    const encode = makeEncoder(codec, limits)

    const listeners = new Set<(event: TransportEvent) => void>()
    const log = Runtime.runFork(yield* Effect.runtime<never>())
    yield* Effect.forkScoped(Effect.promise(async () => {
      for await (const status of nc.status()) {
        const event: TransportEvent | undefined = status.type === "disconnect"
          ? "disconnected"
          : status.type === "reconnect"
          ? "reconnected"
          : undefined
        if (event === "reconnected") attempt = 0
        if (event !== undefined) for (const listener of listeners) listener(event)
      }
    }))

    const unsafePublish = (
      subject: string,
      frame: Envelope,
      publishOptions?: PublishOptions
    ): TransportError | EncodeError | PayloadTooLarge | undefined => {
      const fragmentTo = publishOptions?.fragmentTo
      const encoded = encode(frame, fragmentTo !== undefined)
      if (Either.isLeft(encoded)) return encoded.left
      const wire = encoded.right
      const reply = publishOptions?.replyTo !== undefined ? { reply: prefix + publishOptions.replyTo } : undefined
      try {
        if (wire instanceof Uint8Array) {
          nc.publish(prefix + subject, wire, reply)
        } else {
          for (const piece of wire) nc.publish(prefix + fragmentTo!, piece, reply)
        }
        return undefined
      } catch (error) {
        return new TransportError({ reason: `publish to ${subject} failed: ${causeOf(error)}` })
      }
    }

    const subscribe = (
      subject: string,
      onFrame: (frame: Envelope) => void,
      subscribeOptions?: SubscribeOptions
    ): Effect.Effect<void, TransportError, Scope.Scope> => {
      if (!Subject.isValidSubject(subject, true)) {
        return Effect.fail(new TransportError({ reason: `invalid subject "${subject}"` }))
      }
      const onNoResponders = subscribeOptions?.onNoResponders
      const receive = makeReceiver(codec, limits, onFrame)
      const callback = (error: Error | null, msg: Msg) => {
        if (error !== null) {
          // e.g. a permissions violation: the server closed this subscription
          log(Effect.logWarning(`NATS subscription to ${subject} failed: ${error.message}`))
          return
        }
        const data = msg.data
        if (data.length === 0) {
          if (onNoResponders !== undefined && msg.headers?.code === 503) {
            onNoResponders(msg.subject.slice(prefix.length))
          }
          return
        }
        receive(data)
      }
      return Effect.acquireRelease(
        Effect.try({
          try: () =>
            nc.subscribe(prefix + subject, {
              callback,
              ...(subscribeOptions?.queue !== undefined ? { queue: subscribeOptions.queue } : {})
            }),
          catch: (error) => new TransportError({ reason: `subscribe to ${subject} failed: ${causeOf(error)}` })
        }),
        (subscription) => Effect.sync(() => subscription.unsubscribe())
      )
    }

    const transport: TransportShape = {
      name: `nats+${codec.name}`,
      zeroCopy: false,
      publish: (subject, frame, publishOptions) =>
        Effect.suspend(() => {
          const error = unsafePublish(subject, frame, publishOptions)
          return error === undefined ? Effect.void : Effect.fail(error)
        }),
      unsafePublish,
      subscribe,
      watch: (listener) =>
        Effect.acquireRelease(Effect.sync(() => listeners.add(listener)), () => Effect.sync(() => listeners.delete(listener))).pipe(Effect.asVoid)
    }
    return transport
  })
