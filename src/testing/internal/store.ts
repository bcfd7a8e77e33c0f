/**
 * The cluster's store: one in-memory `Persistence` store that every node and every incarnation
 * of a test cluster shares, as the nodes of an app share one JetStream bucket. It lives outside
 * the nodes, so it survives their crashes and restarts. While it is down (`cluster.storeDown`),
 * every `get`, `put`, `remove` and `keys` fails at once with `PersistenceError`, and nothing is
 * written; a watch waits and resumes, as a JetStream watch does over an outage. Its faults
 * (`cluster.storeFaults`), drawn from the seed, fail an operation before it is done or after (a
 * write made whose answer is lost, as a timeout leaves it).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { PersistenceShape } from "../../layers/Persistence.ts"
import { makeStore, shapeOf } from "../../layers/internal/persistenceMemory.ts"
import { PersistenceError } from "../../schema/Errors.ts"
import type { Prng } from "./prng.ts"

/** @internal */
export interface StoreFaults {
  readonly fail: number
  readonly lostReply: number
}

/** @internal */
export interface ClusterStore {
  /** what the nodes use: fails while the store is down, or by its faults */
  readonly shape: PersistenceShape
  /** the store itself, never down: what a test reads to check what is stored */
  readonly direct: PersistenceShape
  up: boolean
  faults: StoreFaults
  /** operations that failed (the store down, or a fault) */
  failed: number
}

/** @internal */
export const makeClusterStore = (prng: Prng, record: (line: string) => void): ClusterStore => {
  const direct = shapeOf(makeStore())
  const state = { up: true, faults: { fail: 0, lostReply: 0 }, failed: 0 }
  const failure = (operation: string, reason: string) => {
    state.failed++
    return new PersistenceError({ operation, reason })
  }
  const gate = <A, E>(
    operation: string,
    key: string,
    effect: Effect.Effect<A, E>
  ): Effect.Effect<A, E | PersistenceError> =>
    Effect.suspend((): Effect.Effect<A, E | PersistenceError> => {
      if (!state.up) return Effect.fail(failure(operation, "the test cluster's store is down"))
      if (state.faults.fail > 0 && prng.next() < state.faults.fail) {
        record(`store ${operation} ${key} failed`)
        return Effect.fail(failure(operation, "a store fault"))
      }
      if (operation === "get" || operation === "keys") return effect
      if (!(state.faults.lostReply > 0 && prng.next() < state.faults.lostReply)) return effect
      return Effect.flatMap(Effect.exit(effect), (exit) => {
        record(`store ${operation} ${key} done, its answer lost (${exit._tag})`)
        return Effect.fail(failure(operation, "no answer from the store (a store fault)"))
      })
    })
  const shape: PersistenceShape = {
    ...direct,
    get: (key) => gate("get", key, direct.get(key)),
    put: (key, value, expected) => gate("put", key, direct.put(key, value, expected)),
    remove: (key, expected) => gate("remove", key, direct.remove(key, expected)),
    keys: (prefix) => gate("keys", prefix, direct.keys(prefix))
  }
  return Object.assign(state, { shape, direct })
}
