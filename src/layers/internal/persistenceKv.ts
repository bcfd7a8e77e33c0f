/**
 * The JetStream key-value store behind `Persistence.natsKv`: `PersistenceShape` on a nats.js KV
 * bucket. Revisions are the stream's sequence numbers; a compare-and-set is a publish with the
 * expected last sequence of the key's subject; a removed key is a delete marker, read as absent.
 * Every operation is bounded by the store's timeout, so an unreachable server fails it with
 * `PersistenceError`, never a hang: `get`, `put` and `remove` are single JetStream requests, which
 * nats.js bounds (the bucket is opened with the timeout); `keys` and `watch` take several steps
 * and are bounded on Effect's Clock as a whole. The single requests carry no bound of their own
 * on Effect's Clock because one (`Effect.timeoutFail`: a fiber and a timer per call) cost about
 * 100 µs of CPU a write here, as much as the JetStream write itself; callers on Effect's Clock
 * (the durable job loop) bound them with the node's own timer.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { KvEntry } from "nats"
import { PayloadTooLarge, PersistenceError } from "../../schema/Errors.ts"
import type { Change, Conflict, Entry, NatsKvOptions, PersistenceShape } from "../Persistence.ts"
import { isValidKey } from "./persistenceMemory.ts"
import { isWrongLastSequence, persistenceError, writeError } from "./persistenceKvErrors.ts"
import { open, type OpenBucket } from "./persistenceKvOpen.ts"

const isLive = (entry: KvEntry | null): entry is KvEntry => entry !== null && entry.operation === "PUT"

const entryOf = (entry: KvEntry): Entry => ({ key: entry.key, value: entry.value, revision: entry.revision })

/** the KV filter that covers `prefix`: its whole tokens, then `>` (the rest is filtered here) */
const filterOf = (prefix: string): string => {
  const cut = prefix.lastIndexOf(".")
  return cut < 0 ? ">" : `${prefix.slice(0, cut + 1)}>`
}

const badKey = (operation: string, key: string) =>
  new PersistenceError({ operation, reason: `invalid key "${key}" (build keys with Persistence.key)` })

/** what the operations of one store share */
interface KvStore {
  readonly bucket: OpenBucket
  /** the keys being written, each with the writes waiting for it */
  readonly locks: Map<string, Array<Deferred.Deferred<void>>>
}

/** @internal the store on an open bucket */
export const shapeOf = (bucket: OpenBucket): PersistenceShape => {
  const store: KvStore = { bucket, locks: new Map() }
  return {
    name: "nats-kv",
    maxValueBytes: bucket.maxValueBytes,
    get: (key) => get(store, key),
    put: (key, value, expected) => put(store, key, value, expected),
    remove: (key, expected) => remove(store, key, expected),
    keys: (prefix) => keys(store, prefix),
    watch: (prefix) => Stream.unwrapScoped(watchFrom(bucket, prefix))
  }
}

/** a nats.js call, its failure mapped by `onError` */
const call = <A, E>(run: (signal: AbortSignal) => Promise<A>, onError: (error: unknown) => E): Effect.Effect<A, E> =>
  Effect.tryPromise({ try: run, catch: onError })

/** an operation of several requests (`keys`), bounded as a whole on Effect's Clock */
const bounded = <A, E>(
  store: KvStore,
  operation: string,
  effect: Effect.Effect<A, E>
): Effect.Effect<A, E | PersistenceError> =>
  Effect.timeoutFail(effect, {
    duration: Duration.millis(store.bucket.timeoutMs),
    onTimeout: () =>
      new PersistenceError({ operation, reason: `no answer from JetStream within ${store.bucket.timeoutMs} ms` })
  })

/**
 * Writes of one key from this store go one at a time. Before nats-server 2.9.21 a replicated
 * stream checks the expected revision against applied writes only, so two compare-and-sets of
 * one key in flight together could both succeed (nats-io/nats-server#4320); one in flight per
 * key and process keeps that from happening within a process.
 *
 * The lock of a key is its queue of waiters, present while a write holds it. A write to a key
 * nobody holds (the durable actors' case: one message at a time per actor) takes it with one map
 * lookup, with no semaphore (`Semaphore.withPermits` cost about 20 µs of CPU a write here). A
 * waiter is handed the lock when the holder ends; a waiter interrupted after it was handed the
 * lock passes it on.
 */
const serialized = <A, E>(store: KvStore, key: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.suspend(() => {
      const release = Effect.sync(() => handOver(store, key))
      const waiters = store.locks.get(key)
      if (waiters === undefined) {
        store.locks.set(key, [])
        return Effect.ensuring(restore(effect), release)
      }
      const turn = Deferred.unsafeMake<void>(FiberId.none)
      waiters.push(turn)
      return restore(Deferred.await(turn)).pipe(
        Effect.onInterrupt(() =>
          Effect.sync(() => {
            const at = waiters.indexOf(turn)
            if (at >= 0) waiters.splice(at, 1)
            else handOver(store, key) // handed the lock as it was interrupted: pass it on
          })
        ),
        Effect.zipRight(Effect.ensuring(restore(effect), release))
      )
    })
  )

/** the holder of `key`'s lock is done: the next waiter holds it, or nobody */
const handOver = (store: KvStore, key: string): void => {
  const waiters = store.locks.get(key)
  if (waiters === undefined) return
  const next = waiters.shift()
  if (next === undefined) store.locks.delete(key)
  else Deferred.unsafeDone(next, Effect.void)
}

