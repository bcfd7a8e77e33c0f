/**
 * A test to copy: three nodes hosting an Account actor, under a partition, lost and delayed
 * frames and a crash, then healed. Everything runs on the cluster's virtual clock, deterministic
 * from the seed; on failure the seed and a trace of the frames are printed.
 *
 *   npx vitest run examples/cluster.test.ts      (here it runs through test/examples/cluster.test.ts)
 */
import { Rpc } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Ref, Schema } from "effect"
import { Actor } from "troupe"
import { TestCluster } from "troupe/testing"

export const Account = Actor.make("Account", [
  Rpc.make("Deposit", { payload: { amount: Schema.Number }, success: Schema.Number }),
  Rpc.make("Balance", { success: Schema.Number })
])

export const AccountLive = Actor.toLayer(
  Account,
  Effect.gen(function*() {
    const balance = yield* Ref.make(0)
    return {
      Deposit: ({ amount }) => Ref.updateAndGet(balance, (n) => n + amount),
      Balance: () => Ref.get(balance)
    }
  })
)

describe("accounts on a faulty cluster", () => {
  it.scoped("a partition heals and every account answers from exactly one node", () =>
    Effect.gen(function*() {
      const cluster = yield* TestCluster.make({ nodes: ["a", "b", "c"], seed: 42, layer: AccountLive })
      yield* cluster.settle
      const accounts = yield* cluster.client("a", Account)

      // a is cut off from b and c: its discovery drops them, and it serves every id alone
      yield* cluster.partition(["a"], ["b", "c"])
      yield* cluster.settle
      expect(yield* accounts("acc-1").Deposit({ amount: 10 })).toBe(10)

      // frames between nodes are lost or delayed; an ask still ends: a reply, or a typed error
      yield* cluster.heal
      yield* cluster.faults({ drop: 0.05, delay: ["1 millis", "50 millis"] })
      const outcome = yield* accounts("acc-2").Deposit({ amount: 5 }, { timeout: "2 seconds" }).pipe(
        Effect.map(() => "answered"),
        Effect.catchAll((error) => Effect.succeed(error._tag))
      )
      expect(["answered", "AskTimeout", "TransportError", "NoAvailableNode"]).toContain(outcome)

      // b crashes (no goodbye) and comes back as a new incarnation
      yield* cluster.crash("b")
      yield* cluster.restart("b")
      yield* cluster.heal
      yield* cluster.settle

      for (const id of ["acc-1", "acc-2", "acc-3"]) yield* accounts(id).Balance()
      for (const id of ["acc-1", "acc-2", "acc-3"]) {
        const active = cluster.nodes.filter((node) => cluster.node(node).isActive("Account", id))
        expect(active).toHaveLength(1)
      }
    }).pipe(TestCluster.withReport))
})
