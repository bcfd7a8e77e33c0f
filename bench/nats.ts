/**
 * NATS suite: Troupe's ask over a real nats-server, the responder in another process, against
 * the raw nats.js baseline measured in the same run on the same server.
 *
 * One nats-server (loopback, free port) and three child processes are started for the run and
 * stopped at its end, also when it fails:
 * - `raw-responder.ts`: plain nats.js answering `{ by }` with `by + 1` (msgpackr and JSON);
 * - `troupe-responder.ts` twice: a Troupe node hosting the `Adder` service, one with the
 *   MessagePack codec and one with JSON, each in its own namespace.
 *
 * The raw baseline is the fastest nats.js request/reply pattern measured on this machine (about
 * twice `nc.request()`'s rate at 100 in flight, ≈ 40k against 15–21k req/s): one
 * wildcard reply-inbox subscription and a map of pending requests keyed by id, each request
 * published with the reply subject `<inbox>.<id>`; the payload `{ by: 1 }` is encoded per request
 * and the reply decoded, with msgpackr or JSON. It runs as plain promises, no Effect, so the ratio
 * charges Troupe with everything it adds (fibers, schemas, envelope, routing, deadlines).
 *
 * Measured at 1 and at 100 in flight, each figure the median of 5 rounds after a warm-up, the
 * rounds of Troupe and of the raw baseline interleaved. At 100 in flight the raw request is also
 * measured inside one `Effect.async` per request on the harness's fibers (informational: it
 * splits the gap into what Effect's fibers cost and what Troupe adds). Targets: Troupe / raw
 * (MessagePack) ≥ 0.9 at 100 in flight and ≥ 0.85 at 1 in flight; Troupe MessagePack / Troupe
 * JSON ≥ 1.0 at 100 in flight.
 *
 * `BENCH_PROFILE_DIR=dir` makes the responders write CPU profiles there; `nats-profile.ts` drives
 * one path alone for profiling.
 *
 * Discovery: `Discovery.nats()` (heartbeats over the same NATS) on both sides; the caller waits
 * with `Discovery.awaitServing("Adder")` before measuring.
 *
 * Run alone with `npm run bench -- nats`.
 *
 * @since 0.1.0
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { Packr } from "msgpackr"
import { connect, createInbox, type Msg, type NatsConnection } from "nats"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Actor, type ActorSystem, Codec, Discovery, Node, Transport } from "../src/index.ts"
import { type NatsServer, type NodeChild, spawnNode, startNatsServer } from "../testing/nats.ts"
import { Adder } from "./actors.ts"
import {
  baselineResult,
  type Budget,
  compare,
  concurrent,
  concurrentPromises,
  type Measurement,
  measureAll,
  type Result,
  type Round,
  sequential,
  type Spec
} from "./harness.ts"

const SUITE = "nats"
const CALLERS = 100

/** Each round stops at whichever comes first. */
const ONE_IN_FLIGHT: Budget = { maxOps: 10_000, maxMillis: 800 }
const IN_FLIGHT: Budget = { maxOps: 20_000, maxMillis: 1_000 }
/** Untimed requests per path before the first round, so both responders' code is optimised. */
const WARM_UP_REQUESTS = 3_000

/**
 * The raw responder answers `<prefix>.msgpack` and `<prefix>.json`.
 *
 * @since 0.1.0
 * @category constants
 */
export const RAW_SUBJECT = "bench.raw"
/**
 * The namespace of the Troupe responder of each codec (a responder decodes only its own codec).
 *
 * @since 0.1.0
 * @category constants
 */
export const NAMESPACE = { msgpack: "bench-msgpack", json: "bench-json" } as const

/**
 * @since 0.1.0
 * @category models
 */
export type CodecName = "msgpack" | "json"

const script = (name: string) => fileURLToPath(new URL(`./${name}`, import.meta.url))

// ---- processes -------------------------------------------------------------------------------

/**
 * A nats-server on loopback (free port), stopped when the scope closes.
 *
 * @since 0.1.0
 * @category processes
 */
export const natsServer: Effect.Effect<NatsServer, never, Scope.Scope> = Effect.acquireRelease(
  Effect.promise(() => startNatsServer()),
  (server) => Effect.promise(() => server.stop().catch(() => undefined))
)

/**
 * A bench script in a child process, stopped (SIGTERM, then SIGKILL) when the scope closes.
 *
 * @since 0.1.0
 * @category processes
 */
export const child = (name: string, args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.sync(() => spawnNode(script(name), args, { ...env, ...childProfiling(name, env) })),
    (node) => Effect.promise(() => node.stop().catch(() => undefined))
  )

