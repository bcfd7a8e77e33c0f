/**
 * The reminder index: one small key per actor that has reminders, `reminder.<kind>.<id>`, whose
 * value is a due time no later than the earliest one in the actor's record, and the revision of
 * the record it reflects. The scheduler lists and watches only these keys, never the records.
 *
 * The record is the truth; the index is kept no later than it: before a save that makes a
 * reminder due earlier, the index is lowered (keeping the highest record revision it was based
 * on, at least the one this activation loaded); after a save, it is set to the new earliest due
 * time unless a later save already wrote it. An index too early only costs a wake-up that finds
 * nothing due; it is never later than the truth, so no reminder is missed.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Packr } from "msgpackr"
import type { PersistenceShape } from "../../layers/Persistence.ts"
import { PersistenceError } from "../../schema/Errors.ts"

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })

/** A reminder as stored in an actor's record: the Rpc, its encoded payload, when next due. @internal */
export interface StoredReminder {
  readonly tag: string
  /** the payload, encoded with the Rpc's payload schema */
  readonly payload: unknown
  /** epoch milliseconds of the Clock */
  readonly due: number
  /** the period in milliseconds, if it repeats */
  readonly every?: number
}

/** The earliest due time among `reminders`. @internal */
export const earliest = (reminders: ReadonlyMap<string, StoredReminder>): number | undefined => {
  let found: number | undefined
  for (const reminder of reminders.values()) if (found === undefined || reminder.due < found) found = reminder.due
  return found
}

/** The reminder due first (the one a wake-up fires). @internal */
export const firstDue = (
  reminders: ReadonlyMap<string, StoredReminder>
): readonly [string, StoredReminder] | undefined => {
  let found: readonly [string, StoredReminder] | undefined
  for (const entry of reminders) if (found === undefined || entry[1].due < found[1].due) found = entry
  return found
}

/** The due time after a firing at `now`: periods missed while nobody fired are skipped, not fired. @internal */
export const nextDue = (reminder: StoredReminder, now: number): number | undefined => {
  if (reminder.every === undefined) return undefined
  const missed = Math.floor(Math.max(0, now - reminder.due) / reminder.every)
  return reminder.due + (missed + 1) * reminder.every
}

/** An index value: `d` the due time, `r` the record revision it reflects. @internal */
export interface IndexValue {
  readonly d: number
  readonly r: number
}

/** @internal */
export const encodeIndex = (value: IndexValue): Uint8Array => packr.pack(value)

/** The index value in `bytes`, if it is one. @internal */
export const decodeIndex = (bytes: Uint8Array): IndexValue | undefined => {
  try {
    const value = packr.unpack(bytes) as IndexValue
    return typeof value === "object" && value !== null && typeof value.d === "number" && typeof value.r === "number"
      ? value
      : undefined
  } catch {
    return undefined
  }
}

/** What the index operations need of a cell. @internal */
export interface IndexedCell {
  readonly kind: string
  readonly id: string
  readonly indexKey: string
  readonly store: PersistenceShape
  readonly revision: number
  readonly sink: ((id: string, due: number | undefined, indexRevision: number) => void) | undefined
  readonly bounded: <A, E>(operation: string, effect: Effect.Effect<A, E>) => Effect.Effect<A, E | PersistenceError>
}

const ATTEMPTS = 5

const readIndex = (cell: IndexedCell) =>
  Effect.map(cell.bounded("get", cell.store.get(cell.indexKey)), (found) =>
    Option.isNone(found)
      ? { revision: 0, value: undefined }
      : { revision: found.value.revision, value: decodeIndex(found.value.value) })

/**
 * Before a save that makes a reminder due at `due`: the index is made no later than `due`.
 * Fails (and the save does not happen) if the store fails.
 *
 * @internal
 */
export const lowerIndex = (cell: IndexedCell, due: number): Effect.Effect<void, PersistenceError> =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const current = yield* readIndex(cell)
      if (current.value !== undefined && current.value.d <= due) return
      const value = encodeIndex({ d: due, r: Math.max(current.value?.r ?? 0, cell.revision) })
      const written = yield* cell.bounded("put", cell.store.put(cell.indexKey, value, current.revision)).pipe(
        Effect.map((revision) => ({ revision })),
        Effect.catchTag("Conflict", () => Effect.succeed(undefined)),
        Effect.catchTag(
          "PayloadTooLarge",
          (error) => Effect.fail(new PersistenceError({ operation: "put", reason: error.message }))
        )
      )
      if (written !== undefined) return cell.sink?.(cell.id, due, written.revision)
    }
    return yield* Effect.fail(
      new PersistenceError({ operation: "put", reason: `the reminder index of ${cell.kind}/${cell.id} kept changing` })
    )
  })

/**
 * After a save at `revision` whose earliest due time is `due` (undefined: no reminders left):
 * the index says so, unless a save after this one wrote it. Never fails: an index left too early
 * costs one wake-up that finds nothing due.
 *
 * @internal
 */
export const correctIndex = (cell: IndexedCell, due: number | undefined, revision: number): Effect.Effect<void> =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const current = yield* readIndex(cell)
      if (current.value !== undefined && current.value.r >= revision) return
      if (due === undefined) {
        if (current.revision === 0) return cell.sink?.(cell.id, undefined, 0)
        const removed = yield* cell.bounded("remove", cell.store.remove(cell.indexKey, current.revision)).pipe(
          Effect.as(true),
          Effect.catchTag("Conflict", () => Effect.succeed(false))
        )
        if (removed) return cell.sink?.(cell.id, undefined, current.revision)
        continue
      }
      const value = encodeIndex({ d: due, r: revision })
      const written = yield* cell.bounded("put", cell.store.put(cell.indexKey, value, current.revision)).pipe(
        Effect.map((indexRevision) => ({ indexRevision })),
        Effect.catchTag("Conflict", () => Effect.succeed(undefined))
      )
      if (written !== undefined) return cell.sink?.(cell.id, due, written.indexRevision)
    }
  }).pipe(
    Effect.catchAll((error) =>
      Effect.logWarning(`the reminder index of ${cell.kind}/${cell.id} was not updated; it stays early`, error)
    )
  )
