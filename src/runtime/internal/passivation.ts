/**
 * Passivation of a hosted kind's instances: closing an instance's scope when it has been idle for
 * the kind's `maxIdleTime`, or as soon as it is quiescent once placement moved its id to another
 * node (eviction). A re-activation of the same id waits for the closing to finish.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { type Instance, type KindState, now, remove, track } from "./kindState.ts"

/** Closes `instance`'s scope; a re-activation of its id waits for that. @internal */
export const passivate = (state: KindState, instance: Instance): Effect.Effect<void> =>
  Effect.uninterruptible(Effect.gen(function*() {
    remove(state, instance)
    instance.status = "stopped"
    instance.stopReason = "passivated"
    const scope = instance.scope
    instance.scope = undefined
    if (scope === undefined) return
    const done = yield* Deferred.make<void>()
    state.closing.set(instance.id, done)
    yield* Scope.close(scope, Exit.void)
    if (state.closing.get(instance.id) === done) state.closing.delete(instance.id)
    yield* Deferred.succeed(done, undefined)
  }))

/** Passivates `instance` once it has been idle (and quiescent) for the kind's `maxIdleTime`. @internal */
export const idleTimer = (state: KindState, instance: Instance): Effect.Effect<void> => {
  const maxIdle = Duration.toMillis(state.entity.options.maxIdleTime)
  return Effect.gen(function*() {
    while (true) {
      const idleFor = now(state) - instance.lastActivity
      if (idleFor >= maxIdle && instance.quiescent && instance.status !== "restarting") {
        return yield* passivate(state, instance)
      }
      yield* Effect.sleep(Duration.millis(idleFor >= maxIdle ? maxIdle : maxIdle - idleFor))
    }
  })
}

/** Passivates an evicting `instance` if it has no work left. @internal */
export const evictIfQuiescent = (state: KindState, instance: Instance): void => {
  if (instance.quiescent && instance.status === "ready" && state.shuttingDown === undefined) {
    track(state, instance, passivate(state, instance))
  }
}

/**
 * Passivates every actor for which `disowned(id)` holds (placement moved it to another node):
 * idle ones at once, busy ones when their work is done.
 *
 * @internal
 */
export const evict = (state: KindState, disowned: (id: string) => boolean): void => {
  for (const instance of state.instances.values()) {
    if (instance.status === "ready" && !instance.evicting && disowned(instance.id)) {
      instance.evicting = true
      evictIfQuiescent(state, instance)
    }
  }
}
