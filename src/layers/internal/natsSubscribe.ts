/**
 * The subscriptions of the NATS transport: each one's nats.js callback ("no responders" to the
 * reply slot's subscription, the frames of each message through the shared receive path, a
 * last-resort catch so that no frame stops the connection's reader) and its expiring
 * reassembly of pieces.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { Msg, NatsConnection } from "nats"
import type { Frame } from "../../schema/Envelope.ts"
import { type PayloadTooLarge, TransportError } from "../../schema/Errors.ts"
import type { CodecShape } from "../Codec.ts"
import * as Subject from "../Subject.ts"
import type { SubscribeOptions } from "../Transport.ts"
import type { Coalescer } from "./coalesce.ts"
import { type Drop, makeDrop } from "./drops.ts"
import type { FragmentLimits } from "./fragments.ts"
import { expireIn, Reassembler } from "./reassembly.ts"
import type { ReplySource } from "./receive.ts"

const causeOf = (error: unknown) => (error instanceof Error ? error.message : String(error))

/** @internal how a subscription turns the bytes of one message into frames */
export type MakeReceiver = (
  codec: CodecShape,
  limits: FragmentLimits,
  onFrame: (frame: Frame) => void,
  onTooLarge: ((error: PayloadTooLarge, replyTo: string) => void) | undefined,
  drop: Drop,
  reassembler: Reassembler
) => (bytes: Uint8Array, source?: ReplySource) => void

/** @internal what every subscription of one transport shares */
export interface Subscriber {
  readonly nc: NatsConnection
  readonly prefix: string
  readonly codec: CodecShape
  readonly limits: FragmentLimits
  readonly clock: Clock.Clock
  readonly log: (effect: Effect.Effect<void>) => unknown
  readonly coalescer: Coalescer<undefined, TransportError>
  readonly makeReceiver: MakeReceiver
}

/** @internal */
export const subscribe = (
  subscriber: Subscriber,
  subject: string,
  onFrame: (frame: Frame) => void,
  subscribeOptions?: SubscribeOptions
): Effect.Effect<void, TransportError, Scope.Scope> => {
  if (!Subject.isValidSubject(subject, true)) {
    return Effect.fail(new TransportError({ reason: `invalid subject "${subject}"` }))
  }
  const { coalescer, nc, prefix } = subscriber
  const onNoResponders = subscribeOptions?.onNoResponders
  const reassembler = new Reassembler(subscriber.limits.maxMessageBytes)
  const drop = makeDrop(prefix + subject, subscriber.clock, subscriber.log)
  const callback = callbackOf(subscriber, subject, onFrame, subscribeOptions, reassembler, drop)
  let stopListening: (() => void) | undefined
  // partial messages expire on the subscribing fiber's Clock, from the subscription's scope
  return Effect.zipRight(
    expireIn(reassembler),
    Effect.acquireRelease(
      Effect.try({
        try: () => {
          const subscription = nc.subscribe(prefix + subject, {
            callback,
            ...(subscribeOptions?.queue !== undefined ? { queue: subscribeOptions.queue } : {})
          })
          if (onNoResponders !== undefined) stopListening = coalescer.listen(subject, onNoResponders)
          return subscription
        },
        catch: (error) => new TransportError({ reason: `subscribe to ${subject} failed: ${causeOf(error)}` })
      }),
      (subscription) =>
        Effect.sync(() => {
          stopListening?.()
          subscription.unsubscribe()
        })
    )
  )
}

/** the nats.js callback of one subscription: "no responders", then the frames of each message */
const callbackOf = (
  subscriber: Subscriber,
  subject: string,
  onFrame: (frame: Frame) => void,
  subscribeOptions: SubscribeOptions | undefined,
  reassembler: Reassembler,
  drop: Drop
) => {
  const { prefix } = subscriber
  const onNoResponders = subscribeOptions?.onNoResponders
  const onTooLarge = subscribeOptions?.onTooLarge
  // the reply subject as the node knows it (without the namespace prefix)
  const receive = subscriber.makeReceiver(
    subscriber.codec,
    subscriber.limits,
    onFrame,
    onTooLarge === undefined ? undefined : (error, reply) => {
      if (reply.startsWith(prefix)) onTooLarge(error, reply.slice(prefix.length))
    },
    drop,
    reassembler
  )
  return (error: Error | null, msg: Msg): void => {
    // a callback that throws stops nats.js's reader (the whole connection goes deaf): the
    // receiver never throws, and this is the last resort for the rest
    try {
      if (error !== null) {
        // e.g. a permissions violation: the server closed this subscription
        subscriber.log(Effect.logWarning(`NATS subscription to ${subject} failed: ${error.message}`))
        return
      }
      const data = msg.data
      if (data.length === 0) {
        if (onNoResponders !== undefined && msg.headers?.code === 503) onNoResponders(msg.subject.slice(prefix.length))
        return
      }
      receive(data, msg)
    } catch (defect) {
      drop(defect)
    }
  }
}
