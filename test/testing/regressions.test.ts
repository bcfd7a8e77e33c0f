/**
 * Schedules a property once failed on, kept as they were printed (seed and shrunk steps).
 */
import { describe, expect, it } from "@effect/vitest"
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
})
