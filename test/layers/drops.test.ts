import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as TestClock from "effect/TestClock"
import { makeDrop, malformedFrames, rateLimited } from "../../src/layers/internal/drops.ts"

describe("rate-limited reports", () => {
  it.effect("a report is written at most once per interval, with the count since the last one (TestClock)", () =>
    Effect.gen(function*() {
      const clock = yield* Effect.clock
      const report = rateLimited(clock, 1000)
      const lines: Array<number> = []
      for (let i = 0; i < 5; i++) report((count) => lines.push(count))
      expect(lines).toEqual([1])
      yield* TestClock.adjust("999 millis")
      for (let i = 0; i < 3; i++) report((count) => lines.push(count))
      expect(lines).toEqual([1])
      yield* TestClock.adjust("1 millis")
      report((count) => lines.push(count))
      // the seven counted since the first line, and this one
      expect(lines).toEqual([1, 8])
    }))

  it.effect("a drop is counted at once and logged at most once a second, naming the subject and the latest reason", () =>
    Effect.gen(function*() {
      const clock = yield* Effect.clock
      const logged: Array<Effect.Effect<void>> = []
      const drop = makeDrop("node.a", clock, (effect) => logged.push(effect))
      const before = (yield* Metric.value(malformedFrames)).count
      for (let i = 0; i < 10; i++) drop(new Error(`bad ${i}`))
      expect((yield* Metric.value(malformedFrames)).count - before).toBe(10)
      expect(logged.length).toBe(1)
      yield* TestClock.adjust("1 second")
      drop("the latest reason")
      expect(logged.length).toBe(2)
    }))
})
