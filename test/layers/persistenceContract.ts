/**
 * The contract every `Persistence` store keeps, as tests run against each store
 * (`Persistence.test.ts`: in memory; `Persistence.nats.test.ts`: JetStream key-value).
 */
import { describe, expect } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Persistence from "../../src/layers/Persistence.ts"

/** the `it.scoped` (or `it.scopedLive`) of @effect/vitest */
export type ScopedTest = (
  name: string,
  self: () => Effect.Effect<void, unknown, Scope.Scope>,
  timeout?: number
) => void

const bytes = (...values: ReadonlyArray<number>) => new Uint8Array(values)
const text = (value: string) => new TextEncoder().encode(value)
const read = (value: Uint8Array) => new TextDecoder().decode(value)

const valueOf = (store: Persistence.PersistenceShape, key: string) =>
  Effect.map(store.get(key), Option.map((entry) => read(entry.value)))

/**
 * Starts a watch of `prefix` into a queue, and returns once it is known to be running: a probe key
 * under the prefix is written until the watch has seen it. The probes are then drained.
 */
export const startWatch = (store: Persistence.PersistenceShape, prefix: string, pause: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const seen = yield* Queue.unbounded<Persistence.Change>()
    yield* Effect.forkScoped(Stream.runForEach(store.watch(prefix), (change) => seen.offer(change)))
    const probe = `${prefix}probe`
    let revision = 0
    for (let attempt = 0; attempt < 200 && (yield* seen.size) === 0; attempt++) {
      revision = yield* store.put(probe, text("probe"), revision)
      yield* pause
    }
    expect(yield* seen.size).toBeGreaterThan(0)
    yield* store.remove(probe, revision)
    // every probe change (the last being the removal) before the test's own
    for (;;) {
      const change = yield* seen.take
      expect(change.key).toBe(probe)
      if (change.entry === undefined) break
    }
    return { seen }
  })

/**
 * Registers the contract's tests for a store; `make` gives a new, empty store for each test, and
 * `pause` lets a change reach a watch (a yield in memory, a short sleep over the network).
 */
