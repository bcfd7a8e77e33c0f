/**
 * A job: one message handed to a hosted kind (its Rpc tag, payload and headers), how it ended
 * (`JobExit`) and where it is in its life (new → queued → running → done, or cancelled).
 *
 * Every job ends with exactly one call of its `onExit` unless its caller cancelled it; then
 * `onCancelled` runs instead, once the job is gone.
 *
 * @internal
 */
import type * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import type { Headers } from "../../schema/Envelope.ts"
import type { ActorStopped, TroupeError } from "../../schema/Errors.ts"
import type { Instance } from "./kindState.ts"

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
  /** a job of the runtime's own (a reminder's firing): runs this instead of a handler */
  run: ((instance: Instance) => Effect.Effect<unknown, unknown, unknown>) | undefined
  /** the runtime's error that failed the job after its handler succeeded (saving a durable actor) */
  runtimeError: TroupeError | undefined
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
  onCancelled: undefined,
  run: undefined,
  runtimeError: undefined
})
