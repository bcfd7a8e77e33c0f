/**
 * One timer fiber for every ask of a node. Deadlines sharing a timeout are kept in insertion
 * order (which is deadline order) in a doubly linked list per timeout, so adding, removing and
 * expiring are O(1) and no fiber or Node timer is created per ask. Time comes from Effect's
 * `Clock`, so `TestClock` drives it.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

/** What a deadline calls when it expires. @internal */
export interface Expiring {
  readonly onDeadline: () => void
}

/** @internal */
export interface Deadline {
  readonly at: number
  readonly target: Expiring
  list: List | undefined
  prev: Deadline | undefined
  next: Deadline | undefined
}

interface List {
  head: Deadline | undefined
  tail: Deadline | undefined
}

/** @internal */
export class Deadlines {
  private readonly lists = new Map<number, List>()
  private wake: (() => void) | undefined
  private wakeAt = Infinity

  constructor(private readonly clock: Clock.Clock) {}

  now(): number {
    return this.clock.unsafeCurrentTimeMillis()
  }

  /** Calls `fire` (or `target.onDeadline`) after `millis` unless removed first. */
  add(millis: number, fire: (() => void) | Expiring): Deadline {
    const at = this.now() + millis
    let list = this.lists.get(millis)
    if (list === undefined) {
      list = { head: undefined, tail: undefined }
      this.lists.set(millis, list)
    }
    const target = typeof fire === "function" ? { onDeadline: fire } : fire
    const deadline: Deadline = { at, target, list, prev: list.tail, next: undefined }
    if (list.tail) list.tail.next = deadline
    else list.head = deadline
    list.tail = deadline
    if (at < this.wakeAt && this.wake !== undefined) {
      const wake = this.wake
      this.wake = undefined
      wake()
    }
    return deadline
  }

  remove(deadline: Deadline): void {
    const list = deadline.list
    if (list === undefined) return
    deadline.list = undefined
    if (deadline.prev) deadline.prev.next = deadline.next
    else list.head = deadline.next
    if (deadline.next) deadline.next.prev = deadline.prev
    else list.tail = deadline.prev
    deadline.prev = deadline.next = undefined
  }

  /** Fires what is due; returns the next deadline (or Infinity). */
  private expire(): number {
    const now = this.now()
    let next = Infinity
    for (const [millis, list] of this.lists) {
      let head = list.head
      while (head !== undefined && head.at <= now) {
        this.remove(head)
        try {
          head.target.onDeadline()
        } catch {
          // a deadline callback must not kill the timer
        }
        head = list.head
      }
      if (head === undefined) this.lists.delete(millis)
      else if (head.at < next) next = head.at
    }
    return next
  }

  /** The timer loop; run it in a scoped fiber of the node. */
  readonly run: Effect.Effect<never> = Effect.suspend(() => {
    const loop: Effect.Effect<never> = Effect.suspend(() => {
      const next = this.expire()
      this.wakeAt = next
      const signal = Effect.async<void>((resume) => {
        this.wake = () => resume(Effect.void)
        return Effect.sync(() => {
          this.wake = undefined
        })
      })
      const wait = next === Infinity
        ? signal
        : Effect.raceFirst(Effect.sleep(Duration.millis(Math.max(0, next - this.now()))), signal)
      return Effect.zipRight(wait, loop)
    })
    return loop
  })
}
