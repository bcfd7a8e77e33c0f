/**
 * Supervision of a hosted kind's instances: building an instance's handlers in a scope of its own
 * (activation), and restarting an actor whose handler died, paced by the kind's supervision
 * schedule, until it succeeds or the schedule gives up and the actor stops.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as RuntimeFlags from "effect/RuntimeFlags"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { CurrentAddress } from "../../actors/Actor.ts"
import { type AnyHandler, CurrentActivation } from "../../actors/ActorSystem.ts"
import {
  ActorStopped,
  PersistenceError,
  RemoteDefect,
  StateDecodeError,
  type TroupeError
} from "../../schema/Errors.ts"
import { makeActivation } from "./activation.ts"
import type { Job } from "./job.ts"
import { type Instance, type KindState, now, remove, stopInstance, track } from "./kindState.ts"
import { passivate } from "./passivation.ts"

/**
 * The runtime error of a handler or build that died: where, which Rpc, and the defect's message
 * (after `context`, when given) and stack.
 *
 * @internal
 */
export const defectOf = (
  state: KindState,
  instance: Instance,
  job: Job,
  cause: Cause.Cause<unknown>,
  context?: string
): RemoteDefect => {
  const defect = Cause.squash(cause)
  const message = defect instanceof Error ? defect.message : String(defect)
  return new RemoteDefect({
    kind: state.kind,
    id: instance.id,
    tag: job.tag,
    node: state.options.nodeId,
    defect: context === undefined ? message : `${context}: ${message}`,
    ...(defect instanceof Error && defect.stack !== undefined ? { stack: defect.stack } : {})
  })
}

/** What the callers waiting for an activation that failed get: a durable actor's own error, or a defect. */
const activationError =
  (state: KindState, instance: Instance, cause: Cause.Cause<unknown>) => (job: Job): TroupeError => {
    const failure = Cause.failureOption(cause)
    if (
      Option.isSome(failure) && (failure.value instanceof StateDecodeError || failure.value instanceof PersistenceError)
    ) return failure.value
    return defectOf(state, instance, job, cause, "activation failed (the build effect of the kind failed or died)")
  }

/** Builds the handlers into `instance`: undefined on success, else the cause of the failure. */
const build = (state: KindState, instance: Instance): Effect.Effect<Cause.Cause<unknown> | undefined> =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    instance.durable = undefined
    const context = Context.add(
      Context.add(
        Context.add(state.entity.context, CurrentAddress, { kind: state.kind, id: instance.id }),
        Scope.Scope,
        scope
      ),
      CurrentActivation,
      makeActivation(state, instance)
    )
    const exit = yield* Effect.exit(Effect.provide(state.entity.build, context) as Effect.Effect<
      Readonly<Record<string, AnyHandler>>,
      unknown
    >)
    if (Exit.isFailure(exit)) {
      instance.durable = undefined
      yield* Scope.close(scope, exit)
      yield* Effect.logWarning(`activation of ${state.kind}/${instance.id} failed`, exit.cause)
      return exit.cause
    }
    instance.handlers = exit.value
    instance.scope = scope
    instance.fork = Runtime.runFork(Runtime.make({
      context,
      fiberRefs: state.options.runtime.fiberRefs,
      // one fiber per message: keep fiber-lifetime metrics off this path
      runtimeFlags: RuntimeFlags.disable(state.options.runtime.runtimeFlags, RuntimeFlags.RuntimeMetrics)
    }))
    instance.lastActivity = now(state)
    instance.status = "ready"
    return undefined
  })

/**
 * Activates a new instance once a passivation of the same id has closed: true when it is ready;
 * false when its build failed (it is removed and its waiting jobs fail with `RemoteDefect`).
 *
 * @internal
 */
export const activate = (state: KindState, instance: Instance): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const previous = state.closing.get(instance.id)
    if (previous !== undefined) yield* Deferred.await(previous)
    const failed = yield* build(state, instance)
    if (failed === undefined) return true
    failActivation(state, instance, failed)
    return false
  })

/** The activation failed: the waiting messages get the error, and the actor is removed. */
const failActivation = (state: KindState, instance: Instance, failed: Cause.Cause<unknown>): void => {
  remove(state, instance)
  stopInstance(state, instance, "activation failed", activationError(state, instance, failed))
}

/** The actor is being rebuilt: it takes no message meanwhile, and its old scope is handed over to close. */
const detachScope = (instance: Instance): Scope.CloseableScope | undefined => {
  instance.status = "restarting"
  const scope = instance.scope
  instance.scope = undefined
  return scope
}

/**
 * A durable actor whose save was lost (another activation wrote first) or whose outcome is
 * unknown must not serve again from what it holds: it is passivated, or, if messages wait for
 * it, built again at once (its state loaded again from the store). `reloaded` runs once it is
 * ready again; if the build fails, the waiting messages get the error and the actor is removed.
 *
 * @internal
 */
export const retire = (state: KindState, instance: Instance, reloaded: () => void): void => {
  if (instance.status !== "ready") return
  if (instance.queue.length === 0) return track(state, instance, passivate(state, instance))
  const scope = detachScope(instance)
  track(
    state,
    instance,
    Effect.gen(function*() {
      if (scope !== undefined) yield* Scope.close(scope, Exit.void)
      const failed = yield* build(state, instance)
      if (failed === undefined) return reloaded()
      failActivation(state, instance, failed)
    })
  )
}

/**
 * An actor's handler died: close its scope with the cause and rebuild it on the supervision
 * schedule. `restarted` runs once it is ready again; when the schedule gives up, the actor stops.
 *
 * @internal
 */
export const restart = (
  state: KindState,
  instance: Instance,
  cause: Cause.Cause<unknown>,
  restarted: () => void
): void => {
  instance.failures++
  const scope = detachScope(instance)
  track(
    state,
    instance,
    Effect.gen(function*() {
      if (scope !== undefined) yield* Scope.close(scope, Exit.failCause(cause))
      instance.driver ??= yield* Schedule.driver(state.entity.options.supervision)
      while (true) {
        const next = yield* Effect.either(instance.driver.next(undefined))
        if (Either.isLeft(next)) {
          yield* Effect.logWarning(
            `${state.kind}/${instance.id} stopped after ${instance.failures} consecutive failures`
          )
          const reason = `supervision gave up after ${instance.failures} consecutive failures`
          return stopInstance(
            state,
            instance,
            reason,
            () => new ActorStopped({ kind: state.kind, id: instance.id, reason })
          )
        }
        if ((yield* build(state, instance)) === undefined) {
          yield* Effect.logInfo(`${state.kind}/${instance.id} restarted (${instance.failures} consecutive failures)`)
          return restarted()
        }
        instance.failures++
      }
    })
  )
}
