import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Actor from "../../src/actors/Actor.ts"
import * as Codec from "../../src/layers/Codec.ts"
import type { ActorSystem } from "../../src/actors/ActorSystem.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as Transport from "../../src/layers/Transport.ts"
import * as Node from "../../src/runtime/Node.ts"
import { type Envelope, ProtocolVersion } from "../../src/schema/Envelope.ts"
import { adjustAfterSleeps, awaitSleeps, eventually } from "../fixtures/clock.ts"
import { makeProbeState, ProbeService, probeServiceLayer } from "../fixtures/probe.ts"

// ---- fixtures ---------------------------------------------------------------------------------

/**
 * An in-memory transport with faults: `crash` drops everything it publishes (a dead node, seen
 * from outside), `loseSubscriptions` makes its current subscriptions deaf (a lost stream) while
 * new ones work.
 */
const faultyTransport = (network: Transport.InMemoryNetwork) => {
  const inner = Transport.makeInMemory({ network })
  let silent = false
  let generation = 0
  let deafUpTo = 0
  const stats = { subscribes: 0 }
  const transport: Transport.TransportShape = {
    ...inner,
    publish: (subject, frame, options) => silent ? Effect.void : inner.publish(subject, frame, options),
    unsafePublish: (subject, frame, options) => silent ? undefined : inner.unsafePublish(subject, frame, options),
    subscribe: (subject, onFrame, options) =>
      Effect.suspend(() => {
        stats.subscribes++
        const mine = ++generation
        return inner.subscribe(subject, (frame) => {
          if (mine > deafUpTo) onFrame(frame)
        }, options)
      })
  }
  return {
    transport,
    stats,
    crash: () => {
      silent = true
    },
    recover: () => {
      silent = false
    },
    loseSubscriptions: () => {
      deafUpTo = generation
    }
  }
}

interface Peer {
  readonly discovery: Discovery.DiscoveryShape
  readonly context: Context.Context<Discovery.Discovery>
}

/** builds a heartbeat discovery in the test scope (so it runs on the TestClock) */
const start = (
  network: Transport.InMemoryNetwork,
  options: Discovery.HeartbeatOptions = { remap: {} },
  transport: Transport.TransportShape = Transport.makeInMemory({ network })
): Effect.Effect<Peer, Discovery.DiscoveryConfigError, Scope.Scope> =>
  Effect.map(
    Layer.build(Discovery.layer(options).pipe(Layer.provide(Layer.succeed(Transport.Transport, transport)))),
    (context) => ({ discovery: Context.get(context, Discovery.Discovery), context })
  )

const member = (name: string, kinds: ReadonlyArray<string> = [], address = `in-memory://${name}`) => ({
  nodeId: `${name}-id`,
  name,
  incarnation: `${name}-id.1`,
  address,
  kinds,
  isServing: true,
  startedAt: 0
})

const ids = (discovery: Discovery.DiscoveryShape) => discovery.unsafeState().members.map((m) => m.nodeId).sort()

const find = (discovery: Discovery.DiscoveryShape, nodeId: string) =>
  discovery.unsafeState().members.find((m) => m.nodeId === nodeId)

/** announces in a scope of its own, closed by the returned effect (a graceful leave) */
const announceScoped = (peer: Peer, announced: ReturnType<typeof member>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Scope.extend(peer.discovery.announce(announced), scope)
    return Scope.close(scope, Exit.void)
  })

/**
 * One heartbeat period: waits until the `sleeps` loops (heartbeats, checkers) wait on the clock,
 * moves it, and waits until every loop has run its turn and sleeps again.
 */
const tick = (sleeps: number) => Effect.zipRight(adjustAfterSleeps(sleeps, "1 second"), awaitSleeps(sleeps))

const withEnv = <A, E, R>(name: string, value: string | undefined, effect: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const previous = process.env[name]
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
      return previous
    }),
    () => effect,
    (previous) =>
      Effect.sync(() => {
        if (previous === undefined) delete process.env[name]
        else process.env[name] = previous
      })
  )

// ---- membership -------------------------------------------------------------------------------

