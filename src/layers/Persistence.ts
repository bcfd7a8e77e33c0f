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
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { NatsConnection } from "nats"
import type { PayloadTooLarge, PersistenceError } from "../schema/Errors.ts"
import type { InMemoryNetwork } from "./internal/inMemory.ts"
import * as internalKv from "./internal/persistenceKv.ts"
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
 * key-value; any other key fails with `PersistenceError` in every store.
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
  /**
   * every change of a key that starts with `prefix` made after the watch started (when the
   * stream starts running; current values are not replayed), each once, in revision order. A
   * JetStream watch takes one round trip to start: to miss nothing, start it before reading the
   * current values (a change may then be seen both ways; compare revisions). Several writes of a
   * key in quick succession may be seen as the last one only (the bucket keeps one value per
   * key); the last is never missed. During an outage it waits, then resumes where it was.
   */
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

/**
 * The settings of a JetStream key-value store (`Node.layerNats({ persistence })` takes these).
 *
 * @since 0.5.0
 * @category models
 */
export interface NatsKvSettings {
  /** the bucket (`[A-Za-z0-9_-]+`); default `"troupe"`; created if missing */
  readonly bucket?: string | undefined
  /**
   * copies of each value on a JetStream cluster (1 to 5; 3 survives the loss of one server), used
   * when the bucket is created; default 1. An existing bucket with other replicas is an error.
   */
  readonly replicas?: number | undefined
  /**
   * the largest value, in bytes; default the server's max payload less 256 bytes of header room
   * (1,048,320 on a default server). An existing bucket with another limit is an error.
   */
  readonly maxValueBytes?: number | undefined
  /** how long one operation may take before it fails with `PersistenceError`; default 5 seconds */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * The options of `Persistence.natsKv`: the settings, and the NATS servers to connect to (the store
 * opens its own connection, closed with the layer) or a connection the caller owns.
 *
 * @since 0.5.0
 * @category models
 */
export type NatsKvOptions =
  & NatsKvSettings
  & (
    | {
      /** one or more `nats://host:port` URLs */
      readonly servers: string | ReadonlyArray<string>
      /** the connection's name, as the server's monitoring shows it; default `"troupe-persistence"` */
      readonly name?: string | undefined
      readonly connection?: undefined
    }
    | {
      /** an open nats.js connection, used as it is and not closed by the store */
      readonly connection: NatsConnection
      readonly servers?: undefined
      readonly name?: undefined
    }
  )

/**
 * A JetStream key-value store (nats-server started with `-js`): connects, creates the bucket if
 * missing (or checks that the existing one has the settings asked for), and closes its connection
 * with the scope. Revisions are the bucket stream's sequence numbers. Fails with
 * `PersistenceError` when the server cannot be reached, has no JetStream, or the bucket differs.
 *
 * @since 0.5.0
 * @category constructors
 */
export const makeNatsKv: (options: NatsKvOptions) => Effect.Effect<PersistenceShape, PersistenceError, Scope.Scope> =
  internalKv.make

/**
 * `makeNatsKv` as a layer.
 *
 * @example
 * ```ts
 * const store = Persistence.layerNatsKv({ servers: "nats://127.0.0.1:4222", replicas: 3 })
 * ```
 *
 * @since 0.5.0
 * @category layers
 */
export const layerNatsKv = (options: NatsKvOptions): Layer.Layer<Persistence, PersistenceError> =>
  Layer.scoped(Persistence, internalKv.make(options))

/**
 * `layerNatsKv`, under the name of the other NATS layers (`Transport.nats`, `Discovery.nats`).
 *
 * @since 0.5.0
 * @category layers
 */
export const natsKv: (options: NatsKvOptions) => Layer.Layer<Persistence, PersistenceError> = layerNatsKv
