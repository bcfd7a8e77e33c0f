/**
 * Actors and services: typed protocols declared with `@effect/rpc`, hosted by a `Node`.
 *
 * @example
 * ```ts
 * import { Rpc } from "@effect/rpc"
 * import { Effect, Ref, Schema } from "effect"
 * import { Actor } from "troupe"
 *
 * const Counter = Actor.make("Counter", [
 *   Rpc.make("Increment", { payload: { by: Schema.Number }, success: Schema.Number }),
 *   Rpc.make("Get", { success: Schema.Number })
 * ])
 *
 * const CounterLive = Actor.toLayer(Counter, Effect.gen(function* () {
 *   const count = yield* Ref.make(0)
 *   return {
 *     Increment: ({ by }) => Ref.updateAndGet(count, (n) => n + by),
 *     Get: () => Ref.get(count)
 *   }
 * }))
 * ```
 *
 * @since 0.1.0
 */
import type * as Rpc from "@effect/rpc/Rpc"
import type * as RpcSchema from "@effect/rpc/RpcSchema"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"
import type { ActorAddress, Headers } from "../schema/Envelope.ts"
import type { Persistence } from "../layers/Persistence.ts"
import type { AskError, PersistenceError, StateDecodeError, TellError } from "../schema/Errors.ts"
import {
  type ActorSystemShape,
  type AnyHandler,
  type DurableState,
  type Envelope,
  type HandlerContext,
  type KindDefinition,
  type ReminderInfo,
  type Reminders,
  type ReminderSchedule,
  ActorSystem
} from "./ActorSystem.ts"
import * as internalClient from "./internal/client.ts"
import * as internalDurable from "./internal/durable.ts"
import * as internalOptions from "./internal/entityOptions.ts"
import * as internalKind from "./internal/kind.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = internalKind.TypeId

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * A declared kind: an actor (`Actor.make`) or a service (`Actor.service`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Kind<Tag extends "Actor" | "Service", Name extends string, Rpcs extends Rpc.Any>
  extends KindDefinition
{
  readonly [TypeId]: { readonly _Rpcs: (_: never) => Rpcs }
  readonly _tag: Tag
  readonly kind: Name
}

/**
 * An actor kind: one instance per id, one message at a time.
 *
 * @since 0.1.0
 * @category models
 */
export interface Actor<Name extends string, Rpcs extends Rpc.Any> extends Kind<"Actor", Name, Rpcs> {}

/**
 * A service: interchangeable instances, handlers run concurrently.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service<Name extends string, Rpcs extends Rpc.Any> extends Kind<"Service", Name, Rpcs> {}

/**
 * @since 0.1.0
 * @category models
 */
export type Any = Kind<"Actor" | "Service", string, Rpc.Any>

/**
 * The Rpcs of a kind.
 *
 * @since 0.1.0
 * @category type-level
 */
export type Rpcs<K> = K extends Kind<infer _T, infer _N, infer R> ? R : never

/**
 * @since 0.1.0
 * @category guards
 */
export const isKind = (u: unknown): u is Any => typeof u === "object" && u !== null && TypeId in u

/**
 * Declares an actor kind from its Rpcs.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <const Name extends string, const R extends ReadonlyArray<Rpc.Any>>(
  kind: Name,
  rpcs: R
): Actor<Name, R[number]> => internalKind.makeKind("Actor", kind, rpcs) as Actor<Name, R[number]>

/**
 * Declares a service from its Rpcs.
 *
 * @since 0.1.0
 * @category constructors
 */
export const service = <const Name extends string, const R extends ReadonlyArray<Rpc.Any>>(
  kind: Name,
  rpcs: R
): Service<Name, R[number]> => internalKind.makeKind("Service", kind, rpcs) as Service<Name, R[number]>

/**
 * Streamed request bodies (`streamOf`, `Upload`), defined in `StreamOf.ts`.
 *
 * @since 0.1.0
 * @category schemas
 */
export { streamedField, type StreamOf, streamOf, StreamOfAnnotationId, Upload } from "./StreamOf.ts"

/**
 * The address of the instance a handler belongs to.
 *
 * @since 0.1.0
 * @category context
 */
export class CurrentAddress extends Context.Tag("troupe/Actor/CurrentAddress")<CurrentAddress, ActorAddress>() {}

/**
 * The handlers of a kind: one per Rpc tag.
 *
 * @since 0.1.0
 * @category models
 */
export type Handlers<R extends Rpc.Any, Env> = {
  readonly [Tag in R["_tag"]]: (
    payload: Rpc.Payload<Rpc.ExtractTag<R, Tag>>,
    context: HandlerContext
  ) => Rpc.ResultFrom<Rpc.ExtractTag<R, Tag>, Env>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ToLayerOptions {
  /** an idle actor is passivated (its scope closed) after this; default 5 minutes */
  readonly maxIdleTime?: Duration.DurationInput | undefined
  /** messages waiting beyond this fail with `MailboxFull`; default 1024 */
  readonly mailboxCapacity?: number | undefined
  /** handlers running at once: always 1 for actors; default 64 for services */
  readonly concurrency?: number | undefined
  /**
   * restarts after a defect; when the schedule ends the actor stops. Default: exponential from
   * 100 ms, at most 5 consecutive restarts.
   */
  readonly supervision?: Schedule.Schedule<unknown, unknown> | undefined
  /**
   * a durable actor's bound on each store operation (loading its record, saving it): past it the
   * message fails with `PersistenceError`. Keep it below the ask timeout. Default 5 seconds.
   * (@since 0.5.0)
   */
  readonly persistenceTimeout?: Duration.DurationInput | undefined
}

/**
 * The default supervision: exponential backoff from 100 ms, at most 5 consecutive restarts.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultSupervision: Schedule.Schedule<unknown, unknown> = internalOptions.defaultSupervision

/**
 * Hosts a kind on the node: `build` runs once per instance (per id for actors, once per node for
 * services) with `CurrentAddress` and the instance's `Scope`, and returns the handlers. State
 * lives in what `build` allocates; finalizers added to the scope run on passivation, restart
 * and shutdown.
 *
 * @since 0.1.0
 * @category layers
 */
export const toLayer = <K extends Any, E = never, R = never>(
  kind: K,
  build:
    | Handlers<Rpcs<NoInfer<K>>, R>
    | Effect.Effect<Handlers<Rpcs<NoInfer<K>>, R>, E, R | CurrentAddress | Scope.Scope>,
  options?: ToLayerOptions
): Layer.Layer<never, never, ActorSystem | Exclude<R, CurrentAddress | Scope.Scope>> => {
  const resolved = internalOptions.resolveOptions(kind, options)
  return Layer.scopedDiscard(
    Effect.gen(function*() {
      const system = yield* ActorSystem
      const context = yield* Effect.context<never>()
      yield* system.register({
        definition: kind,
        build: (Effect.isEffect(build) ? build : Effect.succeed(build)) as Effect.Effect<
          Readonly<Record<string, AnyHandler>>,
          unknown,
          unknown
        >,
        context,
        options: resolved
      })
    })
  )
}

/**
 * @since 0.1.0
 * @category models
 */
export interface AskOptions {
  /** overrides the node's default ask timeout (30 seconds) */
  readonly timeout?: Duration.DurationInput | undefined
  readonly headers?: Headers | undefined
}

/**
 * @since 0.1.0
 * @category type ids
 */
export const AskTypeId: unique symbol = internalClient.AskTypeId

/**
 * An ask: an Effect that sends the message and waits for the reply. Pass it to `Actor.tell`
 * instead to send it without waiting.
 *
 * @since 0.1.0
 * @category models
 */
export interface Ask<A, E> extends Effect.Effect<A, E> {
  readonly [AskTypeId]: { readonly envelope: Envelope; readonly system: ActorSystemShape }
}

/**
 * The typed client of one actor (or of a service).
 *
 * @since 0.1.0
 * @category models
 */
export type Client<R extends Rpc.Any> = {
  readonly [Current in R as Current["_tag"]]: [Rpc.SuccessSchema<Current>] extends
    [RpcSchema.Stream<infer Item, infer Failure>]
    ? (payload: Rpc.Payload<Current>, options?: AskOptions) => Stream.Stream<
      Item["Type"],
      Failure["Type"] | Rpc.Error<Current> | AskError
    >
    : (payload: Rpc.Payload<Current>, options?: AskOptions) => Ask<Rpc.Success<Current>, Rpc.Error<Current> | AskError>
}

/**
 * The client of a kind: for an actor, a function from id to typed client; for a service, the
 * typed client itself.
 *
 * @since 0.1.0
 * @category clients
 */
export const client = <K extends Any>(
  kind: K
): Effect.Effect<
  K extends Kind<"Service", infer _N, infer R> ? Client<R> : (id: string) => Client<Rpcs<K>>,
  never,
  ActorSystem
> =>
  Effect.map(ActorSystem, (system) =>
    (kind._tag === "Service"
      ? internalClient.makeClient(system, kind, "")
      : (id: string) => internalClient.makeClient(system, kind, id)) as never)

/**
 * Sends a message without waiting for its reply (at most once). Fails only when the message is
 * not accepted (unknown kind, full mailbox, stopped actor, transport error).
 *
 * @example
 * ```ts
 * yield* Actor.tell(counter("c-1").Increment({ by: 1 }))
 * ```
 *
 * @since 0.1.0
 * @category clients
 */
export const tell = <A, E>(ask: Ask<A, E>): Effect.Effect<void, TellError> => {
  const { envelope, system } = ask[AskTypeId]
  return system.tell(envelope)
}

/**
 * A durable actor's state: a working copy of the stored value, for the message being handled.
 *
 * @since 0.5.0
 * @category models
 */
export type State<A> = DurableState<A>

/**
 * Makes the actor durable (in an actor kind's build): loads its stored value (decoded with
 * `schema`, or `initial()`) and returns a handle on a working copy. Each message is a
 * transaction: a handler's changes are stored (compare-and-set on the revision this activation
 * loaded or last wrote) before its reply is sent, and discarded if it fails, dies or is
 * interrupted. A value that no longer decodes fails the activation with `StateDecodeError` (and is
 * kept); an unreachable store with `PersistenceError`. Needs `Persistence`. See docs/durable.md.
 *
 * @example
 * ```ts
 * const state = yield* Actor.state(Schema.Struct({ balance: Schema.Number }), { initial: () => ({ balance: 0 }) })
 * // Deposit: ({ amount }) => state.modify((s) => [s.balance + amount, { balance: s.balance + amount }])
 * ```
 *
 * @since 0.5.0
 * @category durable
 */
export const state: <A, I>(
  schema: Schema.Schema<A, I>,
  options: { readonly initial: () => A }
) => Effect.Effect<State<A>, StateDecodeError | PersistenceError, Persistence> = internalDurable.state

/** Reminders: the typed handle, a schedule, one reminder as listed (@since 0.5.0) */
export type { ReminderInfo, Reminders, ReminderSchedule }

/**
 * The reminders of the durable actor being built (pass its kind): stored with its state, fired
 * at least once by the id's owner as messages of the kind's Rpcs, activating it if needed. The
 * handlers they fire must be idempotent (a firing not recorded fires again).
 *
 * @example
 * ```ts
 * const reminders = yield* Actor.reminders(Account)
 * // in a handler:
 * yield* reminders.set("bill", { every: "30 days" }, "Bill", { plan: "pro" })
 * ```
 *
 * @since 0.5.0
 * @category durable
 */
export const reminders = <K extends Any>(
  kind: K
): Effect.Effect<Reminders<Rpcs<K>>, StateDecodeError | PersistenceError, Persistence> =>
  internalDurable.reminders(kind) as Effect.Effect<
    Reminders<Rpcs<K>>,
    StateDecodeError | PersistenceError,
    Persistence
  >
