/**
 * The durable-actor guarantees under random fault schedules, on a TestCluster whose nodes share
 * one store: no acknowledged state write is lost, and reminders fire at least once. Each property
 * runs 100 seeded schedules (fast-check prints the seed and the shrunk schedule of a failure; the
 * cluster's report, printed with it, has the trace of the frames).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import { type DurableOutcome, durableSchedule, runDurable } from "./durableSchedules.ts"

const RUNS = Number(process.env["TROUPE_PROPERTY_RUNS"] ?? 100)
/** `TROUPE_PROPERTY_SEED` replays the runs of a printed fast-check seed */
const params = {
  numRuns: RUNS,
  ...(process.env["TROUPE_PROPERTY_SEED"] === undefined ? {} : { seed: Number(process.env["TROUPE_PROPERTY_SEED"]) })
}

const check = (property: (outcome: DurableOutcome) => void) =>
  FastCheck.asyncProperty(durableSchedule, async ({ seed, steps }) => {
    const outcome = await runDurable(seed, steps)
    try {
      property(outcome)
    } catch (error) {
      console.error(outcome.report)
      console.error(JSON.stringify(outcome.accounts, null, 1))
      throw error
    }
  })

/** each balance, stored and asked, is at least the acknowledged deposits, at most those and the uncertain ones */
export const noWriteLost = (outcome: DurableOutcome) => {
  for (const account of outcome.accounts) {
    const stored = account.stored?.balance ?? 0
    expect(stored, `acct-${account.account}: an acknowledged deposit was lost`).toBeGreaterThanOrEqual(
      account.acknowledged
    )
    expect(stored, `acct-${account.account}: more stored than was deposited`).toBeLessThanOrEqual(
      account.acknowledged + account.uncertain
    )
    expect(account.asked, `acct-${account.account}: the Balance ask after settle`).toEqual(Exit.succeed(stored))
  }
}

/** every acknowledged reminder ran its handler and had its firing recorded; none is left overdue */
export const remindersFire = (outcome: DurableOutcome) => {
  for (const account of outcome.accounts) {
    for (const plan of account.acknowledgedPlans) {
      expect(outcome.billed, `acct-${account.account}: reminder ${plan} never fired`).toContain(plan)
    }
    const bills = account.stored?.bills ?? 0
    expect(bills, `acct-${account.account}: recorded firings`).toBeGreaterThanOrEqual(account.acknowledgedPlans.length)
    expect(bills, `acct-${account.account}: a firing recorded twice`).toBeLessThanOrEqual(account.plansSet)
    expect(account.overdue, `acct-${account.account}: reminders left overdue`).toEqual([])
  }
}

describe("TestCluster durable properties", () => {
  it(
    `no acknowledged state write is lost; reminders fire at least once (${RUNS} schedules)`,
    async () => {
      await FastCheck.assert(
        check((outcome) => {
          noWriteLost(outcome)
          remindersFire(outcome)
        }),
        params
      )
    },
    120_000
  )
})