/**
 * `BENCH_PROFILE_DIR=dir` makes each responder write a V8 CPU profile there when it is stopped
 * (`troupe-responder-<codec>.cpuprofile`, `raw-responder.cpuprofile`), to find the hot spots
 * of the receiving side.
 */
const childProfiling = (name: string, env: Record<string, string>): Record<string, string> => {
  const dir = process.env["BENCH_PROFILE_DIR"]
  if (dir === undefined || dir.length === 0) return {}
  const file = name === "troupe-responder.ts" || name === "peers-troupe-responder.ts"
    ? `${name.replace(/\.ts$/, "")}-${env["BENCH_CODEC"] ?? "msgpack"}`
    : name.replace(/\.ts$/, "")
  return { BENCH_CPU_PROFILE: join(dir, `${file}.cpuprofile`) }
}

/**
 * Waits until a child prints `ready`.
 *
 * @since 0.1.0
 * @category processes
 */
export const ready = (node: NodeChild, what: string) =>
  Effect.tryPromise({
    try: () => node.waitForLine((line) => line.trim() === "ready", 30_000),
    catch: (error) => new Error(`${what} did not become ready: ${String(error)}`)
  })

// ---- the raw nats.js baseline ----------------------------------------------------------------

/**
 * @since 0.1.0
 * @category raw
 */
export interface WireCodec {
  readonly encode: (value: unknown) => Uint8Array
  readonly decode: (bytes: Uint8Array) => unknown
}

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })
const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()
/**
 * The raw baseline's payload codecs.
 *
 * @since 0.1.0
 * @category raw
 */
export const wireCodecs: Record<CodecName, WireCodec> = {
  msgpack: { encode: (value) => packr.pack(value), decode: (bytes) => packr.unpack(bytes) },
  json: {
    encode: (value) => textEncoder.encode(JSON.stringify(value)),
    decode: (bytes) => JSON.parse(textDecoder.decode(bytes))
  }
}

/**
 * @since 0.1.0
 * @category raw
 */
export interface RawClient {
  readonly request: (subject: string, data: Uint8Array) => Promise<Uint8Array>
  /** the same request with callbacks instead of a promise */
  readonly send: (subject: string, data: Uint8Array, reply: PendingReply) => void
  /** rejects every pending request (a round that would otherwise never end) */
  readonly failAll: (reason: string) => void
}

/**
 * @since 0.1.0
 * @category raw
 */
export interface PendingReply {
  readonly resolve: (data: Uint8Array) => void
  readonly reject: (error: Error) => void
}

/**
 * One wildcard inbox subscription and a pending map keyed by request id.
 *
 * @since 0.1.0
 * @category raw
 */
export const makeRawClient = (nc: NatsConnection): RawClient => {
  const inbox = createInbox()
  const idOffset = inbox.length + 1
  const pending = new Map<number, PendingReply>()
  let nextId = 0
  nc.subscribe(`${inbox}.*`, {
    callback: (error: Error | null, msg: Msg) => {
      if (error !== null) return
      const id = Number(msg.subject.slice(idOffset))
      const entry = pending.get(id)
      if (entry === undefined) return
      pending.delete(id)
      // an empty message on a reply subject is the server's "no responders" status
      if (msg.data.length === 0) entry.reject(new Error("no responders"))
      else entry.resolve(msg.data)
    }
  })
  const send = (subject: string, data: Uint8Array, reply: PendingReply): void => {
    const id = ++nextId
    pending.set(id, reply)
    nc.publish(subject, data, { reply: `${inbox}.${id}` })
  }
  return {
    request: (subject, data) => new Promise((resolve, reject) => send(subject, data, { resolve, reject })),
    send,
    failAll: (reason) => {
      for (const entry of pending.values()) entry.reject(new Error(reason))
      pending.clear()
    }
  }
}

/**
 * `callers` promise loops sharing the budget; no Effect inside the measured loop.
 *
 * @since 0.1.0
 * @category raw
 */
export const rawRound = async (
  client: RawClient,
  codec: WireCodec,
  subject: string,
  budget: Budget,
  callers: number
): Promise<Round> => {
  const watchdog = setTimeout(() => client.failAll("no reply within the round's time"), budget.maxMillis + 10_000)
  const round = await concurrentPromises(
    budget,
    callers,
    async () => codec.decode(await client.request(subject, codec.encode({ by: 1 })))
  )
  clearTimeout(watchdog)
  return round
}

/**
 * One raw request (msgpack) as an `Effect.async`, the way Troupe's ask waits for its reply.
 *
 * @since 0.1.0
 * @category raw
 */
