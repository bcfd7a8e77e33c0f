/**
 * Topics suite: events published and delivered through Troupe's topics over a real nats-server,
 * the subscriber in another process, against raw nats.js pub/sub measured in the same run on the
 * same server.
 *
 * One nats-server (loopback, free port) and three child processes are started for the run and
 * stopped at its end, also when it fails:
 * - `raw-subscriber.ts`: plain nats.js, decoding (msgpackr) and counting the events;
 * - `raw-subscriber.ts ... effect`: the same, each event then decoded with its Schema into a
 *   `Queue` and counted by `Stream.runForEach` (Effect's own cost per event, no Troupe code);
 * - `topics-subscriber.ts`: a Troupe node (`Node.layerNats`, MessagePack) counting
 *   `Topic.subscribe(OrderPlaced, { bufferSize })` with `Stream.runForEach`.
 *
 * Here, the raw publisher encodes each event `{ id: "o-1", total: 12.5 }` with msgpackr and
 * `nc.publish`es it in a plain loop; the Troupe publisher is a node over the same server calling
 * `Topic.publish(OrderPlaced, order)` with `Effect.forEach`. A round publishes `EVENTS` events
 * once the subscriber has acknowledged the round (`topics-events.ts` describes the protocol) and
 * measures two rates from the first publish:
 * - delivered: events received / time until the subscriber reports that all have arrived;
 * - publish only: events published / time until the publishing loop returns.
 * A round also ends after `ROUND_MILLIS`: what arrived by then counts, the rest are failures.
 *
 * Each figure is the median of 5 rounds after a warm-up, the rounds of Troupe and of the raw
 * baseline interleaved. Target: Troupe delivered / raw delivered >= 0.8, with no event dropped.
 * The Troupe subscriber's buffer holds a whole round (`bufferSize: EVENTS`), so a consumer slower
 * than the network cannot drop; drops are still counted (from the subscriber's
 * `troupe_topic_dropped`) and reported, and any drop fails the target.
 *
 * `BENCH_PROFILE_DIR=dir` makes the subscribers write CPU profiles there
 * (`raw-subscriber.cpuprofile`, `topics-subscriber.cpuprofile`); `topics-profile.ts` drives the
 * Troupe path alone and profiles the publisher too.
 *
 * Run alone with `npm run bench -- topics`.
 *
 * @since 0.1.0
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Schema from "effect/Schema"
import { Packr } from "msgpackr"
import { connect, type NatsConnection } from "nats"
import { Node, Topic } from "../src/index.ts"
import type { NodeChild } from "../testing/nats.ts"
import {
  baselineResult,
  type Budget,
  compare,
  formatRate,
  type Measurement,
  measureAll,
  median,
  type Result,
  type Round,
  type Spec
} from "./harness.ts"
import { child, natsServer, ready } from "./nats.ts"
import {
  BenchControl,
  type Control,
  type Done,
  NAMESPACE,
  order,
  Order,
  OrderPlaced,
  parseDone,
  RAW_SUBJECT,
  roundLine
} from "./topics-events.ts"

const SUITE = "topics"

/** Events per round. */
export const EVENTS = 50_000
/** A round ends after this long even if not every event arrived. */
export const ROUND_MILLIS = 5_000
const BUDGET: Budget = { maxOps: EVENTS, maxMillis: ROUND_MILLIS }
const ROUNDS = 5
const WARMUPS = 1
/** Events published per step of the publishing loops, between two looks at the clock. */
const BATCH = 1_024

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })

// ---- one path: a publisher here, its subscriber in a child -----------------------------------

/**
 * A publisher in this process and the subscriber process it publishes to.
 *
 * @since 0.1.0
 * @category models
 */
export interface Path {
  readonly name: string
  readonly subscriber: NodeChild
  /** sends one control message to the subscriber */
  readonly control: (message: Control) => Effect.Effect<void, unknown>
  /** publishes up to `count` events, stopping at `deadline` (`performance.now()`); the number published */
  readonly publish: (count: number, deadline: number) => Effect.Effect<number, unknown>
}

