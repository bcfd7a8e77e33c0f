/**
 * Schedules a property once failed on, kept as they were printed (seed and shrunk steps).
 */
import { describe, expect, it } from "@effect/vitest"
import { type DurableStep, runDurable } from "./durableSchedules.ts"
import { runSchedule, type Step } from "./schedules.ts"

describe("TestCluster regressions", () => {
  // asks end within their timeout, seed 0: disconnecting a crashed node ran its connection
  // listener, which failed an ask it had pending 3 s after that ask's timeout. A crashed node's
  // code must never run again.
  it("a crashed node's pending ask stays lost, even when the crashed node is disconnected", async () => {
    const steps: ReadonlyArray<Step> = [
      { op: "ask", from: "b", id: 0, sleep: 0 },
      { op: "crash", node: "b" },
      { op: "advance", millis: 1 },
      { op: "ask", from: "a", id: 0, sleep: 0 },
      { op: "advance", millis: 1 },
      { op: "partition", side: ["b"] },
      { op: "advance", millis: 1 },
      { op: "advance", millis: 3000 },
      { op: "crash", node: "a" },
      { op: "ask", from: "a", id: 0, sleep: 0 },
      { op: "ask", from: "a", id: 0, sleep: 0 },
      { op: "disconnect", node: "b" }
    ]
    const outcome = await runSchedule(0, steps)
    const [fromB, fromA] = outcome.asks
    expect(fromB).toMatchObject({ from: "b", lost: true })
    expect(fromB!.exit).toBeUndefined()
    expect(fromA).toMatchObject({ from: "a", lost: false, exit: { _tag: "Success" } })
    expect(outcome.asks).toHaveLength(2)
  })

  // reminders fire at least once, seed 0 (fast-check seed -1216869603): b#2, restarted and alone
  // in its view, activated acct-1 as c did; c's deposit won the first write, b#2 then stored
  // reminder p1. c's scheduler saw p1 in the index and fired it on its own activation, loaded
  // before p1 was written: it found nothing due, and the scheduler forgot the reminder. A firing
  // that finds nothing due now checks that its activation is not behind the store.
  it("a reminder written by another activation fires, though the owner's activation is behind the store", async () => {
    const steps: ReadonlyArray<DurableStep> = [
      { op: "restart", node: "b" },
      { op: "subscribe", from: "b", account: 1, after: 1 },
      { op: "subscribe", from: "b", account: 1, after: 3000 },
      { op: "deposit", from: "a", account: 1, amount: 1 }
    ]
    const outcome = await runDurable(0, steps)
    const account = outcome.accounts[1]!
    expect(account.acknowledgedPlans).toEqual(["p1"])
    expect(outcome.billed).toContain("p1")
    expect(account.stored).toEqual({ balance: 1, bills: 1, reminders: 0 })
    expect(account.overdue).toEqual([])
  })
})