export const rawRequestEffect = (client: RawClient): Effect.Effect<unknown, Error> => {
  const codec = wireCodecs.msgpack
  const subject = `${RAW_SUBJECT}.msgpack`
  return Effect.async<unknown, Error>((resume) =>
    client.send(subject, codec.encode({ by: 1 }), {
      resolve: (data) => resume(Effect.succeed(codec.decode(data))),
      reject: (error) => resume(Effect.fail(error))
    })
  )
}

const rawSpec = (client: RawClient, codec: CodecName, callers: number, budget: Budget): Spec => ({
  name: `raw nats.js, ${codec === "msgpack" ? "msgpackr" : "JSON"} (${callers} in flight)`,
  budget,
  round: (budget) =>
    Effect.promise(() => rawRound(client, wireCodecs[codec], `${RAW_SUBJECT}.${codec}`, budget, callers))
})

/**
 * The same raw request as one `Effect.async` per request, run by the harness's fibers like
 * Troupe's ask: the gap to the plain-promise baseline is what Effect's fibers cost, the gap
 * from here to Troupe is what Troupe itself adds.
 */
const rawInFibersSpec = (client: RawClient, callers: number, budget: Budget): Spec => {
  const request = rawRequestEffect(client)
  return {
    name: `raw in Effect.async fibers, msgpackr (${callers} in flight)`,
    budget,
    round: (budget) => concurrent(budget, callers, () => request)
  }
}

// ---- Troupe ----------------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category models
 */
export type AdderClient = Actor.Client<Actor.Rpcs<typeof Adder>>

/**
 * A caller node in this process, with NATS heartbeat discovery like the responder's: it waits
 * until discovery shows a member serving `Adder`, then until one ask is answered correctly (the
 * responder's queue-group subscription may reach the server a moment after its heartbeat), and
 * returns the `Adder` client. `Adder` is a service: its asks go to the NATS queue group
 * `troupe.<ns>.actor.Adder`.
 *
 * @since 0.1.0
 * @category troupe
 */
export const callerNode = (url: string, codec: CodecName) =>
  Effect.gen(function*() {
    const node: Context.Context<ActorSystem.ActorSystem | Discovery.Discovery> = yield* Layer.build(
      Node.layer({ name: `bench-caller-${codec}` }).pipe(
        Layer.provideMerge(Layer.provideMerge(
          Discovery.nats(),
          Transport.nats({ servers: url, namespace: NAMESPACE[codec], name: `bench-caller-${codec}` }).pipe(
            Layer.provide(codec === "json" ? Codec.json : Codec.msgpack)
          )
        ))
      )
    )
    return yield* adderOf(node, codec)
  })

/**
 * `ask` retried every 100 ms (at most 100 times) until the responder answers, so that measuring
 * starts on a serving node.
 *
 * @since 0.5.0
 * @category processes
 */
export const firstAnswer = <A, E, R>(ask: Effect.Effect<A, E, R>) =>
  Effect.retry(ask, Schedule.intersect(Schedule.spaced("100 millis"), Schedule.recurs(100)))

/**
 * The Adder client of `node`, once the responder serves and answers `{ by: 1 }` correctly.
 *
 * @since 0.1.0
 * @category processes
 */
export const adderOf = (node: Context.Context<ActorSystem.ActorSystem | Discovery.Discovery>, label: string) =>
  Effect.gen(function*() {
    yield* Effect.provide(Discovery.awaitServing(Adder.kind, { timeout: "20 seconds" }), node)
    const adder: AdderClient = yield* Effect.provide(Actor.client(Adder), node)
    const answer = yield* firstAnswer(adder.Increment({ by: 1 }, { timeout: "1 second" }))
    if (answer !== 2) return yield* Effect.dieMessage(`the ${label} responder answered ${answer} to { by: 1 }`)
    return adder
  })

/**
 * `Increment({ by: 1 })` asks from `callers` callers (one at a time when 1).
 *
 * @since 0.1.0
 * @category troupe
 */
export const askSpec = (name: string, adder: AdderClient, callers: number, budget: Budget): Spec => ({
  name,
  budget,
  round: (budget) =>
    callers === 1
      ? sequential(budget, () => adder.Increment({ by: 1 }))
      : concurrent(budget, callers, () => adder.Increment({ by: 1 }))
})

const troupeSpec = (adder: AdderClient, codec: CodecName, callers: number, budget: Budget): Spec =>
  askSpec(`Troupe ask, ${codec === "msgpack" ? "MessagePack" : "JSON"} (${callers} in flight)`, adder, callers, budget)

