/**
 * The contract between actor definitions (this folder) and the runtime that hosts them
 * (`src/runtime/Node.ts` implements it). Users rarely touch it directly: `Actor.toLayer`
 * registers through it and `Actor.client` asks through it.
 *
 * @since 0.1.0
 */
import type * as Rpc from "@effect/rpc/Rpc"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Schedule from "effect/Schedule"
import type * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { PersistenceShape } from "../layers/Persistence.ts"
import type { Headers } from "../schema/Envelope.ts"
import type { PersistenceError, StateDecodeError, TellError } from "../schema/Errors.ts"

/**
 * A declared kind as the runtime sees it.
 *
 * @since 0.1.0
 * @category models
 */
export interface KindDefinition {
  readonly _tag: "Actor" | "Service"
  readonly kind: string
  readonly rpcs: ReadonlyMap<string, Rpc.AnyWithProps>
}

/**
 * What a handler receives besides its payload.
 *
 * @since 0.1.0
 * @category models
 */
export interface HandlerContext {
  readonly headers: Headers
}

/**
 * @since 0.1.0
 * @category models
 */
export type AnyHandler = (payload: unknown, context: HandlerContext) => Effect.Effect<unknown, unknown, unknown>

/**
 * Options of a hosted kind, resolved (every default applied).
 *
 * @since 0.1.0
 * @category models
 */
export interface EntityOptions {
  readonly maxIdleTime: Duration.Duration
  readonly mailboxCapacity: number
  readonly concurrency: number
  readonly supervision: Schedule.Schedule<unknown, unknown>
  /** the bound of each store operation of a durable actor (@since 0.5.0) */
  readonly persistenceTimeout: Duration.Duration
}

/**
 * A kind plus how to build one instance of it.
 *
 * @since 0.1.0
 * @category models
 */
export interface EntityDefinition {
  readonly definition: KindDefinition
  /** builds the handlers of one instance; runs with `context` + `CurrentAddress` + `Scope` */
  readonly build: Effect.Effect<Readonly<Record<string, AnyHandler>>, unknown, unknown>
  readonly context: Context.Context<never>
  readonly options: EntityOptions
}

/**
 * One message to one actor or service.
 *
 * @since 0.1.0
 * @category models
 */
export interface Envelope {
  readonly definition: KindDefinition
  readonly id: string
  readonly tag: string
  readonly payload: unknown
  readonly timeout?: Duration.DurationInput | undefined
  readonly headers?: Headers | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ActorSystemShape {
  readonly nodeId: string
  /** Hosts a kind on this node until the scope closes (graceful drain on close). */
  readonly register: (entity: EntityDefinition) => Effect.Effect<void, never, Scope.Scope>
  /** Request/reply. Fails with the Rpc's error or an `AskError`. */
  readonly ask: (envelope: Envelope) => Effect.Effect<unknown, unknown>
  /** Request with a streamed reply: the remote producer runs while the stream is pulled. */
  readonly stream: (envelope: Envelope) => Stream.Stream<unknown, unknown>
  /** Fire-and-forget: fails only if the message is not accepted. */
  readonly tell: (envelope: Envelope) => Effect.Effect<void, TellError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class ActorSystem extends Context.Tag("troupe/ActorSystem")<ActorSystem, ActorSystemShape>() {}

/**
 * A durable actor's state, as its handlers see it (`Actor.state`): a working copy of the stored
 * value. What a handler changes is stored when the handler succeeds, before its reply is sent,
 * and discarded when it fails, dies or is interrupted.
 *
 * @since 0.5.0
 * @category models
 */
export interface DurableState<A> {
  /** the value as this message sees it */
  readonly get: Effect.Effect<A>
  readonly set: (value: A) => Effect.Effect<void>
  readonly update: (f: (value: A) => A) => Effect.Effect<void>
  /** computes a result and the new value at once */
  readonly modify: <B>(f: (value: A) => readonly [B, A]) => Effect.Effect<B>
}

/**
 * When a reminder is due: `at` a time (a `Date` or epoch milliseconds of the `Clock`), or
 * `after` a delay, and then `every` period if given. `{ every }` alone is first due one period
 * from now.
 *
 * @since 0.5.0
 * @category models
 */
export interface ReminderSchedule {
  readonly every?: Duration.DurationInput | undefined
  readonly at?: Date | number | undefined
  readonly after?: Duration.DurationInput | undefined
}

/**
 * One reminder as `list` shows it.
 *
 * @since 0.5.0
 * @category models
 */
export interface ReminderInfo {
  readonly name: string
  /** the Rpc it fires */
  readonly tag: string
  /** when it is next due, in epoch milliseconds of the `Clock` */
  readonly dueAt: number
  /** its period, if it repeats */
  readonly every: Duration.Duration | undefined
}

/**
 * The reminders of one durable actor, untyped (`Actor.reminders(kind)` gives the typed view).
 *
 * @since 0.5.0
 * @category models
 */
export interface AnyReminders {
  readonly set: (name: string, schedule: ReminderSchedule, tag: string, payload: unknown) => Effect.Effect<void>
  readonly cancel: (name: string) => Effect.Effect<void>
  readonly list: Effect.Effect<ReadonlyArray<ReminderInfo>>
}

/**
 * A durable actor's reminders, typed by its kind's Rpcs: a reminder fires a message of one of
 * them, with its payload, when it is due.
 *
 * @since 0.5.0
 * @category models
 */
export interface Reminders<R extends Rpc.Any> {
  /**
   * sets reminder `name` (replacing one of the same name) to send `tag` with `payload` when
   * `schedule` says; part of the message's transaction, like a change of state
   */
  readonly set: <const Tag extends R["_tag"]>(
    name: string,
    schedule: ReminderSchedule,
    tag: Tag,
    payload: Rpc.Payload<Rpc.ExtractTag<R, Tag>>
  ) => Effect.Effect<void>
  /** removes reminder `name` (nothing if there is none) */
  readonly cancel: (name: string) => Effect.Effect<void>
  /** the reminders as this message sees them */
  readonly list: Effect.Effect<ReadonlyArray<ReminderInfo>>
}

/**
 * What the runtime gives the build of one instance so that it can be durable: its stored record
 * (state and reminders) is loaded from `store` by the first of `state` and `reminders`, and
 * saved by the runtime after each message that changed it.
 *
 * @since 0.5.0
 * @category models
 */
export interface Activation {
  readonly definition: KindDefinition
  readonly id: string
  readonly state: <A, I>(
    schema: Schema.Schema<A, I>,
    initial: () => A,
    store: PersistenceShape | undefined
  ) => Effect.Effect<DurableState<A>, StateDecodeError | PersistenceError>
  readonly reminders: (
    store: PersistenceShape | undefined
  ) => Effect.Effect<AnyReminders, StateDecodeError | PersistenceError>
}

/**
 * The activation being built (present only while the runtime builds an instance).
 *
 * @since 0.5.0
 * @category tags
 */
export class CurrentActivation extends Context.Tag("troupe/ActorSystem/CurrentActivation")<
  CurrentActivation,
  Activation
>() {}
