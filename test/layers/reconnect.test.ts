import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import { Backoff, makeConnection } from "../../src/layers/internal/reconnect.ts"
import { awaitSleeps } from "../fixtures/clock.ts"

/**
 * The timing of nats.js 2.29's `dodialLoop` (lib/nats-base-client/protocol.js) for one server:
 * every pass asks `reconnectDelayHandler` for `wait`, dials if `wait` has passed since the
 * server's last dial, and otherwise sleeps the rest and passes again. Returns when it dialled.
 */
const dialLoop = (
  backoff: Backoff,
  options: { readonly lastConnect: number; readonly dialMillis: number; readonly until: number }
) => {
  let now = options.lastConnect + 60_000 // the connection was lost long after it was made
  let lastConnect = options.lastConnect
  const dials: Array<number> = []
  let calls = 0
  while (now < options.until) {
    const wait = backoff.delay()
    calls++
    if (lastConnect + wait <= now) {
      lastConnect = now
      dials.push(now)
      backoff.onDial()
      now += options.dialMillis // connection refused
    } else {
      now += lastConnect + wait - now
    }
  }
  return { dials, calls }
}

describe("the NATS reconnect backoff", () => {
  it("counts dial attempts, not calls: 100 ms doubling to 5 s between dials, the first at once", () => {
    const backoff = new Backoff(100, 5_000, () => 1) // the top of the jitter
    const { calls, dials } = dialLoop(backoff, { lastConnect: 0, dialMillis: 1, until: 60_000 + 30_000 })
    const gaps = dials.slice(1).map((at, i) => at - dials[i]!)
    expect(gaps.slice(0, 8)).toEqual([100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000])
    expect(calls).toBeGreaterThan(dials.length) // nats.js asks on the passes that only wait too
  })

  it("draws its jitter once per attempt: a wait in progress is not stretched by a new draw", () => {
    let flip = 0
    // alternating draws (bottom, top, bottom, ...): a draw per call would lengthen each wait
    const backoff = new Backoff(100, 5_000, () => (flip++ % 2 === 0 ? 0 : 1))
    const { dials } = dialLoop(backoff, { lastConnect: 0, dialMillis: 0, until: 60_000 + 2_000 })
    const gaps = dials.slice(1).map((at, i) => at - dials[i]!)
    // one draw per dial: top (100), bottom (100), top (400), bottom (400), ...
    expect(gaps.slice(0, 4)).toEqual([100, 100, 400, 400])
  })

  it("every wait is in the upper half of its step, and a reconnect starts over", () => {
    const backoff = new Backoff(100, 5_000)
    for (let dial = 0; dial < 12; dial++) {
      const base = Math.min(5_000, 100 * 2 ** Math.max(0, backoff.attempts - 1))
      const delay = backoff.delay()
      expect(delay).toBeGreaterThanOrEqual(base / 2)
      expect(delay).toBeLessThanOrEqual(base)
      expect(backoff.delay()).toBe(delay)
      backoff.onDial()
    }
    backoff.reset()
    expect(backoff.attempts).toBe(0)
    expect(backoff.delay()).toBeLessThanOrEqual(100)
  })
})

describe("the NATS connection state", () => {
  it.effect("while down, a wait for the connection fails with TransportError \"disconnected\" after reconnectWait", () =>
    Effect.gen(function*() {
      const connection = yield* makeConnection(2_000)
      expect(yield* Effect.either(connection.awaitConnected(30_000))).toEqual(Either.right(undefined))
      connection.onDisconnected()
      expect(connection.isConnected()).toBe(false)
      const waiting = yield* Effect.fork(Effect.either(connection.awaitConnected(30_000)))
      yield* awaitSleeps(1)
      yield* TestClock.adjust("1999 millis")
      expect(waiting.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      const result = yield* Fiber.join(waiting)
      expect(Either.isLeft(result) && result.left).toMatchObject({ _tag: "TransportError", reason: "disconnected" })
    }))

  it.effect("the wait is bounded by the caller's own timeout, and ends as soon as the connection is back", () =>
    Effect.gen(function*() {
      const connection = yield* makeConnection(2_000)
      connection.onDisconnected()
      const short = yield* Effect.fork(Effect.either(connection.awaitConnected(500)))
      const long = yield* Effect.fork(Effect.either(connection.awaitConnected(30_000)))
      yield* awaitSleeps(2)
      yield* TestClock.adjust("500 millis")
      const shortResult = yield* Fiber.join(short)
      expect(Either.isLeft(shortResult) && shortResult.left.reason).toBe("disconnected")
      connection.onReconnected()
      expect(yield* Fiber.join(long)).toEqual(Either.right(undefined))
      // reconnectWait 0: no wait at all
      const none = yield* makeConnection(0)
      none.onDisconnected()
      const immediate = yield* Effect.either(none.awaitConnected(30_000))
      expect(Either.isLeft(immediate) && immediate.left.reason).toBe("disconnected")
    }))
})
