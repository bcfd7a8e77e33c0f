/**
 * Hosting of one kind on one node: the `EntityManager` that node wiring talks to. It activates an
 * instance per id, admits jobs to its bounded mailbox, cancels them for callers that gave up, and
 * shuts the kind down gracefully. The pieces it wires live beside it: `kindState.ts` (the shared
 * state), `job.ts` (a job and how it ended), `jobLoop.ts` (running jobs), `supervision.ts`
 * (activation and restarts) and `passivation.ts` (idle and evicted instances).
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Exit from "effect/Exit"
import type { EntityDefinition } from "../../actors/ActorSystem.ts"
import { ActorStopped, DecodeError, MailboxFull } from "../../schema/Errors.ts"
import type { ReminderSink } from "./durable.ts"
import type { Job } from "./job.ts"
import { dropped, drain } from "./jobLoop.ts"
import {
  Instance,
  type KindState,
  makeKindState,
  type ManagerOptions,
  now,
  publishGauges,
  stopInstance,
  track
} from "./kindState.ts"
import { evict, idleTimer } from "./passivation.ts"
import { activate } from "./supervision.ts"

export { type Job, type JobExit, makeJob } from "./job.ts"
export type { ManagerOptions } from "./kindState.ts"

/** @internal */
export class EntityManager {
  readonly kind: string
  readonly isActor: boolean
  private readonly state: KindState

  constructor(readonly entity: EntityDefinition, options: ManagerOptions) {
    this.state = makeKindState(entity, options)
    this.kind = this.state.kind
    this.isActor = this.state.isActor
  }

  /** The number of live instances (for metrics and tests). */
  get size(): number {
    return this.state.instances.size
  }

  /** Whether an instance for `id` is currently active. */
  isActive(id: string): boolean {
    const instance = this.state.instances.get(id)
    return instance !== undefined && instance.status !== "stopped"
  }

  /**
   * Hands a job to the instance for `id`, activating it if needed. The job's `onExit` is
   * called exactly once (synchronously for a rejected job).
   */
  deliver(id: string, job: Job): void {
    const state = this.state
    if (state.shuttingDown !== undefined) {
      return job.onExit({ _tag: "Error", error: new ActorStopped({ kind: this.kind, id, reason: state.shuttingDown }) })
    }
    const rpc = job.run === undefined ? this.entity.definition.rpcs.get(job.tag) : undefined
    if (job.run === undefined && rpc === undefined) {
      return job.onExit({
        _tag: "Error",
        error: new DecodeError({
          what: `${this.kind}.${job.tag}`,
          issue: `kind "${this.kind}" has no Rpc "${job.tag}"`
        })
      })
    }
    let instance = state.instances.get(id)
    if (instance === undefined) {
      instance = new Instance(id, now(state))
      state.instances.set(id, instance)
      this.startActivation(instance)
    }
    if (instance.status === "stopped") {
      return job.onExit({
        _tag: "Error",
        error: instance.stopError?.(job) ?? new ActorStopped({ kind: this.kind, id, reason: instance.stopReason })
      })
    }
    const canRunNow = instance.status === "ready" && instance.active < this.entity.options.concurrency &&
      instance.queue.length === 0
    if (!canRunNow && instance.queue.length >= this.entity.options.mailboxCapacity) {
      return job.onExit({
        _tag: "Error",
        error: new MailboxFull({
          kind: this.kind,
          id,
          capacity: this.entity.options.mailboxCapacity,
          queue: "mailbox"
        })
      })
    }
    job.instance = instance
    job.state = "queued"
    state.inflight++
    state.queued++
    instance.queue.push(job)
    drain(state, instance)
  }

  /**
   * The caller gave up: drop the job if it waits, interrupt its handler if it runs. The
   * returned effect completes once the handler's finalizers have run.
   */
  cancel(job: Job): Effect.Effect<void> {
    return Effect.suspend(() => {
      const state = job.state
      job.state = "cancelled"
      if (state === "queued") {
        if (job.instance?.queue.remove(job)) dropped(this.state, job)
        return Effect.void
      }
      if (state === "running" && job.fiber !== undefined) {
        return Effect.asVoid(Fiber.interrupt(job.fiber))
      }
      return Effect.void
    })
  }

  /** Like `cancel`, from a callback: `then` runs once the handler is gone. */
  unsafeCancel(job: Job, then: () => void): void {
    const state = job.state
    job.state = "cancelled"
    if (state === "queued") {
      if (job.instance?.queue.remove(job)) dropped(this.state, job)
      return then()
    }
    if (state === "running" && job.fiber !== undefined) {
      const fiber = job.fiber
      fiber.unsafeInterruptAsFork(fiber.id())
      return fiber.addObserver(() => then())
    }
    then()
  }

  /** Where this kind's durable actors report a new next due time of their reminders. */
  set reminderSink(sink: ReminderSink | undefined) {
    this.state.reminderSink = sink
  }

  /**
   * Passivates every actor for which `disowned(id)` holds (placement moved it to another
   * node): idle ones at once, busy ones when their work is done.
   */
  evict(disowned: (id: string) => boolean): void {
    evict(this.state, disowned)
  }

  private startActivation(instance: Instance): void {
    const state = this.state
    track(
      state,
      instance,
      Effect.gen(function*() {
        if (!(yield* activate(state, instance))) return
        if (state.isActor && Duration.isFinite(state.entity.options.maxIdleTime)) {
          track(state, instance, idleTimer(state, instance))
        }
        drain(state, instance)
      })
    )
  }

  /**
   * Graceful shutdown: refuse new work, let accepted work finish for up to `timeout`, then
   * interrupt what is left (its callers get `ActorStopped`) and close every instance's scope.
   */
  shutdown(timeout: Duration.Duration): Effect.Effect<void> {
    const state = this.state
    return Effect.gen(function*() {
      state.shuttingDown = "node is shutting down"
      if (state.inflight > 0) {
        const drained = yield* Deferred.make<void>()
        state.drained = drained
        // finalizers run uninterruptibly: the wait must be interruptible for the deadline to win
        yield* Effect.interruptible(Deferred.await(drained)).pipe(Effect.timeoutOption(timeout))
      }
      const instances = [...state.instances.values()]
      state.instances.clear()
      publishGauges(state)
      yield* Effect.forEach(instances, (instance) => stopRunning(state, instance), { discard: true })
      yield* Effect.forEach([...state.closing.values()], Deferred.await, { discard: true })
    })
  }
}

/** The shutdown deadline passed: fail `instance`'s waiting jobs, interrupt its running ones, close it. */
const stopRunning = (state: KindState, instance: Instance): Effect.Effect<void> =>
  Effect.gen(function*() {
    const reason = new ActorStopped({
      kind: state.kind,
      id: instance.id,
      reason: "node shut down before the handler finished"
    })
    stopInstance(state, instance, reason.reason, () => reason)
    for (const job of instance.running) job.stoppedBy = reason
    yield* Fiber.interruptAll([...instance.running].flatMap((job) => (job.fiber ? [job.fiber] : [])))
    yield* Fiber.interruptAll([...instance.lifecycle])
    if (instance.scope !== undefined) {
      const scope = instance.scope
      instance.scope = undefined
      yield* Scope.close(scope, Exit.void)
    }
  })
