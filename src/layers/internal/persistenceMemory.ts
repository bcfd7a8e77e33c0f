/**
 * The in-memory store behind `Persistence.layerInMemory`: a Map of revisioned values with
 * compare-and-set, prefix listing and watches, and the key grammar shared with every store.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Stream from "effect/Stream"
import { PayloadTooLarge, PersistenceError } from "../../schema/Errors.ts"
import { isToken } from "../Subject.ts"
import type { Change, Conflict, Entry, PersistenceShape } from "../Persistence.ts"
import type { InMemoryNetwork } from "./inMemory.ts"

/** @internal a token stays as it is; anything else is `=` and base64url (a token never starts with `=`) */
export const keyOf = (...parts: ReadonlyArray<string>): string =>
  parts.map((part) => (isToken(part) ? part : `=${Buffer.from(part, "utf8").toString("base64url")}`)).join(".")

/** @internal */
export const partsOf = (key: string): ReadonlyArray<string> =>
  key.split(".").map((part) => (part.startsWith("=") ? Buffer.from(part.slice(1), "base64url").toString("utf8") : part))

const KEY = /^[-/=\w]+(\.[-/=\w]+)*$/

/**
 * @internal
 * Whether `key` is a key every store accepts (JetStream key-value's grammar: dot-separated
 * non-empty tokens of `[-/=_A-Za-z0-9]`). Every `keyOf` key is.
 */
export const isValidKey = (key: string): boolean => KEY.test(key)

const invalidKey = (operation: string, key: string) =>
  new PersistenceError({ operation, reason: `invalid key "${key}" (build keys with Persistence.key)` })

/** @internal */
export const MemoryStoreTypeId: unique symbol = Symbol.for("troupe/Persistence/MemoryStore")

/** @internal */
export type MemoryStoreTypeId = typeof MemoryStoreTypeId

/** @internal */
export interface Store {
  readonly [MemoryStoreTypeId]: MemoryStoreTypeId
  readonly entries: Map<string, Entry>
  readonly changes: PubSub.PubSub<Change>
  readonly maxValueBytes: number
  revision: number
}

/** the default value limit: JetStream's default max payload (1 MiB) */
const DEFAULT_MAX_VALUE_BYTES = 1024 * 1024

/** @internal */
export const makeStore = (options?: { readonly maxValueBytes?: number | undefined }): Store => ({
  [MemoryStoreTypeId]: MemoryStoreTypeId,
  entries: new Map(),
  changes: Effect.runSync(PubSub.unbounded<Change>()),
  maxValueBytes: options?.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES,
  revision: 0
})

const byNetwork = new WeakMap<InMemoryNetwork, Store>()

/** @internal the store given, the one of a network, or a new private one */
export const storeFor = (from: { readonly [MemoryStoreTypeId]: MemoryStoreTypeId } | InMemoryNetwork | undefined) => {
  if (from === undefined) return makeStore()
  if (MemoryStoreTypeId in from) return from as Store
  let store = byNetwork.get(from)
  if (store === undefined) {
    store = makeStore()
    byNetwork.set(from, store)
  }
  return store
}

const conflict = (key: string, expected: number): Conflict => ({ _tag: "Conflict", key, expected })

const publish = (store: Store, change: Change): void => {
  // an unbounded PubSub offers synchronously
  Effect.runSync(PubSub.publish(store.changes, change))
}

/** @internal */
export const shapeOf = (store: Store): PersistenceShape => ({
  name: "memory",
  maxValueBytes: store.maxValueBytes,
  get: (key) =>
    isValidKey(key)
      ? Effect.sync(() =>
        // a copy, so that a caller changing the bytes it got does not change the store
        Option.map(Option.fromNullable(store.entries.get(key)), (entry) => ({ ...entry, value: entry.value.slice() }))
      )
      : Effect.fail(invalidKey("get", key)),
  put: (key, value, expected) =>
    Effect.suspend((): Effect.Effect<number, Conflict | PayloadTooLarge | PersistenceError> => {
      if (value.byteLength > store.maxValueBytes) {
        return Effect.fail(new PayloadTooLarge({ size: value.byteLength, limit: store.maxValueBytes }))
      }
      if (!isValidKey(key)) return Effect.fail(invalidKey("put", key))
      const current = store.entries.get(key)?.revision ?? 0
      if (current !== expected) return Effect.fail(conflict(key, expected))
      const entry: Entry = { key, value: value.slice(), revision: ++store.revision }
      store.entries.set(key, entry)
      publish(store, { key, entry })
      return Effect.succeed(entry.revision)
    }),
  remove: (key, expected) =>
    Effect.suspend((): Effect.Effect<void, Conflict | PersistenceError> => {
      if (!isValidKey(key)) return Effect.fail(invalidKey("remove", key))
      const current = store.entries.get(key)?.revision ?? 0
      if (current !== expected) return Effect.fail(conflict(key, expected))
      if (current === 0) return Effect.void
      store.entries.delete(key)
      publish(store, { key, entry: undefined })
      return Effect.void
    }),
  keys: (prefix) => Effect.sync(() => [...store.entries.keys()].filter((key) => key.startsWith(prefix))),
  watch: (prefix) => Stream.fromPubSub(store.changes).pipe(Stream.filter((change) => change.key.startsWith(prefix)))
})
