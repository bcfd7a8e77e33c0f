/**
 * The result of a publish without an Effect (`unsafePublish`), lifted into one.
 *
 * @internal
 */
import * as Effect from "effect/Effect"

/** @internal the error `unsafePublish` returned, if any, as a failed Effect */
export const fromResult = <E>(error: E | undefined): Effect.Effect<void, E> =>
  error === undefined ? Effect.void : Effect.fail(error)
