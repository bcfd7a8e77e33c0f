/**
 * `Actor.state` and `Actor.reminders`: they find the activation the runtime is building and the
 * `Persistence` store of the kind's environment, and hand both to the runtime, which loads the
 * actor's record and saves it after each message.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Schema from "effect/Schema"
import { Persistence } from "../../layers/Persistence.ts"
import type { PersistenceError, StateDecodeError } from "../../schema/Errors.ts"
import {
  type Activation,
  type AnyReminders,
  CurrentActivation,
  type DurableState,
  type KindDefinition
} from "../ActorSystem.ts"

const activation = (what: string): Effect.Effect<Activation> =>
  Effect.flatMap(Effect.serviceOption(CurrentActivation), (found) =>
    Option.isSome(found)
      ? Effect.succeed(found.value)
      : Effect.dieMessage(
        `${what} is used in the build effect of an actor kind (Actor.toLayer), where the runtime activates an instance`
      ))

const store = Effect.map(Effect.serviceOption(Persistence), Option.getOrUndefined)

/** @internal */
export const state = <A, I>(
  schema: Schema.Schema<A, I>,
  options: { readonly initial: () => A }
): Effect.Effect<DurableState<A>, StateDecodeError | PersistenceError, Persistence> =>
  Effect.flatMap(
    activation("Actor.state"),
    (current) => Effect.flatMap(store, (persistence) => current.state(schema, options.initial, persistence))
  )

/** @internal */
export const reminders = (
  kind: KindDefinition
): Effect.Effect<AnyReminders, StateDecodeError | PersistenceError, Persistence> =>
  Effect.flatMap(activation("Actor.reminders"), (current) =>
    current.definition.kind !== kind.kind
      ? Effect.dieMessage(
        `Actor.reminders(${kind.kind}) is used in the build of ${current.definition.kind}: pass the kind being built`
      )
      : Effect.flatMap(store, (persistence) => current.reminders(persistence)))
