/**
 * The shared shape of every benchmark suite and the measuring loops they use.
 *
 * A suite is a file exporting `run(): Promise<Array<Result>>`; `bench/index.ts` lists the suites
 * and prints one table. Every figure is the median of several rounds after a warm-up round, and
 * every round is bounded both in operations and in wall time, so a slow runtime makes the bench
 * report a low figure instead of running for minutes. A measurement and its raw baseline run
 * their rounds interleaved (`measureAll`), so that load from other processes on a shared machine
 * moves both and their ratio stays meaningful.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Queue from "effect/Queue"

/**
 * One printed line of the summary.
 *
 * @since 0.1.0
 * @category models
 */
export interface Result {
  /** the suite that produced it (`"in-memory"`, `"nats"`, ...) */
  readonly suite: string
  readonly name: string
  /** the median over the measured rounds; `NaN` when the measurement itself failed */
  readonly value: number
  /** `"ops/s"`, `"msgs/s"`, `"MB/s"`, `"x"` ... */
  readonly unit: string
  /** the raw figure this one is compared with, measured in the same run */
  readonly baseline?: { readonly name: string; readonly value: number } | undefined
  /** `value / baseline.value` */
  readonly ratio?: number | undefined
  /** the minimum ratio that counts as a pass (the maximum with `below`); absent for informational lines */
  readonly target?: number | undefined
  /** the ratio is a cost that must stay under `target` (`ratio < target`) */
  readonly below?: boolean | undefined
  /** `ratio >= target` (`ratio < target` with `below`); absent when there is no target */
  readonly pass?: boolean | undefined
  /** operations that failed during the measured rounds (they do not count in `value`) */
  readonly failures?: number | undefined
  readonly note?: string | undefined
}

/**
 * The shape every suite file exports.
 *
 * @since 0.1.0
 * @category models
 */
export interface Suite {
  readonly run: () => Promise<Array<Result>>
}

/**
 * What one round may spend.
 *
 * @since 0.1.0
 * @category models
 */
export interface Budget {
  readonly maxOps: number
  readonly maxMillis: number
}

/**
 * What one round did.
 *
 * @since 0.1.0
 * @category models
 */
export interface Round {
  /** operations completed successfully */
  readonly ops: number
  readonly failures: number
  readonly millis: number
  /** the first failure seen, for the report */
  readonly firstFailure?: unknown
}

/**
 * A measured figure: the median rate of the rounds and what went wrong.
 *
 * @since 0.1.0
 * @category models
 */
export interface Measurement {
  readonly name: string
  /** operations per second, median of the rounds */
  readonly rate: number
  readonly rates: ReadonlyArray<number>
  readonly failures: number
  readonly firstFailure?: unknown
}

/**
 * One thing to measure: a name, the budget of a round, and the round itself (which times
 * itself, so that its set-up stays out of the figure).
 *
 * @since 0.1.0
 * @category models
 */
