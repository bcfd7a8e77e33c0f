/**
 * A node whose nats-server is gone: what its callers get while the connection is down.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Actor from "../../src/actors/Actor.ts"
import * as Topic from "../../src/actors/Topic.ts"
import * as Codec from "../../src/layers/Codec.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as Transport from "../../src/layers/Transport.ts"
import * as Node from "../../src/runtime/Node.ts"
import { type NatsServer, startNatsServer } from "../fixtures/nats.ts"
import { makeProbeState, Probe, probeLayer } from "../fixtures/probe.ts"
import { makeStreamerState, Streamer, streamerLayer } from "../fixtures/streamer.ts"
import * as Schema from "effect/Schema"

const waitUntil = (condition: () => boolean, what: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1_000; i++) {
      if (condition()) return
      yield* Effect.sleep("10 millis")
    }
    return yield* Effect.dieMessage(`${what} did not happen within 10 s`)
  })

const Ping = Topic.make("chaos.ping", Schema.Number)

describe("a node whose nats-server is gone", () => {
  it.live(
    "a new ask fails with TransportError \"disconnected\" after reconnectWait, not its timeout; a tell, a topic event and a stream request fail typed",
    () =>
      Effect.gen(function*() {
        const server: NatsServer = yield* Effect.acquireRelease(
          Effect.promise(() => startNatsServer()),
          (s) => Effect.promise(() => s.stop())
        )
        const options = {
          servers: server.url,
          namespace: "down",
          heartbeat: "250 millis",
          reconnectWait: "300 millis"
        } as const
        yield* Layer.build(
          Layer.merge(probeLayer(makeProbeState()), streamerLayer(makeStreamerState())).pipe(
            Layer.provideMerge(Node.layerNats({ ...options, name: "host" })),
            Layer.orDie
          )
        )
        const caller = yield* Layer.build(
          Layer.orDie(Node.layerNats({ ...options, name: "caller", askTimeout: "60 seconds" }))
        )
        yield* Effect.provide(Discovery.awaitServing("Probe", { timeout: "10 seconds" }), caller)
        const probe = (yield* Effect.provide(Actor.client(Probe), caller))("p")
        const streamer = (yield* Effect.provide(Actor.client(Streamer), caller))("s")
        expect(yield* probe.Increment({ by: 1 })).toBe(1)
        const node = Context.get(caller, Node.Node)

        server.kill("SIGKILL")
        // the caller hears of it: a publish now fails instead of vanishing in nats.js's buffer
        yield* waitUntil(
          () =>
            Either.isLeft(
              Effect.runSync(Effect.either(Effect.provide(Actor.tell(probe.Increment({ by: 1 })), caller)))
            ),
          "the disconnect"
        )
        const asked = yield* Effect.either(probe.Increment({ by: 1 }))
        expect(Either.isLeft(asked) && asked.left).toMatchObject({ _tag: "TransportError", reason: "disconnected" })
        const told = yield* Effect.either(Actor.tell(probe.Increment({ by: 1 })))
        expect(Either.isLeft(told) && told.left).toMatchObject({ _tag: "TransportError", reason: "disconnected" })
        const published = yield* Effect.either(Effect.provide(Topic.publish(Ping, 1), caller))
        expect(Either.isLeft(published) && published.left).toMatchObject({
          _tag: "TransportError",
          reason: "disconnected"
        })
        const streamed = yield* Effect.either(Stream.runCollect(streamer.Count({ n: 3 })))
        expect(Either.isLeft(streamed) && streamed.left).toMatchObject({
          _tag: "TransportError",
          reason: "disconnected"
        })
        // nothing is left waiting
        expect(node.pendingAsks()).toBe(0)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live("reconnectWait and reconnectBackoff are validated when the layer is built", () =>
    Effect.gen(function*() {
      const server: NatsServer = yield* Effect.acquireRelease(
        Effect.promise(() => startNatsServer()),
        (s) => Effect.promise(() => s.stop())
      )
      const build = (options: Partial<Transport.NatsOptions>) =>
        Effect.flip(Layer.build(Transport.nats({ servers: server.url, ...options }).pipe(Layer.provide(Codec.msgpack))))
      expect((yield* build({ reconnectWait: Infinity })).reason).toMatch(/^reconnectWait must be a finite duration/)
      expect((yield* build({ reconnectBackoff: { initial: "2 seconds", max: "1 second" } })).reason).toMatch(
        /^reconnectBackoff/
      )
    }).pipe(Effect.scoped), 30_000)
})
