/**
 * The state of one kind hosted on one node, shared by the modules that act on it (the job loop,
 * supervision, passivation, the manager): its live instances, the passivations still closing,
 * the payload validators, and the counters behind graceful shutdown and the mailbox gauges. Also
 * the small bookkeeping every one of them needs (settling a job, failing a mailbox, tracking a
 * lifecycle fiber).
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import type * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import type * as ParseResult from "effect/ParseResult"
import * as Runtime from "effect/Runtime"
import type * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { AnyHandler, EntityDefinition } from "../../actors/ActorSystem.ts"
import type { TroupeError } from "../../schema/Errors.ts"
import type { DurableCell, ReminderSink } from "./durable.ts"
import type { Deadlines } from "./deadlines.ts"
import { Fifo } from "./fifo.ts"
import type { Job } from "./job.ts"
import { KindGauges } from "./metrics.ts"

/** One live instance (an actor id, or the service's single instance). @internal */
export class Instance {
  status: "activating" | "ready" | "restarting" | "stopped" = "activating"
  handlers: Readonly<Record<string, AnyHandler>> = {}
  fork: (<A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>) | undefined
  scope: Scope.CloseableScope | undefined
  active = 0
  readonly queue = new Fifo<Job>()
  readonly running = new Set<Job>()
  lastActivity: number
  failures = 0
  driver: Schedule.ScheduleDriver<unknown, unknown> | undefined
  /** activation / restart / idle-timer fibers */
  readonly lifecycle = new Set<Fiber.RuntimeFiber<unknown, unknown>>()
  stopReason = ""
  /** what a job given to the stopped instance fails with */
  stopError: ((job: Job) => TroupeError) | undefined
  draining = false
  /** no longer owned here: passivate as soon as quiescent */
  evicting = false
  /** a durable actor's record, claimed by its build (`Actor.state`, `Actor.reminders`) */
  durable: DurableCell | undefined
  constructor(readonly id: string, now: number) {
    this.lastActivity = now
  }
  get quiescent(): boolean {
    return this.active === 0 && this.queue.length === 0
  }
}

/** @internal */
export interface ManagerOptions {
  readonly nodeId: string
  readonly runtime: Runtime.Runtime<never>
  readonly clock: Clock.Clock
  /** the node's timer: bounds the saves of durable actors without a timer per message */
  readonly deadlines?: Deadlines | undefined
}

/** @internal */
export interface KindState {
  readonly kind: string
  readonly isActor: boolean
  readonly entity: EntityDefinition
  readonly options: ManagerOptions
  readonly instances: Map<string, Instance>
  /** finalizers of passivated instances still running, so a re-activation waits for them */
  readonly closing: Map<string, Deferred.Deferred<void>>
  readonly validators: Map<string, (payload: unknown) => Either.Either<unknown, ParseResult.ParseError>>
  shuttingDown: string | undefined
  inflight: number
  drained: Deferred.Deferred<void> | undefined
  /** jobs waiting in every instance's mailbox */
  queued: number
  readonly gauges: KindGauges
  /** the reminder scheduler of this kind on this node, told of new due times saved here */
  reminderSink: ReminderSink | undefined
  readonly fork: <A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>
}

/** @internal */
export const makeKindState = (entity: EntityDefinition, options: ManagerOptions): KindState => {
  const validators = new Map<string, (payload: unknown) => Either.Either<unknown, ParseResult.ParseError>>()
  for (const [tag, rpc] of entity.definition.rpcs) {
    validators.set(tag, Schema.validateEither(rpc.payloadSchema as Schema.Schema<unknown>))
  }
  return {
    kind: entity.definition.kind,
    isActor: entity.definition._tag === "Actor",
    entity,
    options,
    instances: new Map(),
    closing: new Map(),
    validators,
    shuttingDown: undefined,
    inflight: 0,
    drained: undefined,
    queued: 0,
    gauges: new KindGauges(entity.definition.kind),
    reminderSink: undefined,
    fork: Runtime.runFork(options.runtime)
  }
}

/** The Clock time now, in milliseconds. @internal */
export const now = (state: KindState): number => state.options.clock.unsafeCurrentTimeMillis()

/** Brings the kind's gauges up to date (after any change of mailboxes or instances). @internal */
export const publishGauges = (state: KindState): void => {
  state.gauges.publish(state.queued, state.instances.size)
}

/** One accepted job is over; the last one wakes a waiting shutdown. @internal */
export const settle = (state: KindState): void => {
  state.inflight--
  if (state.inflight === 0 && state.drained !== undefined) {
    Deferred.unsafeDone(state.drained, Exit.void)
  }
}

/** `instance` is no longer live here (passivated, stopped, or never activated). @internal */
export const remove = (state: KindState, instance: Instance): void => {
  if (state.instances.get(instance.id) === instance) state.instances.delete(instance.id)
  publishGauges(state)
}

/** Runs a lifecycle effect of `instance` (activation, restart, idle timer) in a fiber it tracks. @internal */
export const track = (state: KindState, instance: Instance, effect: Effect.Effect<void>): void => {
  const fiber = state.fork(effect)
  if (fiber.unsafePoll() === null) {
    instance.lifecycle.add(fiber)
    fiber.addObserver(() => instance.lifecycle.delete(fiber))
  }
}

/** Ends every job waiting in `instance`'s mailbox with `error(job)`. @internal */
export const failQueued = (state: KindState, instance: Instance, error: (job: Job) => TroupeError): void => {
  const jobs = instance.queue.drain()
  state.queued -= jobs.length
  publishGauges(state)
  for (const job of jobs) {
    job.state = "done"
    settle(state)
    job.onExit({ _tag: "Error", error: error(job) })
  }
}

/** Stops `instance` for good: its waiting jobs fail with `ActorStopped`. @internal */
export const stopInstance = (
  state: KindState,
  instance: Instance,
  reason: string,
  error: (job: Job) => TroupeError
): void => {
  instance.status = "stopped"
  instance.stopReason = reason
  instance.stopError = error
  failQueued(state, instance, error)
}
