/**
 * Durable actors (`Actor.state`) on the in-memory store: each message a transaction, load on
 * activation, fencing between two activations of one id, and the store's failures.
 */
import { Rpc } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { Packr } from "msgpackr"
import * as Actor from "../../src/actors/Actor.ts"
import type { ActorSystem } from "../../src/actors/ActorSystem.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as Persistence from "../../src/layers/Persistence.ts"
import * as Transport from "../../src/layers/Transport.ts"
import { Account, accountLayer, makeAccountLog, makeSwitch, type Switch, switchedStore } from "../fixtures/account.ts"
import { awaitSleeps, eventually } from "../fixtures/clock.ts"
import { type Mode, modes, nodeLayer, nodeOf } from "../fixtures/nodes.ts"

const storeOf = (memory: Persistence.MemoryStore) =>
  Effect.provide(Persistence.Persistence, Persistence.layerInMemory(memory))

const stateKey = (id: string) => Persistence.key("state", "Account", id)

/** one node in `mode` hosting Account on `memory`, on its own network and registry (unless given) */
const accountNode = (
  mode: Mode,
  memory: Persistence.MemoryStore,
  options?: Actor.ToLayerOptions,
  switchboard: Switch = makeSwitch(),
  network: Transport.InMemoryNetwork = Transport.makeNetwork()
) =>
  Effect.gen(function*() {
    const log = makeAccountLog()
    const registry = yield* Discovery.makeRegistry
    const context = yield* Layer.build(
      nodeLayer(
        mode,
        network,
        registry,
        accountLayer(log, options).pipe(Layer.provide(switchedStore(memory, switchboard)))
      )
    )
    const account = yield* Effect.provide(Actor.client(Account), context)
    return { log, context, account, switchboard, node: nodeOf(context) }
  })

const failureOf = <A, E>(exit: Exit.Exit<A, E>): unknown =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

