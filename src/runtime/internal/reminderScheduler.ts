/**
 * The reminder scheduler of one durable kind on one node. It keeps, for each actor of the kind
 * that this node owns by placement and that has reminders, the next due time from the reminder
 * index (`reminderIndex.ts`), and sends the actor a firing when it is due; the firing activates
 * the actor if needed. It learns of due times from the index: listed when membership changes
 * (so that a new owner takes over the reminders of a node that left or died), watched for
 * changes, and told directly by the saves of this node's own actors.
 *
 * Memory: one entry (id, due time, revision) per owned actor with reminders; nothing is kept for
 * actors this node does not own (their index changes are dropped as they are seen, and the list
 * made on a membership change is read once and let go).
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Persistence from "../../layers/Persistence.ts"
import { type EntityManager, makeJob } from "./entity.ts"
import type { NodeState } from "./nodeState.ts"
import { decodeIndex } from "./reminderIndex.ts"
import { fire, type Fired } from "./reminders.ts"
import { ownerOf, servingNodes } from "./routing.ts"

/** a firing that failed (or whose outcome was not heard of) is sent again after this */
export const RETRY_MILLIS = 5_000

/** index reads in flight at once while listing the index */
const SCAN_CONCURRENCY = 16

interface Entry {
  due: number
  /** the index revision the due time comes from */
  revision: number
}

interface Scheduler {
  readonly state: NodeState
  readonly manager: EntityManager
  readonly store: Persistence.PersistenceShape
  readonly prefix: string
  readonly table: Map<string, Entry>
  /** ids whose firing is in their mailbox or running */
  readonly firing: Set<string>
  wake: Deferred.Deferred<void>
}

const owns = (scheduler: Scheduler, id: string): boolean =>
  ownerOf(scheduler.state, scheduler.manager.kind, id) === scheduler.state.nodeId

const signal = (scheduler: Scheduler): void => {
  Deferred.unsafeDone(scheduler.wake, Effect.void)
}

/** A due time seen in the index (or saved here); `undefined`: the actor has no reminders left. */
const note = (scheduler: Scheduler, id: string, due: number | undefined, revision: number): void => {
  const current = scheduler.table.get(id)
  if (due === undefined || !owns(scheduler, id)) {
    if (current !== undefined && (due !== undefined || current.revision <= revision)) scheduler.table.delete(id)
    return
  }
  if (current !== undefined && current.revision > revision) return
  scheduler.table.set(id, { due, revision })
  signal(scheduler)
}

const idOf = (key: string): string | undefined => Persistence.parts(key)[2]

const onChange = (scheduler: Scheduler, change: Persistence.Change): void => {
  const id = idOf(change.key)
  if (id === undefined) return
  if (change.entry === undefined) return note(scheduler, id, undefined, Number.MAX_SAFE_INTEGER)
  const value = decodeIndex(change.entry.value)
  if (value !== undefined) note(scheduler, id, value.d, change.entry.revision)
}

/** After a membership change: forget what is no longer owned, list the index for what now is. */
const rescan = (scheduler: Scheduler): Effect.Effect<void> =>
  Effect.gen(function*() {
    for (const id of [...scheduler.table.keys()]) if (!owns(scheduler, id)) scheduler.table.delete(id)
    const keys = yield* scheduler.store.keys(scheduler.prefix)
    const wanted = keys.filter((key) => {
      const id = idOf(key)
      return id !== undefined && !scheduler.table.has(id) && owns(scheduler, id)
    })
    yield* Effect.forEach(wanted, (key) =>
      Effect.map(scheduler.store.get(key), (found) => {
        if (Option.isSome(found)) onChange(scheduler, { key, entry: found.value })
      }), { concurrency: SCAN_CONCURRENCY, discard: true })
  }).pipe(
    Effect.catchAll((error) =>
      Effect.logWarning(`reminders of ${scheduler.manager.kind}: listing the index failed`, error)
    )
  )

/** Sends actor `id` a firing; until it is heard of, the entry says to try again later. */
const send = (scheduler: Scheduler, id: string, entry: Entry, now: number): void => {
  const retry: Entry = { due: now + RETRY_MILLIS, revision: entry.revision }
  scheduler.table.set(id, retry)
  scheduler.firing.add(id)
  const { manager } = scheduler
  const job = makeJob("$reminder", undefined, {}, (exit) => {
    scheduler.firing.delete(id)
    if (exit._tag === "Success") {
      // a save seen meanwhile (a newer revision) knows better than this answer
      if (scheduler.table.get(id) === retry) {
        const { next } = exit.value as Fired
        if (next === undefined) scheduler.table.delete(id)
        else scheduler.table.set(id, { due: next, revision: entry.revision })
      }
    } else {
      scheduler.state.fork(
        Effect.logWarning(`a reminder of ${manager.kind}/${id} did not fire; it is tried again`, exit.error)
      )
    }
    signal(scheduler)
  }, true)
  job.run = (instance) => fire(manager.entity.definition, instance.durable, instance.handlers)
  manager.deliver(id, job)
}

/** Fires what is due, then sleeps until the next due time or a change. */
const timer = (scheduler: Scheduler): Effect.Effect<never> =>
  Effect.forever(Effect.gen(function*() {
    scheduler.wake = yield* Deferred.make<void>()
    const now = yield* Clock.currentTimeMillis
    let next = Infinity
    for (const [id, entry] of [...scheduler.table]) {
      if (scheduler.firing.has(id)) continue
      if (entry.due <= now) send(scheduler, id, entry, now)
      else if (entry.due < next) next = entry.due
    }
    yield* Number.isFinite(next)
      ? Effect.raceFirst(Effect.sleep(Duration.millis(next - now)), Deferred.await(scheduler.wake))
      : Deferred.await(scheduler.wake)
  }))

/**
 * Schedules the reminders of `manager`'s kind on this node until the scope closes.
 *
 * @internal
 */
export const schedule = (
  state: NodeState,
  manager: EntityManager,
  store: Persistence.PersistenceShape
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scheduler: Scheduler = {
      state,
      manager,
      store,
      prefix: `${Persistence.key("reminder", manager.kind)}.`,
      table: new Map(),
      firing: new Set(),
      wake: yield* Deferred.make<void>()
    }
    manager.reminderSink = (id, due, revision) => note(scheduler, id, due, revision)
    yield* Effect.addFinalizer(() => Effect.sync(() => (manager.reminderSink = undefined)))
    yield* Effect.forkScoped(
      Stream.runForEach(store.watch(scheduler.prefix), (change) => Effect.sync(() => onChange(scheduler, change))).pipe(
        Effect.tapError((error) => Effect.logWarning(`reminders of ${manager.kind}: the index watch failed`, error)),
        Effect.retry(Schedule.spaced("1 second"))
      )
    )
    // only a change of the kind's serving nodes moves ids
    let serving: string | undefined
    yield* Effect.forkScoped(Stream.runForEach(state.discovery.changes, () =>
      Effect.suspend(() => {
        const now = servingNodes(state, manager.kind).join(",")
        if (now === serving) return Effect.void
        serving = now
        return rescan(scheduler)
      })))
    yield* Effect.forkScoped(timer(scheduler))
  })
