/**
 * Durable actors (`Actor.state`) on the in-memory store: each message a transaction, load on
 * activation, fencing between two activations of one id, and the store's failures.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { Rpc } from "@effect/rpc"
import * as Actor from "../../src/actors/Actor.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as Persistence from "../../src/layers/Persistence.ts"
import * as Transport from "../../src/layers/Transport.ts"
import { Account, accountLayer, makeAccountLog, type Switch, switchedStore } from "../fixtures/account.ts"
import { awaitSleeps, eventually } from "../fixtures/clock.ts"
import { type Mode, modes, nodeLayer, nodeOf } from "../fixtures/nodes.ts"

const storeOf = (memory: Persistence.MemoryStore) =>
  Effect.provide(Persistence.Persistence, Persistence.layerInMemory(memory))

/** one node in `mode` hosting Account on `memory` */
const accountNode = (
  mode: Mode,
  memory: Persistence.MemoryStore,
  options?: Actor.ToLayerOptions,
  switchboard: Switch = { mode: "up", puts: 0 }
) =>
  Effect.gen(function*() {
    const log = makeAccountLog()
    const registry = yield* Discovery.makeRegistry
    const context = yield* Layer.build(
      nodeLayer(
        mode,
        Transport.makeNetwork(),
        registry,
        accountLayer(log, options).pipe(Layer.provide(switchedStore(memory, switchboard)))
      )
    )
    const account = yield* Effect.provide(Actor.client(Account), context)
    return { log, context, account, switchboard }
  })

describe.each(modes)("durable actors (%s)", (mode) => {
  it.scoped("a change is stored before its reply, and a new activation loads it", () =>
    Effect.gen(function*() {
      const memory = Persistence.makeMemoryStore()
      const { account, context, log } = yield* accountNode(mode, memory, { maxIdleTime: "1 minute" })
      expect(yield* account("alice").Deposit({ amount: 5 })).toBe(5)
      const store = yield* storeOf(memory)
      const stored = yield* store.get(Persistence.key("state", "Account", "alice"))
      expect(Option.isSome(stored)).toBe(true)
      expect(yield* account("alice").Deposit({ amount: 2 })).toBe(7)
      yield* awaitSleeps(1)
      yield* TestClock.adjust("2 minutes")
      yield* eventually(() => !nodeOf(context).isActive("Account", "alice"), "alice passivated")
      expect(yield* account("alice").Balance()).toBe(7)
      expect(log.builds).toBe(2)
    }))
})