describe("Discovery.layer (heartbeats)", () => {
  it.scoped("two discoveries see each other's members after the first heartbeat", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const a = yield* start(network)
      const b = yield* start(network)
      yield* a.discovery.announce(member("a", ["K"]))
      yield* b.discovery.announce(member("b", ["L"]))
      expect(ids(a.discovery)).toEqual(["a-id", "b-id"])
      expect(ids(b.discovery)).toEqual(["a-id", "b-id"])
      expect(find(a.discovery, "b-id")).toMatchObject({
        name: "b",
        incarnation: "b-id.1",
        address: "in-memory://b",
        kinds: ["L"],
        isServing: true,
        status: "alive",
        lastSeen: 0
      })
      // a late joiner learns both at their next periodic heartbeat
      const c = yield* start(network)
      expect(ids(c.discovery)).toEqual([])
      yield* tick(5)
      expect(ids(c.discovery)).toEqual(["a-id", "b-id"])
      expect(find(c.discovery, "a-id")).toMatchObject({ status: "alive", lastSeen: 1000, kinds: ["K"] })
    }))

  it.scoped.each([["json", Codec.jsonCodec], ["msgpack", Codec.msgpackCodec]] as const)(
    "heartbeats survive the %s codec, leave included",
    ([, codec]) =>
      Effect.gen(function*() {
        const network = Transport.makeNetwork()
        const a = yield* start(network, { remap: {} }, Transport.makeInMemorySerialized(codec, { network }))
        const b = yield* start(network, { remap: {} }, Transport.makeInMemorySerialized(codec, { network }))
        yield* a.discovery.announce(member("a"))
        const leave = yield* announceScoped(b, member("b", ["K", "L"]))
        expect(find(a.discovery, "b-id")).toMatchObject({ kinds: ["K", "L"], isServing: true, status: "alive" })
        yield* b.discovery.update("b-id", { isServing: false })
        expect(find(a.discovery, "b-id")?.isServing).toBe(false)
        yield* tick(4)
        expect(find(a.discovery, "b-id")?.lastSeen).toBe(0)
        expect((yield* Effect.provide(Discovery.state, a.context)).members.find((m) => m.nodeId === "b-id")?.lastSeen)
          .toBe(1000)
        yield* leave
        expect(ids(a.discovery)).toEqual(["a-id"])
      })
  )

  it.scoped("the state object changes only with membership; Discovery.state has fresh lastSeen values", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const a = yield* start(network)
      const b = yield* start(network)
      yield* a.discovery.announce(member("a"))
      yield* b.discovery.announce(member("b"))
      const before = a.discovery.unsafeState()
      yield* tick(4)
      yield* tick(4)
      expect(a.discovery.unsafeState()).toBe(before)
      expect(find(a.discovery, "b-id")?.lastSeen).toBe(0)
      const fresh = yield* Effect.provide(Discovery.state, a.context)
      expect(fresh.members.find((m) => m.nodeId === "b-id")?.lastSeen).toBe(2000)
      expect(fresh.lastUpdated).toBe(before.lastUpdated)
      // a real change builds a new object, with the lastSeen values of now
      yield* b.discovery.update("b-id", { kinds: ["K"] })
      const after = a.discovery.unsafeState()
      expect(after).not.toBe(before)
      expect(after.lastUpdated).toBe(2000)
      expect(find(a.discovery, "b-id")).toMatchObject({ kinds: ["K"], lastSeen: 2000 })
    }))

  it.scoped("kinds and serving updates reach peers at once: a drained node gets no routes", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const a = yield* start(network)
      const b = yield* start(network)
      yield* a.discovery.announce(member("a"))
      yield* b.discovery.announce(member("b", ["K"]))
      expect(Discovery.servingMembers(a.discovery.unsafeState(), "K").map((m) => m.nodeId)).toEqual(["b-id"])
      yield* b.discovery.update("b-id", { isServing: false })
      expect(Discovery.servingMembers(a.discovery.unsafeState(), "K")).toEqual([])
      expect(find(a.discovery, "b-id")).toMatchObject({ isServing: false, status: "alive" })
      expect(Discovery.servingMembers(b.discovery.unsafeState(), "K")).toEqual([])
      yield* b.discovery.update("b-id", { kinds: ["K", "L"], isServing: true })
      expect(Discovery.servingMembers(a.discovery.unsafeState(), "L").map((m) => m.nodeId)).toEqual(["b-id"])
      expect(find(a.discovery, "b-id")?.kinds).toEqual(["K", "L"])
      // the periodic heartbeats carry the update too (a peer that missed it catches up)
      const c = yield* start(network)
      yield* tick(5)
      expect(find(c.discovery, "b-id")).toMatchObject({ kinds: ["K", "L"], isServing: true })
    }))

  it.scoped("a silent member is suspect after 3 periods (not before) and removed after 5", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const a = yield* start(network)
      const faulty = faultyTransport(network)
      const b = yield* start(network, { remap: {} }, faulty.transport)
      yield* a.discovery.announce(member("a"))
      yield* b.discovery.announce(member("b", ["K"]))
      yield* tick(4) // t = 1 s: b's last heartbeat
      faulty.crash()
      yield* tick(4) // 1 period of silence
      yield* tick(4) // 2 periods
      expect(find(a.discovery, "b-id")?.status).toBe("alive")
      expect(Discovery.servingMembers(a.discovery.unsafeState(), "K")).toHaveLength(1)
      yield* tick(4) // 3 periods
      expect(find(a.discovery, "b-id")).toMatchObject({ status: "suspect", lastSeen: 1000 })
      expect(Discovery.servingMembers(a.discovery.unsafeState(), "K")).toEqual([])
      yield* tick(4) // 4 periods
      expect(find(a.discovery, "b-id")?.status).toBe("suspect")
      yield* tick(4) // 5 periods
      expect(find(a.discovery, "b-id")).toBeUndefined()
      expect(ids(a.discovery)).toEqual(["a-id"])
      // the crashed side still counts itself alive
      expect(find(b.discovery, "b-id")?.status).toBe("alive")
    }))

  it.scoped("a suspect member that heartbeats again is alive again", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const a = yield* start(network)
      const faulty = faultyTransport(network)
      const b = yield* start(network, { remap: {} }, faulty.transport)
      yield* a.discovery.announce(member("a"))
      yield* b.discovery.announce(member("b", ["K"]))
      faulty.crash()
      yield* tick(4)
      yield* tick(4)
      yield* tick(4)
      expect(find(a.discovery, "b-id")?.status).toBe("suspect")
      faulty.recover()
      yield* tick(4)
      expect(find(a.discovery, "b-id")).toMatchObject({ status: "alive", lastSeen: 4000 })
      expect(Discovery.servingMembers(a.discovery.unsafeState(), "K").map((m) => m.nodeId)).toEqual(["b-id"])
      // and is judged afresh: not suspect again while it keeps beating
      yield* tick(4)
      yield* tick(4)
      yield* tick(4)
      expect(find(a.discovery, "b-id")?.status).toBe("alive")
    }))

  it.scoped("a graceful leave removes the member at once, for good", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const a = yield* start(network)
      const b = yield* start(network)
      yield* a.discovery.announce(member("a"))
      const leave = yield* announceScoped(b, member("b", ["K"]))
      yield* tick(4)
      expect(ids(a.discovery)).toEqual(["a-id", "b-id"])
      yield* leave
      expect(ids(a.discovery)).toEqual(["a-id"])
      expect(ids(b.discovery)).toEqual(["a-id"])
      // b no longer heartbeats: only a's loop and the two checkers sleep
      yield* tick(3)
      yield* tick(3)
      expect(ids(a.discovery)).toEqual(["a-id"])
      expect(yield* TestClock.sleeps()).toHaveLength(3)
    }))

  it.scoped("a heartbeat arriving after its node left, or from an older incarnation, is ignored", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const a = yield* start(network)
      const raw = Transport.makeInMemory({ network })
      const heartbeat = (incarnation: string, startedAt: number, leaving?: true) =>
        ({
          _tag: "Heartbeat",
          v: ProtocolVersion,
          source: "x-id",
          name: "x",
          incarnation,
          address: `in-memory://${incarnation}`,
          kinds: [],
          isServing: true,
          startedAt,
          periodMillis: 1000,
          ...(leaving ? { leaving } : {})
        }) as const
      yield* raw.publish("discovery", heartbeat("x.1", 10))
      yield* raw.publish("discovery", heartbeat("x.1", 10, true))
      yield* raw.publish("discovery", heartbeat("x.1", 10)) // overtaken by the leave
      expect(ids(a.discovery)).toEqual([])
      // the node restarts under the same id: its new incarnation replaces the old one
      yield* raw.publish("discovery", heartbeat("x.2", 20))
      yield* raw.publish("discovery", heartbeat("x.0", 5)) // a stale predecessor
      expect(find(a.discovery, "x-id")).toMatchObject({ incarnation: "x.2", address: "in-memory://x.2" })
      // a leave of another incarnation does not remove the current one
      yield* raw.publish("discovery", heartbeat("x.0", 5, true))
      expect(find(a.discovery, "x-id")?.incarnation).toBe("x.2")
    }))

  it.scoped("changes starts with the current state and emits each membership change, with increasing lastUpdated", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const a = yield* start(network)
      const seen: Array<Discovery.DiscoveryState> = []
      yield* Effect.forkScoped(Stream.runForEach(a.discovery.changes, (s) => Effect.sync(() => seen.push(s))))
      yield* eventually(() => seen.length === 1, "the current state")
      yield* tick(1)
      const b = yield* start(network)
      const leave = yield* announceScoped(b, member("b")) // t = 1 s
      yield* tick(3)
      yield* b.discovery.update("b-id", { kinds: ["K"] }) // t = 2 s
      yield* tick(3)
      yield* tick(3)
      yield* leave // t = 4 s
      yield* eventually(() => seen.length === 4, "four states")
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow()
      expect(seen.map((s) => s.members.map((m) => m.nodeId))).toEqual([[], ["b-id"], ["b-id"], []])
      expect(seen.map((s) => s.lastUpdated)).toEqual([0, 1000, 2000, 4000])
      expect(seen[2]!.members[0]!.kinds).toEqual(["K"])
    }))

  it.scoped("awaitServing succeeds when a serving member appears", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const a = yield* start(network)
      const b = yield* start(network)
      const waiting = yield* Effect.fork(
        Effect.provide(Discovery.awaitServing("K", { timeout: "5 seconds" }), a.context)
      )
      yield* b.discovery.announce(member("b", ["L"]))
      yield* b.discovery.update("b-id", { kinds: ["K"], isServing: false })
      expect(waiting.unsafePoll()).toBeNull()
      yield* b.discovery.update("b-id", { isServing: true })
      const members = yield* Fiber.join(waiting)
      expect(members.map((m) => m.nodeId)).toEqual(["b-id"])
    }))

  it.scoped("awaitServing fails with NoAvailableNode after its timeout", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const a = yield* start(network)
      const waiting = yield* Effect.fork(
        Effect.provide(Discovery.awaitServing("K", { timeout: "5 seconds" }), a.context)
      )
      yield* awaitSleeps(2) // the checker and the timeout
      yield* TestClock.adjust("4 seconds")
      expect(waiting.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      const exit = yield* Fiber.await(waiting)
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        expect(exit.cause).toMatchObject({ _tag: "Fail", error: { _tag: "NoAvailableNode", kind: "K" } })
      }
    }))

  it.scoped("heartbeats of another protocol version or malformed ones are ignored, and the loop goes on", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const a = yield* start(network)
      const raw = Transport.makeInMemory({ network })
      const heartbeat = {
        _tag: "Heartbeat",
        v: ProtocolVersion,
        source: "x-id",
        name: "x",
        incarnation: "x-id.1",
        address: "in-memory://x",
        kinds: ["K"],
        isServing: true,
        startedAt: 0,
        periodMillis: 1000
      }
      yield* raw.publish("discovery", { ...heartbeat, v: 2 } as unknown as Envelope)
      yield* raw.publish("discovery", { ...heartbeat, kinds: "K" } as unknown as Envelope)
      yield* raw.publish("discovery", { _tag: "Heartbeat" } as unknown as Envelope)
      yield* raw.publish("discovery", null as unknown as Envelope)
      expect(ids(a.discovery)).toEqual([])
      yield* raw.publish("discovery", heartbeat as Envelope)
      expect(find(a.discovery, "x-id")).toMatchObject({ status: "alive", kinds: ["K"] })
      // the checker still runs: the raw sender never heartbeats again
      for (let i = 0; i < 5; i++) yield* tick(1)
      expect(ids(a.discovery)).toEqual([])
    }))

  it.scoped("a sender of another protocol version is warned about once; the memory of whom is bounded (1024)", () =>
    Effect.gen(function*() {
      const warnings: Array<string> = []
      const capture = Logger.make(({ message }) => {
        const text = Array.isArray(message) ? message.join(" ") : String(message)
        if (text.includes("protocol version")) warnings.push(text)
      })
      const network = Transport.makeNetwork()
      yield* start(network).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)))
      const raw = Transport.makeInMemory({ network })
      const heartbeat = (source: string) =>
        ({ _tag: "Heartbeat", v: 99, source, name: source, incarnation: `${source}.1` }) as unknown as Envelope
      for (let i = 0; i < 3; i++) yield* raw.publish("discovery", heartbeat("old-0"))
      yield* eventually(() => warnings.length === 1, "one warning")
      // 1024 more senders: the first is forgotten, and warned about again
      for (let i = 1; i <= 1024; i++) yield* raw.publish("discovery", heartbeat(`old-${i}`))
      yield* eventually(() => warnings.length === 1025, "a warning per sender")
      yield* raw.publish("discovery", heartbeat("old-0"))
      yield* eventually(() => warnings.length === 1026, "old-0 warned about again")
      expect(warnings[0]).toBe(
        `discovery: ignoring heartbeats of old-0, protocol version 99 (ours: ${ProtocolVersion})`
      )
    }))

  it.scoped("a discovery that no longer hears its own heartbeats resubscribes before peers look dead", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const faulty = faultyTransport(network)
      const a = yield* start(network, { remap: {} }, faulty.transport)
      const b = yield* start(network)
      yield* a.discovery.announce(member("a"))
      yield* b.discovery.announce(member("b"))
      const subscriptions = network.subscriptionCount
      faulty.loseSubscriptions()
      yield* b.discovery.update("b-id", { kinds: ["lost"] })
      expect(find(a.discovery, "b-id")?.kinds).toEqual([])
      yield* tick(4)
      yield* tick(4) // two periods without our own echo: resubscribe
      expect(faulty.stats.subscribes).toBe(2)
      expect(network.subscriptionCount).toBe(subscriptions)
      for (let i = 0; i < 4; i++) {
        yield* tick(4)
        expect(find(a.discovery, "b-id")).toMatchObject({ status: "alive", kinds: ["lost"] })
      }
      yield* b.discovery.update("b-id", { kinds: ["found"] })
      expect(find(a.discovery, "b-id")?.kinds).toEqual(["found"])
      expect(faulty.stats.subscribes).toBe(2)
    }))

  it.scoped("nodes route to each other over heartbeat discovery, and a drained node gets no asks", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const nodeOn = (kinds: Layer.Layer<never, never, ActorSystem>, name: string) =>
        Layer.build(
          kinds.pipe(
            Layer.provideMerge(Node.layer({ name })),
            Layer.provide(
              Discovery.layer({ remap: {} }).pipe(
                Layer.provideMerge(Layer.succeed(Transport.Transport, Transport.makeInMemory({ network })))
              )
            ),
            Layer.orDie
          )
        )
      const caller = yield* nodeOn(Layer.empty, "caller")
      const host = yield* nodeOn(probeServiceLayer(makeProbeState(), { label: "s0" }), "s0")
      const service = yield* Effect.provide(Actor.client(ProbeService), caller)
      expect(yield* service.Whoami()).toBe("s0")
      yield* Context.get(host, Node.Node).setServing(false)
      expect(yield* Effect.flip(service.Whoami())).toMatchObject({ _tag: "NoAvailableNode", kind: "ProbeService" })
    }))
})

