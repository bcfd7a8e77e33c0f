/**
 * The cluster's store: one in-memory `Persistence` store that every node and every incarnation
 * of a test cluster shares, as the nodes of an app share one JetStream bucket. It lives outside
 * the nodes, so it survives their crashes and restarts. While it is down (`cluster.storeDown`),
 * every `get`, `put`, `remove` and `keys` fails at once with `PersistenceError`, and nothing is
 * written; a watch waits and resumes, as a JetStream watch does over an outage.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { PersistenceShape } from "../../layers/Persistence.ts"
import { makeStore, shapeOf } from "../../layers/internal/persistenceMemory.ts"
import { PersistenceError } from "../../schema/Errors.ts"

/** @internal */
export interface ClusterStore {
  /** what the nodes use: fails while the store is down */
  readonly shape: PersistenceShape
  /** the store itself, never down: what a test reads to check what is stored */
  readonly direct: PersistenceShape
  up: boolean
  /** operations that failed because the store was down */
  failed: number
}

/** @internal */
export const makeClusterStore = (): ClusterStore => {
  const direct = shapeOf(makeStore())
  const store: ClusterStore = { shape: direct, direct, up: true, failed: 0 }
  const gate = <A, E>(operation: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E | PersistenceError> =>
    Effect.suspend((): Effect.Effect<A, E | PersistenceError> => {
      if (store.up) return effect
      store.failed++
      return Effect.fail(new PersistenceError({ operation, reason: "the test cluster's store is down" }))
    })
  const shape: PersistenceShape = {
    ...direct,
    get: (key) => gate("get", direct.get(key)),
    put: (key, value, expected) => gate("put", direct.put(key, value, expected)),
    remove: (key, expected) => gate("remove", direct.remove(key, expected)),
    keys: (prefix) => gate("keys", direct.keys(prefix))
  }
  return Object.assign(store, { shape })
}
