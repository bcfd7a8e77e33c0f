/**
 * A transport's `publish` as an Effect, from its `unsafePublish` (which returns its error
 * rather than failing): what `Transport.fromResult` is, and the `publish` every transport
 * builds from it.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { Envelope } from "../../schema/Envelope.ts"
import type { PublishOptions, TransportShape } from "../Transport.ts"

/** @internal an `unsafePublish` result as an Effect: `undefined` succeeds, an error fails */
export const fromResult = <E>(error: E | undefined): Effect.Effect<void, E> =>
  error === undefined ? Effect.void : Effect.fail(error)

/** @internal the `publish` of a transport whose `unsafePublish` is given */
export const publishOf = (
  unsafePublish: TransportShape["unsafePublish"]
): TransportShape["publish"] =>
(subject: string, frame: Envelope, options?: PublishOptions) =>
  Effect.suspend(() => fromResult(unsafePublish(subject, frame, options)))
