/**
 * The node's event bus: a local in-process bus (zero-copy, publishers wait for slow local
 * subscribers) and the node's transport (`topic.<subject>`), chosen per subject by the routing
 * rules. Every subscription has one bounded queue.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Metric from "effect/Metric"
import * as Queue from "effect/Queue"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Topic from "../../actors/Topic.ts"
import { encodeWith } from "../../layers/Codec.ts"
import { FanOut, matches } from "../../layers/Subject.ts"
import * as Subjects from "../../layers/internal/subjects.ts"
import type { TransportShape } from "../../layers/Transport.ts"
import { type Frame, ProtocolVersion } from "../../schema/Envelope.ts"
import { TransportError } from "../../schema/Errors.ts"

/** @internal */
export const droppedEvents = Metric.counter("troupe_topic_dropped", {
  description: "events dropped because a subscriber's buffer was full"
})

/** @internal */
export const undecodableEvents = Metric.counter("troupe_topic_undecodable", {
  description: "events that did not match their topic's schema"
})

interface LocalSubscription {
  readonly pattern: string
  readonly group: string | undefined
  readonly offer: (event: Topic.Event<unknown>) => Effect.Effect<unknown>
}

const PUBLISH_PATTERN = /[*>]/

/** what the bus's functions share */
interface BusState {
  readonly nodeId: string
  readonly transport: TransportShape
  readonly rules: ReadonlyArray<Topic.Route>
  readonly log: (effect: Effect.Effect<void>) => unknown
  readonly local: Set<LocalSubscription>
  readonly fanOut: FanOut
  readonly encoders: WeakMap<Schema.Schema.Any, ReturnType<typeof encodeWith>>
  live: number
}

/** @internal */
export const make = (
  nodeId: string,
  transport: TransportShape,
  rules: ReadonlyArray<Topic.Route>
): Effect.Effect<Topic.TopicBusShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const state: BusState = {
      nodeId,
      transport,
      rules,
      log: Runtime.runFork(yield* Effect.runtime<never>()),
      local: new Set(),
      fanOut: new FanOut(),
      encoders: new WeakMap(),
      live: 0
    }
    return {
      publish: (topic, value, options) => publish(state, topic, value, options),
      subscribe: (topic, options) => subscribe(state, topic, options),
      subscriptionCount: () => state.live
    }
  })

const busOf = (state: BusState, subject: string): Topic.Bus => {
  for (const rule of state.rules) if (matches(rule.pattern, subject)) return rule.bus
  return "remote"
}

const publishLocal = (state: BusState, event: Topic.Event<unknown>): Effect.Effect<void> => {
  const matching: Array<LocalSubscription> = []
  for (const sub of state.local) if (matches(sub.pattern, event.subject)) matching.push(sub)
  const targets = state.fanOut.select(matching, event.subject, (sub) => sub.group)
  if (targets.length === 0) return Effect.void
  if (targets.length === 1) return Effect.asVoid(targets[0]!.offer(event))
  return Effect.forEach(targets, (sub) => sub.offer(event), { discard: true })
}

const encoderOf = (state: BusState, schema: Schema.Schema<unknown, unknown>) => {
  let encoder = state.encoders.get(schema)
  if (encoder === undefined) {
    encoder = encodeWith(schema, "event")
    state.encoders.set(schema, encoder)
  }
  return encoder
}

const publish = <A, I>(
  state: BusState,
  topic: Topic.Topic<A, I>,
  value: A,
  options: Topic.PublishOptions | undefined
): Effect.Effect<void, Topic.PublishError> =>
  Effect.suspend(() => {
    const subject = options?.subject ?? topic.subject
    if (PUBLISH_PATTERN.test(subject)) {
      return Effect.fail(new TransportError({ reason: `cannot publish to the pattern "${subject}"` }))
    }
    const headers = options?.headers ?? {}
    const bus = busOf(state, subject)
    const toLocal = bus === "remote"
      ? Effect.void
      : publishLocal(state, { subject, value, source: state.nodeId, headers })
    if (bus === "local") return toLocal
    let body: unknown = value
    if (!state.transport.zeroCopy) {
      const encoded = encoderOf(state, topic.schema as Schema.Schema<unknown, unknown>)(value)
      if (Either.isLeft(encoded)) return Effect.fail(encoded.left)
      body = encoded.right
    }
    const error = state.transport.unsafePublish(Subjects.topic(subject), {
      _tag: "Event",
      v: ProtocolVersion,
      source: state.nodeId,
      subject,
      headers,
      body
    })
    return error === undefined ? toLocal : Effect.fail(error)
  })

