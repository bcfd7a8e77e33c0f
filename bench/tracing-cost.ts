/**
 * What tracing every ask costs on the in-memory ask path: CPU time per ask with
 * `Node.layer({ tracing: true })` against `tracing: false`, one node, zero-copy, the `Counter`
 * actor (its handler runs in a fiber, so a traced ask opens a client and a server span). Rounds
 * alternate between the two settings so that the machine's drift hits both alike.
 *
 * `npx tsx bench/tracing-cost.ts [asks per round] [rounds per setting] [in flight]` (defaults
 * 20000, 5, 1); under a minute here. Not one of `npm run bench`'s suites.
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { Actor, Node } from "../src/index.ts"
import { Counter, CounterLive } from "./actors.ts"

const ASKS = Number(process.argv[2] ?? 20_000)
const ROUNDS = Number(process.argv[3] ?? 5)
const IN_FLIGHT = Number(process.argv[4] ?? 1)

interface Round {
  readonly cpuMicros: number
  readonly wallMicros: number
}

const round = (tracing: boolean): Effect.Effect<Round> =>
  Effect.gen(function*() {
    const context = yield* Layer.build(CounterLive.pipe(Layer.provideMerge(Node.layerInMemory({ tracing }))))
    const counter = yield* Effect.provide(Actor.client(Counter), context)
    const perCaller = Math.ceil(ASKS / IN_FLIGHT)
    const caller = (c: number) =>
      Effect.gen(function*() {
        for (let i = 0; i < perCaller; i++) yield* counter(`c-${c}`).Increment({ by: 1 })
      })
    // warm the actors and the JIT for this setting
    yield* Effect.forEach(Array.from({ length: IN_FLIGHT }, (_, c) => c), (c) => counter(`c-${c}`).Get(), {
      concurrency: "unbounded"
    })
    const cpu = process.cpuUsage()
    const wall = performance.now()
    yield* Effect.forEach(Array.from({ length: IN_FLIGHT }, (_, c) => c), caller, {
      concurrency: "unbounded",
      discard: true
    })
    const used = process.cpuUsage(cpu)
    const asks = perCaller * IN_FLIGHT
    return {
      cpuMicros: (used.user + used.system) / asks,
      wallMicros: ((performance.now() - wall) * 1000) / asks
    }
  }).pipe(Effect.orDie, Effect.scoped)

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const program = Effect.gen(function*() {
  // one throw-away round of each, for the JIT
  yield* round(false)
  yield* round(true)
  const off: Array<Round> = []
  const on: Array<Round> = []
  for (let r = 0; r < ROUNDS; r++) {
    // alternate which goes first, so neither always follows the other
    const first = r % 2 === 0
    const a = yield* round(first)
    const b = yield* round(!first)
    ;(first ? on : off).push(a)
    ;(first ? off : on).push(b)
    console.log(
      `round ${r + 1}: off ${(first ? b : a).cpuMicros.toFixed(2)} µs CPU/ask, on ${
        (first ? a : b).cpuMicros.toFixed(2)
      } µs CPU/ask`
    )
  }
  const offCpu = median(off.map((r) => r.cpuMicros))
  const onCpu = median(on.map((r) => r.cpuMicros))
  const ratios = on.map((r, i) => r.cpuMicros / off[i]!.cpuMicros)
  console.log(`asks per round ${ASKS}, ${IN_FLIGHT} in flight, ${ROUNDS} rounds per setting`)
  console.log(
    `tracing off: median ${offCpu.toFixed(2)} µs CPU/ask (wall ${median(off.map((r) => r.wallMicros)).toFixed(2)} µs)`
  )
  console.log(
    `tracing on:  median ${onCpu.toFixed(2)} µs CPU/ask (wall ${median(on.map((r) => r.wallMicros)).toFixed(2)} µs)`
  )
  console.log(
    `cost of tracing: +${((onCpu / offCpu - 1) * 100).toFixed(1)} % CPU per ask (paired ratios ${
      ratios.map((x) => x.toFixed(2)).join(", ")
    })`
  )
})

program.pipe(Logger.withMinimumLogLevel(LogLevel.Warning), Effect.runPromise)