/** the key's last message: its value, or a delete marker, or nothing */
const getRaw = (store: KvStore, operation: string, key: string) =>
  call(() => store.bucket.kv.get(key), (error) => persistenceError(operation, error, store.bucket.timeoutMs))

const get = (store: KvStore, key: string): ReturnType<PersistenceShape["get"]> =>
  isValidKey(key)
    ? Effect.map(
      getRaw(store, `get ${key}`, key),
      (entry) => (isLive(entry) ? Option.some(entryOf(entry)) : Option.none())
    )
    : Effect.fail(badKey("get", key))

const put = (
  store: KvStore,
  key: string,
  value: Uint8Array,
  expected: number
): ReturnType<PersistenceShape["put"]> => {
  const { kv, maxValueBytes, timeoutMs } = store.bucket
  const operation = `put ${key}`
  if (value.byteLength > maxValueBytes) {
    return Effect.fail(new PayloadTooLarge({ size: value.byteLength, limit: maxValueBytes }))
  }
  if (!isValidKey(key)) return Effect.fail(badKey("put", key))
  const write = (previous: number) =>
    call(
      () => kv.put(key, value, { previousSeq: previous }),
      (error) => writeError(operation, key, expected, value.byteLength, maxValueBytes, error, timeoutMs)
    )
  if (expected !== 0) return serialized(store, key, write(expected))
  // "must not exist": a key removed before is a delete marker, so write over the marker's
  // revision instead (still a compare-and-set: a write in between is a conflict)
  const create = write(0).pipe(
    Effect.catchIf(
      (error): error is Conflict => error._tag === "Conflict",
      (conflict) =>
        Effect.flatMap(
          getRaw(store, operation, key),
          (entry): Effect.Effect<number, Conflict | PayloadTooLarge | PersistenceError> =>
            entry !== null && entry.operation !== "PUT" ? write(entry.revision) : Effect.fail(conflict)
        )
    )
  )
  return serialized(store, key, create)
}

const remove = (store: KvStore, key: string, expected: number): ReturnType<PersistenceShape["remove"]> => {
  const operation = `remove ${key}`
  if (!isValidKey(key)) return Effect.fail(badKey("remove", key))
  if (expected === 0) {
    // nothing to write: the key must be absent, and then there is nothing to remove
    return Effect.flatMap(
      getRaw(store, operation, key),
      (entry) => isLive(entry) ? Effect.fail<Conflict>({ _tag: "Conflict", key, expected }) : Effect.void
    )
  }
  return serialized(
    store,
    key,
    call(
      () => store.bucket.kv.delete(key, { previousSeq: expected }),
      (error): Conflict | PersistenceError =>
        isWrongLastSequence(error)
          ? { _tag: "Conflict", key, expected }
          : persistenceError(operation, error, store.bucket.timeoutMs)
    )
  )
}

const keys = (store: KvStore, prefix: string): ReturnType<PersistenceShape["keys"]> => {
  const operation = `keys ${prefix}`
  return bounded(
    store,
    operation,
    call(async (signal) => {
      const iterator = await store.bucket.kv.keys(filterOf(prefix))
      signal.addEventListener("abort", () => iterator.stop(), { once: true })
      const found: Array<string> = []
      for await (const key of iterator) if (key.startsWith(prefix)) found.push(key)
      return found
    }, (error) => persistenceError(operation, error, store.bucket.timeoutMs))
  )
}

/**
 * Every change after the watch started: the stream's last sequence is read first, then an
 * ordered consumer delivers from the next one. nats.js restarts an ordered consumer that missed
 * a message or lost its server (it may then replay from earlier), so only revisions above the
 * last one delivered pass: each change once, in revision order. The iterator is read by a loop
 * of its own and stopped when the stream ends (an async generator waiting for a value cannot be
 * returned from).
 */
const watchFrom = (
  bucket: OpenBucket,
  prefix: string
): Effect.Effect<Stream.Stream<Change, PersistenceError>, PersistenceError, Scope.Scope> =>
  Effect.gen(function*() {
    const operation = `watch ${prefix}`
    const { jsm, kv, stream, timeoutMs } = bucket
    const { entries, from } = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const info = await jsm.streams.info(stream)
          const from = info.state.last_seq + 1
          return { from, entries: await kv.watch({ key: filterOf(prefix), resumeFromRevision: from }) }
        },
        catch: (error) => persistenceError(operation, error, timeoutMs)
      }).pipe(
        Effect.timeoutFail({
          duration: Duration.millis(timeoutMs),
          onTimeout: () =>
            new PersistenceError({ operation, reason: `no answer from JetStream within ${timeoutMs} ms` })
        })
      ),
      ({ entries }) => Effect.sync(() => entries.stop())
    )
    return Stream.async<Change, PersistenceError>((emit) => {
      let next = from
      const read = async () => {
        for await (const entry of entries) {
          if (entry.revision < next) continue
          next = entry.revision + 1
          if (!entry.key.startsWith(prefix)) continue
          await emit.single({ key: entry.key, entry: isLive(entry) ? entryOf(entry) : undefined })
        }
      }
      read().then(
        () => emit.fail(new PersistenceError({ operation, reason: "the watch was closed by the server" })),
        (error) => emit.fail(persistenceError(operation, error, timeoutMs))
      )
      return Effect.sync(() => entries.stop())
    }, 64)
  })

/** @internal `Persistence.makeNatsKv` */
export const make = (options: NatsKvOptions): Effect.Effect<PersistenceShape, PersistenceError, Scope.Scope> =>
  Effect.map(open(options), shapeOf)
