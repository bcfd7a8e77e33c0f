import { Rpc } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as Actor from "../../src/actors/Actor.ts"
import { adjustAfterSleeps, awaitSleepIn, awaitSleeps, eventually } from "../fixtures/clock.ts"
import { modes, nodeOf, singleNode } from "../fixtures/nodes.ts"
import {
  makeProbeState,
  openLatch,
  Probe,
  ProbeError,
  ProbeService,
  probeLayer,
  probeServiceLayer
} from "../fixtures/probe.ts"

const Unhosted = Actor.make("Unhosted", [Rpc.make("Get", { success: Schema.Number })])

// Every scenario runs on the zero-copy transport and with every frame through each codec.
describe.each([...modes, "secure" as const])("actors (%s)", (mode) => {
  const zeroCopy = mode === "zero-copy"

  describe("activation and ordering", () => {
    it.scoped("creates one instance per (kind, id) on its first message, with its own state", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        const node = yield* singleNode(mode, probeLayer(state))
        const probe = yield* Effect.provide(Actor.client(Probe), node)
        expect(state.builds).toBe(0)
        expect(yield* Effect.provide(probe("a").Increment({ by: 2 }), node)).toBe(2)
        expect(yield* Effect.provide(probe("a").Increment({ by: 3 }), node)).toBe(5)
        expect(yield* Effect.provide(probe("b").Increment({ by: 10 }), node)).toBe(10)
        expect(state.builds).toBe(2)
        expect(nodeOf(node).activeInstances("Probe")).toBe(2)
      }))

    it.scoped("runs an actor's messages one at a time, in the order one sender sent them", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        const node = yield* singleNode(mode, probeLayer(state))
        const probe = (yield* Effect.provide(Actor.client(Probe), node))("ordered")
        for (let n = 0; n < 50; n++) yield* Actor.tell(probe.Track({ n }))
        const asks = yield* Effect.forkAll(Array.from({ length: 20 }, (_, i) => probe.Track({ n: 50 + i })))
        yield* Fiber.join(asks)
        expect(state.maxRunning).toBe(1)
        expect(state.order).toEqual(Array.from({ length: 70 }, (_, i) => i))
      }))

    it.scoped("runs service handlers concurrently up to the configured limit", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        const node = yield* singleNode(mode, probeServiceLayer(state, { concurrency: 4 }))
        const service = yield* Effect.provide(Actor.client(ProbeService), node)
        const fibers = yield* Effect.forkAll(
          Array.from({ length: 10 }, (_, i) => Effect.provide(service.Block({ key: `k${i}` }), node))
        )
        yield* eventually(() => state.latches.size === 4, "4 handlers running")
        for (let i = 0; i < 5; i++) yield* Effect.yieldNow()
        expect(state.latches.size).toBe(4) // the other 6 wait in the mailbox
        for (let i = 0; i < 10; i++) {
          yield* eventually(() => state.latches.has(`k${i}`), `k${i} started`)
          yield* openLatch(state, `k${i}`)
        }
        expect(yield* Fiber.join(fibers)).toEqual(Array.from({ length: 10 }, (_, i) => `k${i}`))
        expect(state.builds).toBe(1)
      }))
  })

  describe("ask timeouts and interruption", () => {
    it.scoped("fails an ask after the default 30 s with AskTimeout naming kind, id and elapsed time", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        const node = yield* singleNode(mode, probeLayer(state))
        const probe = (yield* Effect.provide(Actor.client(Probe), node))("slow")
        const fiber = yield* Effect.fork(probe.Block({ key: "never" }))
        yield* eventually(() => state.latches.has("never"), "handler started")
        yield* TestClock.adjust("29 seconds")
        expect(fiber.unsafePoll()).toBeNull()
        yield* TestClock.adjust("1 second")
        const error = yield* Effect.flip(Fiber.join(fiber))
        expect(error._tag).toBe("AskTimeout")
        if (error._tag !== "AskTimeout") return
        expect(error.kind).toBe("Probe")
        expect(error.id).toBe("slow")
        expect(error.tag).toBe("Block")
        expect(error.elapsedMillis).toBe(30_000)
        yield* eventually(() => state.interrupted.includes("never"), "the handler was interrupted")
      }))

    it.scoped("takes the ask timeout from the node and from the call", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        const node = yield* singleNode(mode, probeLayer(state), { askTimeout: "5 seconds" })
        const probe = (yield* Effect.provide(Actor.client(Probe), node))("slow")
        const byNode = yield* Effect.fork(probe.Block({ key: "node" }))
        yield* eventually(() => state.latches.has("node"), "handler started")
        yield* TestClock.adjust("5 seconds")
        const nodeError = yield* Effect.flip(Fiber.join(byNode))
        expect(nodeError).toMatchObject({ _tag: "AskTimeout", elapsedMillis: 5000 })
        const byCall = yield* Effect.fork(probe.Block({ key: "call" }, { timeout: "1 second" }))
        yield* eventually(() => state.latches.has("call"), "handler started")
        yield* TestClock.adjust("1 second")
        expect(yield* Effect.flip(Fiber.join(byCall))).toMatchObject({ _tag: "AskTimeout", elapsedMillis: 1000 })
        yield* eventually(() => state.interrupted.length === 2, "both handlers were interrupted")
      }))

    it.scoped("a caller's Effect.timeout interrupts the handler (its finalizer runs)", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        const node = yield* singleNode(mode, probeLayer(state))
        const probe = (yield* Effect.provide(Actor.client(Probe), node))("a")
        const fiber = yield* Effect.fork(probe.Block({ key: "t" }).pipe(Effect.timeout("1 second")))
        yield* eventually(() => state.latches.has("t"), "handler started")
        yield* adjustAfterSleeps(2, "1 second")
        const exit = yield* Fiber.await(fiber)
        expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag).toBe(
          "TimeoutException"
        )
        yield* eventually(() => state.interrupted.includes("t"), "the handler was interrupted")
        // the actor is still usable
        expect(yield* probe.Increment({ by: 1 })).toBe(1)
      }))

    it.scoped("Fiber.interrupt on the caller interrupts the handler", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        const node = yield* singleNode(mode, probeLayer(state))
        const probe = (yield* Effect.provide(Actor.client(Probe), node))("a")
        const fiber = yield* Effect.fork(probe.Block({ key: "i" }))
        yield* eventually(() => state.latches.has("i"), "handler started")
        yield* Fiber.interrupt(fiber)
        yield* eventually(() => state.interrupted.includes("i"), "the handler was interrupted")
        if (zeroCopy) expect(state.interrupted).toEqual(["i"]) // locally, synchronously with the interrupt
      }))

    it.scoped("an interrupted ask that still waits in the mailbox never runs", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        const node = yield* singleNode(mode, probeLayer(state))
        const probe = (yield* Effect.provide(Actor.client(Probe), node))("a")
        const first = yield* Effect.fork(probe.Block({ key: "first" }))
        yield* eventually(() => state.latches.has("first"), "first started")
        const queued = yield* Effect.fork(probe.Track({ n: 1 }))
        yield* Effect.yieldNow()
        yield* Fiber.interrupt(queued)
        yield* openLatch(state, "first")
        expect(yield* Fiber.join(first)).toBe("first")
        expect(yield* probe.Track({ n: 2 })).toBeUndefined()
        expect(state.order).toEqual([2])
      }))
  })

  describe("errors and supervision", () => {
    it.scoped("a declared error arrives typed", () =>
      Effect.gen(function*() {
        const node = yield* singleNode(mode, probeLayer(makeProbeState()))
        const probe = (yield* Effect.provide(Actor.client(Probe), node))("a")
        const error = yield* Effect.flip(probe.Fail({ reason: "nope" }))
        expect(error).toBeInstanceOf(ProbeError)
        expect(error).toMatchObject({ _tag: "ProbeError", reason: "nope" })
        const caught = yield* probe.Fail({ reason: "again" }).pipe(
          Effect.catchTag("ProbeError", (e) => Effect.succeed(`caught ${e.reason}`))
        )
        expect(caught).toBe("caught again")
      }))

    it.scoped("a defect arrives as RemoteDefect and the actor restarts with fresh state", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        const node = yield* singleNode(mode, probeLayer(state))
        const probe = (yield* Effect.provide(Actor.client(Probe), node))("a")
        yield* probe.Increment({ by: 5 })
        const defect = yield* Effect.flip(probe.Die({ message: "boom" }))
        expect(defect).toMatchObject({ _tag: "RemoteDefect", kind: "Probe", id: "a", tag: "Die", defect: "boom" })
        expect(state.finalized).toEqual(["a"]) // the failed incarnation's scope was closed
        const get = yield* Effect.fork(probe.Get())
        yield* adjustAfterSleeps(2, "100 millis") // default backoff: 100 ms
        expect(yield* Fiber.join(get)).toBe(0)
        expect(state.builds).toBe(2)
      }))

    it.scoped("stops after the supervision schedule ends: pending and new asks fail with ActorStopped", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        const supervision = Schedule.spaced("1 second").pipe(Schedule.intersect(Schedule.recurs(2)))
        const node = yield* singleNode(mode, probeLayer(state, { supervision }))
        const probe = (yield* Effect.provide(Actor.client(Probe), node))("a")
        yield* probe.Increment({ by: 1 })
        state.brokenBuild = true
        yield* Effect.flip(probe.Die({ message: "boom" }))
        const pending = yield* Effect.fork(probe.Get())
        yield* adjustAfterSleeps(2, "1 second") // first retry: build dies
        yield* adjustAfterSleeps(2, "1 second") // second retry: build dies, schedule exhausted
        const error = yield* Effect.flip(Fiber.join(pending))
        expect(error).toMatchObject({ _tag: "ActorStopped", kind: "Probe", id: "a" })
        expect(yield* Effect.flip(probe.Get())).toMatchObject({ _tag: "ActorStopped" })
        // other ids are unaffected once the build works again
        state.brokenBuild = false
        expect(yield* probe.Increment({ by: 1 }).pipe(Effect.provide(node), Effect.flip)).toMatchObject({
          _tag: "ActorStopped"
        })
        expect(yield* (yield* Effect.provide(Actor.client(Probe), node))("b").Increment({ by: 1 })).toBe(1)
      }))

    it.scoped("by default restarts 5 times, backing off 100, 200, 400, 800, 1600 ms; the 6th defect stops the actor", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        // no supervision option: the default. (A zero shutdown deadline: should an assertion fail
        // with an ask still queued, the node's shutdown must not wait on the TestClock.)
        const node = yield* singleNode(mode, probeLayer(state), { shutdownTimeout: 0 })
        const probe = (yield* Effect.provide(Actor.client(Probe), node))("a")
        expect(yield* probe.Increment({ by: 1 })).toBe(1)
        // six defects in a row, each handled by a fresh incarnation, then an ask that waits behind them
        for (let i = 0; i < 6; i++) yield* Actor.tell(probe.Die({ message: `boom ${i}` }))
        const pending = yield* Effect.fork(probe.Get())
        for (const [restart, delay] of [100, 200, 400, 800, 1600].entries()) {
          yield* awaitSleepIn(delay) // the backoff before this restart, exactly
          expect(state.builds).toBe(1 + restart)
          expect(pending.unsafePoll()).toBeNull()
          yield* TestClock.adjust(delay)
        }
        yield* eventually(() => pending.unsafePoll() !== null, "the pending ask was answered")
        const error = yield* Effect.flip(Fiber.join(pending))
        expect(error).toMatchObject({
          _tag: "ActorStopped",
          kind: "Probe",
          id: "a",
          reason: "supervision gave up after 6 consecutive failures"
        })
        expect(state.builds).toBe(6) // the first activation and 5 restarts
        expect(state.finalized).toEqual(["a", "a", "a", "a", "a", "a"])
        expect(yield* Effect.flip(probe.Increment({ by: 1 }))).toMatchObject({ _tag: "ActorStopped" })
      }))

    it.scoped("a defect in a service handler fails that ask only", () =>
      Effect.gen(function*() {
        const node = yield* singleNode(mode, probeServiceLayer(makeProbeState()))
        const service = yield* Effect.provide(Actor.client(ProbeService), node)
        yield* service.Increment({ by: 3 })
        expect(yield* Effect.flip(service.Die({ message: "x" }))).toMatchObject({ _tag: "RemoteDefect" })
        expect(yield* service.Get()).toBe(3)
      }))
  })

  describe("bounded queues", () => {
    it.scoped("a full mailbox fails the ask with MailboxFull, never dropping silently", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        const node = yield* singleNode(mode, probeLayer(state, { mailboxCapacity: 2 }))
        const probe = (yield* Effect.provide(Actor.client(Probe), node))("a")
        const running = yield* Effect.fork(probe.Block({ key: "gate" }))
        yield* eventually(() => state.latches.has("gate"), "handler started")
        const queued = yield* Effect.forkAll([probe.Increment({ by: 1 }), probe.Increment({ by: 1 })])
        yield* eventually(() => nodeOf(node).pendingAsks() === (zeroCopy ? 0 : 3), "asks sent")
        for (let i = 0; i < 3; i++) yield* Effect.yieldNow()
        const rejected = yield* Effect.flip(probe.Increment({ by: 100 }))
        expect(rejected).toMatchObject({ _tag: "MailboxFull", kind: "Probe", id: "a", capacity: 2, queue: "mailbox" })
        // a local tell is refused at once; a remote tell is accepted by the transport (at most once)
        const told = yield* Effect.either(Actor.tell(probe.Increment({ by: 100 })))
        expect(told._tag === "Left" ? told.left._tag : "accepted").toBe(zeroCopy ? "MailboxFull" : "accepted")
        yield* openLatch(state, "gate")
        yield* Fiber.join(running)
        expect((yield* Fiber.join(queued)).sort()).toEqual([1, 2])
        expect(yield* probe.Get()).toBe(2)
      }))

    it.scoped("the default mailbox holds 1024 messages behind a busy handler; the 1025th fails with MailboxFull", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        const node = yield* singleNode(mode, probeLayer(state)) // no mailboxCapacity option: the default
        // should an assertion fail with the gate shut, open it before the node's shutdown waits on it
        yield* Effect.addFinalizer(() => openLatch(state, "gate"))
        const probe = (yield* Effect.provide(Actor.client(Probe), node))("a")
        const running = yield* Effect.fork(probe.Block({ key: "gate" }))
        yield* eventually(() => state.latches.has("gate"), "handler started")
        // tells from one sender arrive in order, so all of them are queued before the ask below
        for (let i = 0; i < 1024; i++) yield* Actor.tell(probe.Increment({ by: 1 }))
        // an accepted ask would wait behind the gate forever: wait (bounded) for it to be answered
        const overflow = yield* Effect.fork(probe.Increment({ by: 1000 }))
        yield* eventually(() => overflow.unsafePoll() !== null, "the 1025th ask was refused")
        const rejected = yield* Effect.flip(Fiber.join(overflow))
        expect(rejected).toMatchObject({
          _tag: "MailboxFull",
          kind: "Probe",
          id: "a",
          capacity: 1024,
          queue: "mailbox"
        })
        if (zeroCopy) {
          expect(yield* Effect.flip(Actor.tell(probe.Increment({ by: 1000 })))).toMatchObject({ _tag: "MailboxFull" })
        }
        yield* openLatch(state, "gate")
        expect(yield* Fiber.join(running)).toBe("gate")
        // every one of the 1024 was kept and handled; the refused ones were not
        expect(yield* probe.Get()).toBe(1024)
      }))

    if (!zeroCopy) {
      it.scoped("the table of pending remote asks is bounded", () =>
        Effect.gen(function*() {
          const state = makeProbeState()
          const node = yield* singleNode(mode, probeLayer(state), { maxPendingAsks: 2 })
          const probe = yield* Effect.provide(Actor.client(Probe), node)
          const blocked = yield* Effect.forkAll([probe("a").Block({ key: "x" }), probe("b").Block({ key: "y" })])
          yield* eventually(() => nodeOf(node).pendingAsks() === 2, "two asks pending")
          expect(yield* Effect.flip(probe("c").Get())).toMatchObject({
            _tag: "MailboxFull",
            queue: "pending-requests",
            capacity: 2
          })
          yield* openLatch(state, "x")
          yield* openLatch(state, "y")
          expect(yield* Fiber.join(blocked)).toEqual(["x", "y"])
          expect(yield* probe("c").Get()).toBe(0)
        }))
    }
  })

  describe("passivation and shutdown", () => {
    it.scoped("passivates an idle actor after maxIdleTime, running its finalizers", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        const node = yield* singleNode(mode, probeLayer(state, { maxIdleTime: "1 minute" }))
        const probe = (yield* Effect.provide(Actor.client(Probe), node))("idle")
        expect(yield* probe.Increment({ by: 7 })).toBe(7)
        yield* TestClock.adjust("59 seconds")
        expect(nodeOf(node).isActive("Probe", "idle")).toBe(true)
        yield* probe.Get() // activity pushes passivation back
        yield* TestClock.adjust("59 seconds")
        expect(state.finalized).toEqual([])
        yield* TestClock.adjust("2 seconds")
        yield* eventually(() => state.finalized.includes("idle"), "passivated")
        expect(nodeOf(node).isActive("Probe", "idle")).toBe(false)
        expect(yield* probe.Get()).toBe(0) // a fresh activation
        expect(state.builds).toBe(2)
      }))

    it.effect("node shutdown runs every actor's finalizers", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        const scope = yield* Scope.make()
        const node = yield* Scope.extend(singleNode(mode, probeLayer(state)), scope)
        const probe = yield* Effect.provide(Actor.client(Probe), node)
        yield* probe("a").Get()
        yield* probe("b").Get()
        yield* Scope.close(scope, Exit.void)
        expect(state.finalized.sort()).toEqual(["a", "b"])
      }))

    it.effect("shutdown lets in-flight work finish, refuses new work", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        const scope = yield* Scope.make()
        const node = yield* Scope.extend(singleNode(mode, probeLayer(state)), scope)
        const probe = (yield* Effect.provide(Actor.client(Probe), node))("a")
        const inflight = yield* Effect.fork(probe.Block({ key: "work" }))
        yield* eventually(() => state.latches.has("work"), "handler started")
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* Effect.yieldNow()
        expect(yield* Effect.flip(probe.Get())).toMatchObject({ _tag: zeroCopy ? "ActorStopped" : "ActorNotFound" })
        yield* openLatch(state, "work")
        expect(yield* Fiber.join(inflight)).toBe("work")
        yield* Fiber.join(closing)
        expect(state.finalized).toEqual(["a"])
      }))

    it.effect("shutdown interrupts work still running at the deadline with ActorStopped", () =>
      Effect.gen(function*() {
        const state = makeProbeState()
        const scope = yield* Scope.make()
        const node = yield* Scope.extend(singleNode(mode, probeLayer(state), { shutdownTimeout: "5 seconds" }), scope)
        const probe = (yield* Effect.provide(Actor.client(Probe), node))("a")
        const inflight = yield* Effect.fork(probe.Block({ key: "stuck" }))
        yield* eventually(() => state.latches.has("stuck"), "handler started")
        const sleepsBefore = (yield* TestClock.sleeps()).length
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* awaitSleeps(sleepsBefore + 1) // the shutdown deadline
        yield* TestClock.adjust("5 seconds")
        yield* Fiber.join(closing)
        const error = yield* Effect.flip(Fiber.join(inflight))
        expect(error).toMatchObject({ _tag: "ActorStopped", kind: "Probe", id: "a" })
        expect(state.interrupted).toEqual(["stuck"])
        expect(state.finalized).toEqual(["a"])
      }))
  })

  describe("bad input", () => {
    it.scoped("an unknown kind fails with ActorNotFound", () =>
      Effect.gen(function*() {
        const node = yield* singleNode(mode, probeLayer(makeProbeState()))
        const unhosted = (yield* Effect.provide(Actor.client(Unhosted), node))("x")
        expect(yield* Effect.flip(unhosted.Get())).toMatchObject({ _tag: "ActorNotFound", kind: "Unhosted", id: "x" })
        expect(yield* Effect.flip(Actor.tell(unhosted.Get()))).toMatchObject({ _tag: "ActorNotFound" })
      }))

    it.scoped("a payload failing its schema fails with DecodeError; node and actor carry on", () =>
      Effect.gen(function*() {
        const node = yield* singleNode(mode, probeLayer(makeProbeState()))
        const probe = (yield* Effect.provide(Actor.client(Probe), node))("a")
        yield* probe.Increment({ by: 1 })
        const bad = probe.Increment as unknown as (payload: unknown) => Effect.Effect<number, { _tag: string }>
        const error = yield* Effect.flip(bad({ by: "two" }))
        // caught where it is decoded: on arrival, or at once on the zero-copy path
        expect(error._tag).toBe("DecodeError")
        expect((error as unknown as { issue: string }).issue).toContain("Expected number")
        expect(yield* probe.Increment({ by: 1 })).toBe(2)
      }))
  })
})

