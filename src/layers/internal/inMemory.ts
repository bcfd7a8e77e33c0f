/**
 * The in-memory network and its two transports: zero-copy (frames handed over by reference) and
 * serialized (every frame through the `Codec` and the shared receive path, as on a real wire).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Scope from "effect/Scope"
import type { Frame } from "../../schema/Envelope.ts"
import { TransportError } from "../../schema/Errors.ts"
import type { CodecShape } from "../Codec.ts"
import * as Subject from "../Subject.ts"
import type { InMemoryOptions, SubscribeOptions, TransportShape } from "../Transport.ts"
import * as Drops from "./drops.ts"
import { makeEncoder } from "./fragments.ts"
import { expireIn, Reassembler } from "./reassembly.ts"
import { makeReceiver, resolveLimits } from "./receive.ts"
import { publishOf } from "./publish.ts"
import { prefixOf } from "./subjects.ts"

/** @internal one subscription on an in-memory network */
export interface Subscription {
  readonly subject: string
  readonly queue: string | undefined
  /** `replyTo` is the logical reply subject the frame was published with, if any */
  readonly deliver: (frame: Frame | Uint8Array, replyTo?: string) => void
  readonly onNoResponders: ((subject: string) => void) | undefined
  /** the transport (endpoint) that subscribed, when it was given one (`InMemoryEndpointOptions`) */
  readonly endpoint?: string | undefined
}

/**
 * @internal A hook the test kit (`troupe/testing`) installs on a network to decide the fate of
 * every delivery. Without one the network routes as NATS does, at the cost of one `undefined`
 * check per frame.
 */
export interface NetworkHook {
  /**
   * whether the broker would hand `from`'s frames to `to` at all (its interest is known):
   * filtered before a queue group picks its member, and an unreachable subscriber counts for
   * nothing ("no responders" if none is left)
   */
  readonly reachable: (from: string | undefined, to: string | undefined) => boolean
  /** hands one delivery over: now, later or never (`sub.deliver(frame, replyTo)` delivers it) */
  readonly deliver: (delivery: Delivery) => void
  /** a subscription was removed: nothing more may be delivered to it */
  readonly removed: (sub: Subscription) => void
}

/** @internal one frame on its way from a publisher to one subscription */
export interface Delivery {
  readonly from: string | undefined
  readonly sub: Subscription
  readonly subject: string
  readonly wire: Frame | Uint8Array
  readonly replyTo: string | undefined
  /** the frame as published (a piece of it when `wire` is one of several pieces) */
  readonly frame: Frame | undefined
}

/**
 * One in-process network: every in-memory transport built on the same network can reach the
 * others, so several nodes can run in one process. Public as `Transport.InMemoryNetwork`.
 *
 * @since 0.1.0
 */
export class InMemoryNetwork {
  private readonly exact = new Map<string, Array<Subscription>>()
  private readonly wildcard: Array<Subscription> = []
  private readonly fanOut = new Subject.FanOut()
  /** @internal the test kit's hook, see `NetworkHook` */
  hook: NetworkHook | undefined = undefined

  /** @internal */
  add(sub: Subscription): () => void {
    const list = Subject.isPattern(sub.subject) ? this.wildcard : this.listFor(sub.subject)
    list.push(sub)
    return () => {
      const index = list.indexOf(sub)
      if (index >= 0) list.splice(index, 1)
      if (list !== this.wildcard && list.length === 0) this.exact.delete(sub.subject)
      if (index >= 0) this.hook?.removed(sub)
    }
  }

  /** @internal removes every subscription of `endpoint` at once (its connection died) */
  removeEndpoint(endpoint: string): void {
    const gone = (sub: Subscription) => sub.endpoint === endpoint
    for (const [subject, list] of this.exact) {
      for (const sub of list.filter(gone)) this.hook?.removed(sub)
      const kept = list.filter((sub) => !gone(sub))
      list.length = 0
      list.push(...kept)
      if (kept.length === 0) this.exact.delete(subject)
    }
    for (const sub of this.wildcard.filter(gone)) this.hook?.removed(sub)
    const kept = this.wildcard.filter((sub) => !gone(sub))
    this.wildcard.length = 0
    this.wildcard.push(...kept)
  }

  /**
   * @internal Routes a frame; when nobody received it and `replyTo` is given, tells the
   * subscriptions of `replyTo` (NATS "no responders").
   */
  routeWithReply(
    subject: string,
    frame: Frame | Uint8Array,
    replyTo: string | undefined,
    prefix: string,
    from?: string,
    logical?: Frame
  ): void {
    if (this.route(subject, frame, replyTo, from, logical) > 0 || replyTo === undefined) return
    const full = prefix + replyTo
    for (const sub of [...(this.exact.get(full) ?? []), ...this.wildcard]) {
      if (sub.onNoResponders !== undefined && Subject.matches(sub.subject, full)) sub.onNoResponders(replyTo)
    }
  }

