/**
 * The over-NATS half of the peers suite: request/response and events to another process, for
 * raw nats.js, Moleculer 0.15 and Troupe, on one nats-server.
 *
 * One nats-server (loopback, free port) and four child processes, stopped at the end of the
 * phase:
 * - `peers-raw-responder.ts`: plain nats.js, msgpackr;
 * - `peers-moleculer-responder.ts`: a Moleculer broker (NATS transporter, JSON serializer) with
 *   the action `peer.add` and a `peers.event` listener;
 * - `peers-troupe-responder.ts` twice (MessagePack, JSON): a Troupe node (`Node.layerNats`)
 *   hosting the `Peer` service and subscribed to the `PeerEvent` topic.
 *
 * The callers live in this process, each written as its documentation shows: the raw client is
 * the nats suite's (one wildcard reply inbox and a pending map); Moleculer is a
 * `ServiceBroker` on the same transporter and serializer calling `broker.call("peer.add", p)`;
 * Troupe is a `Node.layerNats` node with `Actor.client(Peer)` calling `peer.Add(p)`. Every
 * request is `PAYLOAD` (`{ a, b, tag: 80 chars }`), answered with `a + b`.
 *
 * Measured at 100 in flight (30,000 requests a round) and at 1 in flight (4,000), 3 rounds each
 * after an untimed warm-up of every path, the rounds of the four systems interleaved with their
 * order rotating. Events: Moleculer `broker.broadcast("peers.event", p)` (awaited in batches of
 * 1,024) against `Topic.publish(PeerEvent, p)` (`Effect.forEach` in batches of 1,024), 20,000
 * events a round, delivered rate measured until the subscriber process reports every event.
 *
 * @since 0.5.0
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import { ServiceBroker } from "moleculer"
import { Packr } from "msgpackr"
import { connect } from "nats"
import { Actor, type ActorSystem, Discovery, Node, Topic } from "../src/index.ts"
import type { NodeChild } from "../testing/nats.ts"
import {
  type Budget,
  concurrent,
  concurrentPromises,
  type Measurement,
  measureAll,
  type Round,
  sequential,
  type Spec
} from "./harness.ts"
import { child, makeRawClient, natsServer, type RawClient, ready } from "./nats.ts"
import {
  ANSWER,
  EVENTS,
  MOLECULER_ACTION,
  MOLECULER_CONTROL,
  MOLECULER_EVENT,
  MOLECULER_NAMESPACE,
  PAYLOAD,
  Peer,
  PeerControl,
  PeerEvent,
  RAW_SUBJECT,
  TROUPE_NAMESPACE
} from "./peers-kinds.ts"
import { deliver, type Path } from "./topics.ts"

/**
 * Requests in flight in the concurrent measurement.
 *
 * @since 0.5.0
 * @category constants
 */
export const CALLERS = 100
/** Each round stops at whichever comes first. */
const IN_FLIGHT: Budget = { maxOps: 30_000, maxMillis: 8_000 }
const ONE_IN_FLIGHT: Budget = { maxOps: 4_000, maxMillis: 5_000 }
const EVENTS_BUDGET: Budget = { maxOps: EVENTS, maxMillis: 6_000 }
/** Untimed requests per path (at 100 in flight) before the first round. */
const WARM_UP: Budget = { maxOps: 3_000, maxMillis: 6_000 }
const ROUNDS = 3
/** Events published per step of the publishing loops, between two looks at the clock. */
const BATCH = 1_024

type Codec = "msgpack" | "json"
const codecName = (codec: Codec) => (codec === "msgpack" ? "MessagePack" : "JSON")

// ---- raw nats.js -----------------------------------------------------------------------------

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })

const rawSpec = (client: RawClient, callers: number, budget: Budget): Spec => ({
  name: `raw nats.js, msgpackr (${callers} in flight)`,
  budget,
  round: (budget) =>
    Effect.promise(async () => {
      const watchdog = setTimeout(() => client.failAll("no reply within the round's time"), budget.maxMillis + 10_000)
      const round = await concurrentPromises(
        budget,
        callers,
        async () => packr.unpack(await client.request(RAW_SUBJECT, packr.pack(PAYLOAD)))
      )
      clearTimeout(watchdog)
      return round
    })
})

// ---- Moleculer -------------------------------------------------------------------------------

/**
 * A started Moleculer broker, stopped when the scope closes. `skipProcessEventRegistration`:
 * the bench, not the broker, decides when this process ends.
 *
 * @since 0.5.0
 * @category moleculer
 */
