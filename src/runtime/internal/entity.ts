/**
 * Hosting of one kind on one node: activation per id, the bounded mailbox, one-at-a-time (or
 * bounded concurrent, for services) execution, supervision with restarts, passivation and
 * graceful shutdown.
 *
 * The mailbox is a plain FIFO of jobs guarded by a slot counter; a job runs in a fiber of its own
 * (started synchronously, no scheduler hop) so that the caller can interrupt exactly that
 * handler. Every job ends with exactly one call of its `onExit` unless its caller cancelled it.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Runtime from "effect/Runtime"
import * as RuntimeFlags from "effect/RuntimeFlags"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { CurrentAddress } from "../../actors/Actor.ts"
import type { AnyHandler, EntityDefinition } from "../../actors/ActorSystem.ts"
import type { Headers } from "../../schema/Envelope.ts"
import { ActorStopped, DecodeError, MailboxFull, RemoteDefect, type TroupeError } from "../../schema/Errors.ts"
import { continueTrace, KindGauges } from "./metrics.ts"

/** How a job ended: the handler's value, its declared error, or a runtime error. @internal */
export type JobExit =
  | { readonly _tag: "Success"; readonly value: unknown }
  | { readonly _tag: "Failure"; readonly error: unknown }
  | { readonly _tag: "Error"; readonly error: TroupeError }

/** @internal */
export interface Job {
  readonly tag: string
  readonly payload: unknown
  readonly headers: Headers
  readonly onExit: (exit: JobExit) => void
  /**
   * called instead of `onExit` once a cancelled job is gone (dropped from its mailbox, or its
   * handler interrupted and finished): whoever made the job releases what it holds for it
   */
  onCancelled: (() => void) | undefined
  /** queued → running → done; cancelled when the caller gave up */
  state: "new" | "queued" | "running" | "done" | "cancelled"
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined
  instance: Instance | undefined
  /** set when the runtime (not the caller) interrupts the job */
  stoppedBy: ActorStopped | undefined
  /** the payload was decoded with its schema already (it came from the wire) */
  validated: boolean
  /** turns what the handler returned into the job's effect (streamed replies) */
  consume: ((result: unknown) => Effect.Effect<unknown, unknown, unknown>) | undefined
}

/** @internal */
export const makeJob = (
  tag: string,
  payload: unknown,
  headers: Headers,
  onExit: (exit: JobExit) => void,
  validated = false
): Job => ({
  tag,
  payload,
  headers,
  onExit,
  state: "new",
  fiber: undefined,
  instance: undefined,
  stoppedBy: undefined,
  validated,
  consume: undefined,
  onCancelled: undefined
})

/** A FIFO with O(1) amortised push/shift. @internal */
class Fifo<A> {
  private items: Array<A | undefined> = []
  private head = 0
  get length(): number {
    return this.items.length - this.head
  }
  push(item: A): void {
    this.items.push(item)
  }
  shift(): A | undefined {
    if (this.head >= this.items.length) return undefined
    const item = this.items[this.head]
    this.items[this.head++] = undefined
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }
  remove(item: A): boolean {
    const index = this.items.indexOf(item, this.head)
    if (index < 0) return false
    this.items.splice(index, 1)
    return true
  }
  drain(): Array<A> {
    const rest = this.items.slice(this.head) as Array<A>
    this.items = []
    this.head = 0
    return rest
  }
}

/** One live instance (an actor id, or the service's single instance). @internal */
class Instance {
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
  draining = false
  /** no longer owned here: passivate as soon as quiescent */
  evicting = false
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
}

/** @internal */
export class EntityManager {
  readonly kind: string
  readonly isActor: boolean
  private readonly instances = new Map<string, Instance>()
  /** finalizers of passivated instances still running, so a re-activation waits for them */
  private readonly closing = new Map<string, Deferred.Deferred<void>>()
  private readonly validators = new Map<string, (payload: unknown) => Either.Either<unknown, ParseResult.ParseError>>()
  private shuttingDown: string | undefined
  private inflight = 0
  private drained: Deferred.Deferred<void> | undefined
  /** jobs waiting in every instance's mailbox */
  private queued = 0
  private readonly gauges: KindGauges
  private readonly fork: <A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>

  constructor(readonly entity: EntityDefinition, private readonly options: ManagerOptions) {
    this.kind = entity.definition.kind
    this.isActor = entity.definition._tag === "Actor"
    this.fork = Runtime.runFork(options.runtime)
    this.gauges = new KindGauges(this.kind)
    for (const [tag, rpc] of entity.definition.rpcs) {
      this.validators.set(tag, Schema.validateEither(rpc.payloadSchema as Schema.Schema<unknown>))
    }
  }

