/**
 * Troupe's own guarantees under random fault schedules, on a TestCluster: each property runs
 * 100 seeded schedules (fast-check prints the seed and the shrunk schedule of a failure; the
 * cluster's report, printed with it, has the trace of the frames).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import { ASK_TIMEOUT, type Outcome, runSchedule, runTopics, schedule, topicStep } from "./schedules.ts"

const RUNS = Number(process.env["TROUPE_PROPERTY_RUNS"] ?? 100)
/** `TROUPE_PROPERTY_SEED` replays the runs of a printed fast-check seed */
const params = {
  numRuns: RUNS,
  ...(process.env["TROUPE_PROPERTY_SEED"] === undefined ? {} : { seed: Number(process.env["TROUPE_PROPERTY_SEED"]) })
}

const check = (property: (outcome: Outcome) => void) =>
  FastCheck.asyncProperty(schedule, async ({ seed, steps }) => {
    const outcome = await runSchedule(seed, steps)
    try {
      property(outcome)
    } catch (error) {
      console.error(outcome.report)
      throw error
    }
  })

/** every ask made from a node that did not crash under it ends, within its timeout, in success or a typed error */
const asksEnd = (outcome: Outcome) => {
  for (const ask of outcome.asks) {
    if (ask.exit === undefined) {
      expect(ask.lost, "an ask that never ended, though its node did not crash").toBe(true)
      continue
    }
    expect(ask.endedAt! - ask.startedAt, "an ask outlived its timeout").toBeLessThanOrEqual(ASK_TIMEOUT)
    if (Exit.isFailure(ask.exit)) {
      const failure = Cause.failureOption(ask.exit.cause)
      expect(Cause.isDie(ask.exit.cause), Cause.pretty(ask.exit.cause)).toBe(false)
      expect(failure._tag === "Some" && typeof (failure.value as { _tag?: unknown })._tag, Cause.pretty(ask.exit.cause))
        .toBe("string")
    }
  }
}

/** after settle, each id is active on at most one node, and on exactly one once asked */
const oneActivation = (outcome: Outcome) => {
  for (const count of outcome.activeAfterSettle) {
    expect(count, "an id active on two nodes after settle").toBeLessThanOrEqual(1)
  }
  for (const count of outcome.activeAfterAsk) expect(count, "an id not active on exactly one node once asked").toBe(1)
}

/** pending asks and streams are 0 after settle, instances passivate, the timers are few */
const tablesEmpty = (outcome: Outcome) => {
  for (const table of outcome.tables) {
    expect(table, "a node's tables after settle").toEqual({ node: table.node, pending: 0, streams: 0 })
  }
  expect(outcome.instancesAfterIdle, "instances left after maxIdleTime").toBe(0)
  // heartbeat, membership check and deadline timers per node, and little else
  expect(outcome.timers, "timers left after settle").toBeLessThanOrEqual(30)
}

describe("TestCluster properties", () => {
  // one run of each schedule checks the three properties: each is checked on every schedule
  it(
    `asks end within their timeout, typed; one activation per id after settle; tables return to 0 (${RUNS} schedules)`,
    async () => {
      await FastCheck.assert(
        check((outcome) => {
          asksEnd(outcome)
          oneActivation(outcome)
          tablesEmpty(outcome)
        }),
        params
      )
    },
    120_000
  )
})

describe("TestCluster topic properties", () => {
  it(
    `a subscriber not partitioned gets every event, in order; a queue group delivers each at most once (${RUNS} schedules)`,
    async () => {
      await FastCheck.assert(
        FastCheck.asyncProperty(
          FastCheck.record({
            seed: FastCheck.integer({ min: 0, max: 0x7fffffff }),
            steps: FastCheck.array(topicStep, { maxLength: 12 })
          }),
          async ({ seed, steps }) => {
            const outcome = await runTopics(seed, steps)
            try {
              expect(outcome.plain, "the plain subscriber's events").toEqual(outcome.published)
              const seen = new Set<number>()
              for (const n of outcome.group) {
                expect(seen.has(n), `event ${n} reached two members of the group`).toBe(false)
                seen.add(n)
              }
            } catch (error) {
              console.error(outcome.report)
              throw error
            }
          }
        ),
        params
      )
    },
    120_000
  )
})