export const moleculerBroker = (
  options: ConstructorParameters<typeof ServiceBroker>[0],
  setup: (broker: ServiceBroker) => void = () => {}
) =>
  Effect.acquireRelease(
    Effect.tryPromise(async () => {
      const broker = new ServiceBroker({ logger: false, skipProcessEventRegistration: true, ...options })
      setup(broker)
      await broker.start()
      return broker
    }),
    (broker) => Effect.promise(() => broker.stop().catch(() => undefined))
  )

const moleculerSpec = (broker: ServiceBroker, callers: number, budget: Budget): Spec => ({
  name: `Moleculer call, NATS + JSON (${callers} in flight)`,
  budget,
  round: (budget) =>
    Effect.promise(() => concurrentPromises(budget, callers, () => broker.call(MOLECULER_ACTION, PAYLOAD)))
})

const moleculerPath = (broker: ServiceBroker, subscriber: NodeChild): Path => ({
  name: "Moleculer broadcast, NATS + JSON",
  subscriber,
  control: (message) => Effect.tryPromise(() => broker.call(MOLECULER_CONTROL, message)),
  publish: (count, deadline) =>
    Effect.tryPromise(async () => {
      let published = 0
      while (published < count) {
        const end = Math.min(count, published + BATCH)
        const sent: Array<Promise<unknown>> = []
        for (; published < end; published++) sent.push(broker.broadcast(MOLECULER_EVENT, PAYLOAD))
        await Promise.all(sent)
        if (performance.now() > deadline) break
      }
      return published
    })
})

// ---- Troupe ----------------------------------------------------------------------------------

type TroupeNode = Context.Context<Node.Node | ActorSystem.ActorSystem | Topic.TopicBus | Discovery.Discovery>
type PeerClient = Actor.Client<Actor.Rpcs<typeof Peer>>

/**
 * A caller node over NATS with the codec, and its `Peer` client once the responder serves and
 * answers `PAYLOAD` correctly (its queue-group subscription may reach the server a moment after
 * its heartbeat).
 */
const troupeCaller = (url: string, codec: Codec) =>
  Effect.gen(function*() {
    const node: TroupeNode = yield* Layer.build(
      Node.layerNats({ servers: url, name: `peers-caller-${codec}`, namespace: TROUPE_NAMESPACE[codec], codec })
    )
    yield* Effect.provide(Discovery.awaitServing(Peer.kind, { timeout: "20 seconds" }), node)
    const peer: PeerClient = yield* Effect.provide(Actor.client(Peer), node)
    const answer = yield* peer.Add(PAYLOAD, { timeout: "1 second" }).pipe(
      Effect.retry(Schedule.intersect(Schedule.spaced("100 millis"), Schedule.recurs(100)))
    )
    if (answer !== ANSWER) return yield* Effect.dieMessage(`the Troupe ${codec} responder answered ${answer}`)
    return { node, peer }
  })

const troupeSpec = (peer: PeerClient, codec: Codec, callers: number, budget: Budget): Spec => ({
  name: `Troupe ask, NATS + ${codecName(codec)} (${callers} in flight)`,
  budget,
  round: (budget) =>
    callers === 1
      ? sequential(budget, () => peer.Add(PAYLOAD))
      : concurrent(budget, callers, () => peer.Add(PAYLOAD))
})

const troupePath = (node: TroupeNode, subscriber: NodeChild): Path => {
  const batch = Array.from({ length: BATCH }, (_, i) => i)
  const publishOne = Topic.publish(PeerEvent, PAYLOAD)
  return {
    name: "Troupe topics, NATS + MessagePack",
    subscriber,
    control: (message) => Effect.provide(Topic.publish(PeerControl, message), node),
    publish: (count, deadline) =>
      Effect.gen(function*() {
        let published = 0
        while (published < count) {
          const size = Math.min(BATCH, count - published)
          yield* Effect.forEach(size === BATCH ? batch : batch.slice(0, size), () => publishOne, { discard: true })
          published += size
          if (performance.now() > deadline) break
        }
        return published
      }).pipe(Effect.provide(node))
  }
}

// ---- events ----------------------------------------------------------------------------------

/** A delivery round for `measureAll`: delivered events are its operations, the rest failures. */
const eventsSpec = (path: Path, dropped: { total: number }): Spec => {
  let next = 0
  return {
    name: `${path.name}, delivered`,
    budget: EVENTS_BUDGET,
    round: (budget) =>
      Effect.suspend(() =>
        Effect.map(deliver(path, next++, budget), (delivery): Round => {
          dropped.total += delivery.dropped
          const failures = budget.maxOps - delivery.received
          return {
            ops: delivery.received,
            failures,
            millis: delivery.millis,
            ...(failures > 0
              ? { firstFailure: `${failures} of ${budget.maxOps} events not delivered (${delivery.dropped} dropped)` }
              : {})
          }
        })
      )
  }
}

