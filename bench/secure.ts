/**
 * Secure suite: Troupe's ask over a real nats-server with and without the `Secure` layer, in
 * the same run, the responders in other processes.
 *
 * One nats-server and two `troupe-responder.ts` children (MessagePack, `Adder` service): one
 * plain, one sealed with `Secure` (`BENCH_SECURE=1`), each in its own namespace. The caller nodes
 * in this process mirror them. Measured at 1 and 100 in flight, the rounds of both interleaved,
 * each rate the median of its rounds after a warm-up. At 100 in flight (9 rounds) the ratio is
 * the median of the per-round ratios, each secured round against the plain round run back to
 * back with it: this machine's speed drifts over seconds, and a pair run back to back sees the
 * same machine. The order within a pair alternates (`measureAll`): the round that runs second
 * collects the first one's garbage, which cost the secured ask 0.05–0.1 when it always came
 * second. Target: secured / plain ≥ 0.85 at 100 in flight.
 *
 * Run alone with `npm run bench -- secure`.
 *
 * @since 0.1.0
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { type ActorSystem, Codec, Discovery, Node, Secure, Transport } from "../src/index.ts"
import { type Budget, compare, measureAll, median, type Result, type Spec } from "./harness.ts"
import { adderOf, type AdderClient, askSpec, child, natsServer, ready } from "./nats.ts"

const SUITE = "secure"
const CALLERS = 100
const ONE_IN_FLIGHT: Budget = { maxOps: 10_000, maxMillis: 800 }
const IN_FLIGHT: Budget = { maxOps: 20_000, maxMillis: 1_000 }
const WARM_UP_REQUESTS = 3_000
const PAIRED_ROUNDS = 9
export const NAMESPACE = { plain: "bench-plain", secure: "bench-secure" } as const

type Variant = keyof typeof NAMESPACE

export const callerNodeFor = (url: string, variant: Variant) =>
  Effect.gen(function*() {
    const namespace = NAMESPACE[variant]
    const plain = Transport.nats({ servers: url, namespace, name: `bench-caller-${variant}` }).pipe(
      Layer.provide(Codec.msgpack)
    )
    const transport = variant === "secure"
      ? Secure.layer({ identity: Secure.generateIdentity, trust: "any", namespace }).pipe(
        Layer.provide(Layer.merge(plain, Codec.msgpack))
      )
      : plain
    const node: Context.Context<ActorSystem.ActorSystem | Discovery.Discovery> = yield* Layer.build(
      Node.layer({ name: `bench-caller-${variant}` }).pipe(
        Layer.provideMerge(Layer.provideMerge(Discovery.nats(), transport))
      )
    )
    return yield* adderOf(node, variant)
  })

const spec = (adder: AdderClient, variant: Variant, callers: number, budget: Budget): Spec =>
  askSpec(
    `Troupe ask, MessagePack${variant === "secure" ? ", Secure" : ""} (${callers} in flight)`,
    adder,
    callers,
    budget
  )

const program = Effect.gen(function*() {
  const server = yield* natsServer
  const [plainResponder, secureResponder] = yield* Effect.all([
    child("troupe-responder.ts", [server.url, NAMESPACE.plain], { BENCH_CODEC: "msgpack" }),
    child("troupe-responder.ts", [server.url, NAMESPACE.secure], { BENCH_CODEC: "msgpack", BENCH_SECURE: "1" })
  ])
  yield* Effect.all([ready(plainResponder!, "plain responder"), ready(secureResponder!, "secure responder")], {
    concurrency: "unbounded"
  })
  const adders = {
    plain: yield* callerNodeFor(server.url, "plain"),
    secure: yield* callerNodeFor(server.url, "secure")
  }
  const group = (callers: number, budget: Budget) => [
    spec(adders.plain, "plain", callers, budget),
    spec(adders.secure, "secure", callers, budget)
  ]
  const warmUp: Budget = { maxOps: WARM_UP_REQUESTS, maxMillis: 5_000 }
  for (const s of group(CALLERS, warmUp)) yield* Effect.ignore(s.round(warmUp))
  console.log("  -- 1 in flight")
  const [plain1, secure1] = yield* measureAll(group(1, ONE_IN_FLIGHT))
  console.log(`  -- ${CALLERS} in flight`)
  const [plainN, secureN] = yield* measureAll(group(CALLERS, IN_FLIGHT), { rounds: PAIRED_ROUNDS })
  const pairs = secureN!.rates.map((rate, i) => rate / plainN!.rates[i]!)
  const ratio = median(pairs)
  console.log(
    `  Secure / plain at ${CALLERS} in flight, round by round: ${pairs.map((r) => r.toFixed(2)).join(" ")}; ` +
      `median ${ratio.toFixed(2)}x (target >= 0.85x)`
  )
  const inFlight = compare(SUITE, secureN!, plainN!, {
    unit: "req/s",
    note:
      `median of ${pairs.length} paired rounds (${Math.min(...pairs).toFixed(2)}..${Math.max(...pairs).toFixed(2)}); ` +
      `ratio of the medians ${(secureN!.rate / plainN!.rate).toFixed(2)}x`
  })
  return [
    compare(SUITE, secure1!, plain1!, { unit: "req/s" }),
    { ...inFlight, ratio, target: 0.85, pass: ratio >= 0.85 }
  ]
})

/**
 * Runs the Secure suite.
 *
 * @since 0.1.0
 */
export const run = (): Promise<Array<Result>> =>
  Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Logger.minimumLogLevel(LogLevel.Warning))))
