/**
 * A caller whose connection is lost (the `Link` fixture: the NATS transport's connection
 * contract on the in-memory network), on the TestClock: new asks wait a bounded time for the
 * reconnect and then fail typed, tells fail at once, and discovery holds its view while it
 * hears nothing and re-announces at once when the link is back.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Actor from "../../src/actors/Actor.ts"
import type { ActorSystem } from "../../src/actors/ActorSystem.ts"
import * as Codec from "../../src/layers/Codec.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as Transport from "../../src/layers/Transport.ts"
import * as Node from "../../src/runtime/Node.ts"
import { makeLink } from "../fixtures/link.ts"
import { makeProbeState, Probe, probeLayer } from "../fixtures/probe.ts"
import { makeStreamerState, Streamer, streamerLayer } from "../fixtures/streamer.ts"

const onTransport = (
  kinds: Layer.Layer<never, never, ActorSystem>,
  transport: Transport.TransportShape,
  name: string
) =>
  Layer.build(
    kinds.pipe(
      Layer.provideMerge(Node.layer({ name })),
      Layer.provideMerge(Layer.provideMerge(
        Discovery.layer({ heartbeat: "1 second", remap: {} }),
        Layer.succeed(Transport.Transport, transport)
      )),
      Layer.orDie
    )
  )

/** moves the clock in small steps until `condition` holds (bounded) */
const advanceUntil = (condition: () => boolean, what: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100; i++) {
      if (condition()) return
      yield* TestClock.adjust("100 millis")
    }
    return yield* Effect.dieMessage(`${what} did not happen within 10 s of TestClock time`)
  })

/** lets forked fibers run without moving the clock */
const settle = Effect.repeatN(Effect.yieldNow(), 200)

/** a responder hosting Probe and Streamer, and a caller behind a link that the test cuts */
const setup = Effect.gen(function*() {
  const network = Transport.makeNetwork()
  const responder = yield* onTransport(
    Layer.merge(probeLayer(makeProbeState(), { label: "responder" }), streamerLayer(makeStreamerState())),
    Transport.makeInMemorySerialized(Codec.msgpackCodec, { network }),
    "responder"
  )
  const link = yield* makeLink(Transport.makeInMemorySerialized(Codec.msgpackCodec, { network }), 2_000)
  const caller = yield* onTransport(Layer.empty, link.transport, "caller")
  const callerView = Context.get(caller, Discovery.Discovery)
  const responderView = Context.get(responder, Discovery.Discovery)
  const responderId = Context.get(responder, Node.Node).nodeId
  const callerId = Context.get(caller, Node.Node).nodeId
  yield* advanceUntil(
    () => Discovery.servingMembers(callerView.unsafeState(), "Probe").length === 1,
    "the caller hearing the responder"
  )
  const probe = (yield* Effect.provide(Actor.client(Probe), caller))("p")
  const streamer = (yield* Effect.provide(Actor.client(Streamer), caller))("s")
  expect(yield* probe.Increment({ by: 1 })).toBe(1)
  return { link, caller, probe, streamer, callerView, responderView, responderId, callerId }
})

describe("a caller whose connection is down", () => {
  it.scoped("a new ask waits reconnectWait for the connection, then fails with TransportError \"disconnected\", not its timeout", () =>
    Effect.gen(function*() {
      const { link, probe } = yield* setup
      link.down()
      const ask = yield* Effect.fork(Effect.either(probe.Increment({ by: 1 })))
      yield* settle
      yield* TestClock.adjust("1999 millis")
      expect(ask.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      const result = yield* Fiber.join(ask)
      expect(Either.isLeft(result) && result.left).toMatchObject({ _tag: "TransportError", reason: "disconnected" })
    }))

  it.scoped("an ask made while down is sent once the connection is back within reconnectWait, and answered", () =>
    Effect.gen(function*() {
      const { link, probe } = yield* setup
      link.down()
      const ask = yield* Effect.fork(probe.Increment({ by: 1 }))
      yield* settle
      yield* TestClock.adjust("1500 millis")
      expect(ask.unsafePoll()).toBeNull()
      link.up()
      expect(yield* Fiber.join(ask)).toBe(2)
    }))

  it.scoped("an ask whose own timeout is shorter than reconnectWait fails typed at its timeout", () =>
    Effect.gen(function*() {
      const { link, probe } = yield* setup
      link.down()
      const ask = yield* Effect.fork(Effect.either(probe.Increment({ by: 1 }, { timeout: "300 millis" })))
      yield* settle
      yield* TestClock.adjust("300 millis")
      const result = yield* Fiber.join(ask)
      expect(Either.isLeft(result) && result.left).toMatchObject({ _tag: "TransportError", reason: "disconnected" })
    }))

  it.scoped("a tell fails at once with TransportError; a stream request fails typed after reconnectWait", () =>
    Effect.gen(function*() {
      const { link, probe, streamer } = yield* setup
      link.down()
      const told = yield* Effect.either(Actor.tell(probe.Increment({ by: 1 })))
      expect(Either.isLeft(told) && told.left).toMatchObject({ _tag: "TransportError", reason: "disconnected" })
      const streamed = yield* Effect.fork(Effect.either(Stream.runCollect(streamer.Count({ n: 3 }))))
      yield* settle
      yield* TestClock.adjust("2 seconds")
      const result = yield* Fiber.join(streamed)
      expect(Either.isLeft(result) && result.left).toMatchObject({ _tag: "TransportError", reason: "disconnected" })
      link.up()
      expect([...(yield* Stream.runCollect(streamer.Count({ n: 3 })))]).toEqual([0, 1, 2])
    }))

  it.scoped("discovery keeps the members it knew while it hears nothing, and heartbeats at once on reconnect", () =>
    Effect.gen(function*() {
      const { link, probe, callerView, responderView, responderId, callerId } = yield* setup
      link.down()
      // well past removal (5 periods): the caller heard no one, which proves nothing about them
      for (let i = 0; i < 80; i++) yield* TestClock.adjust("100 millis")
      expect(callerView.unsafeState().members.find((m) => m.nodeId === responderId)?.status).toBe("alive")
      // the responder, still connected, stopped hearing the caller and removed it
      expect(responderView.unsafeState().members.some((m) => m.nodeId === callerId)).toBe(false)
      link.up()
      yield* settle // no clock movement: the heartbeat goes at once, not at the next period
      expect(responderView.unsafeState().members.find((m) => m.nodeId === callerId)?.status).toBe("alive")
      expect(yield* probe.Increment({ by: 1 })).toBe(2)
    }))
})