/**
 * The raw nats.js publisher: a plain loop of `packr.pack` + `nc.publish`, no Effect inside.
 *
 * @since 0.1.0
 * @category paths
 */
export const rawPath = (nc: NatsConnection, subscriber: NodeChild): Path => ({
  name: "raw nats.js pub/sub, msgpackr",
  subscriber,
  control: (message) => Effect.sync(() => nc.publish(`${RAW_SUBJECT}.control`, packr.pack(message))),
  publish: (count, deadline) =>
    Effect.sync(() => {
      let published = 0
      while (published < count) {
        const end = Math.min(count, published + BATCH)
        for (; published < end; published++) nc.publish(RAW_SUBJECT, packr.pack(order))
        if (performance.now() > deadline) break
      }
      return published
    })
})

/** The subject of the raw-in-Effect baseline (its control subject is `<subject>.control`). */
const EFFECT_SUBJECT = "bench.topics.effect"

/**
 * Raw nats.js driven the way a typed Effect program would drive it, with no Troupe code: each
 * event Schema-encoded, `packr.pack`ed and `nc.publish`ed in one `Effect.sync` of an
 * `Effect.forEach`; its subscriber (`raw-subscriber.ts ... effect`) decodes each with the Schema
 * into a `Queue` read by `Stream.runForEach`. The suite's measure of what Effect itself costs
 * per event, the ceiling of any Effect-native topic layer on this machine.
 *
 * @since 0.3.0
 * @category paths
 */
export const rawEffectPath = (nc: NatsConnection, subscriber: NodeChild): Path => {
  const encode = Schema.encodeEither(Order)
  const publishOne = Effect.suspend(() => {
    const encoded = encode(order)
    if (Either.isLeft(encoded)) return Effect.fail(encoded.left)
    nc.publish(EFFECT_SUBJECT, packr.pack(encoded.right))
    return Effect.void
  })
  return {
    name: "raw nats.js in Effect (Schema, Stream), msgpackr",
    subscriber,
    control: (message) => Effect.sync(() => nc.publish(`${EFFECT_SUBJECT}.control`, packr.pack(message))),
    publish: publishLoop(publishOne)
  }
}

/**
 * Publishes up to `count` events with `publishOne` in `Effect.forEach` steps of `BATCH`, looking
 * at the clock between two steps; the number published.
 */
const publishLoop = <E, R>(publishOne: Effect.Effect<void, E, R>) => {
  const batch = Array.from({ length: BATCH }, (_, i) => i)
  return (count: number, deadline: number): Effect.Effect<number, E, R> =>
    Effect.gen(function*() {
      let published = 0
      while (published < count) {
        const size = Math.min(BATCH, count - published)
        yield* Effect.forEach(size === BATCH ? batch : batch.slice(0, size), () => publishOne, { discard: true })
        published += size
        if (performance.now() > deadline) break
      }
      return published
    })
}

/**
 * The Troupe publisher: `Topic.publish` in `Effect.forEach`, on a node of its own.
 *
 * @since 0.1.0
 * @category paths
 */
export const troupePath = (publisher: Context.Context<Topic.TopicBus>, subscriber: NodeChild): Path => {
  const publish = publishLoop(Topic.publish(OrderPlaced, order))
  return {
    name: "Troupe topics, MessagePack",
    subscriber,
    control: (message) => Effect.provide(Topic.publish(BenchControl, message), publisher),
    publish: (count, deadline) => Effect.provide(publish(count, deadline), publisher)
  }
}

const waitForLine = <A>(node: NodeChild, parse: (line: string) => A | undefined, millis: number) =>
  Effect.tryPromise(() => node.waitForLine((line) => parse(line) !== undefined, Math.max(1, Math.round(millis)))).pipe(
    Effect.map((line) => parse(line)!)
  )