export const contract = (
  name: string,
  test: ScopedTest,
  make: Effect.Effect<Persistence.PersistenceShape, unknown, Scope.Scope>,
  pause: Effect.Effect<void>
): void => {
  describe(`${name}: the Persistence contract`, () => {
    test("a key is absent, then created at a revision >= 1, and read back", () =>
      Effect.gen(function*() {
        const store = yield* make
        const key = Persistence.key("state", "Account", "alice")
        expect(yield* store.get(key)).toEqual(Option.none())
        const revision = yield* store.put(key, bytes(1, 2, 3), 0)
        expect(revision).toBeGreaterThanOrEqual(1)
        const entry = Option.getOrThrow(yield* store.get(key))
        expect(entry).toEqual({ key, value: bytes(1, 2, 3), revision })
      }))

    test("a put at the current revision replaces the value at a higher revision", () =>
      Effect.gen(function*() {
        const store = yield* make
        const key = Persistence.key("state", "Account", "bob")
        const first = yield* store.put(key, text("one"), 0)
        const second = yield* store.put(key, text("two"), first)
        expect(second).toBeGreaterThan(first)
        expect(yield* valueOf(store, key)).toEqual(Option.some("two"))
        expect(Option.getOrThrow(yield* store.get(key)).revision).toBe(second)
      }))

    test("a put at another revision is a Conflict and keeps the stored value", () =>
      Effect.gen(function*() {
        const store = yield* make
        const key = Persistence.key("state", "Account", "carol")
        const first = yield* store.put(key, text("one"), 0)
        const second = yield* store.put(key, text("two"), first)
        // stale revision, "must not exist" on an existing key, a revision on a missing key
        expect(yield* Effect.flip(store.put(key, text("stale"), first))).toEqual({
          _tag: "Conflict",
          key,
          expected: first
        })
        expect(yield* Effect.flip(store.put(key, text("again"), 0))).toEqual({ _tag: "Conflict", key, expected: 0 })
        const missing = Persistence.key("state", "Account", "nobody")
        expect(yield* Effect.flip(store.put(missing, text("x"), 7))).toEqual({
          _tag: "Conflict",
          key: missing,
          expected: 7
        })
        expect(yield* store.get(missing)).toEqual(Option.none())
        expect(yield* valueOf(store, key)).toEqual(Option.some("two"))
        expect(Option.getOrThrow(yield* store.get(key)).revision).toBe(second)
      }))

    test("of two writers at one revision exactly one wins", () =>
      Effect.gen(function*() {
        const store = yield* make
        const key = Persistence.key("state", "Account", "race")
        const start = yield* store.put(key, text("0"), 0)
        const results = yield* Effect.all(
          Array.from({ length: 8 }, (_, i) => Effect.either(store.put(key, text(`w${i}`), start))),
          { concurrency: "unbounded" }
        )
        const winners = results.filter(Either.isRight)
        expect(winners).toHaveLength(1)
        expect(results.filter(Either.isLeft).map((r) => r.left._tag)).toEqual(Array(7).fill("Conflict"))
        const stored = Option.getOrThrow(yield* store.get(key))
        expect(stored.revision).toBe(winners[0]!.right)
      }))

    test("remove is a compare-and-set too; a removed key is absent and can be created again", () =>
      Effect.gen(function*() {
        const store = yield* make
        const key = Persistence.key("state", "Account", "dave")
        const first = yield* store.put(key, text("one"), 0)
        const second = yield* store.put(key, text("two"), first)
        expect(yield* Effect.flip(store.remove(key, first))).toEqual({ _tag: "Conflict", key, expected: first })
        expect(yield* Effect.flip(store.remove(key, 0))).toEqual({ _tag: "Conflict", key, expected: 0 })
        expect(yield* valueOf(store, key)).toEqual(Option.some("two"))
        yield* store.remove(key, second)
        expect(yield* store.get(key)).toEqual(Option.none())
        // gone: removing with 0 is not an error, with the old revision it is
        yield* store.remove(key, 0)
        expect((yield* Effect.flip(store.remove(key, second)))._tag).toBe("Conflict")
        expect((yield* Effect.flip(store.put(key, text("x"), second)))._tag).toBe("Conflict")
        const third = yield* store.put(key, text("three"), 0)
        expect(third).toBeGreaterThan(second)
        expect(yield* valueOf(store, key)).toEqual(Option.some("three"))
        expect((yield* Effect.flip(store.put(key, text("x"), 0)))._tag).toBe("Conflict")
      }))

    test("keys lists the present keys under a prefix of whole tokens", () =>
      Effect.gen(function*() {
        const store = yield* make
        const put = (key: string) => store.put(key, text(key), 0)
        yield* put("state.A.1")
        yield* put("state.A.2")
        yield* put("state.AB.1")
        yield* put("state.A")
        const gone = yield* put("state.A.3")
        yield* put("reminder.A.1")
        yield* store.remove("state.A.3", gone)
        const sorted = (keys: ReadonlyArray<string>) => [...keys].sort()
        expect(sorted(yield* store.keys("state.A."))).toEqual(["state.A.1", "state.A.2"])
        expect(sorted(yield* store.keys("state."))).toEqual(["state.A", "state.A.1", "state.A.2", "state.AB.1"])
        expect(sorted(yield* store.keys(""))).toHaveLength(5)
        expect(yield* store.keys("nothing.")).toEqual([])
      }))

    test("odd ids make distinct keys through Persistence.key, each one stored and listed", () =>
      Effect.gen(function*() {
        const store = yield* make
        const ids = ["plain", "a.b", "a b", "", "*", ">", "=", "=YS5i", "ü-ñ 🎉", "a/b", "x".repeat(300), "1.2.3"]
        const keys = ids.map((id) => Persistence.key("state", "Kind", id))
        expect(new Set(keys).size).toBe(ids.length)
        for (const [i, key] of keys.entries()) {
          expect(Persistence.parts(key)).toEqual(["state", "Kind", ids[i]])
          yield* store.put(key, text(ids[i]!), 0)
        }
        for (const [i, key] of keys.entries()) expect(yield* valueOf(store, key)).toEqual(Option.some(ids[i]))
        const listed = yield* store.keys(`${Persistence.key("state", "Kind")}.`)
        expect([...listed].sort()).toEqual([...keys].sort())
        expect(listed.map((key) => Persistence.parts(key)[2]).sort()).toEqual([...ids].sort())
      }))

    test("a key outside the grammar fails with PersistenceError and writes nothing", () =>
      Effect.gen(function*() {
        const store = yield* make
        for (const key of ["", "a..b", ".a", "a.", "a b", "a.*", "a.>"]) {
          expect((yield* Effect.flip(store.get(key)))._tag).toBe("PersistenceError")
          expect((yield* Effect.flip(store.put(key, text("x"), 0)))._tag).toBe("PersistenceError")
          expect((yield* Effect.flip(store.remove(key, 0)))._tag).toBe("PersistenceError")
        }
        expect(yield* store.keys("")).toEqual([])
      }))

    test(
      "a value over maxValueBytes fails with PayloadTooLarge, writes nothing and keeps the old value",
      () =>
        Effect.gen(function*() {
          const store = yield* make
          const key = Persistence.key("state", "Account", "big")
          const limit = store.maxValueBytes
          expect(limit).toBeGreaterThan(0)
          const revision = yield* store.put(key, text("small"), 0)
          const error = yield* Effect.flip(store.put(key, new Uint8Array(limit + 1), revision))
          expect(error).toMatchObject({ _tag: "PayloadTooLarge", size: limit + 1, limit })
          expect(yield* valueOf(store, key)).toEqual(Option.some("small"))
          expect(Option.getOrThrow(yield* store.get(key)).revision).toBe(revision)
          const fresh = Persistence.key("state", "Account", "bigger")
          expect((yield* Effect.flip(store.put(fresh, new Uint8Array(limit + 1), 0)))._tag).toBe("PayloadTooLarge")
          expect(yield* store.get(fresh)).toEqual(Option.none())
          // exactly the limit is accepted
          const full = yield* store.put(key, new Uint8Array(limit).fill(7), revision)
          const stored = Option.getOrThrow(yield* store.get(key))
          expect(stored.revision).toBe(full)
          expect(stored.value.byteLength).toBe(limit)
        }),
      30_000
    )

    test("watch sees only later changes under its prefix, each once, in revision order", () =>
      Effect.gen(function*() {
        const store = yield* make
        const before = yield* store.put("w.A.before", text("old"), 0)
        const { seen } = yield* startWatch(store, "w.A.", pause)
        const a1 = yield* store.put("w.A.a", text("a1"), 0)
        const b1 = yield* store.put("w.A.b", text("b1"), 0)
        yield* store.put("w.B.a", text("elsewhere"), 0)
        const a2 = yield* store.put("w.A.a", text("a2"), a1)
        yield* store.remove("w.A.b", b1)
        const b2 = yield* store.put("w.A.before", text("new"), before)
        const changes = []
        for (let i = 0; i < 5; i++) changes.push(yield* seen.take)
        expect(changes.map((change) => [change.key, change.entry && read(change.entry.value)])).toEqual([
          ["w.A.a", "a1"],
          ["w.A.b", "b1"],
          ["w.A.a", "a2"],
          ["w.A.b", undefined],
          ["w.A.before", "new"]
        ])
        expect(changes.map((change) => change.entry?.revision)).toEqual([a1, b1, a2, undefined, b2])
        for (let i = 0; i < 4; i++) yield* pause
        expect(yield* seen.size).toBe(0)
      }))

    test("watch under a burst of writes: revisions only grow, and the last write of each key is seen", () =>
      Effect.gen(function*() {
        const store = yield* make
        const { seen } = yield* startWatch(store, "burst.", pause)
        const keys = ["burst.a", "burst.b", "burst.c"]
        const last = new Map<string, number>()
        yield* Effect.forEach(keys, (key) =>
          Effect.gen(function*() {
            let revision = 0
            for (let i = 0; i < 30; i++) revision = yield* store.put(key, text(`${key}-${i}`), revision)
            last.set(key, revision)
          }), { concurrency: "unbounded" })
        const revisions: Array<number> = []
        const lastSeen = new Map<string, number>()
        while (keys.some((key) => lastSeen.get(key) !== last.get(key))) {
          const change = yield* seen.take
          revisions.push(change.entry!.revision)
          lastSeen.set(change.key, change.entry!.revision)
        }
        for (let i = 1; i < revisions.length; i++) expect(revisions[i]!).toBeGreaterThan(revisions[i - 1]!)
        expect(yield* Effect.map(store.get("burst.a"), (entry) => Option.getOrThrow(entry).value)).toEqual(
          text("burst.a-29")
        )
      }))
  })
}
