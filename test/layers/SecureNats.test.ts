/**
 * Secure sessions over a real nats-server: discovery, asks, services and topics between nodes in
 * this process, each with its own connection, while a plain NATS subscriber records what the
 * broker sees.
 */
import { describe, expect, expectTypeOf, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { connect } from "nats"
import { afterAll, beforeAll } from "vitest"
import * as Actor from "../../src/actors/Actor.ts"
import type { ActorSystem } from "../../src/actors/ActorSystem.ts"
import * as Topic from "../../src/actors/Topic.ts"
import * as Codec from "../../src/layers/Codec.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as Secure from "../../src/layers/Secure.ts"
import * as Node from "../../src/runtime/Node.ts"
import { eventually } from "../fixtures/clock.ts"
import { type NatsServer, startNatsServer } from "../fixtures/nats.ts"
import { makeProbeState, Probe, ProbeService, probeLayer, probeServiceLayer } from "../fixtures/probe.ts"

let server: NatsServer

beforeAll(async () => {
  server = await startNatsServer()
}, 30_000)

afterAll(async () => {
  await server?.stop()
})

const secret = Topic.make("secret.news", Schema.String)

const secureNode = (
  namespace: string,
  name: string,
  secure: Omit<Secure.SecureOptions, "namespace">,
  kinds: Layer.Layer<never, never, ActorSystem | Topic.TopicBus>
) =>
  Layer.build(kinds.pipe(
    Layer.provideMerge(Node.layerNats({ servers: server.url, namespace, name, heartbeat: "200 millis", secure }))
  ))

/** every message the broker carries on `troupe.<namespace>.>`, as a plain client sees it */
const captureBroker = (namespace: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const nc = await connect({ servers: server.url })
      const seen: Array<Uint8Array> = []
      nc.subscribe(`troupe.${namespace}.>`, { callback: (_error, msg) => seen.push(msg.data) })
      await nc.flush()
      return { nc, seen }
    }),
    ({ nc }) => Effect.promise(() => nc.close())
  )

const contains = (bytes: Uint8Array, text: string) => Buffer.from(bytes).includes(Buffer.from(text))