// ---- the suite -------------------------------------------------------------------------------

const program = Effect.gen(function*() {
  const server = yield* natsServer
  const responders = [
    child("raw-responder.ts", [server.url, RAW_SUBJECT]),
    child("troupe-responder.ts", [server.url, NAMESPACE.msgpack], { BENCH_CODEC: "msgpack" }),
    child("troupe-responder.ts", [server.url, NAMESPACE.json], { BENCH_CODEC: "json" })
  ]
  const [raw, msgpack, json] = yield* Effect.all(responders)
  yield* Effect.all(
    [ready(raw!, "raw responder"), ready(msgpack!, "Troupe msgpack responder"), ready(json!, "Troupe JSON responder")],
    { concurrency: "unbounded" }
  )

  const nc = yield* Effect.acquireRelease(
    Effect.promise(() => connect({ servers: server.url, name: "bench-raw-caller" })),
    (nc) => Effect.promise(() => nc.drain().catch(() => nc.close()))
  )
  const rawClient = makeRawClient(nc)
  yield* Effect.promise(() => nc.flush())
  const troupe = {
    msgpack: yield* callerNode(server.url, "msgpack"),
    json: yield* callerNode(server.url, "json")
  }

  const group = (callers: number, budget: Budget) => [
    rawSpec(rawClient, "msgpack", callers, budget),
    troupeSpec(troupe.msgpack, "msgpack", callers, budget),
    rawSpec(rawClient, "json", callers, budget),
    troupeSpec(troupe.json, "json", callers, budget)
  ]
  const warmUp: Budget = { maxOps: WARM_UP_REQUESTS, maxMillis: 5_000 }
  for (const spec of group(CALLERS, warmUp)) yield* Effect.ignore(spec.round(warmUp))

  console.log("  -- 1 in flight")
  const [rawMp1, troupeMp1, rawJson1, troupeJson1] = yield* measureAll(group(1, ONE_IN_FLIGHT))
  console.log(`  -- ${CALLERS} in flight`)
  const [rawMpN, troupeMpN, rawJsonN, troupeJsonN, rawInFibersN] = yield* measureAll([
    ...group(CALLERS, IN_FLIGHT),
    rawInFibersSpec(rawClient, CALLERS, IN_FLIGHT)
  ])

  return [
    baselineResult(SUITE, rawMp1!, "req/s"),
    compare(SUITE, troupeMp1!, rawMp1!, { unit: "req/s", target: 0.85 }),
    baselineResult(SUITE, rawJson1!, "req/s"),
    compare(SUITE, troupeJson1!, rawJson1!, { unit: "req/s" }),
    codecRatio(troupeMp1!, troupeJson1!, rawMp1!, rawJson1!, 1, undefined),
    baselineResult(SUITE, rawMpN!, "req/s"),
    compare(SUITE, troupeMpN!, rawMpN!, { unit: "req/s", target: 0.9 }),
    baselineResult(SUITE, rawJsonN!, "req/s"),
    compare(SUITE, troupeJsonN!, rawJsonN!, { unit: "req/s" }),
    codecRatio(troupeMpN!, troupeJsonN!, rawMpN!, rawJsonN!, CALLERS, 1),
    compare(SUITE, rawInFibersN!, rawMpN!, { unit: "req/s", note: "what one fiber per caller costs" }),
    {
      ...compare(SUITE, troupeMpN!, rawInFibersN!, { unit: "req/s", note: "what Troupe adds over Effect.async" }),
      name: `Troupe ask, MessagePack vs raw in fibers (${CALLERS} in flight)`
    }
  ]
})

/**
 * Troupe's MessagePack must be at least as fast as its JSON: msgpackr alone encodes and decodes
 * ≈ 2.7× as fast as JSON to bytes here, and a MessagePack path slower than JSON (Moleculer's runs
 * at 0.41×) means the codec is misused.
 */
const codecRatio = (
  msgpack: Measurement,
  json: Measurement,
  rawMsgpack: Measurement,
  rawJson: Measurement,
  callers: number,
  target: number | undefined
): Result => ({
  ...compare(SUITE, msgpack, json, {
    unit: "x",
    target,
    note: `raw nats.js msgpackr vs JSON: ${(rawMsgpack.rate / rawJson.rate).toFixed(2)}x`
  }),
  name: `Troupe MessagePack vs JSON (${callers} in flight)`,
  value: msgpack.rate / json.rate
})

/**
 * Runs the NATS suite.
 *
 * @since 0.1.0
 */
export const run = (): Promise<Array<Result>> =>
  Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Logger.minimumLogLevel(LogLevel.Warning))))