describe.each(modes)("durable actors (%s)", (mode) => {
  it.scoped("a change is stored before its reply, and a new activation loads it", () =>
    Effect.gen(function*() {
      const memory = Persistence.makeMemoryStore()
      const { account, log, node } = yield* accountNode(mode, memory, { maxIdleTime: "1 minute" })
      expect(yield* account("alice").Deposit({ amount: 5 })).toBe(5)
      const store = yield* storeOf(memory)
      expect(Option.isSome(yield* store.get(stateKey("alice")))).toBe(true)
      expect(yield* account("alice").Deposit({ amount: 2 })).toBe(7)
      yield* awaitSleeps(1)
      yield* TestClock.adjust("2 minutes")
      yield* eventually(() => !node.isActive("Account", "alice"), "alice passivated")
      expect(yield* account("alice").Balance()).toBe(7)
      expect(log.builds).toBe(2)
    }))

  it.scoped("a handler that fails, dies or is interrupted discards its changes", () =>
    Effect.gen(function*() {
      const memory = Persistence.makeMemoryStore()
      const { account, log, switchboard } = yield* accountNode(mode, memory)
      yield* account("a").Deposit({ amount: 1 })
      const failed = yield* Effect.exit(account("a").DepositThenFail({ amount: 10 }))
      expect(failureOf(failed)).toMatchObject({ _tag: "AccountError" })
      expect(yield* account("a").Balance()).toBe(1)

      const died = yield* Effect.exit(account("a").DepositThenDie({ amount: 100 }))
      expect(failureOf(died)).toMatchObject({ _tag: "RemoteDefect" })
      const afterRestart = yield* Effect.fork(account("a").Balance())
      yield* awaitSleeps(1)
      yield* TestClock.adjust("100 millis") // the supervision back-off
      expect(yield* Fiber.join(afterRestart)).toBe(1)
      expect(log.builds).toBe(2)

      const blocked = yield* Effect.fork(
        Effect.exit(account("a").DepositThenBlock({ amount: 1000, key: "k" }, { timeout: "1 second" }))
      )
      yield* eventually(() => log.latches.has("k"), "the handler waits")
      yield* TestClock.adjust("1 second")
      expect(failureOf(yield* Fiber.join(blocked))).toMatchObject({ _tag: "AskTimeout" })
      expect(yield* account("a").Balance()).toBe(1)
      expect(switchboard.puts).toBe(1)
    }))

  it.scoped("a handler that changed nothing writes nothing", () =>
    Effect.gen(function*() {
      const memory = Persistence.makeMemoryStore()
      const { account, switchboard } = yield* accountNode(mode, memory)
      for (let i = 0; i < 3; i++) yield* account("n").Balance()
      expect(switchboard.puts).toBe(0)
      yield* account("n").Deposit({ amount: 1 })
      expect(switchboard.puts).toBe(1)
      yield* account("n").Touch() // sets the value it has
      yield* account("n").Balance()
      expect(switchboard.puts).toBe(1)
    }))

  it.scoped("a streamed reply commits when its stream ends, and a failed stream discards", () =>
    Effect.gen(function*() {
      const memory = Persistence.makeMemoryStore()
      const { account, switchboard } = yield* accountNode(mode, memory)
      expect(Chunk.toReadonlyArray(yield* Stream.runCollect(account("s").Count({ count: 3 })))).toEqual([1, 2, 3])
      expect(yield* account("s").Balance()).toBe(3)
      const failed = yield* Effect.exit(Stream.runCollect(account("s").Count({ count: 5, failAt: 2 })))
      expect(failureOf(failed)).toMatchObject({ _tag: "AccountError" })
      expect(yield* account("s").Balance()).toBe(3)
      expect(switchboard.puts).toBe(1)
    }))

  it.scoped("a stored value that no longer decodes fails the activation with StateDecodeError, and is kept", () =>
    Effect.gen(function*() {
      const memory = Persistence.makeMemoryStore()
      const store = yield* storeOf(memory)
      const bytes = new Packr({ useRecords: false }).pack({ s: { balance: "ten", bills: 0, note: "" } })
      const revision = yield* store.put(stateKey("old"), bytes, 0)
      const { account } = yield* accountNode(mode, memory)
      for (let i = 0; i < 2; i++) {
        const exit = yield* Effect.exit(account("old").Deposit({ amount: 1 }))
        const error = failureOf(exit) as { _tag: string; issue: string }
        expect(error._tag).toBe("StateDecodeError")
        expect(error.issue).toContain("balance")
      }
      const kept = Option.getOrThrow(yield* store.get(stateKey("old")))
      expect(kept.revision).toBe(revision)
      expect(Buffer.compare(kept.value, bytes)).toBe(0)
    }))

  it.scoped("a state over the store's value limit fails with PayloadTooLarge, and the stored value is kept", () =>
    Effect.gen(function*() {
      const memory = Persistence.makeMemoryStore({ maxValueBytes: 200 })
      const { account, log } = yield* accountNode(mode, memory)
      yield* account("big").Note({ size: 50 })
      yield* account("big").Deposit({ amount: 1 })
      const store = yield* storeOf(memory)
      const before = Option.getOrThrow(yield* store.get(stateKey("big")))
      const exit = yield* Effect.exit(account("big").Note({ size: 500 }))
      expect(failureOf(exit)).toMatchObject({ _tag: "PayloadTooLarge", limit: 200 })
      expect(Option.getOrThrow(yield* store.get(stateKey("big"))).revision).toBe(before.revision)
      // the activation goes on, with the value it had
      expect(yield* account("big").Deposit({ amount: 1 })).toBe(2)
      expect(log.builds).toBe(1)
    }))

  it.scoped("an unreachable store fails the message with PersistenceError, never a hang; the actor serves again once it is back", () =>
    Effect.gen(function*() {
      const memory = Persistence.makeMemoryStore()
      const { account, switchboard } = yield* accountNode(mode, memory, { persistenceTimeout: "5 seconds" })
      yield* account("p").Deposit({ amount: 1 })
      switchboard.mode = "hang"
      const saving = yield* Effect.fork(Effect.exit(account("p").Deposit({ amount: 10 })))
      yield* eventually(() => switchboard.hung === 1, "the save hangs")
      yield* TestClock.adjust("5 seconds")
      expect(failureOf(yield* Fiber.join(saving))).toMatchObject({ _tag: "PersistenceError", operation: "put" })
      // the outcome of that save is unknown: the next message activates again, and the load hangs too
      const loading = yield* Effect.fork(Effect.exit(account("p").Balance()))
      yield* eventually(() => switchboard.hung === 2, "the load hangs")
      yield* TestClock.adjust("5 seconds")
      expect(failureOf(yield* Fiber.join(loading))).toMatchObject({ _tag: "PersistenceError", operation: "get" })
      switchboard.mode = "fail"
      expect(failureOf(yield* Effect.exit(account("p").Balance()))).toMatchObject({ _tag: "PersistenceError" })
      switchboard.mode = "up"
      expect(yield* account("p").Deposit({ amount: 100 })).toBe(101)
    }))
})

