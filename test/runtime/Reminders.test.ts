/**
 * Durable reminders (`Actor.reminders`) over TestClock, on the in-memory store: they fire as
 * messages of the kind's Rpcs after passivation and restarts, at least once, and are taken over
 * by the next owner when their node leaves.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as Actor from "../../src/actors/Actor.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as Persistence from "../../src/layers/Persistence.ts"
import * as Transport from "../../src/layers/Transport.ts"
import * as Node from "../../src/runtime/Node.ts"
import { RETRY_MILLIS } from "../../src/runtime/internal/reminderScheduler.ts"
import { Account, accountLayer, makeAccountLog, makeSwitch, type Switch, switchedStore } from "../fixtures/account.ts"
import { awaitSleeps, awaitSleepUntil, eventually } from "../fixtures/clock.ts"
import { type Mode, modes, nodeLayer, nodeOf } from "../fixtures/nodes.ts"

const HOUR = 3_600_000

const accountNode = (
  mode: Mode,
  memory: Persistence.MemoryStore,
  options?: Actor.ToLayerOptions,
  switchboard: Switch = makeSwitch()
) =>
  Effect.gen(function*() {
    const log = makeAccountLog()
    const context = yield* Layer.build(
      nodeLayer(
        mode,
        Transport.makeNetwork(),
        yield* Discovery.makeRegistry,
        accountLayer(log, options).pipe(Layer.provide(switchedStore(memory, switchboard)))
      )
    )
    const account = yield* Effect.provide(Actor.client(Account), context)
    return { log, account, node: nodeOf(context), switchboard }
  })

/** moves the TestClock to `at`, once the scheduler sleeps until then */
const advanceTo = (at: number) =>
  Effect.gen(function*() {
    yield* awaitSleepUntil(at)
    yield* TestClock.setTime(at)
  })

describe.each(modes)("reminders (%s)", (mode) => {
  it.scoped("fire after passivation, activating the actor; set replaces, list shows, cancel removes", () =>
    Effect.gen(function*() {
      const memory = Persistence.makeMemoryStore()
      const { account, log, node } = yield* accountNode(mode, memory, { maxIdleTime: "1 minute" })
      yield* account("a").Subscribe({ name: "bill", plan: "pro", every: "1 hour" })
      yield* account("a").Subscribe({ name: "bill", plan: "max", every: "1 hour" })
      expect(yield* account("a").Reminders()).toEqual([{ name: "bill", dueAt: HOUR }])
      yield* awaitSleeps(1)
      yield* TestClock.adjust("2 minutes")
      yield* eventually(() => !node.isActive("Account", "a"), "a passivated")
      yield* advanceTo(HOUR)
      yield* eventually(() => log.billed.length === 1, "the reminder fired")
      expect(log.billed).toEqual(["max"])
      expect(node.isActive("Account", "a")).toBe(true)
      expect(yield* account("a").Bills()).toBe(1)
      expect(yield* account("a").Reminders()).toEqual([{ name: "bill", dueAt: 2 * HOUR }])
      yield* advanceTo(2 * HOUR)
      yield* eventually(() => log.billed.length === 2, "it fires every period")
      // passivated again a minute after each firing: each firing activates it
      yield* eventually(() => log.builds === 3, "activated by each firing")
      yield* account("a").Unsubscribe({ name: "bill" })
      expect(yield* account("a").Reminders()).toEqual([])
      yield* TestClock.adjust("3 hours")
      expect(log.billed.length).toBe(2)
      expect(yield* account("a").Bills()).toBe(2)
      const store = yield* Effect.provide(Persistence.Persistence, Persistence.layerInMemory(memory))
      expect(yield* store.keys("reminder.")).toEqual([])
    }))

  it.scoped("fire after a supervised restart", () =>
    Effect.gen(function*() {
      const memory = Persistence.makeMemoryStore()
      const { account, log } = yield* accountNode(mode, memory)
      yield* account("r").Subscribe({ name: "bill", plan: "pro", after: "1 hour" })
      yield* Effect.exit(account("r").DepositThenDie({ amount: 1 }))
      yield* awaitSleepUntil(100)
      yield* TestClock.adjust("100 millis")
      yield* eventually(() => log.builds === 2, "restarted")
      yield* advanceTo(HOUR)
      yield* eventually(() => log.billed.length === 1, "the reminder fired")
      expect(yield* account("r").Bills()).toBe(1)
      expect(yield* account("r").Reminders()).toEqual([]) // it was due once
    }))

  it.scoped("a reminder cancelled and set again in one handler is not lost", () =>
    Effect.gen(function*() {
      const memory = Persistence.makeMemoryStore()
      const { account, log } = yield* accountNode(mode, memory)
      yield* account("c").Subscribe({ name: "bill", plan: "pro", after: "1 hour" })
      yield* account("c").Resubscribe({ name: "bill", plan: "max", after: "2 hours" })
      expect(yield* account("c").Reminders()).toEqual([{ name: "bill", dueAt: 2 * HOUR }])
      yield* TestClock.adjust("1 hour")
      expect(log.billed).toEqual([])
      yield* advanceTo(2 * HOUR)
      yield* eventually(() => log.billed.length === 1, "the reminder set again fired")
      expect(log.billed).toEqual(["max"])
    }))

  it.scoped("a firing that was not recorded fires again: its handler failed, or its save did", () =>
    Effect.gen(function*() {
      const memory = Persistence.makeMemoryStore()
      const { account, log, switchboard } = yield* accountNode(mode, memory)
      yield* account("f").Subscribe({ name: "bill", plan: "pro", after: "1 hour" })
      log.failBills = true
      yield* advanceTo(HOUR)
      yield* eventually(() => log.billed.length === 1, "the first firing ran")
      log.failBills = false
      switchboard.mode = "failPuts" // the next firing runs, but its save fails
      yield* advanceTo(HOUR + RETRY_MILLIS)
      yield* eventually(() => log.billed.length === 2, "fired again after the retry delay")
      switchboard.mode = "up"
      yield* advanceTo(HOUR + 2 * RETRY_MILLIS)
      yield* eventually(() => log.billed.length === 3, "fired again, and recorded")
      expect(yield* account("f").Bills()).toBe(1)
      expect(yield* account("f").Reminders()).toEqual([])
      yield* TestClock.adjust("1 hour")
      expect(log.billed.length).toBe(3)
    }))
})

