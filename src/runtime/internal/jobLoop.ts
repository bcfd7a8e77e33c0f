/**
 * The job loop of one instance: taking jobs from its mailbox while it has room (one at a time for
 * an actor, up to `concurrency` for a service), validating the payload, running the handler in a
 * fiber of its own (started synchronously, no scheduler hop, so that the caller can interrupt
 * exactly that handler), and turning the handler's exit into the job's `JobExit`. A defect
 * restarts an actor (see `supervision.ts`).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import { ActorStopped, DecodeError } from "../../schema/Errors.ts"
import { withCommit } from "./durable.ts"
import type { Job, JobExit } from "./job.ts"
import { type Instance, type KindState, now, publishGauges, settle } from "./kindState.ts"
import { continueTrace } from "./metrics.ts"
import { evictIfQuiescent } from "./passivation.ts"
import { defectOf, restart, retire } from "./supervision.ts"

/** A waiting job left its mailbox without running (its caller gave up). @internal */
export const dropped = (state: KindState, job: Job): void => {
  state.queued--
  publishGauges(state)
  settle(state)
  job.onCancelled?.()
}

/** Starts waiting jobs of `instance` while it is ready and has room. @internal */
export const drain = (state: KindState, instance: Instance): void => {
  // a handler that completes synchronously re-enters through `finish`; the outer loop goes on
  if (instance.draining) return
  instance.draining = true
  try {
    while (
      instance.status === "ready" && instance.active < state.entity.options.concurrency && instance.queue.length > 0
    ) {
      state.queued--
      start(state, instance, instance.queue.shift()!)
    }
  } finally {
    instance.draining = false
  }
  publishGauges(state)
}

/** A payload that does not match its schema ends the job with `DecodeError`; true if so. */
const refused = (state: KindState, job: Job): boolean => {
  if (job.validated || job.run !== undefined) return false
  const validated = state.validators.get(job.tag)!(job.payload)
  if (Either.isRight(validated)) return false
  job.state = "done"
  settle(state)
  job.onExit({
    _tag: "Error",
    error: new DecodeError({
      what: `payload of ${state.kind}.${job.tag}`,
      issue: ParseResult.TreeFormatter.formatErrorSync(validated.left)
    })
  })
  return true
}

/** the handler's effect for `job` (or the runtime's own job) */
const handlerEffect = (instance: Instance, job: Job): Effect.Effect<unknown, unknown, unknown> => {
  if (job.run !== undefined) return job.run(instance)
  try {
    return instance.handlers[job.tag]!(job.payload, { headers: job.headers })
  } catch (defect) {
    return Exit.die(defect)
  }
}

const start = (state: KindState, instance: Instance, job: Job): void => {
  if (refused(state, job)) return
  job.state = "running"
  instance.active++
  instance.running.add(job)
  let effect = handlerEffect(instance, job)
  if (job.consume !== undefined) effect = job.consume(effect)
  // a durable actor's reply waits for the save of what the handler changed
  const cell = instance.durable
  if (cell !== undefined && !(Exit.isExit(effect) && !cell.dirty)) effect = withCommit(effect, cell, job)
  // a handler that answers with a value it already has (`Effect.succeed`, `Effect.fail`) is an
  // Exit: nothing to run, nothing to interrupt, no fiber needed
  if (Exit.isExit(effect)) return finish(state, instance, job, effect as Exit.Exit<unknown, unknown>)
  effect = continueTrace(state.kind, instance.id, job.tag, job.headers, effect)
  const fiber = instance.fork!(effect as Effect.Effect<unknown, unknown>)
  job.fiber = fiber
  fiber.addObserver((exit) => finish(state, instance, job, exit))
}

const finish = (state: KindState, instance: Instance, job: Job, exit: Exit.Exit<unknown, unknown>): void => {
  instance.active--
  instance.running.delete(job)
  instance.lastActivity = now(state)
  const cancelled = job.state === "cancelled"
  job.state = "done"
  const cell = instance.durable
  if (cell !== undefined && !Exit.isSuccess(exit)) cell.discard()
  let result: JobExit
  if (Exit.isSuccess(exit)) {
    result = { _tag: "Success", value: exit.value }
    if (instance.failures > 0) {
      instance.failures = 0
      instance.driver = undefined
    }
  } else {
    const failure = Cause.failureOption(exit.cause)
    if (job.runtimeError !== undefined) {
      result = { _tag: "Error", error: job.runtimeError }
    } else if (Option.isSome(failure)) {
      result = { _tag: "Failure", error: failure.value }
    } else if (Cause.isInterruptedOnly(exit.cause)) {
      result = {
        _tag: "Error",
        error: job.stoppedBy ?? new ActorStopped({ kind: state.kind, id: instance.id, reason: "handler interrupted" })
      }
    } else {
      result = { _tag: "Error", error: defectOf(state, instance, job, exit.cause) }
      if (state.isActor && instance.status === "ready" && state.shuttingDown === undefined) {
        restart(state, instance, exit.cause, () => drain(state, instance))
      }
    }
  }
  settle(state)
  if (cancelled) job.onCancelled?.()
  else job.onExit(result)
  // fencing: an activation whose save was lost (or may have been) serves nothing more
  if (cell !== undefined && cell.stale && instance.durable === cell && instance.status === "ready") {
    return retire(state, instance, () => drain(state, instance))
  }
  drain(state, instance)
  if (instance.evicting) evictIfQuiescent(state, instance)
}
