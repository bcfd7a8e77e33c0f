/**
 * Durable suite: the durable ask (every message changes `Actor.state`, so every reply waits for a
 * fenced compare-and-set in the JetStream key-value store) against the plain ask on the same
 * server, in the same run; and the reminder fire rate one node sustains.
 *
 * One nats-server with JetStream (`-js -sd <temp dir>`, loopback, free port) and one responder
 * process (`durable-responder.ts`) hosting the kinds of `durable-actors.ts`, its state in the
 * bucket `bench-durable`. The caller is a Troupe node in this process, over the same NATS.
 *
 * - **Ask**: `Add({ by: 1 })` from 100 callers at once, caller `i` always asking the id `a-<i>`
 *   (100 in flight on 100 ids), to `Tally` (plain: its count in the fiber) and to `Ledger`
 *   (durable: its count in `Actor.state`). Each figure is the median of 5 rounds after a
 *   warm-up, the rounds of the three interleaved. Target: durable / plain ≥ 0.5.
 * - **The store's own ceiling**, measured in the same rounds: raw nats.js `kv.put` with `previousSeq` (the same
 *   compare-and-set on the revision, no actor and no ask) from 100 promise loops in this process,
 *   loop `i` on its own key, in the same bucket. The durable ask can be no faster than this plus
 *   the ask it carries; the ratio durable / raw store says how much of the gap is Troupe's.
 * - **Reminders**: `TICKERS` `Ticker` actors each set one repeating reminder every
 *   `TICK_EVERY_MILLIS`, a demand of `TICKERS * 1000 / TICK_EVERY_MILLIS` firings a second,
 *   beyond what one node can serve. The responder counts the firings it runs; the rate is the
 *   count over `REMINDER_WINDOWS` windows of `REMINDER_WINDOW_MILLIS` each (the median is
 *   printed, the range in the note). Every firing is recorded in the store (the next due time)
 *   before its actor takes the next message, so this is the rate of fenced saves a node sustains
 *   for reminders. There is no target: it is printed for capacity planning.
 *
 * Run alone with `npm run bench -- durable`.
 *
 * @since 0.5.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { connect, type KV } from "nats"
import { Actor, Discovery, Node } from "../src/index.ts"
import { natsServerResource } from "../testing/nats.ts"
import { Ledger, Tally, Ticker, TickerStats } from "./durable-actors.ts"
import {
  baselineResult,
  type Budget,
  compare,
  concurrent,
  concurrentPromises,
  measureAll,
  median,
  type Result,
  type Spec
} from "./harness.ts"
import { child, firstAnswer, ready } from "./nats.ts"

const SUITE = "durable"
const NAMESPACE = "bench-durable"
const BUCKET = "bench-durable"
const CALLERS = 100
const IN_FLIGHT: Budget = { maxOps: 20_000, maxMillis: 1_000 }
const WARM_UP: Budget = { maxOps: 3_000, maxMillis: 5_000 }

const TICKERS = 200
const TICK_EVERY_MILLIS = 20
const REMINDER_WARM_UP_MILLIS = 1_500
const REMINDER_WINDOWS = 5
const REMINDER_WINDOW_MILLIS = 1_000

type AddClient = Actor.Client<Actor.Rpcs<typeof Tally>>

/** asks from `CALLERS` callers, caller `i` on the id `a-<i>` */
const askSpec = (name: string, client: (id: string) => AddClient, budget: Budget): Spec => {
  const byCaller = Array.from({ length: CALLERS }, (_, i) => client(`a-${i}`))
  return {
    name,
    budget,
    round: (budget) => concurrent(budget, CALLERS, (caller) => byCaller[caller]!.Add({ by: 1 }))
  }
}

/** raw nats.js compare-and-sets: loop `i` updates the key `raw.<i>` on the revision it last wrote */
const rawStoreSpec = (kv: KV, budget: Budget): Spec => {
  const revisions = new Array<number>(CALLERS).fill(0)
  const value = new Uint8Array(16)
  return {
    name: `raw nats.js kv.put on the revision, the same compare-and-set (${CALLERS} in flight on ${CALLERS} keys)`,
    budget,
    round: (budget) =>
      Effect.promise(() =>
        concurrentPromises(budget, CALLERS, async (caller) => {
          revisions[caller] = await kv.put(`raw.${caller}`, value, { previousSeq: revisions[caller]! })
        })
      )
  }
}

