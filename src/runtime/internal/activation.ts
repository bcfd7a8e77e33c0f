/**
 * The `Activation` the runtime gives the build of one instance: `Actor.state` and
 * `Actor.reminders` claim the instance's durable record through it (loaded once per build, from
 * the kind's `Persistence` store), and refuse what cannot be durable: a service, a second
 * `Actor.state`, a kind with no store.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { Activation } from "../../actors/ActorSystem.ts"
import type { PersistenceShape } from "../../layers/Persistence.ts"
import { PersistenceError, type StateDecodeError } from "../../schema/Errors.ts"
import { claimState, DurableCell, load } from "./durable.ts"
import type { Instance, KindState } from "./kindState.ts"
import { handleOf } from "./reminders.ts"

/** @internal */
export const makeActivation = (state: KindState, instance: Instance): Activation => {
  const definition = state.entity.definition
  let stateClaimed = false
  const cellFor = (
    what: string,
    store: PersistenceShape | undefined
  ): Effect.Effect<DurableCell, StateDecodeError | PersistenceError> => {
    if (!state.isActor) {
      return Effect.dieMessage(
        `${what} is for actor kinds: "${state.kind}" is a service, whose interchangeable instances serve any request`
      )
    }
    if (store === undefined) {
      return Effect.fail(
        new PersistenceError({
          operation: "activate",
          reason: `${what} in ${state.kind} needs a Persistence layer (Persistence.layerInMemory, or the NATS KV store)`
        })
      )
    }
    if (instance.durable !== undefined) return Effect.succeed(instance.durable)
    const cell = new DurableCell(
      state.kind,
      instance.id,
      store,
      state.entity.options.persistenceTimeout,
      (id, due, revision) => state.reminderSink?.(id, due, revision),
      state.options.deadlines
    )
    return Effect.as(Effect.tap(load(cell), () => (instance.durable = cell)), cell)
  }
  return {
    definition,
    id: instance.id,
    state: (schema, initial, store) =>
      Effect.suspend(() => {
        if (stateClaimed) {
          return Effect.dieMessage(
            `Actor.state is called twice in the build of ${state.kind}: an actor has one durable state (one schema)`
          )
        }
        stateClaimed = true
        return Effect.flatMap(cellFor("Actor.state", store), (cell) => claimState(cell, schema, initial))
      }),
    reminders: (store) =>
      Effect.map(cellFor("Actor.reminders", store), (cell) => {
        cell.remindersClaimed = true
        return handleOf(cell, definition)
      })
  }
}
