/**
 * Where a failure becomes an HTTP status and a body: Troupe's own errors by tag, a typed Rpc
 * error by the status its route declares, a defect as a generic 500 (its detail logged only).
 *
 * @internal
 */
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { CompiledRoute } from "./compile.ts"

/** Troupe's own errors and their statuses */
const RUNTIME_STATUS: Readonly<Record<string, number>> = {
  DecodeError: 400,
  ActorNotFound: 404,
  PayloadTooLarge: 413,
  NoAvailableNode: 503,
  MailboxFull: 503,
  ActorStopped: 503,
  TransportError: 502,
  AskTimeout: 504,
  EncodeError: 500,
  RemoteDefect: 500,
  HandshakeError: 502,
  Unauthorized: 502,
  StreamError: 502
}

/** @internal a JSON response */
export const json = (status: number, body: unknown) => HttpServerResponse.unsafeJson(body, { status })

const INTERNAL_ERROR = { _tag: "InternalServerError", message: "internal server error" } as const

/** @internal */
export const internalError = json(500, INTERNAL_ERROR)

/** @internal */
export const notFound = json(404, { _tag: "RouteNotFound", message: "no route for this method and path" })

const tagOf = (u: unknown): string | undefined =>
  typeof u === "object" && u !== null && typeof (u as { _tag?: unknown })._tag === "string"
    ? (u as { _tag: string })._tag
    : undefined

/** an error of the runtime (not the Rpc's): a class instance, or its encoded form from a dynamic route */
const runtimeErrorFields = (error: object): Record<string, unknown> => {
  const fields: Record<string, unknown> = { ...error }
  if (error instanceof Error) fields["message"] = error.message
  delete fields["stack"]
  return fields
}

/** @internal */
export interface Outcome {
  readonly status: number
  readonly body: unknown
}

const internalOutcome: Outcome = { status: 500, body: INTERNAL_ERROR }

/** @internal the one place where an ask's (or a stream's) failure becomes a status and a body (interruptions never get here) */
export const failureOutcome = (compiled: CompiledRoute, cause: Cause.Cause<unknown>): Effect.Effect<Outcome> => {
  const failure = Cause.failureOption(cause)
  if (Option.isNone(failure)) {
    return Effect.as(Effect.logError("gateway: defect while serving a request", cause), internalOutcome)
  }
  const error = failure.value
  const tag = tagOf(error)
  const declared = tag === undefined ? undefined : compiled.route.errors[tag]
  if (tag !== undefined && declared === undefined && tag in RUNTIME_STATUS) {
    const status = RUNTIME_STATUS[tag]!
    if (status === 500) {
      // a handler died or a value could not be written: log the detail, send nothing of it
      return Effect.as(
        Effect.logError(`gateway: ${compiled.route.definition.kind}.${compiled.route.tag} failed`, error),
        internalOutcome
      )
    }
    return Effect.succeed({ status, body: runtimeErrorFields(error as object) })
  }
  // a typed error of the Rpc: its declared status (default 500) and its encoded form
  const encoded = compiled.encodeError(error)
  if (Either.isLeft(encoded)) {
    return Effect.as(Effect.logError("gateway: cannot encode a typed error", encoded.left), internalOutcome)
  }
  return Effect.succeed({ status: declared ?? 500, body: encoded.right })
}

/** @internal an interrupted-only cause (it holds no failure) passed on */
export const interrupted = (cause: Cause.Cause<unknown>): Effect.Effect<never> =>
  Effect.failCause(cause as Cause.Cause<never>)

/** @internal the failure as its JSON response */
export const failureResponse = (compiled: CompiledRoute, cause: Cause.Cause<unknown>) =>
  Effect.map(failureOutcome(compiled, cause), ({ body, status }) => json(status, body))