// ---- configuration and remap ------------------------------------------------------------------

describe("Discovery options and address remap", () => {
  it.scoped("the remap option rewrites addresses by node name, else by the first kind that has an entry", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const a = yield* start(network, { remap: { "node-b": "10.0.0.2:4222", Greeter: "10.0.0.9:80" } })
      const b = yield* start(network)
      yield* b.discovery.announce(member("node-b", ["Greeter"]))
      yield* b.discovery.announce(member("node-c", ["Other", "Greeter"]))
      yield* b.discovery.announce(member("node-d", ["Other"]))
      expect(find(a.discovery, "node-b-id")?.address).toBe("10.0.0.2:4222")
      expect(find(a.discovery, "node-c-id")?.address).toBe("10.0.0.9:80")
      expect(find(a.discovery, "node-d-id")?.address).toBe("in-memory://node-d")
      // the remap is the observer's: b reports what was announced
      expect(find(b.discovery, "node-b-id")?.address).toBe("in-memory://node-b")
      // a kind-based remap follows a change of kinds
      yield* b.discovery.update("node-d-id", { kinds: ["Greeter"] })
      expect(find(a.discovery, "node-d-id")?.address).toBe("10.0.0.9:80")
    }))

  it.scoped("TROUPE_ADDRESS_REMAP is the default remap; an explicit option wins", () =>
    withEnv(
      "TROUPE_ADDRESS_REMAP",
      JSON.stringify({ "node-b": "192.168.1.20:4222" }),
      Effect.gen(function*() {
        const network = Transport.makeNetwork()
        const fromEnv = yield* start(network, {})
        const explicit = yield* start(network, { remap: { "node-b": "override:1" } })
        const b = yield* start(network)
        yield* b.discovery.announce(member("node-b"))
        expect(find(fromEnv.discovery, "node-b-id")?.address).toBe("192.168.1.20:4222")
        expect(find(explicit.discovery, "node-b-id")?.address).toBe("override:1")
        // the layer read the variable once, when it was built
        process.env.TROUPE_ADDRESS_REMAP = "{}"
        yield* b.discovery.update("node-b-id", { kinds: ["K"] })
        expect(find(fromEnv.discovery, "node-b-id")?.address).toBe("192.168.1.20:4222")
      })
    ))

  it.scoped("an unset or blank TROUPE_ADDRESS_REMAP means no remap", () =>
    Effect.gen(function*() {
      for (const value of [undefined, "", "  "]) {
        const address = yield* withEnv(
          "TROUPE_ADDRESS_REMAP",
          value,
          Effect.gen(function*() {
            const network = Transport.makeNetwork()
            const a = yield* start(network, {})
            yield* a.discovery.announce(member("node-a"))
            return find(a.discovery, "node-a-id")?.address
          })
        )
        expect(address).toBe("in-memory://node-a")
      }
    }))

  it.scoped("a malformed TROUPE_ADDRESS_REMAP fails the layer with DiscoveryConfigError naming the variable", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<[string, string]> = [
        ["{not json", "not valid JSON"],
        ["[\"a:1\"]", "must be a JSON object"],
        ["{\"node-a\": 4222}", "\"node-a\""],
        ["\"a:1\"", "must be a JSON object"],
        ["null", "must be a JSON object"]
      ]
      for (const [value, problem] of cases) {
        const error = yield* withEnv("TROUPE_ADDRESS_REMAP", value, Effect.flip(start(Transport.makeNetwork(), {})))
        expect(error).toBeInstanceOf(Discovery.DiscoveryConfigError)
        expect(error._tag).toBe("DiscoveryConfigError")
        expect(error.reason).toContain("TROUPE_ADDRESS_REMAP")
        expect(error.reason).toContain(problem)
      }
    }))

  it.scoped("out-of-range options fail the layer with DiscoveryConfigError", () =>
    Effect.gen(function*() {
      const bad: ReadonlyArray<[Discovery.HeartbeatOptions, string]> = [
        [{ heartbeat: "0 millis" }, "heartbeat"],
        [{ heartbeat: "soon" }, "heartbeat"],
        [{ suspectAfter: 0 }, "suspectAfter"],
        [{ suspectAfter: 3, removeAfter: 2 }, "removeAfter"],
        [{ removeAfter: Number.NaN }, "removeAfter"],
        [{ remap: { a: 1 } as unknown as Discovery.AddressRemap }, "remap"]
      ]
      for (const [options, problem] of bad) {
        const error = yield* Effect.flip(start(Transport.makeNetwork(), { remap: {}, ...options }))
        expect(error._tag).toBe("DiscoveryConfigError")
        expect(error.reason).toContain(problem)
      }
      // and valid ones are honoured: a 200 ms heartbeat with suspicion after 2 periods
      const network = Transport.makeNetwork()
      const a = yield* start(network, { heartbeat: "200 millis", suspectAfter: 2, removeAfter: 4, remap: {} })
      const faulty = faultyTransport(network)
      const b = yield* start(network, { heartbeat: "200 millis", remap: {} }, faulty.transport)
      yield* b.discovery.announce(member("b"))
      faulty.crash()
      yield* Effect.zipRight(adjustAfterSleeps(3, "200 millis"), awaitSleeps(3))
      expect(find(a.discovery, "b-id")?.status).toBe("alive")
      yield* Effect.zipRight(adjustAfterSleeps(3, "200 millis"), awaitSleeps(3))
      expect(find(a.discovery, "b-id")?.status).toBe("suspect")
    }))

  it.scoped("Discovery.nats is the heartbeat layer", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const transport = Layer.succeed(Transport.Transport, Transport.makeInMemory({ network }))
      const a = Context.get(
        yield* Layer.build(Discovery.nats({ remap: {} }).pipe(Layer.provide(transport))),
        Discovery.Discovery
      )
      const b = yield* start(network)
      yield* b.discovery.announce(member("b"))
      expect(ids(a)).toEqual(["b-id"])
    }))

  it.scoped("the in-memory registry applies a remap option too", () =>
    Effect.gen(function*() {
      const registry = yield* Discovery.makeRegistry
      const discovery = Discovery.makeInMemory(registry, { remap: { Greeter: "10.0.0.9:80" } })
      yield* discovery.announce(member("a", ["Other"]))
      expect(registry.current.members[0]?.address).toBe("in-memory://a")
      yield* discovery.update("a-id", { kinds: ["Greeter"] })
      expect(registry.current.members[0]?.address).toBe("10.0.0.9:80")
      expect(Discovery.servingMembers(registry.current, "Greeter")).toHaveLength(1)
    }))
})

