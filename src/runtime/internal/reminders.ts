/**
 * Reminders, inside an actor: the handle `Actor.reminders` returns (set, cancel and list change
 * the working copy of the actor's record, so they are part of the message's transaction), and a
 * firing: the job the scheduler sends when a reminder may be due. It runs the reminder's Rpc
 * handler with the stored payload and records the firing (the next due time, or the reminder
 * gone) in the same transaction, so a firing whose handler failed, or whose save was lost,
 * fires again.
 *
 * @internal
 */
import * as RpcSchema from "@effect/rpc/RpcSchema"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type {
  AnyHandler,
  AnyReminders,
  KindDefinition,
  ReminderInfo,
  ReminderSchedule
} from "../../actors/ActorSystem.ts"
import { StateConflict } from "../../schema/Errors.ts"
import type { DurableCell } from "./durable.ts"
import { earliest, firstDue, nextDue, type StoredReminder } from "./reminderIndex.ts"
import { toStream } from "./streams.ts"

const millisOf = (input: Duration.DurationInput, what: string): number => {
  const millis = Duration.toMillis(Duration.decode(input))
  if (!(millis > 0) || !Number.isFinite(millis)) throw new RangeError(`reminder ${what} must be a finite duration > 0`)
  return Math.ceil(millis)
}

const stored = (
  definition: KindDefinition,
  schedule: ReminderSchedule,
  tag: string,
  payload: unknown,
  now: number
): StoredReminder => {
  const rpc = definition.rpcs.get(tag)
  if (rpc === undefined) throw new TypeError(`kind "${definition.kind}" has no Rpc "${tag}" for a reminder to fire`)
  const encoded = Schema.encodeUnknownEither(rpc.payloadSchema as Schema.Schema<unknown, unknown>)(payload)
  if (Either.isLeft(encoded)) {
    throw new TypeError(
      `the payload of reminder ${definition.kind}.${tag} does not encode: ${
        ParseResult.TreeFormatter.formatErrorSync(encoded.left)
      }`
    )
  }
  const every = schedule.every === undefined ? undefined : millisOf(schedule.every, "every")
  const due = schedule.at !== undefined
    ? (schedule.at instanceof Date ? schedule.at.getTime() : schedule.at)
    : schedule.after !== undefined
    ? now + Duration.toMillis(Duration.decode(schedule.after))
    : every !== undefined
    ? now + every
    : undefined
  if (due === undefined || !Number.isFinite(due)) {
    throw new TypeError(`a reminder needs a finite "at", "after" or "every"`)
  }
  return every === undefined ? { tag, payload: encoded.right, due } : { tag, payload: encoded.right, due, every }
}

/**
 * The reminders handle of `cell`, for a kind of `definition`.
 *
 * @internal
 */
export const handleOf = (cell: DurableCell, definition: KindDefinition): AnyReminders => ({
  set: (name, schedule, tag, payload) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync(() => {
        cell.reminders.set(name, stored(definition, schedule, tag, payload, now))
        cell.dirty = true
      })),
  cancel: (name) =>
    Effect.sync(() => {
      if (cell.reminders.delete(name)) cell.dirty = true
    }),
  list: Effect.sync(() =>
    [...cell.reminders].map(([name, reminder]): ReminderInfo => ({
      name,
      tag: reminder.tag,
      dueAt: reminder.due,
      every: reminder.every === undefined ? undefined : Duration.millis(reminder.every)
    })).sort((a, b) => a.dueAt - b.dueAt)
  )
})

/** What a firing tells the scheduler: the actor's next due time as it stands (undefined: none). @internal */
export interface Fired {
  readonly next: number | undefined
}

const runHandler = (
  definition: KindDefinition,
  handler: AnyHandler,
  tag: string,
  payload: unknown
): Effect.Effect<void, unknown, unknown> =>
  Effect.suspend(() => {
    const result = handler(payload, { headers: {} })
    const streamed = Option.isSome(RpcSchema.getStreamSchemas(definition.rpcs.get(tag)!.successSchema.ast))
    return streamed ? Stream.runDrain(toStream(result)) : Effect.asVoid(result)
  })

/**
 * A firing of the reminder of `cell` due first, if it is due: its handler runs with its payload,
 * and the firing is recorded in the working copy (saved by the job loop with the rest of the
 * message). A reminder whose Rpc or payload no longer fits the kind is dropped, with a warning.
 *
 * @internal
 */
export const fire = (
  definition: KindDefinition,
  cell: DurableCell | undefined,
  handlers: Readonly<Record<string, AnyHandler>>
): Effect.Effect<Fired, unknown, unknown> =>
  Effect.gen(function*() {
    if (cell === undefined) return { next: undefined }
    const now = yield* Clock.currentTimeMillis
    const due = firstDue(cell.reminders)
    if (due === undefined || due[1].due > now) {
      // the index said a reminder may be due and this activation's record says not: it may be
      // behind the store (another activation wrote after it loaded, during a membership change).
      // Then it serves no more, and the firing fails, to be tried again on a fresh activation.
      const found = yield* cell.bounded("get", cell.store.get(cell.key))
      if ((Option.isSome(found) ? found.value.revision : 0) !== cell.revision) {
        cell.stale = true
        return yield* Effect.fail(new StateConflict({ kind: cell.kind, id: cell.id, expected: cell.revision }))
      }
      return { next: earliest(cell.reminders) }
    }
    const [name, reminder] = due
    const rpc = definition.rpcs.get(reminder.tag)
    const handler = handlers[reminder.tag]
    const payload = rpc === undefined
      ? undefined
      : Schema.decodeUnknownEither(rpc.payloadSchema as Schema.Schema<unknown, unknown>)(reminder.payload)
    if (rpc === undefined || handler === undefined || payload === undefined || Either.isLeft(payload)) {
      yield* Effect.logWarning(
        `reminder "${name}" of ${definition.kind}/${cell.id} no longer fits its kind (${reminder.tag}); dropped`
      )
    } else {
      yield* runHandler(definition, handler, reminder.tag, payload.right)
    }
    const next = nextDue(reminder, now)
    // the handler may have set or cancelled this very reminder: then that is what stands
    if (cell.reminders.get(name) === reminder) {
      if (next === undefined) cell.reminders.delete(name)
      else cell.reminders.set(name, { ...reminder, due: next })
      cell.dirty = true
    }
    return { next: earliest(cell.reminders) }
  })
