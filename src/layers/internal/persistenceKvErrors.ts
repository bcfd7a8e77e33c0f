/**
 * How a nats.js failure of a JetStream key-value operation becomes a typed error of the store: a
 * lost compare-and-set is a `Conflict`, a value the server refuses for its size is
 * `PayloadTooLarge`, anything else (no server, no JetStream, no stream leader, a timeout) is a
 * `PersistenceError` that says what to look at.
 *
 * @internal
 */
import { NatsError } from "nats"
import { PayloadTooLarge, PersistenceError } from "../../schema/Errors.ts"
import type { Conflict } from "../Persistence.ts"

/** JetStream's "wrong last sequence": the expected revision was not the key's */
const WRONG_LAST_SEQUENCE = 10071
/** JetStream's "message size exceeds maximum allowed" */
const MESSAGE_TOO_LARGE = 10054

const isNatsError = (error: unknown): error is NatsError => error instanceof NatsError

/** @internal what nats.js says an error was */
export const describe = (error: unknown): string => {
  if (error instanceof Error) {
    const api = error instanceof NatsError ? error.api_error : undefined
    return api === undefined ? error.message : `${api.description} (JetStream error ${api.err_code})`
  }
  return String(error)
}

/** @internal whether `error` is JetStream refusing a compare-and-set */
export const isWrongLastSequence = (error: unknown): boolean =>
  isNatsError(error) && error.api_error?.err_code === WRONG_LAST_SEQUENCE

const reasonOf = (error: unknown, timeoutMs: number): string => {
  if (isNatsError(error)) {
    switch (error.code) {
      case "TIMEOUT":
        return `no answer from JetStream within ${timeoutMs} ms (is the server up and reachable?)`
      case "503":
        return "no JetStream responder (is nats-server running with -js, and does the bucket's stream have a leader?)"
      case "CONNECTION_CLOSED":
        return "the NATS connection is closed"
      default:
        break
    }
  }
  return describe(error)
}

/** @internal the typed error of a failed operation that cannot lose a compare-and-set */
export const persistenceError = (operation: string, error: unknown, timeoutMs: number): PersistenceError =>
  new PersistenceError({ operation, reason: reasonOf(error, timeoutMs) })

/** @internal the typed error of a failed write: `Conflict`, `PayloadTooLarge` or `PersistenceError` */
export const writeError = (
  operation: string,
  key: string,
  expected: number,
  size: number,
  limit: number,
  error: unknown,
  timeoutMs: number
): Conflict | PayloadTooLarge | PersistenceError => {
  if (isWrongLastSequence(error)) return { _tag: "Conflict", key, expected }
  if (isNatsError(error)) {
    if (error.code === "MAX_PAYLOAD_EXCEEDED" || error.api_error?.err_code === MESSAGE_TOO_LARGE) {
      return new PayloadTooLarge({ size, limit })
    }
  }
  return persistenceError(operation, error, timeoutMs)
}
