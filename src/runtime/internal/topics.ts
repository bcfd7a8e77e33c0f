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
import { ProtocolVersion } from "../../schema/Envelope.ts"
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

/** @internal */
export const make = (
  nodeId: string,
  transport: TransportShape,
  rules: ReadonlyArray<Topic.Route>
): Effect.Effect<Topic.TopicBusShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const log = Runtime.runFork(yield* Effect.runtime<never>())
    const local = new Set<LocalSubscription>()
    const fanOut = new FanOut()
    let live = 0
    const busOf = (subject: string): Topic.Bus => {
      for (const rule of rules) if (matches(rule.pattern, subject)) return rule.bus
      return "remote"
    }

    const publishLocal = (event: Topic.Event<unknown>): Effect.Effect<void> => {
      const matching: Array<LocalSubscription> = []
      for (const sub of local) if (matches(sub.pattern, event.subject)) matching.push(sub)
      const targets = fanOut.select(matching, event.subject, (sub) => sub.group)
      if (targets.length === 0) return Effect.void
      if (targets.length === 1) return Effect.asVoid(targets[0]!.offer(event))
      return Effect.forEach(targets, (sub) => sub.offer(event), { discard: true })
    }

    const encoders = new WeakMap<Schema.Schema.Any, ReturnType<typeof encodeWith>>()
    const encoderOf = (schema: Schema.Schema<unknown, unknown>) => {
      let encoder = encoders.get(schema)
      if (encoder === undefined) {
        encoder = encodeWith(schema, "event")
        encoders.set(schema, encoder)
      }
      return encoder
    }

    const publish: Topic.TopicBusShape["publish"] = (topic, value, options) =>
      Effect.suspend(() => {
        const subject = options?.subject ?? topic.subject
        if (PUBLISH_PATTERN.test(subject)) {
          return Effect.fail(new TransportError({ reason: `cannot publish to the pattern "${subject}"` }))
        }
        const headers = options?.headers ?? {}
        const bus = busOf(subject)
        const toLocal = bus === "remote" ? Effect.void : publishLocal({ subject, value, source: nodeId, headers })
        if (bus === "local") return toLocal
        let body: unknown = value
        if (!transport.zeroCopy) {
          const encoded = encoderOf(topic.schema as Schema.Schema<unknown, unknown>)(value)
          if (Either.isLeft(encoded)) return Effect.fail(encoded.left)
          body = encoded.right
        }
        const error = transport.unsafePublish(Subjects.topic(subject), {
          _tag: "Event",
          v: ProtocolVersion,
          source: nodeId,
          subject,
          headers,
          body
        })
        return error === undefined ? toLocal : Effect.fail(error)
      })

    const subscribe: Topic.TopicBusShape["subscribe"] = <A, I>(
      topic: Topic.Topic<A, I>,
      options?: Topic.SubscribeOptions
    ) =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const bus = busOf(topic.subject)
        const size = options?.bufferSize ?? 1024
        if (!Number.isInteger(size) || size < 1) {
          return yield* Effect.fail(
            new TransportError({ reason: `bufferSize must be a whole number >= 1, got ${size}` })
          )
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
            Effect.sync(() => local.add(sub)),
            () => Effect.sync(() => local.delete(sub))
          )
        }

        if (bus !== "local") {
          const decode = Schema.decodeUnknownEither(topic.schema)
          let reported = 0
          yield* transport.subscribe(Subjects.topic(topic.subject), (frame) => {
            if (frame._tag !== "Event") return
            // with `both`, our own events already arrived through the local bus
            if (bus === "both" && frame.source === nodeId) return
            let value: A
            if (transport.zeroCopy) {
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
                  log(Effect.logWarning(`an event on ${frame.subject} does not match its topic's schema`, decoded.left))
                }
                return
              }
              value = decoded.right
            }
            // a network callback cannot wait: a full `suspend` buffer drops, counted
            offerCounted(
              queue,
              { subject: frame.subject, value, source: frame.source, headers: frame.headers },
              strategy,
              size
            )
          }, group === undefined ? undefined : { queue: group })
        }
        // counted once it can receive
        yield* Effect.acquireRelease(Effect.sync(() => live++), () => Effect.sync(() => live--))
        return Stream.fromQueue(queue)
      }))

    return { publish, subscribe, subscriptionCount: () => live }
  })

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