describe("zero-copy vs serialized payloads", () => {
  it.scoped("the zero-copy transport hands the payload over by reference", () =>
    Effect.gen(function*() {
      const node = yield* singleNode("zero-copy", probeLayer(makeProbeState()))
      const probe = (yield* Effect.provide(Actor.client(Probe), node))("a")
      const data = [1, 2, 3]
      expect(yield* probe.Echo({ data })).toBe(data)
    }))

  it.scoped("a serializing transport copies, and the copy is equal", () =>
    Effect.gen(function*() {
      const node = yield* singleNode("msgpack", probeLayer(makeProbeState()))
      const probe = (yield* Effect.provide(Actor.client(Probe), node))("a")
      const data = [1, 2, 3]
      const echoed = yield* probe.Echo({ data })
      expect(echoed).not.toBe(data)
      expect(echoed).toEqual(data)
    }))

  it.scoped("a payload JSON cannot carry is caught before it leaves (EncodeError) or on arrival (DecodeError)", () =>
    Effect.gen(function*() {
      const json =
        (yield* Effect.provide(Actor.client(Probe), yield* singleNode("json", probeLayer(makeProbeState()))))(
          "a"
        )
      const msgpack = (yield* Effect.provide(
        Actor.client(Probe),
        yield* singleNode("msgpack", probeLayer(makeProbeState()))
      ))("a")
      const zero = (yield* Effect.provide(
        Actor.client(Probe),
        yield* singleNode("zero-copy", probeLayer(makeProbeState()))
      ))("a")
      const at = new Date(0)
      // a Date (DateFromSelf) survives zero-copy and MessagePack, not JSON
      expect(yield* zero.When({ at })).toEqual(at)
      expect(yield* msgpack.When({ at })).toEqual(at)
      expect(yield* Effect.flip(json.When({ at }))).toMatchObject({ _tag: "DecodeError" })
      // a bigint (BigIntFromSelf) cannot be written as JSON at all
      expect(yield* zero.Big({ n: 21n })).toBe(42n)
      expect(yield* Effect.flip(json.Big({ n: 21n }))).toMatchObject({ _tag: "EncodeError" })
    }))
})
