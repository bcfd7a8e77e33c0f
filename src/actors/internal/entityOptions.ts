/**
 * The hosting options of a kind (`Actor.toLayer`), checked once and given their defaults.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Schedule from "effect/Schedule"
import type * as Actor from "../Actor.ts"
import type { EntityOptions, KindDefinition } from "../ActorSystem.ts"

/** @internal see `Actor.defaultSupervision` */
export const defaultSupervision: Schedule.Schedule<unknown, unknown> = Schedule.exponential("100 millis").pipe(
  Schedule.intersect(Schedule.recurs(5))
)

/** @internal */
export const resolveOptions = (
  definition: KindDefinition,
  options: Actor.ToLayerOptions | undefined
): EntityOptions => {
  const mailboxCapacity = options?.mailboxCapacity ?? 1024
  const concurrency = definition._tag === "Actor" ? 1 : options?.concurrency ?? 64
  if (!Number.isInteger(mailboxCapacity) || mailboxCapacity < 0) {
    throw new RangeError(`mailboxCapacity must be a whole number >= 0, got ${mailboxCapacity}`)
  }
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`concurrency must be a whole number >= 1, got ${concurrency}`)
  }
  const persistenceTimeout = Duration.decode(options?.persistenceTimeout ?? "5 seconds")
  if (!Duration.greaterThan(persistenceTimeout, Duration.zero)) {
    throw new RangeError(`persistenceTimeout must be longer than zero`)
  }
  return {
    persistenceTimeout,
    maxIdleTime: Duration.decode(options?.maxIdleTime ?? "5 minutes"),
    mailboxCapacity,
    concurrency,
    supervision: options?.supervision ?? defaultSupervision
  }
}
