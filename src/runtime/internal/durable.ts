/**
 * Durable actors, the runtime's side: one actor's stored record (its state and its reminders,
 * under `state.<kind>.<id>`), loaded when it activates and saved after each message that changed
 * it. The save is a compare-and-set on the revision this activation loaded or last wrote
 * (fencing): a lost one marks the activation stale, and the job loop passivates it. What a failed
 * message changed is discarded. The reminder index (`reminderIndex.ts`) is kept no later than the
 * record around each save.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { Packr } from "msgpackr"
import type { DurableState } from "../../actors/ActorSystem.ts"
import * as Persistence from "../../layers/Persistence.ts"
import { PersistenceError, StateConflict, StateDecodeError } from "../../schema/Errors.ts"
import type { PayloadTooLarge, TroupeError } from "../../schema/Errors.ts"
import type { Deadlines } from "./deadlines.ts"
import { correctIndex, earliest, lowerIndex, type StoredReminder } from "./reminderIndex.ts"

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })

/** the stored record: `s` the encoded state (absent: none yet), `r` the reminders by name */
interface StoredRecord {
  readonly s?: unknown
  readonly r?: Readonly<Record<string, StoredReminder>>
}

interface StateSlot {
  readonly encode: (value: unknown) => Either.Either<unknown, ParseResult.ParseError>
  committed: unknown
  working: unknown
}

/** Where a cell tells the reminder scheduler of this node that an actor's next due time changed. @internal */
export type ReminderSink = (id: string, due: number | undefined, indexRevision: number) => void

/** One activation's durable record: what is stored, and the working copy of this message. @internal */
export class DurableCell {
  /** the revision this activation loaded or last wrote (0: nothing stored) */
  revision = 0
  bytes: Uint8Array | undefined = undefined
  /** the stored state as loaded, encoded (kept as it is while no `Actor.state` claims it) */
  encodedState: unknown = undefined
  hasState = false
  state: StateSlot | undefined = undefined
  committedReminders: ReadonlyMap<string, StoredReminder> = new Map()
  reminders: Map<string, StoredReminder> = new Map()
  remindersClaimed = false
  /** the working copy differs from what is stored (or may) */
  dirty = false
  /** a write was lost or its outcome is unknown: this activation must not serve again */
  stale = false
  readonly key: string
  readonly indexKey: string

  constructor(
    readonly kind: string,
    readonly id: string,
    readonly store: Persistence.PersistenceShape,
    readonly timeout: Duration.Duration,
    readonly sink: ReminderSink | undefined,
    readonly deadlines?: Deadlines | undefined
  ) {
    this.key = Persistence.key("state", kind, id)
    this.indexKey = Persistence.key("reminder", kind, id)
  }

  timedOut(operation: string): PersistenceError {
    return new PersistenceError({
      operation,
      reason: `no answer from the ${this.store.name} store within ${Duration.format(this.timeout)}`
    })
  }