describe.each(modes)("fencing (%s)", (mode) => {
  it.scoped("two nodes forced to activate one id: the losing save gets StateConflict, the loser reloads, no write is lost", () =>
    Effect.gen(function*() {
      // one network and one store, but each node in a registry of its own: each thinks it owns every id
      const network = Transport.makeNetwork()
      const memory = Persistence.makeMemoryStore()
      const a = yield* accountNode(mode, memory, undefined, makeSwitch(), network)
      const b = yield* accountNode(mode, memory, undefined, makeSwitch(), network)
      expect(yield* a.account("x").Deposit({ amount: 1 })).toBe(1)
      expect(yield* b.account("x").Deposit({ amount: 10 })).toBe(11)
      expect(a.node.isActive("Account", "x") && b.node.isActive("Account", "x")).toBe(true)

      // a's save is fenced off: its caller is told, and a's activation is passivated
      const lost = yield* Effect.exit(a.account("x").Deposit({ amount: 100 }))
      expect(failureOf(lost)).toMatchObject({ _tag: "StateConflict", kind: "Account", id: "x" })
      yield* eventually(() => !a.node.isActive("Account", "x"), "the losing activation is passivated")
      expect(yield* a.account("x").Deposit({ amount: 1000 })).toBe(1011)

      // now b is behind: a message waiting behind its losing one runs on a fresh activation
      const [conflicted, queued] = yield* Effect.all([
        Effect.exit(b.account("x").Deposit({ amount: 7 })),
        Effect.exit(b.account("x").Deposit({ amount: 5 }))
      ], { concurrency: "unbounded" })
      expect(failureOf(conflicted)).toMatchObject({ _tag: "StateConflict" })
      expect(queued).toEqual(Exit.succeed(1016))
      expect(b.log.builds).toBe(2)
      // every acknowledged deposit is in the balance, and no other
      expect(yield* b.account("x").Balance()).toBe(1 + 10 + 1000 + 5)
      // (a's activation is the one behind now: its next save loses in turn)
      expect(failureOf(yield* Effect.exit(a.account("x").Deposit({ amount: 1 })))).toMatchObject({
        _tag: "StateConflict"
      })
      const store = yield* storeOf(memory)
      const stored = Option.getOrThrow(yield* store.get(stateKey("x")))
      expect((new Packr({ useRecords: false }).unpack(stored.value) as { s: { balance: number } }).s.balance).toBe(1016)
    }))
})