describe("Discovery.layer under hostile input", () => {
  const heartbeat = (source: string, patch: Record<string, unknown> = {}) =>
    ({
      _tag: "Heartbeat",
      v: ProtocolVersion,
      source,
      name: "x",
      incarnation: `${source}.1`,
      address: "in-memory://x",
      kinds: ["K"],
      isServing: true,
      startedAt: 0,
      periodMillis: 1000,
      ...patch
    }) as unknown as Envelope
  const malformed = () => Effect.map(Metric.value(Transport.malformedFrames), (state) => state.count)

  it.scoped("a heartbeat whose node id, name or kinds are not subject tokens is dropped and counted, never a member", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const a = yield* start(network)
      const raw = Transport.makeInMemory({ network })
      const before = yield* malformed()
      const bad = [
        heartbeat("a b c"),
        heartbeat("x\r\nPUB troupe.default.node.y 1"),
        heartbeat("x-id", { name: "x y" }),
        heartbeat("x-id", { kinds: ["K", "a.b"] }),
        heartbeat("x-id", { source: { toString: 1 } })
      ]
      for (const frame of bad) yield* raw.publish("discovery", frame)
      expect(ids(a.discovery)).toEqual([])
      expect((yield* malformed()) - before).toBe(bad.length)
      // over a serializing transport the codec drops them first, counted the same
      const serialized = Transport.makeInMemorySerialized(Codec.jsonCodec, { network })
      const b = yield* start(network, { remap: {} }, serialized)
      const bytes = new TextEncoder().encode(JSON.stringify(heartbeat("a b c")))
      const beforeSerialized = yield* malformed()
      network.route("troupe.default.discovery", bytes)
      expect(ids(b.discovery)).toEqual([])
      expect((yield* malformed()) - beforeSerialized).toBe(1)
      yield* raw.publish("discovery", heartbeat("x-id"))
      expect(ids(a.discovery)).toEqual(["x-id"])
    }))

  it.scoped("a peer's absurd heartbeat period is capped at 10 of our periods (10 s at least): a stranger cannot stay a member for ever", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const a = yield* start(network, { remap: {}, heartbeat: "1 second" })
      const raw = Transport.makeInMemory({ network })
      yield* raw.publish("discovery", heartbeat("x-id", { periodMillis: 1e15 }))
      expect(ids(a.discovery)).toEqual(["x-id"])
      // removed after removeAfter (5) periods of at most 10 s, checked every second
      for (let i = 0; i < 49; i++) yield* Effect.zipRight(adjustAfterSleeps(1, "1 second"), awaitSleeps(1))
      expect(ids(a.discovery)).toEqual(["x-id"])
      yield* Effect.zipRight(adjustAfterSleeps(1, "1 second"), awaitSleeps(1))
      expect(ids(a.discovery)).toEqual([])
    }))

  it.scoped("strangers naming ever new nodes are tracked up to 10,000; a heartbeat from one more is dropped and counted", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const a = yield* start(network, { remap: {}, heartbeat: "1 second" })
      const raw = Transport.makeInMemory({ network })
      for (let i = 0; i < 10_000; i++) yield* raw.publish("discovery", heartbeat(`s-${i}`))
      expect(a.discovery.unsafeState().members.length).toBe(10_000)
      const before = yield* malformed()
      yield* raw.publish("discovery", heartbeat("one-more"))
      expect(a.discovery.unsafeState().members.length).toBe(10_000)
      expect(find(a.discovery, "one-more")).toBeUndefined()
      expect((yield* malformed()) - before).toBe(1)
      // a member already tracked is still heard
      yield* raw.publish("discovery", heartbeat("s-0", { isServing: false }))
      expect(find(a.discovery, "s-0")?.isServing).toBe(false)
    }))

  /**
   * An in-memory transport whose deliveries can be held in one queue, in order, as frames wait
   * in a busy connection's socket: `release` delivers them to the subscriptions still open.
   */
  const holdingTransport = (network: Transport.InMemoryNetwork) => {
    const inner = Transport.makeInMemory({ network })
    let holding = false
    const queue: Array<() => void> = []
    const stats = { subscribes: 0 }
    const transport: Transport.TransportShape = {
      ...inner,
      subscribe: (subject, onFrame, options) =>
        Effect.suspend(() => {
          stats.subscribes++
          let open = true
          return Effect.zipRight(
            Effect.addFinalizer(() =>
              Effect.sync(() => {
                open = false
              })
            ),
            inner.subscribe(subject, (frame) => {
              if (holding) queue.push(() => open && onFrame(frame))
              else onFrame(frame)
            }, options)
          )
        })
    }
    return {
      transport,
      stats,
      hold: () => {
        holding = true
      },
      release: () => {
        holding = false
        for (const deliver of queue.splice(0)) deliver()
      }
    }
  }

  it.scoped("the deaf check's resubscription drops no frame queued for the subscription it replaces", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const holding = holdingTransport(network)
      const a = yield* start(network, { remap: {} }, holding.transport)
      yield* a.discovery.announce(member("a"))
      const raw = Transport.makeInMemory({ network })
      holding.hold()
      // a frame waiting for the old subscription when the check gives up on it
      yield* raw.publish("discovery", heartbeat("x-id"))
      yield* tick(2)
      yield* tick(2) // two periods without hearing anything: resubscribe
      expect(holding.stats.subscribes).toBe(2)
      holding.release()
      // the old subscription stayed open until the new one was heard: its frame arrived
      expect(ids(a.discovery)).toEqual(["a-id", "x-id"])
      yield* tick(2)
      // and then it was closed: one subscription left
      expect(holding.stats.subscribes).toBe(2)
      const before = network.subscriptionCount
      yield* tick(2)
      expect(network.subscriptionCount).toBe(before)
    }))

  it.live("a membership check that runs late because the node was busy does not resubscribe", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const holding = holdingTransport(network)
      const a = yield* start(network, { remap: {}, heartbeat: "50 millis" }, holding.transport)
      yield* a.discovery.announce(member("a"))
      yield* Effect.sleep("120 millis")
      expect(holding.stats.subscribes).toBe(1)
      // the event loop is blocked for 8 periods, and what arrived meanwhile waits in the socket
      // until after the first timers have run
      holding.hold()
      const end = Date.now() + 400
      while (Date.now() < end) {
        // busy
      }
      yield* Effect.sleep("1 millis")
      yield* Effect.sync(() => setImmediate(holding.release))
      yield* Effect.sleep("200 millis")
      expect(holding.stats.subscribes).toBe(1)
      expect(ids(a.discovery)).toEqual(["a-id"])
    }).pipe(Effect.scoped))
})