  /** a store operation, bounded by the kind's `persistenceTimeout` */
  bounded<A, E>(operation: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E | PersistenceError> {
    return Effect.timeoutFail(effect, { duration: this.timeout, onTimeout: () => this.timedOut(operation) })
  }

  /** the message failed: its changes are gone */
  discard(): void {
    if (!this.dirty) return
    if (this.state !== undefined) this.state.working = this.state.committed
    this.reminders = new Map(this.committedReminders)
    this.dirty = false
  }

  accept(bytes: Uint8Array, revision: number): void {
    this.bytes = bytes
    this.revision = revision
    if (this.state !== undefined) this.state.committed = this.state.working
    this.committedReminders = new Map(this.reminders)
    this.dirty = false
  }
}

const decodeIssue = (error: ParseResult.ParseError): string => ParseResult.TreeFormatter.formatErrorSync(error)

const isRecord = (value: unknown): value is StoredRecord =>
  typeof value === "object" && value !== null && !Array.isArray(value) &&
  ((value as StoredRecord).r === undefined ||
    (typeof (value as StoredRecord).r === "object" && (value as StoredRecord).r !== null))

const isReminder = (value: unknown): value is StoredReminder =>
  typeof value === "object" && value !== null && typeof (value as StoredReminder).tag === "string" &&
  typeof (value as StoredReminder).due === "number" &&
  ((value as StoredReminder).every === undefined || typeof (value as StoredReminder).every === "number")

/**
 * Loads the cell's record from its store; a record that is not one fails with `StateDecodeError`.
 *
 * @internal
 */
export const load = (cell: DurableCell): Effect.Effect<void, StateDecodeError | PersistenceError> =>
  Effect.flatMap(cell.bounded("get", cell.store.get(cell.key)), (found) => {
    if (Option.isNone(found)) return Effect.void
    const undecodable = (issue: string) => Effect.fail(new StateDecodeError({ kind: cell.kind, id: cell.id, issue }))
    let record: unknown
    try {
      record = packr.unpack(found.value.value)
    } catch (error) {
      return undecodable(`the stored record is not MessagePack: ${String(error)}`)
    }
    if (!isRecord(record)) return undecodable("the stored record is not a { s, r } object")
    const reminders = new Map<string, StoredReminder>()
    for (const [name, reminder] of Object.entries(record.r ?? {})) {
      if (!isReminder(reminder)) return undecodable(`the stored reminder "${name}" is malformed`)
      reminders.set(name, reminder)
    }
    cell.revision = found.value.revision
    cell.bytes = found.value.value
    cell.hasState = "s" in record
    cell.encodedState = record.s
    cell.committedReminders = reminders
    cell.reminders = new Map(reminders)
    return Effect.void
  })

/**
 * Claims the state of the cell for `schema`: the stored value decoded, or `initial()`.
 *
 * @internal
 */
export const claimState = <A, I>(
  cell: DurableCell,
  schema: Schema.Schema<A, I>,
  initial: () => A
): Effect.Effect<DurableState<A>, StateDecodeError> =>
  Effect.suspend(() => {
    let value: A
    if (cell.hasState) {
      const decoded = Schema.decodeUnknownEither(schema)(cell.encodedState)
      if (Either.isLeft(decoded)) {
        return Effect.fail(new StateDecodeError({ kind: cell.kind, id: cell.id, issue: decodeIssue(decoded.left) }))
      }
      value = decoded.right
    } else {
      value = initial()
    }
    const slot: StateSlot = {
      encode: Schema.encodeEither(schema as Schema.Schema<unknown, unknown>),
      committed: value,
      working: value
    }
    cell.state = slot
    const write = (next: A) => {
      slot.working = next
      cell.dirty = true
    }
    return Effect.succeed<DurableState<A>>({
      get: Effect.sync(() => slot.working as A),
      set: (next) => Effect.sync(() => write(next)),
      update: (f) => Effect.sync(() => write(f(slot.working as A))),
      modify: (f) =>
        Effect.sync(() => {
          const [result, next] = f(slot.working as A)
          write(next)
          return result
        })
    })
  })

const sameBytes = (a: Uint8Array, b: Uint8Array | undefined): boolean =>
  b !== undefined && a.byteLength === b.byteLength && Buffer.compare(a, b) === 0

const encodeRecord = (cell: DurableCell): Effect.Effect<Uint8Array> => {
  const record: { s?: unknown; r?: Record<string, StoredReminder> } = {}
  if (cell.state !== undefined) {
    const encoded = cell.state.encode(cell.state.working)
    if (Either.isLeft(encoded)) {
      return Effect.dieMessage(`the new state of ${cell.kind}/${cell.id} does not encode: ${decodeIssue(encoded.left)}`)
    }
    record.s = encoded.right
  } else if (cell.hasState) {
    record.s = cell.encodedState
  }
  if (cell.reminders.size > 0) record.r = Object.fromEntries(cell.reminders)
  return Effect.succeed(packr.pack(record))
}

/**
 * Stores the working copy if it changed: a compare-and-set on the cell's revision, the reply
 * waiting for it. `StateConflict` when another activation wrote first (the cell is then stale),
 * `PayloadTooLarge` when the record is over the store's limit (nothing written),
 * `PersistenceError` when the store failed or did not answer (the outcome is unknown: stale).
 *
 * @internal
 */
export const commit = (
  cell: DurableCell,
  bound: <A, E>(operation: string, effect: Effect.Effect<A, E>) => Effect.Effect<A, E | PersistenceError> = (
    operation,
    effect
  ) => cell.bounded(operation, effect)
): Effect.Effect<void, StateConflict | PayloadTooLarge | PersistenceError> =>
  Effect.suspend(() => {
    if (!cell.dirty) return Effect.void
    return Effect.gen(function*() {
      const bytes = yield* encodeRecord(cell)
      if (sameBytes(bytes, cell.bytes)) return cell.accept(bytes, cell.revision)
      const before = earliest(cell.committedReminders)
      const after = earliest(cell.reminders)
      // the index is never later than what is stored: lowered before the save, raised after it
      if (after !== undefined && after !== before) yield* lowerIndex(cell, after)
      cell.stale = true
      const revision = yield* bound("put", cell.store.put(cell.key, bytes, cell.revision)).pipe(
        Effect.catchTag(
          "Conflict",
          () => Effect.fail(new StateConflict({ kind: cell.kind, id: cell.id, expected: cell.revision }))
        ),
        Effect.tapError((error) =>
          Effect.sync(() => {
            if (error._tag === "PayloadTooLarge") cell.stale = false
          })
        )
      )
      cell.stale = false
      cell.accept(bytes, revision)
      if (after !== before) yield* correctIndex(cell, after, revision)
    })
  })

/**
 * `effect` (a handler, or a reminder's firing), then the save of what it changed: the job's
 * reply waits for the save, and an error of the save is the runtime's (`job.runtimeError`), not
 * the handler's.
 *
 * @internal
 */
export const withCommit = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  cell: DurableCell,
  job: { runtimeError: TroupeError | undefined }
): Effect.Effect<A, unknown, R> => {
  const deadlines = cell.deadlines
  // on the node's timer, a save past its bound interrupts the job, which then fails with the
  // error set here: no timer and no fiber per message
  const bound = deadlines === undefined ?
    undefined :
    <B, F>(operation: string, save: Effect.Effect<B, F>) =>
      Effect.withFiberRuntime<B, F>((fiber) => {
        const deadline = deadlines.add(Duration.toMillis(cell.timeout), () => {
          job.runtimeError ??= cell.timedOut(operation)
          fiber.unsafeInterruptAsFork(fiber.id())
        })
        return Effect.ensuring(save, Effect.sync(() => deadlines.remove(deadline)))
      })
  return Effect.flatMap(effect, (value) =>
    Effect.as(
      Effect.tapError(commit(cell, bound), (error) =>
        Effect.sync(() => {
          job.runtimeError = error
        })),
      value
    ))
}
