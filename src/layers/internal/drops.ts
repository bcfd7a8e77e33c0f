/**
 * What a receiver does with a frame it cannot use: count it in `troupe_malformed_frames` at once,
 * and say so in at most one log line per interval (one second by default, on Effect's `Clock`)
 * per subscription, with the number dropped since the last line and the latest reason. The
 * reason's detail (a formatted parse error, say) is computed only for a line that is written.
 *
 * It is also the last resort of every transport callback: whatever a frame makes throw there
 * is dropped the same way, so one bad frame never stops a connection's reader.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Runtime from "effect/Runtime"

/**
 * Frames that arrived but could not be decoded or used.
 *
 * @internal
 */
export const malformedFrames = Metric.counter("troupe_malformed_frames", {
  description: "frames received that could not be decoded"
})

/** @internal the default interval between two log lines of one reporter */
export const REPORT_INTERVAL_MILLIS = 1000

/** @internal drops one frame: counted at once, logged at most once per interval */
export type Drop = (reason: unknown) => void

const describe = (reason: unknown): string => {
  try {
    if (typeof reason === "object" && reason !== null && "issue" in reason) {
      const issue = (reason as { readonly issue: unknown }).issue
      if (typeof issue === "string") return issue
    }
    if (reason instanceof Error) return `${reason.name}: ${reason.message}`
    return String(reason)
  } catch {
    return "(a reason that cannot be printed)"
  }
}

/** printable on one line, and not too long: reasons may quote the wire */
const oneLine = (text: string): string => {
  const line = JSON.stringify(text.length > 300 ? `${text.slice(0, 300)}…` : text)
  return line.slice(1, -1)
}

/**
 * @internal Something that happens often, said at most once per interval: each call counts one
 * occurrence, and calls `write` with the number counted since the last line when a line is due
 * (on `clock`, so TestClock drives it).
 */
export type RateLimited = (write: (count: number) => void) => void

/** @internal */
export const rateLimited = (clock: Clock.Clock, intervalMillis: number = REPORT_INTERVAL_MILLIS): RateLimited => {
  let unreported = 0
  let lastLine = -Infinity
  return (write) => {
    unreported++
    const now = clock.unsafeCurrentTimeMillis()
    if (now - lastLine < intervalMillis) return
    const count = unreported
    unreported = 0
    lastLine = now
    write(count)
  }
}

/**
 * @internal A reporter for the subscription to `subject`; `log` runs a log Effect (the caller's
 * runtime, so its logger and its `Clock` apply).
 */
export const makeDrop = (
  subject: string,
  clock: Clock.Clock,
  log: (effect: Effect.Effect<void>) => unknown,
  intervalMillis: number = REPORT_INTERVAL_MILLIS
): Drop => {
  const report = rateLimited(clock, intervalMillis)
  return (reason) => {
    malformedFrames.unsafeUpdate(1, [])
    report((count) =>
      log(Effect.logWarning(
        `dropped ${count} malformed frame${count === 1 ? "" : "s"} on ${subject} since the last report; the latest: ${
          oneLine(describe(reason))
        }`
      ))
    )
  }
}

/** @internal a reporter for code that has no Effect runtime of its own at hand */
export const makeDropEffect = (
  subject: string,
  intervalMillis?: number
): Effect.Effect<Drop> =>
  Effect.map(
    Effect.zip(Effect.clock, Effect.runtime<never>()),
    ([clock, runtime]) => {
      return makeDrop(subject, clock, Runtime.runFork(runtime), intervalMillis)
    }
  )