/**
 * Starts round `round` on the subscriber: the control message is sent again every 200 ms until
 * the subscriber acknowledges it (its control subscription may reach the server a moment after
 * it printed `ready`).
 */
const startRound = (path: Path, round: number, expect: number) =>
  Effect.gen(function*() {
    const ack = roundLine(round)
    for (let attempt = 0; attempt < 50; attempt++) {
      yield* path.control({ round, command: "start", expect })
      const acknowledged = yield* Effect.option(
        waitForLine(path.subscriber, (line) => (line.trim() === ack ? true : undefined), 200)
      )
      if (acknowledged._tag === "Some") return
    }
    return yield* Effect.dieMessage(`${path.name}: the subscriber did not acknowledge round ${round}`)
  })

/**
 * What one round did.
 *
 * @since 0.1.0
 * @category models
 */
export interface Delivery {
  readonly published: number
  /** from the first publish until the publishing loop returned */
  readonly publishMillis: number
  readonly received: number
  readonly dropped: number
  /** from the first publish until the subscriber reported every event, or the round's time ran out */
  readonly millis: number
}

/**
 * One round: publish, then wait for the subscriber's `done` line (or ask for it when the round
 * runs out of time).
 *
 * @since 0.1.0
 * @category measuring
 */
export const deliver = (path: Path, round: number, budget: Budget): Effect.Effect<Delivery, unknown> =>
  Effect.gen(function*() {
    yield* startRound(path, round, budget.maxOps)
    const start = performance.now()
    const deadline = start + budget.maxMillis
    const published = yield* path.publish(budget.maxOps, deadline)
    const publishMillis = performance.now() - start
    const parse = (line: string) => parseDone(round, line)
    let done: Done | undefined = yield* Effect.option(
      waitForLine(path.subscriber, parse, deadline - performance.now())
    ).pipe(Effect.map((option) => (option._tag === "Some" ? option.value : undefined)))
    const millis = performance.now() - start
    if (done === undefined) {
      yield* path.control({ round, command: "report", expect: 0 })
      done = yield* waitForLine(path.subscriber, parse, 5_000)
    }
    return { published, publishMillis, received: done.received, dropped: done.dropped, millis }
  })

/** The publishing rate of each round, by round number, beside the delivered rate `measureAll` keeps. */
interface PublishRates {
  readonly rates: Map<number, number>
}

/**
 * A round for `measureAll`: delivered events are its operations; events that did not arrive
 * (dropped or still in flight) are its failures.
 */
const round =
  (path: Path, rounds: { next: number }, publishRates: PublishRates, dropped: { total: number }) =>
  (budget: Budget): Effect.Effect<Round, unknown> =>
    Effect.suspend(() => {
      const r = rounds.next++
      return Effect.map(deliver(path, r, budget), (delivery): Round => {
        publishRates.rates.set(r, (delivery.published / delivery.publishMillis) * 1000)
        dropped.total += delivery.dropped
        const failures = budget.maxOps - delivery.received
        return {
          ops: delivery.received,
          failures,
          millis: delivery.millis,
          ...(failures > 0
            ? {
              firstFailure:
                `${failures} of ${budget.maxOps} events not delivered in ${Math.round(delivery.millis)} ms ` +
                `(${delivery.published} published, ${delivery.dropped} dropped)`
            }
            : {})
        }
      })
    })

interface MeasuredPath {
  readonly spec: Spec
  readonly publishRates: PublishRates
  readonly dropped: { total: number }
}

const measuredPath = (path: Path): MeasuredPath => {
  const publishRates: PublishRates = { rates: new Map() }
  const dropped = { total: 0 }
  return {
    spec: { name: `${path.name}, delivered`, budget: BUDGET, round: round(path, { next: 0 }, publishRates, dropped) },
    publishRates,
    dropped
  }
}