describe("schema migration", () => {
  const Wallet = Actor.make("Wallet", [Rpc.make("Cents", { success: Schema.Number }), Rpc.make("Add", {})])
  const V1 = Schema.Struct({ balance: Schema.Number })
  const V2 = Schema.Struct({ version: Schema.Literal(2), cents: Schema.Number })
  const Migrated = Schema.transform(Schema.Union(V2, V1), V2, {
    strict: true,
    decode: (
      stored
    ) => ("version" in stored ? stored : { version: 2 as const, cents: Math.round(stored.balance * 100) }),
    encode: (current) => current
  })
  const walletLayer = <A, I>(schema: Schema.Schema<A, I>, initial: A, add: (a: A) => A, cents: (a: A) => number) =>
    Actor.toLayer(
      Wallet,
      Effect.gen(function*() {
        const state = yield* Actor.state(schema, { initial: () => initial })
        return { Cents: () => Effect.map(state.get, cents), Add: () => state.update(add) }
      })
    )

  it.scoped("a Union of the versions plus a transform reads what the old schema stored, and writes the new one", () =>
    Effect.gen(function*() {
      const memory = Persistence.makeMemoryStore()
      const host = (kinds: Layer.Layer<never, never, Persistence.Persistence | ActorSystem>) =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const context = yield* Layer.buildWithScope(
            nodeLayer(
              "msgpack",
              Transport.makeNetwork(),
              yield* Discovery.makeRegistry,
              kinds.pipe(Layer.provide(Persistence.layerInMemory(memory)))
            ),
            scope
          )
          return { scope, wallet: yield* Effect.provide(Actor.client(Wallet), context) }
        })
      const old = yield* host(walletLayer(V1, { balance: 0 }, (s) => ({ balance: s.balance + 1.25 }), (s) => s.balance))
      yield* old.wallet("w").Add()
      yield* Scope.close(old.scope, Exit.void)
      const next = yield* host(
        walletLayer(Migrated, { version: 2 as const, cents: 0 }, (s) => ({ ...s, cents: s.cents + 1 }), (s) => s.cents)
      )
      expect(yield* next.wallet("w").Cents()).toBe(125)
      yield* next.wallet("w").Add()
      const store = yield* storeOf(memory)
      const stored = Option.getOrThrow(yield* store.get(Persistence.key("state", "Wallet", "w")))
      expect(new Packr({ useRecords: false }).unpack(stored.value)).toEqual({ s: { version: 2, cents: 126 } })
      yield* Scope.close(next.scope, Exit.void)
    }))
})

describe("clear errors", () => {
  const Counter = Actor.service("DurableService", [Rpc.make("Get", { success: Schema.Number })])
  const Twice = Actor.make("Twice", [Rpc.make("Get", { success: Schema.Number })])

  const hostAndAsk = (kinds: Layer.Layer<never, never, any>, ask: Effect.Effect<unknown, unknown, any>) =>
    Effect.gen(function*() {
      const context = yield* Layer.build(
        nodeLayer("zero-copy", Transport.makeNetwork(), yield* Discovery.makeRegistry, kinds)
      )
      return yield* Effect.exit(Effect.provide(ask, context))
    })

  it.scoped("Actor.state in a service is a clear error", () =>
    Effect.gen(function*() {
      const live = Actor.toLayer(
        Counter,
        Effect.gen(function*() {
          const state = yield* Actor.state(Schema.Number, { initial: () => 0 })
          return { Get: () => state.get }
        })
      ).pipe(Layer.provide(Persistence.inMemory))
      const exit = yield* hostAndAsk(live, Effect.flatMap(Actor.client(Counter), (c) => c.Get()))
      expect(failureOf(exit)).toMatchObject({ _tag: "RemoteDefect" })
      expect((failureOf(exit) as { defect: string }).defect).toContain("is for actor kinds")
    }))

  it.scoped("Actor.state twice in one build is a clear error", () =>
    Effect.gen(function*() {
      const live = Actor.toLayer(
        Twice,
        Effect.gen(function*() {
          const state = yield* Actor.state(Schema.Number, { initial: () => 0 })
          yield* Actor.state(Schema.Number, { initial: () => 0 })
          return { Get: () => state.get }
        })
      ).pipe(Layer.provide(Persistence.inMemory))
      const exit = yield* hostAndAsk(live, Effect.flatMap(Actor.client(Twice), (c) => c("t").Get()))
      expect((failureOf(exit) as { defect: string }).defect).toContain("called twice")
    }))

  it.scoped("Actor.state without a Persistence layer fails with a typed PersistenceError, never in memory", () =>
    Effect.gen(function*() {
      const live = Actor.toLayer(
        Twice,
        Effect.gen(function*() {
          const state = yield* Actor.state(Schema.Number, { initial: () => 0 })
          return { Get: () => state.get }
        })
      )
      // @ts-expect-error the kind needs Persistence: forgetting it is a type error
      const missing: Layer.Layer<never, never, never> = live
      const exit = yield* hostAndAsk(missing, Effect.flatMap(Actor.client(Twice), (c) => c("t").Get()))
      expect(failureOf(exit)).toMatchObject({ _tag: "PersistenceError", operation: "activate" })
    }))
})
