import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Persistence from "../../src/layers/Persistence.ts"
import * as TestCluster from "../../src/testing/TestCluster.ts"
import { Account, accountLayer, makeAccountLog } from "../fixtures/account.ts"

const three = (seed: number) =>
  TestCluster.make({ nodes: ["a", "b", "c"], seed, layer: accountLayer(makeAccountLog()) })

const ownerOf = (cluster: TestCluster.TestCluster<"a" | "b" | "c">, id: string) =>
  cluster.nodes.find((node) => cluster.status(node) === "running" && cluster.node(node).isActive("Account", id))

describe("TestCluster with durable kinds", () => {
  it.scoped("every node and incarnation shares the cluster's store; it survives a crash and a restart", () =>
    Effect.gen(function*() {
      const cluster = yield* three(7)
      yield* cluster.settle
      const account = yield* cluster.client("a", Account)
      for (const id of ["x", "y", "z", "w"]) yield* account(id).Deposit({ amount: 10 })
      const crashed = ownerOf(cluster, "x")!
      yield* cluster.crash(crashed)
      yield* cluster.settle
      const asker = cluster.nodes.find((node) => node !== crashed)!
      const again = yield* cluster.client(asker, Account)
      expect(yield* again("x").Deposit({ amount: 1 })).toBe(11)
      yield* cluster.restart(crashed)
      yield* cluster.settle
      const fromRestarted = yield* cluster.client(crashed, Account)
      for (const id of ["x", "y", "z", "w"]) {
        expect(yield* fromRestarted(id).Balance()).toBe(id === "x" ? 11 : 10)
      }
      const stored = yield* cluster.store.get(Persistence.key("state", "Account", "x"))
      expect(Option.isSome(stored)).toBe(true)
    }).pipe(TestCluster.withReport))

  it.scoped("storeDown fails writes with PersistenceError and stores nothing; storeUp and heal end it", () =>
    Effect.gen(function*() {
      const cluster = yield* three(8)
      yield* cluster.settle
      const account = yield* cluster.client("b", Account)
      yield* account("x").Deposit({ amount: 5 })
      yield* cluster.storeDown
      const failed = yield* Effect.flip(account("x").Deposit({ amount: 1 }))
      expect(failed._tag).toBe("PersistenceError")
      expect(cluster.stats().storeFailures).toBeGreaterThan(0)
      yield* cluster.storeUp
      expect(yield* account("x").Deposit({ amount: 2 })).toBe(7)
      yield* cluster.storeDown
      yield* cluster.heal
      expect(yield* account("x").Balance()).toBe(7)
    }).pipe(TestCluster.withReport))

  it.scoped("a write whose answer is lost is stored, though its caller got PersistenceError", () =>
    Effect.gen(function*() {
      const cluster = yield* three(9)
      yield* cluster.settle
      const account = yield* cluster.client("c", Account)
      yield* account("x").Deposit({ amount: 5 })
      yield* cluster.storeFaults({ lostReply: 1 })
      const failed = yield* Effect.flip(account("x").Deposit({ amount: 1 }))
      expect(failed._tag).toBe("PersistenceError")
      expect(cluster.trace().some((line) => line.includes("its answer lost"))).toBe(true)
      yield* cluster.heal
      expect(yield* account("x").Balance()).toBe(6)
    }).pipe(TestCluster.withReport))
})