// ---- the phase -------------------------------------------------------------------------------

/**
 * What the NATS phase measured.
 *
 * @since 0.5.0
 * @category models
 */
export interface NatsFigures {
  readonly inFlight: {
    readonly raw: Measurement
    readonly moleculer: Measurement
    readonly msgpack: Measurement
    readonly json: Measurement
  }
  readonly oneInFlight: NatsFigures["inFlight"]
  readonly broadcast: Measurement
  readonly topics: Measurement
  /** events the Troupe subscriber dropped in all rounds */
  readonly topicDrops: number
  readonly eventRounds: number
}

/**
 * Runs the NATS phase in its own scope: every process and connection it started is stopped
 * before it returns.
 *
 * @since 0.5.0
 * @category phases
 */
export const natsPhase: Effect.Effect<NatsFigures, unknown> = Effect.scoped(Effect.gen(function*() {
  const server = yield* natsServer
  const [raw, moleculer, msgpack, json] = yield* Effect.all([
    child("peers-raw-responder.ts", [server.url]),
    child("peers-moleculer-responder.ts", [server.url]),
    child("peers-troupe-responder.ts", [server.url], { BENCH_CODEC: "msgpack" }),
    child("peers-troupe-responder.ts", [server.url], { BENCH_CODEC: "json" })
  ])
  yield* Effect.all([
    ready(raw!, "raw responder"),
    ready(moleculer!, "Moleculer responder"),
    ready(msgpack!, "Troupe MessagePack responder"),
    ready(json!, "Troupe JSON responder")
  ], { concurrency: "unbounded" })

  const nc = yield* Effect.acquireRelease(
    Effect.promise(() => connect({ servers: server.url, name: "bench-peers-raw-caller" })),
    (nc) => Effect.promise(() => nc.drain().catch(() => nc.close()))
  )
  const rawClient = makeRawClient(nc)
  yield* Effect.promise(() => nc.flush())
  const broker = yield* moleculerBroker({
    namespace: MOLECULER_NAMESPACE,
    nodeID: "peers-moleculer-caller",
    transporter: { type: "NATS", options: { url: server.url } },
    serializer: "JSON"
  })
  yield* Effect.tryPromise(() =>
    broker.waitForServices([MOLECULER_ACTION.split(".")[0]!, MOLECULER_CONTROL.split(".")[0]!], 20_000)
  )
  const moleculerAnswer = yield* Effect.tryPromise(() => broker.call(MOLECULER_ACTION, PAYLOAD))
  if (moleculerAnswer !== ANSWER) {
    return yield* Effect.dieMessage(`the Moleculer responder answered ${String(moleculerAnswer)}`)
  }
  const troupe = { msgpack: yield* troupeCaller(server.url, "msgpack"), json: yield* troupeCaller(server.url, "json") }

  const group = (callers: number, budget: Budget) => [
    rawSpec(rawClient, callers, budget),
    moleculerSpec(broker, callers, budget),
    troupeSpec(troupe.msgpack.peer, "msgpack", callers, budget),
    troupeSpec(troupe.json.peer, "json", callers, budget)
  ]
  for (const spec of group(CALLERS, WARM_UP)) yield* Effect.ignore(spec.round(WARM_UP))

  console.log(`  -- over NATS, ${CALLERS} in flight`)
  const [rawN, moleculerN, msgpackN, jsonN] = yield* measureAll(group(CALLERS, IN_FLIGHT), {
    rounds: ROUNDS,
    warmups: 0,
    order: "rotate"
  })
  console.log("  -- over NATS, 1 in flight")
  const [raw1, moleculer1, msgpack1, json1] = yield* measureAll(group(1, ONE_IN_FLIGHT), {
    rounds: ROUNDS,
    warmups: 0,
    order: "rotate"
  })
  console.log("  -- events to another process")
  const drops = { total: 0 }
  const [broadcast, topics] = yield* measureAll([
    eventsSpec(moleculerPath(broker, moleculer!), { total: 0 }),
    eventsSpec(troupePath(troupe.msgpack.node, msgpack!), drops)
  ], { rounds: ROUNDS, warmups: 1 })

  return {
    inFlight: { raw: rawN!, moleculer: moleculerN!, msgpack: msgpackN!, json: jsonN! },
    oneInFlight: { raw: raw1!, moleculer: moleculer1!, msgpack: msgpack1!, json: json1! },
    broadcast: broadcast!,
    topics: topics!,
    topicDrops: drops.total,
    eventRounds: ROUNDS + 1
  }
}))