const program = Effect.gen(function*() {
  const server = yield* natsServerResource({ jetstream: true })
  const responder = yield* child("durable-responder.ts", [server.url, NAMESPACE, BUCKET])
  yield* ready(responder, "durable responder")

  const node = yield* Layer.build(Node.layerNats({ servers: server.url, namespace: NAMESPACE, name: "bench-caller" }))
  for (const kind of [Tally.kind, Ledger.kind, Ticker.kind, TickerStats.kind]) {
    yield* Effect.provide(Discovery.awaitServing(kind, { timeout: "20 seconds" }), node)
  }
  const tally = yield* Effect.provide(Actor.client(Tally), node)
  const ledger = yield* Effect.provide(Actor.client(Ledger), node)
  const ticker = yield* Effect.provide(Actor.client(Ticker), node)
  const stats = yield* Effect.provide(Actor.client(TickerStats), node)
  yield* firstAnswer(tally("probe").Add({ by: 1 }, { timeout: "1 second" }))
  yield* firstAnswer(ledger("probe").Add({ by: 1 }, { timeout: "1 second" }))

  const nc = yield* Effect.acquireRelease(
    Effect.promise(() => connect({ servers: server.url, name: "bench-raw-kv", noAsyncTraces: true })),
    (nc) => Effect.promise(() => nc.close().catch(() => undefined))
  )
  const kv = yield* Effect.promise(() => nc.jetstream().views.kv(BUCKET))
  const specs = [
    rawStoreSpec(kv, IN_FLIGHT),
    askSpec(`plain ask, Tally (${CALLERS} in flight on ${CALLERS} ids)`, tally, IN_FLIGHT),
    askSpec(`durable ask, Ledger: a fenced save per ask (${CALLERS} in flight on ${CALLERS} ids)`, ledger, IN_FLIGHT)
  ]
  for (const spec of specs) yield* Effect.ignore(spec.round(WARM_UP))
  const [rawStore, plain, durable] = yield* measureAll(specs)

  // a wrong total means a lost or doubled write: the figure would not be worth printing
  const stored = yield* ledger("a-0").Add({ by: 0 })
  const counted = yield* tally("a-0").Add({ by: 0 })
  const consistent = stored > 0 && counted > 0

  const demand = (TICKERS * 1000) / TICK_EVERY_MILLIS
  yield* Effect.forEach(
    Array.from({ length: TICKERS }, (_, i) => `t-${i}`),
    (id) => ticker(id).Start({ everyMillis: TICK_EVERY_MILLIS }),
    { concurrency: 50, discard: true }
  )
  yield* Effect.sleep(REMINDER_WARM_UP_MILLIS)
  const rates: Array<number> = []
  let previous = yield* stats.Fired()
  for (let w = 0; w < REMINDER_WINDOWS; w++) {
    yield* Effect.sleep(REMINDER_WINDOW_MILLIS)
    const now = yield* stats.Fired()
    rates.push(((now.fired - previous.fired) * 1000) / (now.millis - previous.millis))
    previous = now
  }
  const rate = median(rates)

  const ratio = compare(SUITE, durable!, plain!, {
    unit: "req/s",
    target: 0.5,
    note: consistent ? `Ledger a-0 stored ${stored}` : `inconsistent totals: stored ${stored}, counted ${counted}`
  })
  return [
    baselineResult(SUITE, rawStore!, "req/s"),
    baselineResult(SUITE, plain!, "req/s", "baseline: the same ask with the count in the fiber"),
    { ...ratio, pass: ratio.pass === true && consistent },
    {
      ...compare(SUITE, durable!, rawStore!, {
        unit: "req/s",
        note: "what the ask and the actor add to the store's write"
      }),
      name: "durable ask vs raw kv.put"
    },
    {
      suite: SUITE,
      name: `reminder firings one node sustains (${TICKERS} actors, each every ${TICK_EVERY_MILLIS} ms)`,
      value: rate,
      unit: "firings/s",
      note: `demand ${demand}/s; ${REMINDER_WINDOWS} windows of ${REMINDER_WINDOW_MILLIS} ms: ` +
        `${Math.round(Math.min(...rates))}-${Math.round(Math.max(...rates))}/s`
    }
  ] satisfies Array<Result>
})

/**
 * Runs the durable suite.
 *
 * @since 0.5.0
 */
export const run = (): Promise<Array<Result>> =>
  Effect.runPromise(
    program.pipe(Effect.scoped, Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)))
  )
