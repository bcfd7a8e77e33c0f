/**
 * Where durable actors keep their state and reminders: a key-value store with a revision per
 * key and compare-and-set writes. `Persistence.inMemory` is shared by the nodes of one process;
 * `Persistence.natsKv` is a JetStream key-value bucket, so a Troupe app on NATS needs no second
 * piece of infrastructure.
 *
 * @example
 * ```ts
 * import { Persistence, Transport } from "troupe"
 *
 * const network = Transport.makeNetwork()
 * const store = Persistence.layerInMemory(network)
 * ```
 *
 * @since 0.5.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import type { PayloadTooLarge, PersistenceError } from "../schema/Errors.ts"
import type { InMemoryNetwork } from "./internal/inMemory.ts"
import * as internalMemory from "./internal/persistenceMemory.ts"

/**
 * A stored value and the revision it was written at (revisions start at 1 and only grow).
 *
 * @since 0.5.0
 * @category models
 */
export interface Entry {
  readonly key: string
  readonly value: Uint8Array
  readonly revision: number
}

/**
 * A compare-and-set write lost: the key's revision was not the one expected.
 *
 * @since 0.5.0
 * @category models
 */
export interface Conflict {
  readonly _tag: "Conflict"
  readonly key: string
  readonly expected: number
}

/**
 * A change seen by `watch`: a value written (`entry`), or a key removed (`entry` undefined).
 *
 * @since 0.5.0
 * @category models
 */
export interface Change {
  readonly key: string
  readonly entry: Entry | undefined
}

/**
 * The store. Keys are `Persistence.key(...)` strings: dot-separated tokens, safe for JetStream
 * key-value.
 *
 * @since 0.5.0
 * @category models
 */
export interface PersistenceShape {
  /** `"memory"` or `"nats-kv"` */
  readonly name: string
  /** the largest value `put` accepts, in bytes */
  readonly maxValueBytes: number
  /** the value of `key` and its revision, if any */
  readonly get: (key: string) => Effect.Effect<Option.Option<Entry>, PersistenceError>
  /**
   * writes `value` if the key is at revision `expected` (0: the key must not exist) and returns
   * the new revision; fails with `Conflict` otherwise, and with `PayloadTooLarge` (nothing
   * written) when `value` is over `maxValueBytes`
   */
  readonly put: (
    key: string,
    value: Uint8Array,
    expected: number
  ) => Effect.Effect<number, Conflict | PayloadTooLarge | PersistenceError>
  /** removes `key` if it is at revision `expected`; a key already gone is not an error when `expected` is 0 */
  readonly remove: (key: string, expected: number) => Effect.Effect<void, Conflict | PersistenceError>
  /** the keys that start with `prefix` (a whole number of tokens, ending with `.`), in no order */
  readonly keys: (prefix: string) => Effect.Effect<ReadonlyArray<string>, PersistenceError>
  /** every later change of a key that starts with `prefix` */
  readonly watch: (prefix: string) => Stream.Stream<Change, PersistenceError>
}

/**
 * @since 0.5.0
 * @category tags
 */
export class Persistence extends Context.Tag("troupe/Persistence")<Persistence, PersistenceShape>() {}

/**
 * A store key from its parts. A part that is a token (`[A-Za-z0-9_-]+`) is kept as it is; any
 * other part (an actor id with spaces, dots or other characters, or an empty one) becomes `=`
 * followed by its UTF-8 bytes in base64url, so that two different parts never share a key.
 *
 * @example
 * ```ts
 * Persistence.key("state", "Account", "alice") // "state.Account.alice"
 * Persistence.key("state", "Account", "a.b")   // "state.Account.=YS5i"
 * ```
 *
 * @since 0.5.0
 * @category constructors
 */
export const key: (...parts: ReadonlyArray<string>) => string = internalMemory.keyOf

/**
 * The parts of a key built by `Persistence.key`.
 *
 * @since 0.5.0
 * @category destructors
 */
export const parts: (key: string) => ReadonlyArray<string> = internalMemory.partsOf

/**
 * A store in this process's memory.
 *
 * @since 0.5.0
 * @category models
 */
export interface MemoryStore {
  readonly [internalMemory.MemoryStoreTypeId]: internalMemory.MemoryStoreTypeId
}

/**
 * A new, empty in-memory store: give the same one to several `layerInMemory` calls so that the
 * nodes of one test see one store.
 *
 * @since 0.5.0
 * @category constructors
 */
export const makeMemoryStore: (options?: { readonly maxValueBytes?: number | undefined }) => MemoryStore =
  internalMemory.makeStore

/**
 * The in-memory store as a layer: the store given, or the one store of an in-memory network
 * (every node on `network` sees the same values), or, with neither, a private store of its own
 * (what `Node.inMemory` uses, as its network is private too).
 *
 * @example
 * ```ts
 * const network = Transport.makeNetwork()
 * const store = Persistence.layerInMemory(network) // the same store for every node on `network`
 * ```
 *
 * @since 0.5.0
 * @category layers
 */
export const layerInMemory = (from?: MemoryStore | InMemoryNetwork): Layer.Layer<Persistence> =>
  Layer.sync(Persistence, () => internalMemory.shapeOf(internalMemory.storeFor(from)))

/**
 * `layerInMemory()`: a private store, new each time the layer is built.
 *
 * @since 0.5.0
 * @category layers
 */
export const inMemory: Layer.Layer<Persistence> = layerInMemory()
