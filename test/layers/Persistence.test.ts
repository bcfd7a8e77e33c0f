/**
 * The in-memory store: the Persistence contract, and what only it does (a store per network,
 * shared by the nodes on it).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Persistence from "../../src/layers/Persistence.ts"
import * as Transport from "../../src/layers/Transport.ts"
import { contract } from "./persistenceContract.ts"

contract(
  "in memory",
  it.scoped,
  Effect.sync(() => Persistence.makeMemoryStore()).pipe(
    Effect.flatMap((store) => Effect.provide(Persistence.Persistence, Persistence.layerInMemory(store)))
  ),
  Effect.yieldNow()
)

describe("Persistence.layerInMemory", () => {
  it.effect("the layers of one network share one store; another network has its own", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const key = Persistence.key("state", "K", "1")
      const a = yield* Effect.provide(Persistence.Persistence, Persistence.layerInMemory(network))
      const b = yield* Effect.provide(Persistence.Persistence, Persistence.layerInMemory(network))
      const other = yield* Effect.provide(Persistence.Persistence, Persistence.layerInMemory(Transport.makeNetwork()))
      yield* a.put(key, new Uint8Array([1]), 0)
      expect(Option.map(yield* b.get(key), (entry) => entry.value)).toEqual(Option.some(new Uint8Array([1])))
      expect(yield* other.get(key)).toEqual(Option.none())
    }))

  it.effect("Persistence.inMemory is a new private store each time it is built", () =>
    Effect.gen(function*() {
      const key = Persistence.key("state", "K", "1")
      const a = yield* Effect.provide(Persistence.Persistence, Layer.fresh(Persistence.inMemory))
      const b = yield* Effect.provide(Persistence.Persistence, Layer.fresh(Persistence.inMemory))
      yield* a.put(key, new Uint8Array([1]), 0)
      expect(yield* b.get(key)).toEqual(Option.none())
    }))

  it.effect("a value read is a copy: changing it does not change the store", () =>
    Effect.gen(function*() {
      const store = yield* Effect.provide(Persistence.Persistence, Persistence.layerInMemory())
      const key = Persistence.key("state", "K", "copy")
      const written = new Uint8Array([1, 2])
      yield* store.put(key, written, 0)
      written[0] = 9
      Option.getOrThrow(yield* store.get(key)).value[1] = 9
      expect(Option.getOrThrow(yield* store.get(key)).value).toEqual(new Uint8Array([1, 2]))
    }))

  it.effect("maxValueBytes of a store made with a limit", () =>
    Effect.gen(function*() {
      const store = yield* Effect.provide(
        Persistence.Persistence,
        Persistence.layerInMemory(Persistence.makeMemoryStore({ maxValueBytes: 10 }))
      )
      expect(store.maxValueBytes).toBe(10)
      expect((yield* Effect.flip(store.put("a", new Uint8Array(11), 0)))._tag).toBe("PayloadTooLarge")
    }))
})
