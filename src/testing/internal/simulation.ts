/**
 * The simulation's time and scheduling. Every fiber of a test cluster (its nodes, and the test
 * fiber from `TestCluster.make` on) runs on one `Scheduler` that counts the tasks it has queued,
 * and reads one virtual `Clock`. When no task is queued, every fiber is waiting: that is the only
 * moment time moves, to the next timer (one at a time, in (time, order of creation) order), so a
 * run is the same from one execution to the next and never waits on the wall clock.
 *
 * The clock is also the `TestClock` of the test from `make` on: `TestClock.adjust(d)` there is
 * `cluster.advance(d)`.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Scheduler from "effect/Scheduler"
import type * as TestClock from "effect/TestClock"

interface Timer {
  readonly at: number
  readonly seq: number
  readonly fire: () => void
  cancelled: boolean
}

interface Waiter {
  readonly target: number
  readonly resume: () => void
}

/** @internal */
export interface SimulationOptions {
  /** the start time (epoch millis) */
  readonly start: number
  /** how far time may move on its own (all fibers waiting, no `advance`) past the last `advance` */
  readonly autoAdvanceMillis: number
}

/** @internal */
export class Simulation implements TestClock.TestClock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  private now: number
  private timers: Array<Timer> = []
  private waiters: Array<Waiter> = []
  private nextSeq = 0
  private queued = 0
  private checking = false
  private closed = false
  private autoLimit: number
  /** set when time stopped moving on its own at the bound */
  stalledAt: number | undefined = undefined

  constructor(private readonly options: SimulationOptions) {
    this.now = options.start
    this.autoLimit = options.start + options.autoAdvanceMillis
  }

  /** the scheduler of every fiber of the cluster; `frozen` (a crashed node's) drops their tasks */
  makeScheduler(frozen: () => boolean = () => false): Scheduler.Scheduler {
    return {
      shouldYield: Scheduler.defaultShouldYield,
      scheduleTask: (task, priority) => {
        if (frozen()) return
        this.queued++
        Scheduler.defaultScheduler.scheduleTask(() => {
          this.queued--
          if (!frozen()) task()
          if (this.queued === 0) this.onIdle()
        }, priority)
      }
    }
  }

  /** calls `fire` at `at` (virtual millis), in creation order among equal times */
  schedule(at: number, fire: () => void): () => void {
    const timer: Timer = { at: Math.max(at, this.now), seq: this.nextSeq++, fire, cancelled: false }
    // timers are few and mostly appended in order: insertion from the end
    let i = this.timers.length
    while (i > 0 && this.timers[i - 1]!.at > timer.at) i--
    this.timers.splice(i, 0, timer)
    if (this.queued === 0) this.onIdle()
    return () => {
      timer.cancelled = true
    }
  }

  /** moves time `millis` forward, firing every timer due on the way */
  advance(millis: number): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      const target = this.now + Math.max(0, millis)
      this.autoLimit = Math.max(this.autoLimit, target + this.options.autoAdvanceMillis)
      this.stalledAt = undefined
      const waiter: Waiter = { target, resume: () => resume(Effect.void) }
      let i = this.waiters.length
      while (i > 0 && this.waiters[i - 1]!.target > target) i--
      this.waiters.splice(i, 0, waiter)
      this.onIdle()
    })
  }

  /** stops moving time (the cluster is closed) */
  close(): void {
    this.closed = true
  }

  /** the number of timers not yet fired */
  get pendingTimers(): number {
    let n = 0
    for (const timer of this.timers) if (!timer.cancelled) n++
    return n
  }

  private onIdle(): void {
    if (this.checking || this.closed) return
    this.checking = true
    // after what the default scheduler already holds (fibers outside the cluster, promises)
    Scheduler.defaultScheduler.scheduleTask(() => {
      this.checking = false
      if (this.queued === 0 && !this.closed) this.step()
    }, 0)
  }

  /** everything waits: the next timer fires, or a waiting `advance` ends */
  private step(): void {
    while (this.timers.length > 0 && this.timers[0]!.cancelled) this.timers.shift()
    const next = this.timers[0]
    const waiter = this.waiters[0]
    const limit = waiter !== undefined ? waiter.target : this.autoLimit
    if (next !== undefined && next.at <= limit) {
      this.timers.shift()
      this.now = Math.max(this.now, next.at)
      next.fire()
    } else if (waiter !== undefined) {
      this.waiters.shift()
      this.now = Math.max(this.now, waiter.target)
      waiter.resume()
    } else {
      if (next !== undefined) this.stalledAt = this.now
      return
    }
    if (this.queued === 0) this.onIdle()
  }

  // ---- Clock and TestClock -------------------------------------------------------------------

  unsafeCurrentTimeMillis(): number {
    return this.now
  }

  unsafeCurrentTimeNanos(): bigint {
    return BigInt(Math.round(this.now * 1_000_000))
  }

  get currentTimeMillis(): Effect.Effect<number> {
    return Effect.sync(() => this.now)
  }

  get currentTimeNanos(): Effect.Effect<bigint> {
    return Effect.sync(() => this.unsafeCurrentTimeNanos())
  }

  sleep(duration: Duration.Duration): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      const cancel = this.schedule(this.now + Duration.toMillis(duration), () => resume(Effect.void))
      return Effect.sync(cancel)
    })
  }

  adjust(duration: Duration.DurationInput): Effect.Effect<void> {
    return Effect.suspend(() => this.advance(Duration.toMillis(Duration.decode(duration))))
  }

  adjustWith(duration: Duration.DurationInput) {
    return <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      Effect.zipLeft(effect, this.adjust(duration), { concurrent: true })
  }

  setTime(time: number): Effect.Effect<void> {
    return Effect.suspend(() => this.advance(time - this.now))
  }

  /** time moves forward only: restoring a saved time is a no-op past it */
  get save(): Effect.Effect<Effect.Effect<void>> {
    return Effect.sync(() => {
      const saved = this.now
      return Effect.suspend(() => this.advance(saved - this.now))
    })
  }

  get sleeps(): Effect.Effect<Chunk.Chunk<number>> {
    return Effect.sync(() => Chunk.fromIterable(this.timers.filter((t) => !t.cancelled).map((t) => t.at)))
  }
}