describe("reminders across nodes", () => {
  it.scoped("a reminder of a node that leaves is taken over and fired by the next owner", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const registry = yield* Discovery.makeRegistry
      const memory = Persistence.makeMemoryStore()
      const start = (name: string) =>
        Effect.gen(function*() {
          const log = makeAccountLog()
          const scope = yield* Scope.make()
          const kinds = accountLayer(log, { label: name }).pipe(Layer.provide(Persistence.layerInMemory(memory)))
          const context = yield* Layer.buildWithScope(nodeLayer("msgpack", network, registry, kinds, { name }), scope)
          const account = yield* Effect.provide(Actor.client(Account), context)
          return { name, log, scope, account, node: Context.get(context, Node.Node) }
        })
      const n0 = yield* start("n0")
      const n1 = yield* start("n1")
      yield* Effect.addFinalizer(() =>
        Effect.zipRight(Scope.close(n1.scope, Exit.void), Scope.close(n0.scope, Exit.void))
      )
      const ids = Array.from({ length: 40 }, (_, i) => `id-${i}`)
      const owners = yield* Effect.forEach(ids, (id) => n1.account(id).Whoami())
      const onN0 = ids.filter((_, i) => owners[i] === "n0")
      expect(onN0.length).toBeGreaterThan(5)
      for (const id of ids) yield* n1.account(id).Subscribe({ name: "bill", plan: id, after: "1 hour" })
      yield* Scope.close(n0.scope, Exit.void) // n0 leaves
      yield* eventually(() => !n0.node.isActive("Account", onN0[0]!), "n0 is gone")
      yield* TestClock.adjust("1 hour")
      yield* eventually(() => n1.log.billed.length === ids.length, "every reminder fired on n1")
      expect(n0.log.billed).toEqual([])
      expect([...n1.log.billed].sort()).toEqual([...ids].sort())
      for (const id of onN0) expect(yield* n1.account(id).Bills()).toBe(1)
    }))

  it.scoped("a reminder of a node that dies without a goodbye is fired by the survivor once the node is suspect", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const memory = Persistence.makeMemoryStore()
      const start = (name: string) =>
        Effect.gen(function*() {
          const log = makeAccountLog()
          const inner = Transport.makeInMemory({ network })
          const wire = { dead: false }
          // a dead node's frames go nowhere, and it cannot reach the store either
          const transport: Transport.TransportShape = {
            ...inner,
            publish: (subject, frame, options) => (wire.dead ? Effect.void : inner.publish(subject, frame, options)),
            unsafePublish: (subject, frame, options) =>
              wire.dead ? undefined : inner.unsafePublish(subject, frame, options),
            subscribe: (subject, onFrame, options) =>
              inner.subscribe(subject, (frame) => {
                if (!wire.dead) onFrame(frame)
              }, options)
          }
          const switchboard = makeSwitch()
          const context = yield* Layer.build(
            accountLayer(log, { label: name }).pipe(
              Layer.provide(switchedStore(memory, switchboard)),
              Layer.provideMerge(Node.layer({ name, askTimeout: "1 minute" })),
              Layer.provideMerge(Discovery.layer({ heartbeat: "1 second" })),
              Layer.provide(Layer.succeed(Transport.Transport, transport)),
              Layer.orDie
            )
          )
          const account = yield* Effect.provide(Actor.client(Account), context)
          const serving = () =>
            Discovery.servingMembers(Context.get(context, Discovery.Discovery).unsafeState(), "Account").length
          return { log, account, wire, switchboard, serving }
        })
      const n0 = yield* start("n0")
      const n1 = yield* start("n1")
      yield* TestClock.adjust("1 second")
      yield* eventually(() => n1.serving() === 2 && n0.serving() === 2, "both serve Account")
      const ids = Array.from({ length: 40 }, (_, i) => `id-${i}`)
      const owners = yield* Effect.forEach(ids, (id) => n1.account(id).Whoami())
      expect(owners.filter((owner) => owner === "n0").length).toBeGreaterThan(5)
      // (a short delay: TestClock runs every heartbeat of both nodes on its way)
      for (const id of ids) yield* n1.account(id).Subscribe({ name: "bill", plan: id, after: "10 seconds" })
      n0.wire.dead = true
      n0.switchboard.mode = "fail"
      for (let period = 0; period < 3; period++) yield* TestClock.adjust("1 second")
      yield* eventually(() => n1.serving() === 1, "n0 is suspect after 3 silent periods")
      expect(n1.log.billed).toEqual([])
      yield* TestClock.adjust("10 seconds")
      yield* eventually(() => new Set(n1.log.billed).size === ids.length, "every reminder fired on n1")
      for (const id of ids) expect(yield* n1.account(id).Bills()).toBe(1)
    }))
})
