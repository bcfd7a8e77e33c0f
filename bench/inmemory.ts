/**
 * In-memory suite: Troupe's ask and tell on one in-memory node against raw Effect `Queue`
 * baselines measured in the same run, and the ask again through the serializing in-memory
 * transport to show what the codecs cost.
 *
 * Three groups, each measured with its rounds interleaved with those of its baseline:
 * 1. 1 in flight: raw `Queue` ping-pong vs ask, zero-copy and serializing (JSON, MessagePack);
 * 2. 100 in flight: raw `Queue` mailbox + `Deferred` vs ask on 100 actor ids and on one service;
 * 3. one-way: raw `Queue` offer/take vs `Actor.tell` until the actor has processed every message.
 *
 * Run alone with `npx tsx bench/index.ts inmemory`.
 *
 * @since 0.1.0
 */
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Queue from "effect/Queue"
import { Actor, type ActorSystem, Codec, Discovery, Node, Transport } from "../src/index.ts"
import { Counter, Echo, KindsLive, TELL_MAILBOX_CAPACITY } from "./actors.ts"
import {
  baselineResult,
  type Budget,
  compare,
  concurrent,
  type Measurement,
  measureAll,
  type Result,
  sequential,
  type Spec,
  rawQueueOneWay
} from "./harness.ts"

const SUITE = "in-memory"
const CALLERS = 100

/** Each round stops at whichever comes first. */
const ONE_IN_FLIGHT: Budget = { maxOps: 30_000, maxMillis: 600 }
const SERIALIZED: Budget = { maxOps: 20_000, maxMillis: 600 }
const IN_FLIGHT: Budget = { maxOps: 50_000, maxMillis: 600 }
const ONE_WAY: Budget = { maxOps: 50_000, maxMillis: 600 }

// ---- raw baselines ------------------------------------------------------------------------------

/** One request queue, one reply queue, a server fiber answering each request: 1 in flight. */
const rawPingPong: Spec = {
  name: "raw Queue ping-pong (1 in flight)",
  budget: ONE_IN_FLIGHT,
  round: (budget) =>
    Effect.gen(function*() {
      const requests = yield* Queue.unbounded<number>()
      const replies = yield* Queue.unbounded<number>()
      const server = yield* Effect.fork(
        Effect.forever(Effect.flatMap(Queue.take(requests), (n) => Queue.offer(replies, n + 1)))
      )
      const round = yield* sequential(budget, (i) => Effect.zipRight(Queue.offer(requests, i), Queue.take(replies)))
      yield* Fiber.interrupt(server)
      yield* Queue.shutdown(requests)
      yield* Queue.shutdown(replies)
      return round
    })
}

/** A `Queue` mailbox served by one fiber, a `Deferred` per request for the reply: N in flight. */
const rawMailbox: Spec = {
  name: `raw Queue mailbox + Deferred (${CALLERS} in flight)`,
  budget: IN_FLIGHT,
  round: (budget) =>
    Effect.gen(function*() {
      const mailbox = yield* Queue.unbounded<{ readonly n: number; readonly reply: Deferred.Deferred<number> }>()
      const server = yield* Effect.fork(
        Effect.forever(Effect.flatMap(Queue.take(mailbox), ({ n, reply }) => Deferred.succeed(reply, n + 1)))
      )
      const round = yield* concurrent(budget, CALLERS, (_, i) =>
        Effect.flatMap(
          Deferred.make<number>(),
          (reply) => Effect.zipRight(Queue.offer(mailbox, { n: i, reply }), Deferred.await(reply))
        ))
      yield* Fiber.interrupt(server)
      yield* Queue.shutdown(mailbox)
      return round
    })
}

const rawOneWay = rawQueueOneWay("raw Queue one-way offer/take", ONE_WAY)

// ---- Troupe ----------------------------------------------------------------------------------

type NodeContext = Context.Context<ActorSystem.ActorSystem>

const askOneInFlight = (name: string, node: NodeContext, budget: Budget): Spec => ({
  name,
  budget,
  round: (budget) =>
    Effect.gen(function*() {
      const counter = yield* Actor.client(Counter)
      return yield* sequential(budget, () => counter("c-1").Increment({ by: 1 }))
    }).pipe(Effect.provide(node))
})

const askManyActors = (node: NodeContext): Spec => ({
  name: `ask, ${CALLERS} callers on ${CALLERS} actor ids`,
  budget: IN_FLIGHT,
  round: (budget) =>
    Effect.gen(function*() {
      const counter = yield* Actor.client(Counter)
      const clients = Array.from({ length: CALLERS }, (_, i) => counter(`c-many-${i}`))
      return yield* concurrent(budget, CALLERS, (caller) => clients[caller]!.Increment({ by: 1 }))
    }).pipe(Effect.provide(node))
})