export interface Spec<R = never> {
  readonly name: string
  readonly budget: Budget
  readonly round: (budget: Budget) => Effect.Effect<Round, unknown, R>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface MeasureOptions {
  /** measured rounds per spec; default 5 */
  readonly rounds?: number | undefined
  /** discarded rounds per spec before the measured ones; default 1 */
  readonly warmups?: number | undefined
  /**
   * the order of the specs in successive rounds: `"alternate"` (default) runs them forward, then
   * backward; `"rotate"` starts each round one spec later (A B C, B C A, C A B, ...), so that
   * every spec takes every place in turn
   */
  readonly order?: "alternate" | "rotate" | undefined
}

/**
 * The median of `values` (NaN for none).
 *
 * @since 0.1.0
 * @category measuring
 */
export const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length === 0
    ? Number.NaN
    : sorted.length % 2 === 1
    ? sorted[mid]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const rateOf = (round: Round) => (round.millis > 0 ? (round.ops / round.millis) * 1000 : 0)

/**
 * Measures several specs with their rounds interleaved (round 1 of each, then round 2 of each,
 * ...), so that a change of load on a shared machine hits a measurement and its baseline alike
 * and their ratio stays meaningful. Every other round runs the specs in reverse order: specs
 * that share a process leave garbage that the next round collects, and this way no spec always
 * follows the same one (`order: "rotate"` moves each spec one place on instead, for groups of
 * more than two). Each figure is the median rate of its measured rounds; the
 * warm-up rounds are discarded. A round that fails counts as one failure at rate 0, it never
 * stops the suite.
 *
 * @since 0.1.0
 * @category measuring
 */
export const measureAll = <R>(
  specs: ReadonlyArray<Spec<R>>,
  options: MeasureOptions = {}
): Effect.Effect<Array<Measurement>, never, R> =>
  Effect.gen(function*() {
    const rounds = options.rounds ?? 5
    const warmups = options.warmups ?? 1
    const rates = specs.map((): Array<number> => [])
    const failures = specs.map(() => 0)
    const firstFailures: Array<unknown> = specs.map(() => undefined)
    for (let index = 0; index < warmups + rounds; index++) {
      for (let k = 0; k < specs.length; k++) {
        const s = options.order === "rotate"
          ? (k + index) % specs.length
          : index % 2 === 0
          ? k
          : specs.length - 1 - k
        const spec = specs[s]!
        const result = yield* Effect.catchAllCause(
          spec.round(spec.budget),
          (cause): Effect.Effect<Round> => Effect.succeed({ ops: 0, failures: 1, millis: 0, firstFailure: cause })
        )
        // let the fibers of the previous round settle before the next one starts
        yield* Effect.yieldNow()
        if (index < warmups) continue
        rates[s]!.push(rateOf(result))
        failures[s]! += result.failures
        if (firstFailures[s] === undefined && result.firstFailure !== undefined) {
          firstFailures[s] = result.firstFailure
        }
      }
    }
    return specs.map((spec, s): Measurement => {
      const measurement: Measurement = {
        name: spec.name,
        rate: median(rates[s]!),
        rates: rates[s]!,
        failures: failures[s]!,
        ...(firstFailures[s] !== undefined ? { firstFailure: firstFailures[s] } : {})
      }
      progress(measurement)
      return measurement
    })
  })

const progress = (m: Measurement) => {
  const spread = `${formatRate(Math.min(...m.rates))}..${formatRate(Math.max(...m.rates))}`
  const failed = m.failures > 0 ? `, ${m.failures} failed (${describe(m.firstFailure)})` : ""
  console.log(`  ${m.name.padEnd(52)} ${formatRate(m.rate).padStart(12)} /s   rounds ${spread}${failed}`)
}

/**
 * Runs `op` one at a time until the budget is spent; failures are counted, not thrown.
 *
 * @since 0.1.0
 * @category measuring
 */
export const sequential = <E, R>(
  budget: Budget,
  op: (i: number) => Effect.Effect<unknown, E, R>
): Effect.Effect<Round, never, R> =>
  Effect.gen(function*() {
    let ops = 0
    let failures = 0
    let firstFailure: unknown = undefined
    const start = performance.now()
    const deadline = start + budget.maxMillis
    for (let i = 0; i < budget.maxOps; i++) {
      const exit = yield* Effect.exit(op(i))
      if (Exit.isSuccess(exit)) ops++
      else {
        failures++
        firstFailure ??= exit.cause
      }
      if ((i & 127) === 127 && performance.now() > deadline) break
    }
    return { ops, failures, millis: performance.now() - start, firstFailure }
  })

/**
 * Runs `op` from `callers` fibers at once, each caller one operation at a time, until the
 * budget (shared by all callers) is spent.
 *
 * @since 0.1.0
 * @category measuring
 */
export const concurrent = <E, R>(
  budget: Budget,
  callers: number,
  op: (caller: number, i: number) => Effect.Effect<unknown, E, R>
): Effect.Effect<Round, never, R> =>
  Effect.gen(function*() {
    let claimed = 0
    let ops = 0
    let failures = 0
    let firstFailure: unknown = undefined
    const start = performance.now()
    const deadline = start + budget.maxMillis
    const caller = (index: number) =>
      Effect.gen(function*() {
        while (claimed < budget.maxOps) {
          const i = claimed++
          const exit = yield* Effect.exit(op(index, i))
          if (Exit.isSuccess(exit)) ops++
          else {
            failures++
            firstFailure ??= exit.cause
          }
          if ((i & 127) === 127 && performance.now() > deadline) claimed = budget.maxOps
        }
      })
    yield* Effect.forEach(Array.from({ length: callers }, (_, i) => i), caller, {
      concurrency: "unbounded",
      discard: true
    })
    return { ops, failures, millis: performance.now() - start, firstFailure }
  })

/**
 * `concurrent` for raw baselines: `callers` promise loops sharing the budget, no Effect inside
 * the measured loop. An operation that rejects counts as a failure. `op` is given its caller's
 * index (0 to `callers - 1`).
 *
 * @since 0.1.0
 * @category measuring
 */
export const concurrentPromises = async (
  budget: Budget,
  callers: number,
  op: (caller: number) => Promise<unknown>
): Promise<Round> => {
  let claimed = 0
  let ops = 0
  let failures = 0
  let firstFailure: unknown = undefined
  const start = performance.now()
  const deadline = start + budget.maxMillis
  const caller = async (_: unknown, index: number) => {
    while (claimed < budget.maxOps) {
      const i = claimed++
      try {
        await op(index)
        ops++
      } catch (error) {
        failures++
        firstFailure ??= error
      }
      if ((i & 127) === 127 && performance.now() > deadline) claimed = budget.maxOps
    }
  }
  await Promise.all(Array.from({ length: callers }, caller))
  return { ops, failures, millis: performance.now() - start, firstFailure }
}

/**
 * A result line comparing a measurement with its raw baseline.
 *
 * @since 0.1.0
 * @category results
 */
export const compare = (
  suite: string,
  measured: Measurement,
  baseline: Measurement,
  options: { readonly unit?: string | undefined; readonly target?: number | undefined; readonly note?: string } = {}
): Result => {
  const ratio = baseline.rate > 0 ? measured.rate / baseline.rate : Number.NaN
  const notes = [options.note, measured.failures > 0 ? `first failure: ${describe(measured.firstFailure)}` : undefined]
    .filter((n): n is string => n !== undefined && n.length > 0)
  return {
    suite,
    name: measured.name,
    value: measured.rate,
    unit: options.unit ?? "ops/s",
    baseline: { name: baseline.name, value: baseline.rate },
    ratio,
    ...(options.target !== undefined ? { target: options.target, pass: ratio >= options.target } : {}),
    failures: measured.failures,
    ...(notes.length > 0 ? { note: notes.join("; ") } : {})
  }
}

/**
 * A result line for a baseline (no comparison), with the first failure when any failed.
 *
 * @since 0.1.0
 * @category results
 */
export const baselineResult = (
  suite: string,
  measured: Measurement,
  unit = "ops/s",
  note = "raw baseline"
): Result => ({
  suite,
  name: measured.name,
  value: measured.rate,
  unit,
  failures: measured.failures,
  note: measured.failures > 0 ? `${note}; first failure: ${describe(measured.firstFailure)}` : note
})

/**
 * A short description of a failure for the report.
 *
 * @since 0.1.0
 * @category formatting
 */
export const describe = (failure: unknown): string => {
  if (failure === undefined) return ""
  const text = typeof failure === "object" && failure !== null && "toString" in failure
    ? String(failure)
    : JSON.stringify(failure)
  const firstLine = text.split("\n").find((line) => line.trim().length > 0) ?? text
  return firstLine.trim().slice(0, 120)
}

/**
 * `12345.6` → `"12,346"`; `1.2345` → `"1.23"`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatRate = (value: number): string =>
  Number.isNaN(value)
    ? "n/a"
    : Math.abs(value) >= 100
    ? Math.round(value).toLocaleString("en-US")
    : value.toFixed(2)

/**
 * The raw one-way baseline: one fiber offers to an Effect `Queue`, another takes; the round ends
 * when every message has been taken.
 */
export const rawQueueOneWay = (name: string, budget: Budget): Spec => ({
  name,
  budget,
  round: (budget) =>
    Effect.gen(function*() {
      const queue = yield* Queue.unbounded<number>()
      const consumer = yield* Effect.fork(Effect.gen(function*() {
        let taken = 0
        while ((yield* Queue.take(queue)) >= 0) taken++
        return taken
      }))
      const start = performance.now()
      const deadline = start + budget.maxMillis
      let offered = 0
      for (let i = 0; i < budget.maxOps; i++) {
        yield* Queue.offer(queue, i)
        offered++
        if ((i & 127) === 127 && performance.now() > deadline) break
      }
      yield* Queue.offer(queue, -1)
      const taken = yield* Fiber.join(consumer)
      const millis = performance.now() - start
      yield* Queue.shutdown(queue)
      return { ops: taken, failures: offered - taken, millis }
    })
})
