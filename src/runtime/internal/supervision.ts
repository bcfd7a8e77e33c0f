/**
 * Supervision of a hosted kind's instances: building an instance's handlers in a scope of its own
 * (activation), and restarting an actor whose handler died, paced by the kind's supervision
 * schedule, until it succeeds or the schedule gives up and the actor stops.
 *
 * @internal
 */
import type * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Runtime from "effect/Runtime"
import * as RuntimeFlags from "effect/RuntimeFlags"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { CurrentAddress } from "../../actors/Actor.ts"
import type { AnyHandler } from "../../actors/ActorSystem.ts"
import { ActorStopped, RemoteDefect } from "../../schema/Errors.ts"
import { type Instance, type KindState, now, remove, stopInstance, track } from "./kindState.ts"

/** Builds the handlers into `instance`; true on success. */
const build = (state: KindState, instance: Instance): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = Context.add(
      Context.add(state.entity.context, CurrentAddress, { kind: state.kind, id: instance.id }),
      Scope.Scope,
      scope
    )
    const exit = yield* Effect.exit(Effect.provide(state.entity.build, context) as Effect.Effect<
      Readonly<Record<string, AnyHandler>>,
      unknown
    >)
    if (Exit.isFailure(exit)) {
      yield* Scope.close(scope, exit)
      yield* Effect.logWarning(`activation of ${state.kind}/${instance.id} failed`, exit.cause)
      return false
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
    return true
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
    if (yield* build(state, instance)) return true
    remove(state, instance)
    stopInstance(state, instance, "activation failed", (job) =>
      new RemoteDefect({
        kind: state.kind,
        id: instance.id,
        tag: job.tag,
        node: state.options.nodeId,
        defect: "activation failed (the build effect of the kind failed or died)"
      }))
    return false
  })

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
  instance.status = "restarting"
  instance.failures++
  const scope = instance.scope
  instance.scope = undefined
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
        if (yield* build(state, instance)) {
          yield* Effect.logInfo(`${state.kind}/${instance.id} restarted (${instance.failures} consecutive failures)`)
          return restarted()
        }
        instance.failures++
      }
    })
  )
}