const askService = (node: NodeContext): Spec => ({
  name: `ask, ${CALLERS} callers on one service`,
  budget: IN_FLIGHT,
  round: (budget) =>
    Effect.gen(function*() {
      const echo = yield* Actor.client(Echo)
      return yield* concurrent(budget, CALLERS, (_, i) => echo.Echo({ n: i }))
    }).pipe(Effect.provide(node))
})

/**
 * Tells in a loop to one actor; the round ends when a final `Get` (queued behind every tell)
 * shows the actor has processed all the accepted ones. `lost` counts accepted tells the actor
 * never counted.
 */
const tellToOneActor = (node: NodeContext, lost: { count: number }): Spec => ({
  name: "tell to one actor (until processed)",
  budget: ONE_WAY,
  round: (budget) =>
    Effect.gen(function*() {
      const counter = yield* Actor.client(Counter)
      const target = counter("t-1")
      const before = yield* target.Get()
      const start = performance.now()
      const sent = yield* sequential(budget, () => Actor.tell(target.Increment({ by: 1 })))
      const after = yield* target.Get()
      const millis = performance.now() - start
      lost.count += sent.ops - (after - before)
      return { ...sent, millis }
    }).pipe(Effect.provide(node))
})

/**
 * A node whose transport encodes every frame with the codec: its asks go through the transport
 * even to its own actors, as they would to another node.
 */
const serializingNode = (codec: Layer.Layer<Codec.Codec>) =>
  KindsLive.pipe(
    Layer.provideMerge(Node.layer({ name: "bench-serialized" })),
    Layer.provide(
      Layer.merge(Transport.layerInMemory({ serialize: true }).pipe(Layer.provide(codec)), Discovery.inMemory)
    ),
    Layer.orDie
  )

// ---- the suite -------------------------------------------------------------------------------

const program = Effect.gen(function*() {
  const zeroCopy = yield* Layer.build(KindsLive.pipe(Layer.provideMerge(Node.inMemory)))
  const jsonNode = yield* Layer.build(serializingNode(Codec.json))
  const msgpackNode = yield* Layer.build(serializingNode(Codec.msgpack))

  console.log("  -- 1 in flight")
  const [pingPong, ask, json, msgpack] = yield* measureAll([
    rawPingPong,
    askOneInFlight("ask, 1 in flight", zeroCopy, ONE_IN_FLIGHT),
    askOneInFlight("ask, 1 in flight, serializing transport + JSON", jsonNode, SERIALIZED),
    askOneInFlight("ask, 1 in flight, serializing transport + MessagePack", msgpackNode, SERIALIZED)
  ])
  console.log(`  -- ${CALLERS} in flight`)
  const [mailbox, many, service] = yield* measureAll([rawMailbox, askManyActors(zeroCopy), askService(zeroCopy)])
  console.log("  -- one-way")
  const lost = { count: 0 }
  const [oneWay, tell] = yield* measureAll([rawOneWay, tellToOneActor(zeroCopy, lost)])

  return [
    baselineResult(SUITE, pingPong!, "round trips/s"),
    compare(SUITE, ask!, pingPong!, { unit: "round trips/s", target: 0.5 }),
    compare(SUITE, json!, pingPong!, {
      unit: "round trips/s",
      note: `${(json!.rate / ask!.rate).toFixed(2)}x the zero-copy ask`
    }),
    compare(SUITE, msgpack!, pingPong!, {
      unit: "round trips/s",
      note: `${(msgpack!.rate / ask!.rate).toFixed(2)}x the zero-copy ask`
    }),
    codecRatio(msgpack!, json!),
    baselineResult(SUITE, mailbox!),
    compare(SUITE, many!, mailbox!),
    compare(SUITE, service!, mailbox!),
    baselineResult(SUITE, oneWay!, "msgs/s"),
    compare(SUITE, tell!, oneWay!, {
      unit: "msgs/s",
      note: [
        `mailboxCapacity ${TELL_MAILBOX_CAPACITY}`,
        lost.count !== 0 ? `${lost.count} accepted tells not processed` : ""
      ].filter((n) => n.length > 0).join("; ")
    })
  ]
})

/**
 * MessagePack must be at least as fast as JSON: msgpackr alone encodes and decodes ≈ 2.7× as fast
 * as JSON to bytes here, so a slower MessagePack ask means the codec is misused.
 */
const codecRatio = (msgpack: Measurement, json: Measurement): Result => ({
  ...compare(SUITE, msgpack, json, { unit: "x", target: 1 }),
  name: "MessagePack vs JSON (serialized ask)",
  value: msgpack.rate / json.rate
})

/**
 * Runs the in-memory suite.
 *
 * @since 0.1.0
 */
export const run = (): Promise<Array<Result>> =>
  Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Logger.minimumLogLevel(LogLevel.Warning))))