  /**
   * @internal returns the number of subscriptions the frame was handed to; `from` (the
   * publishing endpoint) and `logical` (the frame before encoding) are for the hook only
   */
  route(subject: string, frame: Frame | Uint8Array, replyTo?: string, from?: string, logical?: Frame): number {
    if (this.hook !== undefined) return this.routeHooked(this.hook, subject, frame, replyTo, from, logical)
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

  private routeHooked(
    hook: NetworkHook,
    subject: string,
    wire: Frame | Uint8Array,
    replyTo: string | undefined,
    from: string | undefined,
    frame: Frame | undefined
  ): number {
    const matching: Array<Subscription> = []
    for (const sub of this.exact.get(subject) ?? []) if (hook.reachable(from, sub.endpoint)) matching.push(sub)
    for (const sub of this.wildcard) {
      if (Subject.matches(sub.subject, subject) && hook.reachable(from, sub.endpoint)) matching.push(sub)
    }
    const receivers = this.fanOut.select(matching, subject, (sub) => sub.queue)
    for (const sub of receivers) hook.deliver({ from, sub, subject, wire, replyTo, frame })
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
 * @internal
 */
export const makeNetwork = (): InMemoryNetwork => new InMemoryNetwork()

/**
 * The options of an in-memory transport, with the name of the endpoint (one node's connection)
 * it publishes and subscribes as, for a network's `NetworkHook`.
 *
 * @internal
 */
export interface InMemoryEndpointOptions extends InMemoryOptions {
  readonly endpoint?: string | undefined
}

const subscribeWith = (
  network: InMemoryNetwork,
  prefix: string,
  subject: string,
  makeDeliver: (drop: Drops.Drop) => (frame: Frame | Uint8Array, replyTo?: string) => void,
  options: SubscribeOptions | undefined,
  endpoint: string | undefined
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
            onNoResponders: options?.onNoResponders,
            endpoint
          })
        ),
        (remove) => Effect.sync(remove)
      )
    })
    : Effect.fail(new TransportError({ reason: `invalid subject "${subject}"` }))

/**
 * A zero-copy in-memory transport on a network.
 *
 * @internal
 */
export const makeInMemory = (options: InMemoryEndpointOptions = {}): TransportShape => {
  const network = options.network ?? makeNetwork()
  const prefix = prefixOf(options.namespace)
  const endpoint = options.endpoint
  const unsafePublish: TransportShape["unsafePublish"] = (subject, frame, publishOptions) => {
    network.routeWithReply(prefix + subject, frame, publishOptions?.replyTo, prefix, endpoint, frame)
    return undefined
  }
  return {
    name: "in-memory",
    zeroCopy: true,
    publish: publishOf(unsafePublish),
    unsafePublish,
    subscribe: (subject, onFrame, subscribeOptions) =>
      subscribeWith(
        network,
        prefix,
        subject,
        () => onFrame as (frame: Frame | Uint8Array) => void,
        subscribeOptions,
        endpoint
      ),
    watch: () => Effect.void
  }
}

/**
 * An in-memory transport that encodes every frame with the `Codec` and decodes it on arrival,
 * exactly as a network transport would.
 *
 * @internal
 */
export const makeInMemorySerialized = (codec: CodecShape, options: InMemoryEndpointOptions = {}): TransportShape => {
  const network = options.network ?? makeNetwork()
  const endpoint = options.endpoint
  const prefix = prefixOf(options.namespace)
  const limits = resolveLimits(options, Infinity)
  const encode = makeEncoder(codec, limits)
  const unsafePublish: TransportShape["unsafePublish"] = (subject, frame, publishOptions) => {
    const fragmentTo = publishOptions?.fragmentTo
    const encoded = encode(frame, fragmentTo !== undefined)
    if (Either.isLeft(encoded)) return encoded.left
    const wire = encoded.right
    if (wire instanceof Uint8Array) {
      network.routeWithReply(prefix + subject, wire, publishOptions?.replyTo, prefix, endpoint, frame)
    } else {
      // only a first piece carries the reply subject (see `Nats.make`)
      for (let i = 0; i < wire.length; i++) {
        const replyTo = i === 0 ? publishOptions?.replyTo : undefined
        network.routeWithReply(prefix + fragmentTo!, wire[i]!, replyTo, prefix, endpoint, frame)
      }
    }
    return undefined
  }
  return {
    name: `in-memory+${codec.name}`,
    zeroCopy: false,
    publish: publishOf(unsafePublish),
    unsafePublish,
    subscribe: (subject, onFrame, subscribeOptions) => {
      const reassembler = new Reassembler(limits.maxMessageBytes)
      return Effect.zipRight(
        expireIn(reassembler),
        subscribeWith(
          network,
          prefix,
          subject,
          (drop) => {
            const receive = makeReceiver(codec, limits, onFrame, subscribeOptions?.onTooLarge, drop, reassembler)
            return (bytes, replyTo) =>
              receive(bytes as Uint8Array, replyTo === undefined ? undefined : { reply: replyTo })
          },
          subscribeOptions,
          endpoint
        )
      )
    },
    watch: () => Effect.void
  }
}