const subscribe = <A, I>(
  state: BusState,
  topic: Topic.Topic<A, I>,
  options: Topic.SubscribeOptions | undefined
): Stream.Stream<Topic.Event<A>, TransportError> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const bus = busOf(state, topic.subject)
    const size = options?.bufferSize ?? 1024
    if (!Number.isInteger(size) || size < 1) {
      return yield* Effect.fail(new TransportError({ reason: `bufferSize must be a whole number >= 1, got ${size}` }))
    }
    const strategy = options?.strategy ?? (bus === "local" ? "suspend" : "dropping")
    const queue = yield* (strategy === "suspend"
      ? Queue.bounded<Topic.Event<A>>(size)
      : strategy === "dropping"
      ? Queue.dropping<Topic.Event<A>>(size)
      : Queue.sliding<Topic.Event<A>>(size))
    yield* Effect.addFinalizer(() => Queue.shutdown(queue))
    const group = options?.group
    if (bus !== "remote") {
      const sub: LocalSubscription = {
        pattern: topic.subject,
        group,
        offer: (event) =>
          strategy === "suspend"
            ? Queue.offer(queue, event as Topic.Event<A>)
            : Effect.sync(() => offerCounted(queue, event as Topic.Event<A>, strategy, size))
      }
      yield* Effect.acquireRelease(
        Effect.sync(() => state.local.add(sub)),
        () => Effect.sync(() => state.local.delete(sub))
      )
    }
    if (bus !== "local") {
      const deliver = (event: Topic.Event<A>) => offerCounted(queue, event, strategy, size)
      yield* state.transport.subscribe(
        Subjects.topic(topic.subject),
        remoteReceiver(state, topic, bus, deliver),
        group === undefined ? undefined : { queue: group }
      )
    }
    // counted once it can receive
    yield* Effect.acquireRelease(Effect.sync(() => state.live++), () => Effect.sync(() => state.live--))
    return Stream.fromQueue(queue)
  }))

/** the transport callback of a subscription: decodes each event with the topic's schema and hands it on */
const remoteReceiver = <A, I>(
  state: BusState,
  topic: Topic.Topic<A, I>,
  bus: Topic.Bus,
  deliver: (event: Topic.Event<A>) => void
) => {
  const decode = Schema.decodeUnknownEither(topic.schema)
  let reported = 0
  return (frame: Frame): void => {
    if (frame._tag !== "Event") return
    // with `both`, our own events already arrived through the local bus
    if (bus === "both" && frame.source === state.nodeId) return
    let value: A
    if (state.transport.zeroCopy) {
      value = frame.body as A
    } else {
      // the body comes off the wire: a schema that throws on it is a mismatch like any other
      let decoded: Either.Either<A, unknown>
      try {
        decoded = decode(frame.body)
      } catch (error) {
        decoded = Either.left(error)
      }
      if (Either.isLeft(decoded)) {
        undecodableEvents.unsafeUpdate(1, [])
        if (reported++ < 10) {
          state.log(Effect.logWarning(`an event on ${frame.subject} does not match its topic's schema`, decoded.left))
        }
        return
      }
      value = decoded.right
    }
    // a network callback cannot wait: a full `suspend` buffer drops, counted
    deliver({ subject: frame.subject, value, source: frame.source, headers: frame.headers })
  }
}

/** Offers without waiting; a dropped event (the new one, or the oldest when sliding) is counted. */
const offerCounted = <A>(queue: Queue.Queue<A>, event: A, strategy: Topic.Strategy, size: number): void => {
  if (strategy === "sliding") {
    const current = queue.unsafeSize()
    const full = current._tag === "Some" && current.value >= size
    // a sliding queue's offer never waits; only the Effect form makes room by dropping the oldest
    Effect.runSync(Queue.offer(queue, event))
    if (full) droppedEvents.unsafeUpdate(1, [])
    return
  }
  // a full bounded or dropping queue refuses the event
  if (!queue.unsafeOffer(event)) droppedEvents.unsafeUpdate(1, [])
}