/** The publish-only figure of a path, from the rates its measured rounds recorded. */
const publishMeasurement = (path: Path, measured: MeasuredPath): Measurement => {
  const rates = [...measured.publishRates.rates].filter(([r]) => r >= WARMUPS).map(([, rate]) => rate)
  const measurement: Measurement = { name: `${path.name}, publish only`, rate: median(rates), rates, failures: 0 }
  console.log(
    `  ${measurement.name.padEnd(52)} ${formatRate(measurement.rate).padStart(12)} /s   rounds ${
      formatRate(Math.min(...rates))
    }..${formatRate(Math.max(...rates))}`
  )
  return measurement
}

// ---- the suite -------------------------------------------------------------------------------

const program = Effect.gen(function*() {
  const server = yield* natsServer
  const [rawSubscriber, effectSubscriber, troupeSubscriber] = yield* Effect.all([
    child("raw-subscriber.ts", [server.url, RAW_SUBJECT]),
    child("raw-subscriber.ts", [server.url, EFFECT_SUBJECT, "effect"], { BENCH_EVENTS: String(EVENTS) }),
    child("topics-subscriber.ts", [server.url, String(EVENTS)])
  ])
  yield* Effect.all(
    [
      ready(rawSubscriber!, "raw subscriber"),
      ready(effectSubscriber!, "raw-in-Effect subscriber"),
      ready(troupeSubscriber!, "Troupe subscriber")
    ],
    { concurrency: "unbounded" }
  )

  const nc = yield* Effect.acquireRelease(
    Effect.promise(() => connect({ servers: server.url, name: "bench-raw-publisher" })),
    (nc) => Effect.promise(() => nc.drain().catch(() => nc.close()))
  )
  const publisher: Context.Context<Topic.TopicBus> = yield* Layer.build(
    Node.layerNats({ servers: server.url, name: "bench-topics-publisher", namespace: NAMESPACE, codec: "msgpack" })
  )

  const raw = rawPath(nc, rawSubscriber!)
  const inEffect = rawEffectPath(nc, effectSubscriber!)
  const troupe = troupePath(publisher, troupeSubscriber!)
  const rawMeasured = measuredPath(raw)
  const effectMeasured = measuredPath(inEffect)
  const troupeMeasured = measuredPath(troupe)
  const [rawDelivered, effectDelivered, troupeDelivered] = yield* measureAll(
    [rawMeasured.spec, effectMeasured.spec, troupeMeasured.spec],
    { rounds: ROUNDS, warmups: WARMUPS }
  )
  const rawPublish = publishMeasurement(raw, rawMeasured)
  const effectPublish = publishMeasurement(inEffect, effectMeasured)
  const troupePublish = publishMeasurement(troupe, troupeMeasured)

  const drops = troupeMeasured.dropped.total
  const rounds = WARMUPS + ROUNDS
  const delivered = compare(SUITE, troupeDelivered!, rawDelivered!, {
    unit: "events/s",
    target: 0.8,
    note: `${drops} events dropped in ${rounds} rounds of ${EVENTS} (bufferSize ${EVENTS})`
  })
  return [
    baselineResult(SUITE, rawDelivered!, "events/s"),
    // a figure reached by dropping events does not count
    drops > 0 ? { ...delivered, pass: false } : delivered,
    baselineResult(SUITE, rawPublish, "events/s"),
    compare(SUITE, troupePublish, rawPublish, { unit: "events/s" }),
    compare(SUITE, effectDelivered!, rawDelivered!, {
      unit: "events/s",
      note: "the same raw path with a Schema and an Effect step per event on each side: Effect's own cost"
    }),
    compare(SUITE, effectPublish, rawPublish, { unit: "events/s" }),
    compare(SUITE, { ...troupeDelivered!, name: `${troupeDelivered!.name} vs raw in Effect` }, effectDelivered!, {
      unit: "events/s",
      note: "what Troupe adds over a typed Effect consumer of raw nats.js"
    })
  ]
})

/**
 * Runs the topics suite.
 *
 * @since 0.1.0
 */
export const run = (): Promise<Array<Result>> =>
  Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Logger.minimumLogLevel(LogLevel.Warning))))