  /** The number of live instances (for metrics and tests). */
  get size(): number {
    return this.instances.size
  }

  /** Brings the kind's gauges up to date (after any change of mailboxes or instances). */
  private publishGauges(): void {
    this.gauges.publish(this.queued, this.instances.size)
  }

  /** Whether an instance for `id` is currently active. */
  isActive(id: string): boolean {
    const instance = this.instances.get(id)
    return instance !== undefined && instance.status !== "stopped"
  }

  /**
   * Hands a job to the instance for `id`, activating it if needed. The job's `onExit` is
   * called exactly once (synchronously for a rejected job).
   */
  deliver(id: string, job: Job): void {
    if (this.shuttingDown !== undefined) {
      return job.onExit({ _tag: "Error", error: new ActorStopped({ kind: this.kind, id, reason: this.shuttingDown }) })
    }
    const rpc = this.entity.definition.rpcs.get(job.tag)
    if (rpc === undefined) {
      return job.onExit({
        _tag: "Error",
        error: new DecodeError({
          what: `${this.kind}.${job.tag}`,
          issue: `kind "${this.kind}" has no Rpc "${job.tag}"`
        })
      })
    }
    let instance = this.instances.get(id)
    if (instance === undefined) {
      instance = new Instance(id, this.now())
      this.instances.set(id, instance)
      this.startActivation(instance)
    }
    if (instance.status === "stopped") {
      return job.onExit({
        _tag: "Error",
        error: new ActorStopped({ kind: this.kind, id, reason: instance.stopReason })
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
    this.inflight++
    this.queued++
    instance.queue.push(job)
    this.drain(instance)
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
        if (job.instance?.queue.remove(job)) this.dropped(job)
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
      if (job.instance?.queue.remove(job)) this.dropped(job)
      return then()
    }
    if (state === "running" && job.fiber !== undefined) {
      const fiber = job.fiber
      fiber.unsafeInterruptAsFork(fiber.id())
      return fiber.addObserver(() => then())
    }
    then()
  }

  private now(): number {
    return this.options.clock.unsafeCurrentTimeMillis()
  }

  /** A waiting job left its mailbox without running (its caller gave up). */
  private dropped(job: Job): void {
    this.queued--
    this.publishGauges()
    this.settle()
    job.onCancelled?.()
  }

  private settle(): void {
    this.inflight--
    if (this.inflight === 0 && this.drained !== undefined) {
      Deferred.unsafeDone(this.drained, Exit.void)
    }
  }

  private drain(instance: Instance): void {
    // a handler that completes synchronously re-enters through `finish`; the outer loop goes on
    if (instance.draining) return
    instance.draining = true
    try {
      while (
        instance.status === "ready" && instance.active < this.entity.options.concurrency && instance.queue.length > 0
      ) {
        this.queued--
        this.start(instance, instance.queue.shift()!)
      }
    } finally {
      instance.draining = false
    }
    this.publishGauges()
  }

  private start(instance: Instance, job: Job): void {
    const handler = instance.handlers[job.tag]!
    const validated = job.validated ? undefined : this.validators.get(job.tag)!(job.payload)
    if (validated !== undefined && Either.isLeft(validated)) {
      job.state = "done"
      this.settle()
      return job.onExit({
        _tag: "Error",
        error: new DecodeError({
          what: `payload of ${this.kind}.${job.tag}`,
          issue: ParseResult.TreeFormatter.formatErrorSync(validated.left)
        })
      })
    }
    job.state = "running"
    instance.active++
    instance.running.add(job)
    let effect: Effect.Effect<unknown, unknown, unknown>
    try {
      effect = handler(job.payload, { headers: job.headers })
    } catch (defect) {
      effect = Exit.die(defect)
    }
    if (job.consume !== undefined) effect = job.consume(effect)
    // a handler that answers with a value it already has (`Effect.succeed`, `Effect.fail`) is an
    // Exit: nothing to run, nothing to interrupt, no fiber needed
    if (Exit.isExit(effect)) return this.finish(instance, job, effect as Exit.Exit<unknown, unknown>)
    effect = continueTrace(this.kind, instance.id, job.tag, job.headers, effect)
    const fiber = instance.fork!(effect as Effect.Effect<unknown, unknown>)
    job.fiber = fiber
    fiber.addObserver((exit) => this.finish(instance, job, exit))
  }

  private finish(instance: Instance, job: Job, exit: Exit.Exit<unknown, unknown>): void {
    instance.active--
    instance.running.delete(job)
    instance.lastActivity = this.now()
    const cancelled = job.state === "cancelled"
    job.state = "done"
    let result: JobExit
    if (Exit.isSuccess(exit)) {
      result = { _tag: "Success", value: exit.value }
      if (instance.failures > 0) {
        instance.failures = 0
        instance.driver = undefined
      }
    } else {
      const failure = Cause.failureOption(exit.cause)
      if (Option.isSome(failure)) {
        result = { _tag: "Failure", error: failure.value }
      } else if (Cause.isInterruptedOnly(exit.cause)) {
        result = {
          _tag: "Error",
          error: job.stoppedBy ?? new ActorStopped({ kind: this.kind, id: instance.id, reason: "handler interrupted" })
        }
      } else {
        const defect = Cause.squash(exit.cause)
        result = {
          _tag: "Error",
          error: new RemoteDefect({
            kind: this.kind,
            id: instance.id,
            tag: job.tag,
            node: this.options.nodeId,
            defect: defect instanceof Error ? defect.message : String(defect),
            ...(defect instanceof Error && defect.stack !== undefined ? { stack: defect.stack } : {})
          })
        }
        if (this.isActor && instance.status === "ready" && this.shuttingDown === undefined) {
          this.restart(instance, exit.cause)
        }
      }
    }
    this.settle()
    if (cancelled) job.onCancelled?.()
    else job.onExit(result)
    this.drain(instance)
    if (instance.evicting) this.evictIfQuiescent(instance)
  }

  /**
   * Passivates every actor for which `disowned(id)` holds (placement moved it to another
   * node): idle ones at once, busy ones when their work is done.
   */
  evict(disowned: (id: string) => boolean): void {
    for (const instance of this.instances.values()) {
      if (instance.status === "ready" && !instance.evicting && disowned(instance.id)) {
        instance.evicting = true
        this.evictIfQuiescent(instance)
      }
    }
  }

  private evictIfQuiescent(instance: Instance): void {
    if (instance.quiescent && instance.status === "ready" && this.shuttingDown === undefined) {
      this.track(instance, this.passivate(instance))
    }
  }

  private track(instance: Instance, effect: Effect.Effect<void>): void {
    const fiber = this.fork(effect)
    if (fiber.unsafePoll() === null) {
      instance.lifecycle.add(fiber)
      fiber.addObserver(() => instance.lifecycle.delete(fiber))
    }
  }

  /** Builds the handlers into `instance`; true on success. */
  private build(instance: Instance): Effect.Effect<boolean> {
    return Effect.gen(this, function*() {
      const scope = yield* Scope.make()
      const context = Context.add(
        Context.add(this.entity.context, CurrentAddress, { kind: this.kind, id: instance.id }),
        Scope.Scope,
        scope
      )
      const exit = yield* Effect.exit(Effect.provide(this.entity.build, context) as Effect.Effect<
        Readonly<Record<string, AnyHandler>>,
        unknown
      >)
      if (Exit.isFailure(exit)) {
        yield* Scope.close(scope, exit)
        yield* Effect.logWarning(`activation of ${this.kind}/${instance.id} failed`, exit.cause)
        return false
      }
      instance.handlers = exit.value
      instance.scope = scope
      instance.fork = Runtime.runFork(Runtime.make({
        context,
        fiberRefs: this.options.runtime.fiberRefs,
        // one fiber per message: keep fiber-lifetime metrics off this path
        runtimeFlags: RuntimeFlags.disable(this.options.runtime.runtimeFlags, RuntimeFlags.RuntimeMetrics)
      }))
      instance.lastActivity = this.now()
      instance.status = "ready"
      return true
    })
  }

  private startActivation(instance: Instance): void {
    this.track(
      instance,
      Effect.gen(this, function*() {
        const previous = this.closing.get(instance.id)
        if (previous !== undefined) yield* Deferred.await(previous)
        const ok = yield* this.build(instance)
        if (!ok) {
          this.remove(instance)
          instance.status = "stopped"
          instance.stopReason = "activation failed"
          this.failQueued(instance, (job) =>
            new RemoteDefect({
              kind: this.kind,
              id: instance.id,
              tag: job.tag,
              node: this.options.nodeId,
              defect: "activation failed (the build effect of the kind failed or died)"
            }))
          return
        }
        if (this.isActor && Duration.isFinite(this.entity.options.maxIdleTime)) {
          this.track(instance, this.idleTimer(instance))
        }
        this.drain(instance)
      })
    )
  }

  private restart(instance: Instance, cause: Cause.Cause<unknown>): void {
    instance.status = "restarting"
    instance.failures++
    const scope = instance.scope
    instance.scope = undefined
    this.track(
      instance,
      Effect.gen(this, function*() {
        if (scope !== undefined) yield* Scope.close(scope, Exit.failCause(cause))
        instance.driver ??= yield* Schedule.driver(this.entity.options.supervision)
        while (true) {
          const next = yield* Effect.either(instance.driver.next(undefined))
          if (Either.isLeft(next)) {
            yield* Effect.logWarning(
              `${this.kind}/${instance.id} stopped after ${instance.failures} consecutive failures`
            )
            return this.stop(instance, `supervision gave up after ${instance.failures} consecutive failures`)
          }
          if (yield* this.build(instance)) {
            yield* Effect.logInfo(`${this.kind}/${instance.id} restarted (${instance.failures} consecutive failures)`)
            return this.drain(instance)
          }
          instance.failures++
        }
      })
    )
  }

  private stop(instance: Instance, reason: string): void {
    instance.status = "stopped"
    instance.stopReason = reason
    this.failQueued(instance, () => new ActorStopped({ kind: this.kind, id: instance.id, reason }))
  }

  private failQueued(instance: Instance, error: (job: Job) => TroupeError): void {
    const jobs = instance.queue.drain()
    this.queued -= jobs.length
    this.publishGauges()
    for (const job of jobs) {
      job.state = "done"
      this.settle()
      job.onExit({ _tag: "Error", error: error(job) })
    }
  }

  private remove(instance: Instance): void {
    if (this.instances.get(instance.id) === instance) this.instances.delete(instance.id)
    this.publishGauges()
  }

  private idleTimer(instance: Instance): Effect.Effect<void> {
    const maxIdle = Duration.toMillis(this.entity.options.maxIdleTime)
    return Effect.gen(this, function*() {
      while (true) {
        const idleFor = this.now() - instance.lastActivity
        if (idleFor >= maxIdle && instance.quiescent && instance.status !== "restarting") {
          return yield* this.passivate(instance)
        }
        yield* Effect.sleep(Duration.millis(idleFor >= maxIdle ? maxIdle : maxIdle - idleFor))
      }
    })
  }

  private passivate(instance: Instance): Effect.Effect<void> {
    return Effect.uninterruptible(Effect.gen(this, function*() {
      this.remove(instance)
      instance.status = "stopped"
      instance.stopReason = "passivated"
      const scope = instance.scope
      instance.scope = undefined
      if (scope === undefined) return
      const done = yield* Deferred.make<void>()
      this.closing.set(instance.id, done)
      yield* Scope.close(scope, Exit.void)
      if (this.closing.get(instance.id) === done) this.closing.delete(instance.id)
      yield* Deferred.succeed(done, undefined)
    }))
  }

  /**
   * Graceful shutdown: refuse new work, let accepted work finish for up to `timeout`, then
   * interrupt what is left (its callers get `ActorStopped`) and close every instance's scope.
   */
  shutdown(timeout: Duration.Duration): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      this.shuttingDown = "node is shutting down"
      if (this.inflight > 0) {
        const drained = yield* Deferred.make<void>()
        this.drained = drained
        // finalizers run uninterruptibly: the wait must be interruptible for the deadline to win
        yield* Effect.interruptible(Deferred.await(drained)).pipe(Effect.timeoutOption(timeout))
      }
      const instances = [...this.instances.values()]
      this.instances.clear()
      this.publishGauges()
      const stopped = new ActorStopped({
        kind: this.kind,
        id: "",
        reason: "node shut down before the handler finished"
      })
      yield* Effect.forEach(instances, (instance) =>
        Effect.gen(this, function*() {
          const reason = new ActorStopped({ kind: this.kind, id: instance.id, reason: stopped.reason })
          instance.status = "stopped"
          instance.stopReason = reason.reason
          this.failQueued(instance, () => reason)
          for (const job of instance.running) job.stoppedBy = reason
          yield* Fiber.interruptAll([...instance.running].flatMap((job) => (job.fiber ? [job.fiber] : [])))
          yield* Fiber.interruptAll([...instance.lifecycle])
          if (instance.scope !== undefined) {
            const scope = instance.scope
            instance.scope = undefined
            yield* Scope.close(scope, Exit.void)
          }
        }), { discard: true })
      yield* Effect.forEach([...this.closing.values()], Deferred.await, { discard: true })
    })
  }
}
