/**
 * Peers suite: Troupe against the runtimes a Node user would pick instead, measured in the same
 * run on the same machine, and what a growing cluster costs.
 *
 * Three phases, each in its own scope (its processes and connections stopped before the next):
 * 1. over NATS (`peers-nats.ts`): raw nats.js, Moleculer 0.15 (NATS transporter, JSON) and
 *    Troupe (MessagePack and JSON) request/response to another process at 100 and at 1 in
 *    flight, and Moleculer `broadcast` against Troupe topics to another process;
 * 2. in process (`peers-local.ts`): Moleculer's local call, `@effect/cluster`'s `TestRunner`
 *    entity call and Troupe's in-memory ask on the same `Counter`, and Troupe's tell against the
 *    raw Effect `Queue` one-way;
 * 3. cluster size (`peers-members.ts`): the ask with 1 to 1,000 members in discovery, and one
 *    node's discovery CPU with 100 and 1,000 peers heartbeating.
 *
 * Targets: Troupe's NATS ask ≥ 1.0x Moleculer at 1 and 100 in flight with either codec (the
 * goal beyond, 1.3x, is noted); topics ≥ 1.0x Moleculer broadcast, with no event dropped;
 * in-memory ask ≥ 0.25x Moleculer's local call and ≥ 30x @effect/cluster; in-memory tell ≥ 0.5x
 * the raw `Queue`; the ask's cost with 1,000 members < 1.5x its cost with 1.
 *
 * Run alone with `npm run bench -- peers`.
 *
 * @since 0.5.0
 */
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { baselineResult, compare, type Measurement, type Result } from "./harness.ts"
import { localPhase } from "./peers-local.ts"
import { type DiscoveryCpu, membersPhase, SIZES } from "./peers-members.ts"
import { CALLERS, natsPhase, type NatsFigures } from "./peers-nats.ts"

const SUITE = "peers"
/** the goal beyond the target of the NATS ask, noted beside it */
const GOAL = 1.3

const renamed = (m: Measurement, name: string): Measurement => ({ ...m, name })

const natsResults = (figures: NatsFigures): Array<Result> => {
  const asks = (callers: number, f: NatsFigures["inFlight"]): Array<Result> => {
    const troupe = (m: Measurement): Result => {
      const ratio = m.rate / f.moleculer.rate
      return compare(SUITE, renamed(m, `${m.name} vs Moleculer`), f.moleculer, {
        unit: "req/s",
        target: 1,
        note: `goal ${GOAL}x ${ratio >= GOAL ? "reached" : "not reached"}; ${(m.rate / f.raw.rate).toFixed(2)}x raw`
      })
    }
    return [
      baselineResult(SUITE, f.raw, "req/s"),
      compare(SUITE, f.moleculer, f.raw, { unit: "req/s", note: `vs raw, ${callers} in flight` }),
      troupe(f.msgpack),
      troupe(f.json)
    ]
  }
  const topics = compare(
    SUITE,
    renamed(figures.topics, `${figures.topics.name} vs Moleculer broadcast`),
    figures.broadcast,
    {
      unit: "events/s",
      target: 1,
      note: `${figures.topicDrops} events dropped in ${figures.eventRounds} rounds`
    }
  )
  return [
    ...asks(CALLERS, figures.inFlight),
    ...asks(1, figures.oneInFlight),
    { ...baselineResult(SUITE, figures.broadcast, "events/s"), note: "peer baseline" },
    // a figure reached by dropping events does not count
    figures.topicDrops > 0 ? { ...topics, pass: false } : topics
  ]
}

const localResults = (figures: Effect.Effect.Success<typeof localPhase>): Array<Result> => [
  { ...baselineResult(SUITE, figures.moleculer, "calls/s"), note: "peer baseline" },
  { ...baselineResult(SUITE, figures.cluster, "calls/s"), note: "peer baseline" },
  compare(SUITE, renamed(figures.ask, `${figures.ask.name} vs Moleculer local`), figures.moleculer, {
    unit: "calls/s",
    target: 0.25
  }),
  compare(SUITE, renamed(figures.ask, `${figures.ask.name} vs @effect/cluster`), figures.cluster, {
    unit: "calls/s",
    target: 30
  }),
  baselineResult(SUITE, figures.queue, "msgs/s"),
  compare(SUITE, figures.tell, figures.queue, {
    unit: "msgs/s",
    target: 0.5,
    ...(figures.lostTells !== 0 ? { note: `${figures.lostTells} accepted tells not processed` } : {})
  })
]

const microsPerAsk = (m: Measurement) => `${(1e6 / m.rate).toFixed(2)} µs per ask`

const cpuResult = (figure: DiscoveryCpu, idle: DiscoveryCpu): Result => ({
  suite: SUITE,
  name: `discovery CPU, ${figure.peers.toLocaleString("en-US")} peers heartbeating (1 s period)`,
  value: figure.msPerSecond,
  unit: "CPU ms/s",
  note: [
    figure.peers > 0 ? `${(figure.msPerSecond - idle.msPerSecond).toFixed(2)} above idle` : "idle node",
    `join window ${figure.joinMsPerSecond.toFixed(2)} ms/s`,
    `${figure.members} members seen`,
    `${figure.changesPerSecond.toFixed(1)} state changes/s`,
    `raw nats.js subscriber ${figure.rawMsPerSecond.toFixed(2)} ms/s (${
      Math.round(figure.rawHeartbeatsPerSecond)
    } heartbeats/s)`,
    figure.unpublished > 0 ? `${figure.unpublished} heartbeats not published` : ""
  ].filter((n) => n.length > 0).join("; ")
})

const membersResults = (figures: Effect.Effect.Success<typeof membersPhase>): Array<Result> => {
  const [one] = figures.asks
  const largest = figures.asks[figures.asks.length - 1]!
  const cost = one!.rate / largest.rate
  return [
    { ...baselineResult(SUITE, one!, "asks/s"), note: microsPerAsk(one!) },
    ...figures.asks.slice(1).map((m) => compare(SUITE, m, one!, { unit: "asks/s", note: microsPerAsk(m) })),
    {
      suite: SUITE,
      name: `ask cost, ${SIZES[SIZES.length - 1]!.toLocaleString("en-US")} vs 1 member`,
      value: cost,
      unit: "x",
      baseline: { name: one!.name, value: one!.rate },
      ratio: cost,
      target: 1.5,
      below: true,
      pass: cost < 1.5,
      note: "cost = 1 / rate"
    },
    cpuResult(figures.cpu.idle, figures.cpu.idle),
    cpuResult(figures.cpu.hundred, figures.cpu.idle),
    cpuResult(figures.cpu.thousand, figures.cpu.idle)
  ]
}

const program = Effect.gen(function*() {
  const nats = yield* natsPhase
  const local = yield* localPhase
  const members = yield* membersPhase
  return [...natsResults(nats), ...localResults(local), ...membersResults(members)]
})

/**
 * Runs the peers suite.
 *
 * @since 0.5.0
 */
export const run = (): Promise<Array<Result>> =>
  Effect.runPromise(program.pipe(Effect.provide(Logger.minimumLogLevel(LogLevel.Warning))))