describe("secure sessions over NATS", () => {
  it.live(
    "Node.layerNats with secure provides Secure: the node's public key and the peers it has sessions with",
    () =>
      Effect.gen(function*() {
        const namespace = "secure-3"
        const [ih, ic] = [yield* Secure.generateIdentity, yield* Secure.generateIdentity]
        const trust = [ih.publicKey, ic.publicKey]
        expectTypeOf(Node.layerNats({ servers: server.url, secure: { identity: ih, trust } }))
          .toEqualTypeOf<Layer.Layer<Node.NatsNodeServices | Secure.Secure, Node.NatsNodeError>>()
        // without secure (or when it may be undefined), the layer does not claim to provide Secure
        expectTypeOf(Node.layerNats({ servers: server.url }))
          .toEqualTypeOf<Layer.Layer<Node.NatsNodeServices, Node.NatsNodeError>>()
        const maybe = undefined as Node.NatsSecureOptions | undefined
        expectTypeOf(Node.layerNats({ servers: server.url, secure: maybe }))
          .toEqualTypeOf<Layer.Layer<Node.NatsNodeServices, Node.NatsNodeError>>()

        const host = yield* secureNode(
          namespace,
          "host",
          { identity: ih, trust },
          probeLayer(makeProbeState(), { label: "h" })
        )
        const caller = yield* secureNode(namespace, "caller", { identity: ic, trust }, Layer.empty)
        const hostSecure = Context.get(host, Secure.Secure)
        const callerSecure = Context.get(caller, Secure.Secure)
        expect(hostSecure.publicKey).toBe(ih.publicKey)
        expect(callerSecure.publicKey).toBe(ic.publicKey)

        yield* Effect.provide(Discovery.awaitServing("Probe", { timeout: "10 seconds" }), caller)
        const probe = (yield* Effect.provide(Actor.client(Probe), caller))("peers")
        expect(yield* probe.Whoami()).toBe("h")
        const hostNodeId = Context.get(host, Node.Node).nodeId
        const callerNodeId = Context.get(caller, Node.Node).nodeId
        expect(callerSecure.peers().map((p) => [p.nodeId, p.publicKey])).toContainEqual([hostNodeId, ih.publicKey])
        expect(hostSecure.peers().map((p) => [p.nodeId, p.publicKey])).toContainEqual([callerNodeId, ic.publicKey])
        expect(callerSecure.stats().handshakes).toBeGreaterThan(0)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "discovery, asks, services and topics work; the broker sees only sealed frames and handshakes",
    () =>
      Effect.gen(function*() {
        const namespace = "secure-1"
        const { seen } = yield* captureBroker(namespace)
        const [ih, ic] = [yield* Secure.generateIdentity, yield* Secure.generateIdentity]
        const trust = [ih.publicKey, ic.publicKey]
        const state = makeProbeState()
        const host = yield* secureNode(
          namespace,
          "host",
          { identity: ih, trust },
          Layer.merge(
            probeLayer(state, { label: "host" }),
            probeServiceLayer(makeProbeState(), { label: "host" })
          )
        )
        const caller = yield* secureNode(namespace, "caller", { identity: ic, trust }, Layer.empty)
        yield* Effect.provide(Discovery.awaitServing("Probe", { timeout: "10 seconds" }), caller)
        const probe = (yield* Effect.provide(Actor.client(Probe), caller))("MARKER-ACTOR-ID")
        expect(yield* probe.Increment({ by: 31337 })).toBe(31337)
        expect(yield* Effect.flip(probe.Fail({ reason: "MARKER-REASON" }))).toMatchObject({
          _tag: "ProbeError",
          reason: "MARKER-REASON"
        })
        const service = yield* Effect.provide(Actor.client(ProbeService), caller)
        expect(yield* service.Whoami()).toBe("host")
        // a topic event from the host reaches the caller's subscriber
        const received: Array<string> = []
        const bus = Context.get(caller, Topic.TopicBus)
        yield* Topic.subscribe(secret).pipe(
          Stream.runForEach((event) => Effect.sync(() => received.push(event.value))),
          Effect.provide(caller),
          Effect.forkScoped
        )
        yield* eventually(() => bus.subscriptionCount() === 1, "subscribed")
        yield* Effect.sleep("100 millis") // the subscription reaches the server
        yield* Effect.provide(Topic.publish(secret, "MARKER-EVENT"), host)
        for (let i = 0; i < 100 && received.length === 0; i++) yield* Effect.sleep("20 millis")
        expect(received).toEqual(["MARKER-EVENT"])

        expect(seen.length).toBeGreaterThan(10)
        const tags = new Set<string>()
        for (const bytes of seen) {
          const frame = Codec.msgpackCodec.decode(bytes)
          tags.add(Either.isRight(frame) ? frame.right._tag : "undecodable")
          // (subjects, e.g. `actor.ProbeService`, are routing data the broker sees anyway)
          for (const marker of ["MARKER-", "Increment", "Whoami"]) {
            expect(contains(bytes, marker) ? `${marker} in ${Buffer.from(bytes).toString("latin1")}` : "").toBe("")
          }
        }
        expect([...tags].sort()).toEqual(["Handshake", "Sealed"])
        // heartbeats were sealed too, and still told each node about the other
        const members = (yield* Effect.provide(Discovery.state, caller)).members.map((m) => m.name).sort()
        expect(members).toEqual(["caller", "host"])
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "an untrusted node never joins discovery and is refused; a restarted host is reached again through a new session",
    () =>
      Effect.gen(function*() {
        const namespace = "secure-2"
        const [ih, ic, ix] = [
          yield* Secure.generateIdentity,
          yield* Secure.generateIdentity,
          yield* Secure.generateIdentity
        ]
        const trust = [ih.publicKey, ic.publicKey]
        const hostScope = yield* Scope.make()
        const host = yield* secureNode(
          namespace,
          "host",
          { identity: ih, trust },
          probeLayer(makeProbeState(), { label: "h1" })
        )
          .pipe(Scope.extend(hostScope))
        const caller = yield* secureNode(namespace, "caller", { identity: ic, trust }, Layer.empty)
        const intruder = yield* secureNode(namespace, "intruder", { identity: ix, trust: "any" }, Layer.empty)
        yield* Effect.provide(Discovery.awaitServing("Probe", { timeout: "10 seconds" }), caller)
        // the host's heartbeats are sealed with a group key the intruder cannot get, and the other
        // way round: neither sees the other
        const hostSecure = Context.get(host, Secure.Secure)
        for (let i = 0; i < 100 && (hostSecure.stats().rejected["untrusted"] ?? 0) === 0; i++) {
          yield* Effect.sleep("20 millis")
        }
        expect(hostSecure.stats().rejected["untrusted"]).toBeGreaterThan(0)
        const names = (node: Context.Context<Discovery.Discovery>) =>
          Effect.map(Effect.provide(Discovery.state, node), (s) => s.members.map((m) => m.name).sort())
        expect(yield* names(intruder)).toEqual(["intruder"])
        expect(yield* names(host)).toEqual(["caller", "host"])
        expect(hostSecure.peers().map((p) => p.publicKey)).toEqual([ic.publicKey])

        const probe = (yield* Effect.provide(Actor.client(Probe), caller))("a")
        expect(yield* probe.Whoami()).toBe("h1")
        yield* Scope.close(hostScope, Exit.void)
        yield* secureNode(namespace, "host", { identity: ih, trust }, probeLayer(makeProbeState(), { label: "h2" }))
        let answer = ""
        for (let i = 0; i < 100 && answer !== "h2"; i++) {
          answer = yield* probe.Whoami().pipe(Effect.timeout("1 second"), Effect.orElseSucceed(() => ""))
          if (answer !== "h2") yield* Effect.sleep("50 millis")
        }
        expect(answer).toBe("h2")
      }).pipe(Effect.scoped),
    30_000
  )
})
