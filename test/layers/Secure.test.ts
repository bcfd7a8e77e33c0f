/**
 * Secure sessions over an in-memory network that serializes every frame (as NATS would).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { createHash, createHmac, randomBytes } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { inspect } from "node:util"
import { vi } from "vitest"
import * as Actor from "../../src/actors/Actor.ts"
import type { ActorSystem } from "../../src/actors/ActorSystem.ts"
import * as TopicM from "../../src/actors/Topic.ts"
import type * as Topic from "../../src/actors/Topic.ts"
import * as Codec from "../../src/layers/Codec.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as C from "../../src/layers/internal/secureCrypto.ts"
import { ReplayWindow } from "../../src/layers/internal/secureCrypto.ts"
import * as Secure from "../../src/layers/Secure.ts"
import * as Transport from "../../src/layers/Transport.ts"
import * as Node from "../../src/runtime/Node.ts"
import { type Envelope, ProtocolVersion, type SealedFrame } from "../../src/schema/Envelope.ts"
import { eventually } from "../fixtures/clock.ts"
import { makeProbeState, openLatch, Probe, probeLayer, ProbeService, probeServiceLayer } from "../fixtures/probe.ts"
import { makeWire, tap, type Wire } from "../fixtures/wire.ts"

/**
 * Every secret the secure layer makes (seeds, group keys, ephemeral private keys, shared
 * secrets, session keys), kept for the test that no log line holds one: the crypto module,
 * unchanged but for the keeping.
 */
const secrets = vi.hoisted((): Array<Uint8Array> => [])
vi.mock("../../src/layers/internal/secureCrypto.ts", async (importOriginal) => {
  const original = await importOriginal<typeof import("../../src/layers/internal/secureCrypto.ts")>()
  const kept = <A extends Uint8Array>(secret: A): A => {
    secrets.push(secret)
    return secret
  }
  return {
    ...original,
    randomSeed: () => kept(original.randomSeed()),
    randomKey: () => kept(original.randomKey()),
    ephemeral: () => {
      const pair = original.ephemeral()
      kept(pair.privateKey.export({ format: "der", type: "pkcs8" }).subarray(-32))
      return pair
    },
    sharedSecret: (own: Parameters<typeof original.sharedSecret>[0], peer: Uint8Array) => {
      const secret = original.sharedSecret(own, peer)
      return secret === undefined ? secret : kept(secret)
    },
    deriveKeys: (secret: Uint8Array, transcript: Uint8Array) => {
      const keys = original.deriveKeys(secret, transcript)
      kept(keys.initiator)
      kept(keys.responder)
      return keys
    }
  }
})

const SEED = new Uint8Array(32).fill(7)
const news = TopicM.make("news.flash", Schema.String)

type SecureNode = Context.Context<Node.Node | ActorSystem | Topic.TopicBus | Secure.Secure | Transport.Transport>

interface Net {
  readonly network: Transport.InMemoryNetwork
  readonly registry: Discovery.Registry
}

const makeNet: Effect.Effect<Net> = Effect.map(Discovery.makeRegistry, (registry) => ({
  network: Transport.makeNetwork(),
  registry
}))

const plainTransport = (net: Net) =>
  Layer.provideMerge(Transport.layerInMemory({ network: net.network, serialize: true }), Codec.msgpack)

/** what a test may put between a node's `Secure` layer and the network */
interface Taps {
  /** a man in the middle on the node's link (sees and rewrites sealed frames) */
  readonly wire?: Wire | undefined
  /** the codec `Secure` seals and opens plaintexts with (a spy sees what the node opened) */
  readonly codec?: Codec.CodecShape | undefined
}

/** the transport and codec below a node's `Secure` layer */
const linkLayer = (net: Net, taps: Taps) => {
  const transport = Transport.layerInMemory({ network: net.network, serialize: true }).pipe(
    Layer.provide(Codec.msgpack)
  )
  return Layer.merge(
    taps.wire === undefined ? transport : tap(taps.wire).pipe(Layer.provide(transport)),
    Layer.succeed(Codec.Codec, taps.codec ?? Codec.msgpackCodec)
  )
}

/** A node sealed by `Secure` on `net`, built in the current scope (so it inherits the TestClock). */
const secureNode = (
  net: Net,
  kinds: Layer.Layer<never, never, ActorSystem | Topic.TopicBus>,
  options: Node.NodeOptions & Omit<Secure.SecureOptions, "identity"> & { readonly identity: Secure.Identity },
  taps: Taps = {}
): Effect.Effect<SecureNode, never, Scope.Scope> =>
  Layer.build(kinds.pipe(
    Layer.provideMerge(Node.layer(options)),
    Layer.provideMerge(Layer.merge(
      Secure.layer(options).pipe(Layer.provide(linkLayer(net, taps))),
      Discovery.layerInMemory(net.registry)
    )),
    Layer.orDie
  ))

/** a host of `kinds` (its link tapped by `taps`) and a caller with no kinds, both trusting any key, on a fresh network */
const hostAndCaller = (kinds: Layer.Layer<never, never, ActorSystem | Topic.TopicBus>, taps: Taps = {}) =>
  Effect.gen(function*() {
    const net = yield* makeNet
    const host = yield* secureNode(
      net,
      kinds,
      { name: "host", identity: yield* Secure.generateIdentity, trust: "any" },
      taps
    )
    const caller = yield* secureNode(net, Layer.empty, {
      name: "caller",
      identity: yield* Secure.generateIdentity,
      trust: "any"
    })
    return { caller, host, net }
  })

/** a probe host and a caller with no kinds, both trusting any key, on a fresh network */
const probeHostAndCaller = Effect.suspend(() => hostAndCaller(probeLayer(makeProbeState())))

/** A node without `Secure` on the same network. */
const plainNode = (net: Net, kinds: Layer.Layer<never, never, ActorSystem | Topic.TopicBus>, name: string) =>
  Layer.build(kinds.pipe(
    Layer.provideMerge(Node.layer({ name })),
    Layer.provide(Layer.merge(plainTransport(net), Discovery.layerInMemory(net.registry))),
    Layer.orDie
  ))

const nodeIdOf = (node: SecureNode) => Context.get(node, Node.Node).nodeId
const secureOf = (node: SecureNode) => Context.get(node, Secure.Secure)
const probeOf = (node: Context.Context<ActorSystem>, id: string) =>
  Effect.map(Effect.provide(Actor.client(Probe), node), (client) => client(id))

/** a plain subscriber on every subject of the network: what a broker sees */
const capture = (net: Net): Array<Uint8Array> => {
  const seen: Array<Uint8Array> = []
  net.network.add({
    subject: "troupe.>",
    queue: undefined,
    onNoResponders: undefined,
    deliver: (f) => seen.push(f as Uint8Array)
  })
  return seen
}

const contains = (haystack: Uint8Array, needle: Uint8Array): boolean =>
  Buffer.from(haystack).includes(Buffer.from(needle))

/** An attacker's plain transport on the network: sees sealed frames, can publish any frame. */
const attacker = (net: Net) => Transport.makeInMemorySerialized(Codec.msgpackCodec, { network: net.network })

/** A secured transport alone, as the node `id` would use it: it receives on `node.<id>`. */
const endpoint = (net: Net, id: string, coalesce = false) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      Secure.layer({ identity: yield* Secure.generateIdentity, trust: "any", coalesce }).pipe(
        Layer.provide(plainTransport(net))
      )
    )
    const transport = Context.get(context, Transport.Transport)
    const received: Array<Envelope> = []
    yield* transport.subscribe(`node.${id}`, (frame) => received.push(frame))
    return { transport, received, secure: Context.get(context, Secure.Secure) }
  })

const tell = (n: number): Envelope => ({
  _tag: "Request",
  v: ProtocolVersion,
  source: "a",
  requestId: n,
  kind: "K",
  id: "x",
  tag: "T",
  headers: {},
  body: n,
  oneWay: true
})

const bodies = (frames: ReadonlyArray<Envelope>) => frames.map((f) => (f as { readonly body: unknown }).body)

describe("identity", () => {
  it.effect("a seed gives a stable printable public key; files and env vars hold seeds; the private key never prints", () =>
    Effect.gen(function*() {
      const a = yield* Secure.identityFromSeed(SEED)
      const b = yield* Secure.identityFromSeed(new Uint8Array(SEED))
      expect(a.publicKey).toBe(b.publicKey)
      expect(a.publicKey).toMatch(/^[A-Za-z0-9_-]{43}$/)
      const dir = mkdtempSync(join(tmpdir(), "troupe-secure-"))
      try {
        writeFileSync(join(dir, "raw"), SEED)
        writeFileSync(join(dir, "hex"), Buffer.from(SEED).toString("hex") + "\n")
        expect((yield* Secure.identityFromFile(join(dir, "raw"))).publicKey).toBe(a.publicKey)
        expect((yield* Secure.identityFromFile(join(dir, "hex"))).publicKey).toBe(a.publicKey)
        expect((yield* Secure.identity({ file: join(dir, "hex") })).publicKey).toBe(a.publicKey)
        expect(yield* Effect.flip(Secure.identityFromFile(join(dir, "missing")))).toMatchObject({
          _tag: "SecureConfigError"
        })
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
      process.env["TROUPE_TEST_SEED"] = Buffer.from(SEED).toString("base64url")
      expect((yield* Secure.identityFromEnv("TROUPE_TEST_SEED")).publicKey).toBe(a.publicKey)
      expect((yield* Secure.identity({ env: "TROUPE_TEST_SEED" })).publicKey).toBe(a.publicKey)
      expect((yield* Secure.identity(SEED)).publicKey).toBe(a.publicKey)
      const fresh = [yield* Secure.identity("generate"), yield* Secure.identity("generate")]
      expect(new Set([a.publicKey, ...fresh.map((i) => i.publicKey)]).size).toBe(3)
      delete process.env["TROUPE_TEST_SEED"]
      expect(yield* Effect.flip(Secure.identityFromEnv("TROUPE_TEST_SEED"))).toMatchObject({
        _tag: "SecureConfigError"
      })
      expect(yield* Effect.flip(Secure.identityFromSeed(new Uint8Array(31)))).toMatchObject({
        _tag: "SecureConfigError"
      })
      const generated = yield* Secure.identityFromSeed(Buffer.from(yield* Secure.generateSeed, "base64url"))
      expect(generated.publicKey).not.toBe(a.publicKey)
      const seedText = Buffer.from(SEED).toString("hex")
      for (const printed of [JSON.stringify(a), String(a), inspect(a, { showHidden: true, depth: 5 })]) {
        expect(printed).toContain(a.publicKey)
        expect(printed).not.toContain(seedText)
        expect(printed).not.toContain("privateKey")
      }
    }))

  it.effect("a trust list of malformed keys is a config error", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      const exit = yield* Effect.exit(
        Layer.build(
          Secure.layer({ identity: Secure.generateIdentity, trust: ["not-a-key"] }).pipe(
            Layer.provide(plainTransport(net))
          )
        ).pipe(Effect.scoped)
      )
      expect(exit).toMatchObject({ _tag: "Failure", cause: { error: { _tag: "SecureConfigError" } } })
    }))
})

describe("session keys", () => {
  it("come from HKDF-SHA256: one per direction, each bound to the secret and the transcript", () => {
    const secret = Buffer.alloc(32, 1)
    const transcript = Buffer.from("transcript")
    const keys = C.deriveKeys(secret, transcript)
    expect(keys.initiator).toHaveLength(32)
    expect(keys.responder).toHaveLength(32)
    expect(keys.initiator.equals(keys.responder)).toBe(false)
    // RFC 5869 HKDF-SHA256, computed here from its definition with HMAC
    const hmac = (key: Uint8Array, data: Uint8Array) => createHmac("sha256", key).update(data).digest()
    const prk = hmac(createHash("sha256").update(transcript).digest(), secret)
    const expand = (info: string) => hmac(prk, Buffer.concat([Buffer.from(info), Buffer.from([1])]))
    expect(keys.initiator.equals(expand("troupe-secure-v2 initiator to responder"))).toBe(true)
    expect(keys.responder.equals(expand("troupe-secure-v2 responder to initiator"))).toBe(true)
    expect(C.deriveKeys(secret, Buffer.from("other transcript")).initiator.equals(keys.initiator)).toBe(false)
    expect(C.deriveKeys(Buffer.alloc(32, 2), transcript).initiator.equals(keys.initiator)).toBe(false)
  })
})

describe("replay window", () => {
  it("accepts each counter once in any order within the window, rejects older ones", () => {
    const window = new ReplayWindow()
    const accept = (c: number) => {
      const verdict = window.check(c)
      if (verdict === "ok") window.record(c)
      return verdict
    }
    expect(accept(1)).toBe("ok")
    expect(accept(3)).toBe("ok")
    expect(accept(2)).toBe("ok") // reordered, within the window
    expect(accept(2)).toBe("replay")
    expect(accept(2000)).toBe("ok")
    expect(accept(1500)).toBe("ok")
    expect(accept(1500)).toBe("replay")
    expect(accept(900)).toBe("old") // more than 1024 behind the highest
    expect(accept(0)).toBe("old")
    expect(accept(3100)).toBe("ok") // a jump past the window clears it
    expect(accept(2999)).toBe("ok")
  })
})

describe("secure sessions in memory", () => {
  it.scoped("nodes handshake, then asks, tells, services and topics work; the wire holds no plaintext", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      const seen = capture(net)
      const [ia, ib] = [yield* Secure.generateIdentity, yield* Secure.generateIdentity]
      const trust = [ia.publicKey, ib.publicKey]
      const state = makeProbeState()
      const host = yield* secureNode(
        net,
        Layer.merge(probeLayer(state, { label: "host" }), probeServiceLayer(makeProbeState(), { label: "svc" })),
        { name: "host", identity: ib, trust }
      )
      const caller = yield* secureNode(net, Layer.empty, { name: "caller", identity: ia, trust })
      const probe = yield* probeOf(caller, "SECRET-ACTOR-ID")
      expect(yield* probe.Increment({ by: 424242 })).toBe(424242)
      yield* Actor.tell(probe.Increment({ by: 1 }))
      expect(yield* probe.Get().pipe(Effect.repeat({ until: (n) => n === 424243, times: 100 }))).toBe(424243)
      expect(yield* Effect.flip(probe.Fail({ reason: "typed" }))).toMatchObject({ _tag: "ProbeError", reason: "typed" })
      expect(secureOf(caller).peers().map((p) => p.nodeId)).toEqual([nodeIdOf(host)])
      expect(secureOf(caller).peers()[0]!.publicKey).toBe(ib.publicKey)
      expect(secureOf(host).peers()[0]!.publicKey).toBe(ia.publicKey)
      expect(secureOf(caller).stats().handshakes).toBe(1)
      expect(seen.length).toBeGreaterThan(5)
      for (const needle of ["SECRET-ACTOR-ID", "Increment", "typed", "ProbeError"]) {
        expect(seen.some((bytes) => contains(bytes, Buffer.from(needle)))).toBe(false)
      }
    }))

  it.scoped("a service: its requests reach every member of the group, without plaintext on the wire", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      const seen = capture(net)
      const trust = "any" as const
      yield* secureNode(net, probeServiceLayer(makeProbeState(), { label: "s0" }), {
        name: "s0",
        identity: yield* Secure.generateIdentity,
        trust
      })
      yield* secureNode(net, probeServiceLayer(makeProbeState(), { label: "s1" }), {
        name: "s1",
        identity: yield* Secure.generateIdentity,
        trust
      })
      const caller = yield* secureNode(net, Layer.empty, {
        name: "caller",
        identity: yield* Secure.generateIdentity,
        trust
      })
      const service = yield* Effect.provide(Actor.client(ProbeService), caller)
      const served = new Set<string>()
      for (let i = 0; i < 10; i++) served.add(yield* service.Whoami())
      expect([...served].sort()).toEqual(["s0", "s1"])
      // the sealed request frames on the shared subject carry no plaintext either
      expect(seen.some((bytes) => contains(bytes, Buffer.from("Whoami")))).toBe(false)
    }))

  it.scoped("a service request replayed on the service's subject or on either member's reaches no handler", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      const trust = "any" as const
      const states = [makeProbeState(), makeProbeState()]
      const members = [
        yield* secureNode(net, probeServiceLayer(states[0]!, { label: "s0" }), {
          name: "s0",
          identity: yield* Secure.generateIdentity,
          trust
        }),
        yield* secureNode(net, probeServiceLayer(states[1]!, { label: "s1" }), {
          name: "s1",
          identity: yield* Secure.generateIdentity,
          trust
        })
      ]
      const caller = yield* secureNode(net, Layer.empty, {
        name: "caller",
        identity: yield* Secure.generateIdentity,
        trust
      })
      const evil = attacker(net)
      const sealed: Array<{ readonly subject: string; readonly frame: SealedFrame }> = []
      const memberSubjects = members.map((m) => `node.${nodeIdOf(m)}`)
      for (const subject of ["actor.>", ...memberSubjects]) {
        yield* evil.subscribe(subject, (frame) => {
          if (frame._tag === "Sealed" && frame.source === nodeIdOf(caller)) sealed.push({ subject, frame })
        })
      }
      const service = yield* Effect.provide(Actor.client(ProbeService), caller)
      const served = new Set<string>()
      for (let i = 0; i < 6; i++) served.add(yield* service.Whoami())
      yield* service.Track({ n: 1 })
      expect([...served].sort()).toEqual(["s0", "s1"])
      expect(states.map((s) => s.order)).toContainEqual([1])
      // nothing sealed goes to the service's shared subject: each request went to the member the
      // caller chose, over their pairwise session
      expect(sealed.filter((s) => s.subject === "actor.>")).toEqual([])
      expect(sealed.length).toBeGreaterThanOrEqual(7)
      const rejectedBefore = members.map((m) => Object.values(secureOf(m).stats().rejected).reduce((a, b) => a + b, 0))
      // every captured frame, replayed on the service's subject and on both members' subjects
      const captured = sealed.map((s) => s.frame)
      for (const frame of captured) {
        for (const subject of ["actor.ProbeService", ...memberSubjects]) yield* evil.publish(subject, frame)
      }
      const rejectedAfter = members.map((m) => Object.values(secureOf(m).stats().rejected).reduce((a, b) => a + b, 0))
      // each copy reached one member and was rejected there (a replay for its receiver, a session
      // the other does not know)
      expect(rejectedAfter[0]! - rejectedBefore[0]! + rejectedAfter[1]! - rejectedBefore[1]!).toBe(3 * captured.length)
      expect(states.map((s) => s.order.length).reduce((a, b) => a + b, 0)).toBe(1)
    }))

  it.scoped("a tampered frame, a replay and a plaintext frame are rejected, counted, and never reach the actor", () =>
    Effect.gen(function*() {
      const { caller, host, net } = yield* probeHostAndCaller
      const evil = attacker(net)
      const sealed: Array<SealedFrame> = []
      yield* evil.subscribe(`node.${nodeIdOf(host)}`, (frame) => {
        if (frame._tag === "Sealed") sealed.push(frame)
      })
      const probe = yield* probeOf(caller, "a")
      expect(yield* probe.Increment({ by: 1 })).toBe(1)
      const request = sealed.at(-1)!
      const subject = `node.${nodeIdOf(host)}`
      const stats = () => secureOf(host).stats().rejected
      // tampered: the authenticated header (the ciphertext: see the next test)
      const tamperedMetric = Secure.rejectedFrames.pipe(Metric.tagged("reason", "tampered"))
      const metricBefore = (yield* Metric.value(tamperedMetric)).count
      yield* evil.publish(subject, { ...request, counter: request.counter + 100 })
      expect(stats()).toMatchObject({ tampered: 1 })
      expect((yield* Metric.value(tamperedMetric)).count - metricBefore).toBe(1)
      // replayed as it was
      yield* evil.publish(subject, request)
      expect(stats()["replay"]).toBe(1)
      // a plain frame on a secured subject
      yield* evil.publish(subject, {
        _tag: "Request",
        v: ProtocolVersion,
        source: "evil",
        requestId: 1,
        kind: "Probe",
        id: "a",
        tag: "Increment",
        headers: {},
        body: { by: 100 },
        oneWay: true
      })
      expect(stats()["plaintext"]).toBe(1)
      // an unknown session
      yield* evil.publish(subject, { ...request, key: request.key + 1 })
      expect(stats()["unknown-session"]).toBe(1)
      expect(yield* probe.Get()).toBe(1)
    }))

  it.scoped("a man in the middle who flips a bit, changes a header or duplicates a frame gets each copy rejected", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      // subscribed before b, the attacker sees each frame first and injects its copy ahead of it
      let mutate: ((frame: SealedFrame) => SealedFrame) | undefined
      let injecting = false
      const evil = attacker(net)
      yield* evil.subscribe("node.b", (frame) => {
        if (frame._tag !== "Sealed" || mutate === undefined || injecting) return
        injecting = true
        evil.unsafePublish("node.b", mutate(frame))
        injecting = false
      })
      const b = yield* endpoint(net, "b")
      const a = yield* endpoint(net, "a")
      yield* a.transport.publish("node.b", tell(1))
      mutate = (frame) => {
        const body = new Uint8Array(frame.body)
        body[body.length >> 1]! ^= 1
        return { ...frame, body }
      }
      yield* a.transport.publish("node.b", tell(2))
      mutate = (frame) => ({ ...frame, counter: frame.counter + 1 })
      yield* a.transport.publish("node.b", tell(3))
      mutate = (frame) => frame
      yield* a.transport.publish("node.b", tell(4))
      mutate = undefined
      expect(b.secure.stats().rejected).toEqual({ tampered: 2, replay: 1 })
      expect(bodies(b.received)).toEqual([1, 2, 3, 4])
    }))

  it.scoped("frames reordered on the wire within the window are each accepted once; a frame held past the window is rejected", () =>
    Effect.gen(function*() {
      const state = makeProbeState()
      const wire = makeWire()
      const { caller, host, net } = yield* hostAndCaller(probeLayer(state), { wire })
      const subject = `node.${nodeIdOf(host)}`
      const evil = attacker(net)
      // the man in the middle holds back the next sealed frame to the host
      const held: Array<SealedFrame> = []
      let hold = false
      wire.incoming = (subscription, frame) => {
        if (!hold || subscription !== subject || frame._tag !== "Sealed") return frame
        hold = false
        held.push(frame)
        return undefined
      }
      const counterOf = (n: number) =>
        wire.received.filter(({ frame }) => frame._tag === "Sealed" && frame.source === nodeIdOf(caller)).at(n)!
          .frame as SealedFrame
      const probe = yield* probeOf(caller, "a")
      expect(yield* probe.Get()).toBe(0)
      yield* Actor.tell(probe.Track({ n: 1 }))
      hold = true
      yield* Actor.tell(probe.Track({ n: 2 }))
      yield* Actor.tell(probe.Track({ n: 3 }))
      expect(held).toHaveLength(1)
      // frame k+1 arrived, frame k is still held
      expect(counterOf(-1).counter).toBe(held[0]!.counter + 1)
      yield* eventually(() => state.order.length === 2, "two tracked")
      // k arrives after k + 1: accepted, once
      yield* evil.publish(subject, held[0]!)
      yield* eventually(() => state.order.length === 3, "three tracked")
      expect(state.order).toEqual([1, 3, 2])
      expect(secureOf(host).stats().rejected).toEqual({})
      yield* evil.publish(subject, held[0]!)
      expect(secureOf(host).stats().rejected).toEqual({ replay: 1 })
      // a frame held while more than the window's 1024 frames pass
      hold = true
      yield* Actor.tell(probe.Track({ n: 4 }))
      expect(held).toHaveLength(2)
      for (let i = 1; i <= 1100; i++) {
        yield* Actor.tell(probe.Increment({ by: 1 }))
        // (an ask now and then lets the mailbox drain)
        if (i % 100 === 0) expect(yield* probe.Get()).toBe(i)
      }
      expect(counterOf(-1).counter - held[1]!.counter).toBeGreaterThan(1024)
      yield* evil.publish(subject, held[1]!)
      expect(secureOf(host).stats().rejected).toEqual({ replay: 1, old: 1 })
      expect(yield* probe.Get()).toBe(1100)
      expect(state.order).toEqual([1, 3, 2])
    }))

  it.scoped("an untrusted key cannot join: its asks fail with HandshakeError, asks to it with Unauthorized, its events never arrive", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      const [ia, ib, ic] = [
        yield* Secure.generateIdentity,
        yield* Secure.generateIdentity,
        yield* Secure.generateIdentity
      ]
      const state = makeProbeState()
      const host = yield* secureNode(net, probeLayer(state, { label: "host" }), {
        name: "host",
        identity: ia,
        trust: [ia.publicKey, ib.publicKey]
      })
      const intruder = yield* secureNode(net, probeServiceLayer(makeProbeState()), {
        name: "intruder",
        identity: ic,
        trust: "any"
      })
      const probe = yield* probeOf(intruder, "a")
      const failure = yield* Effect.flip(probe.Increment({ by: 1 }))
      expect(failure).toMatchObject({ _tag: "HandshakeError", peer: nodeIdOf(host) })
      expect((failure as { reason: string }).reason).toContain("not trusted")
      expect(state.builds).toBe(0)
      expect(secureOf(host).stats().rejected["untrusted"]).toBeGreaterThanOrEqual(1)
      // the intruder's events: the host cannot get its group key, so they never arrive
      const received: Array<string> = []
      const bus = Context.get(host, TopicM.TopicBus)
      yield* TopicM.subscribe(news).pipe(
        Stream.runForEach((event) => Effect.sync(() => received.push(event.value))),
        Effect.provide(host),
        Effect.forkScoped
      )
      yield* eventually(() => bus.subscriptionCount() === 1, "subscribed")
      const rejectedBefore = secureOf(host).stats().rejected["untrusted"] ?? 0
      yield* Effect.provide(TopicM.publish(news, "forged"), intruder)
      yield* eventually(() => (secureOf(host).stats().rejected["untrusted"] ?? 0) > rejectedBefore, "event rejected")
      expect(received).toEqual([])
      expect(secureOf(host).peers()).toEqual([])
      expect(secureOf(intruder).peers()).toEqual([])
    }))

  it.scoped("asking a node whose key is not trusted fails with Unauthorized naming it", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      const [ia, ic] = [yield* Secure.generateIdentity, yield* Secure.generateIdentity]
      const state = makeProbeState()
      const untrusted = yield* secureNode(net, probeLayer(state), { name: "untrusted", identity: ic, trust: "any" })
      const caller = yield* secureNode(net, Layer.empty, { name: "caller", identity: ia, trust: [ia.publicKey] })
      const probe = yield* probeOf(caller, "a")
      expect(yield* Effect.flip(probe.Increment({ by: 1 }))).toMatchObject({
        _tag: "Unauthorized",
        peer: nodeIdOf(untrusted),
        publicKey: ic.publicKey
      })
      expect(state.builds).toBe(0)
    }))

  it.scoped("nodes of another namespace cannot open a session", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      const host = yield* secureNode(net, probeLayer(makeProbeState()), {
        name: "host",
        identity: yield* Secure.generateIdentity,
        trust: "any",
        namespace: "prod"
      })
      const caller = yield* secureNode(net, Layer.empty, {
        name: "caller",
        identity: yield* Secure.generateIdentity,
        trust: "any",
        namespace: "staging"
      })
      const probe = yield* probeOf(caller, "a")
      const failure = yield* Effect.flip(probe.Get())
      expect(failure).toMatchObject({ _tag: "HandshakeError", peer: nodeIdOf(host) })
      expect((failure as { reason: string }).reason).toContain("namespace")
      expect(secureOf(host).stats().rejected["namespace"]).toBe(1)
    }))

  it.scoped("a handshake nobody answers times out (TestClock) and fails the ask with HandshakeError", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      // a node without Secure ignores handshakes
      const plain = yield* plainNode(net, probeLayer(makeProbeState()), "plain")
      const caller = yield* secureNode(net, Layer.empty, {
        name: "caller",
        identity: yield* Secure.generateIdentity,
        trust: "any",
        handshakeTimeout: "3 seconds"
      })
      const probe = yield* probeOf(caller, "a")
      const fiber = yield* Effect.fork(probe.Get())
      yield* eventually(() => Context.get(caller, Node.Node).pendingAsks() === 1, "ask pending")
      yield* TestClock.adjust("2999 millis")
      expect(fiber.unsafePoll()).toBe(null)
      yield* TestClock.adjust("1 millis")
      const failure = yield* Effect.flip(Fiber.join(fiber))
      expect(failure).toMatchObject({
        _tag: "HandshakeError",
        peer: Context.get(plain, Node.Node).nodeId,
        reason: expect.stringContaining("3000 ms")
      })
      expect(secureOf(caller).stats().handshakeFailures).toBe(1)
    }))

  it.scoped("sessions are re-keyed after their age (TestClock) and their message count", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      const trust = "any" as const
      yield* secureNode(net, probeLayer(makeProbeState()), {
        name: "host",
        identity: yield* Secure.generateIdentity,
        trust
      })
      const caller = yield* secureNode(net, Layer.empty, {
        name: "caller",
        identity: yield* Secure.generateIdentity,
        trust,
        rekeyAfter: "10 minutes",
        rekeyAfterMessages: 50
      })
      // (the actor may passivate while the clock moves: ask something stateless)
      const probe = yield* probeOf(caller, "a")
      expect(yield* probe.Whoami()).toBe("node")
      const first = secureOf(caller).peers()[0]!
      yield* TestClock.adjust("9 minutes")
      expect(yield* probe.Whoami()).toBe("node")
      expect(secureOf(caller).peers()[0]!.sessionId).toBe(first.sessionId)
      yield* TestClock.adjust("1 minute")
      expect(yield* probe.Whoami()).toBe("node")
      const second = secureOf(caller).peers()[0]!
      expect(second.sessionId).not.toBe(first.sessionId)
      expect(second.establishedAt - first.establishedAt).toBe(10 * 60_000)
      const handshakes = secureOf(caller).stats().handshakes
      for (let i = 0; i < 120; i++) yield* probe.Increment({ by: 1 })
      expect(yield* probe.Get()).toBe(120)
      expect(secureOf(caller).stats().handshakes).toBeGreaterThanOrEqual(handshakes + 2)
      expect(secureOf(caller).peers()[0]!.sent).toBeLessThanOrEqual(50)
    }))

  it.live("coalescing: the frames of one subject in one turn share a sealing; asks and a dead peer's \"no responders\" still work", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      const seen = capture(net)
      const trust = "any" as const
      const host = yield* secureNode(net, probeLayer(makeProbeState()), {
        name: "host",
        identity: yield* Secure.generateIdentity,
        trust,
        coalesce: true
      })
      const caller = yield* secureNode(net, Layer.empty, {
        name: "caller",
        identity: yield* Secure.generateIdentity,
        trust,
        coalesce: true
      })
      const probe = yield* Effect.provide(Actor.client(Probe), caller)
      expect(yield* probe("warm").Get()).toBe(0)
      const before = seen.length
      const ids = Array.from({ length: 50 }, (_, i) => `id-${i}`)
      const results = yield* Effect.forEach(ids, (id) => probe(id).Increment({ by: 2 }), { concurrency: "unbounded" })
      expect(results).toEqual(ids.map(() => 2))
      // 50 requests and 50 replies travelled in far fewer sealed messages
      expect(seen.length - before).toBeLessThan(20)
      expect(secureOf(caller).stats().rejected).toEqual({})
      expect(secureOf(host).stats().rejected).toEqual({})
    }).pipe(Effect.scoped))

  it.live("coalescing: frames batched to a peer that is gone each get their \"no responders\"", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      const a = yield* endpoint(net, "a", true)
      const gone: Array<string> = []
      yield* a.transport.subscribe("node.a.nr.*", () => {}, { onNoResponders: (subject) => gone.push(subject) })
      const scope = yield* Scope.make()
      yield* Scope.extend(endpoint(net, "b", true), scope)
      yield* a.transport.publish("node.b", tell(1))
      yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      yield* Scope.close(scope, Exit.void)
      for (let i = 1; i <= 3; i++) yield* a.transport.publish("node.b", tell(i), { replyTo: `node.a.nr.${i}` })
      yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      expect(gone).toEqual(["node.a.nr.1", "node.a.nr.2", "node.a.nr.3"])
    }).pipe(Effect.scoped))

  it.scoped("the node names itself: its direct subject, subscribed with its id, makes the transport that node even after another direct subject", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      const context = yield* Layer.build(
        Secure.layer({ identity: yield* Secure.generateIdentity, trust: "any" }).pipe(
          Layer.provide(plainTransport(net))
        )
      )
      const a = Context.get(context, Transport.Transport)
      // a direct subject of another node, subscribed first (a transport without a node takes it as its own)
      yield* a.subscribe("node.watched", () => {})
      const received: Array<Envelope> = []
      yield* a.subscribe("node.a", (frame) => received.push(frame), { node: "a" })
      const b = yield* endpoint(net, "b")
      yield* b.transport.publish("node.a", tell(1))
      yield* a.publish("node.b", tell(2))
      expect(bodies(received)).toEqual([1])
      expect(bodies(b.received)).toEqual([2])
      expect(Context.get(context, Secure.Secure).peers().map((peer) => peer.nodeId)).toEqual(["b"])
      expect(b.secure.stats().rejected).toEqual({})
    }))

  it.scoped("a node subscribes to its direct subject naming itself, so the transport below learns its id", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      const named: Array<{ readonly subject: string; readonly node: string | undefined }> = []
      const spy = Layer.effect(
        Transport.Transport,
        Effect.map(Transport.Transport, (inner) => ({
          ...inner,
          subscribe: (subject: string, onFrame: (frame: Envelope) => void, options?: Transport.SubscribeOptions) => {
            named.push({ subject, node: options?.node })
            return inner.subscribe(subject, onFrame, options)
          }
        }))
      ).pipe(Layer.provide(plainTransport(net)))
      const node = yield* Layer.build(
        Node.layer({ name: "named" }).pipe(
          Layer.provide(Layer.merge(spy, Discovery.layerInMemory(net.registry))),
          Layer.orDie
        )
      )
      const nodeId = Context.get(node, Node.Node).nodeId
      expect(named.filter((entry) => entry.node !== undefined)).toEqual([{ subject: `node.${nodeId}`, node: nodeId }])
    }))

  it.scoped("the group key rotates after its message count; every event still arrives, once", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      const epochs = new Set<number>()
      yield* attacker(net).subscribe("topic.>", (frame) => {
        if (frame._tag === "Sealed") epochs.add(frame.key)
      })
      const trust = "any" as const
      const publisher = yield* secureNode(net, Layer.empty, {
        name: "pub",
        identity: yield* Secure.generateIdentity,
        trust,
        rekeyAfterMessages: 20
      })
      const subscriber = yield* secureNode(net, Layer.empty, {
        name: "sub",
        identity: yield* Secure.generateIdentity,
        trust
      })
      const received: Array<string> = []
      yield* TopicM.subscribe(news).pipe(
        Stream.runForEach((event) => Effect.sync(() => received.push(event.value))),
        Effect.provide(subscriber),
        Effect.forkScoped
      )
      yield* eventually(() => Context.get(subscriber, TopicM.TopicBus).subscriptionCount() === 1, "subscribed")
      const sent = Array.from({ length: 100 }, (_, i) => `e${i}`)
      for (const value of sent) yield* Effect.provide(TopicM.publish(news, value), publisher)
      yield* eventually(() => received.length === sent.length, "all events")
      expect(received).toEqual(sent)
      expect(epochs.size).toBe(5)
      expect(secureOf(subscriber).stats().rejected).toEqual({})
    }))

  it.scoped("the group key rotates after its age (TestClock); every event still arrives, once", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      const wire = makeWire()
      const trust = "any" as const
      const publisher = yield* secureNode(net, Layer.empty, {
        name: "pub",
        identity: yield* Secure.generateIdentity,
        trust,
        rekeyAfter: "10 minutes"
      }, { wire })
      const subscriber = yield* secureNode(net, Layer.empty, {
        name: "sub",
        identity: yield* Secure.generateIdentity,
        trust
      })
      const received = yield* collect(subscriber, news)
      const epochs = () => sealedTo(wire, "topic.news.flash").map((frame) => frame.key)
      const publish = (value: string) => Effect.provide(TopicM.publish(news, value), publisher)
      yield* publish("e0")
      yield* publish("e1")
      yield* TestClock.adjust("9 minutes")
      yield* publish("e2")
      expect(new Set(epochs()).size).toBe(1)
      yield* TestClock.adjust("1 minute")
      yield* publish("e3")
      yield* publish("e4")
      const [first, , , fourth, fifth] = epochs()
      expect(epochs()).toHaveLength(5)
      expect(fourth).not.toBe(first)
      expect(fifth).toBe(fourth)
      // the new key travelled to the subscriber over the pairwise session before its first use
      yield* eventually(() => received.length === 5, "all events")
      expect(received.map((event) => event.value)).toEqual(["e0", "e1", "e2", "e3", "e4"])
      expect(secureOf(subscriber).stats().rejected).toEqual({})
      // ... and after another age, again
      yield* TestClock.adjust("10 minutes")
      yield* publish("e5")
      expect(new Set(epochs()).size).toBe(3)
      yield* eventually(() => received.length === 6, "the last event")
    }))

  it.scoped("a trust list of hex keys (either case) admits those keys and no others", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      const [ia, ib, ic] = [
        yield* Secure.generateIdentity,
        yield* Secure.generateIdentity,
        yield* Secure.generateIdentity
      ]
      const hex = (identity: Secure.Identity) => Buffer.from(identity.publicKey, "base64url").toString("hex")
      const state = makeProbeState()
      const host = yield* secureNode(net, probeLayer(state), {
        name: "host",
        identity: ib,
        trust: [hex(ia), hex(ib).toUpperCase()]
      })
      const caller = yield* secureNode(net, Layer.empty, {
        name: "caller",
        identity: ia,
        trust: [hex(ib).toUpperCase()]
      })
      const intruder = yield* secureNode(net, Layer.empty, { name: "intruder", identity: ic, trust: "any" })
      expect(yield* (yield* probeOf(caller, "a")).Increment({ by: 1 })).toBe(1)
      // peers are told by their printable (base64url) key
      expect(secureOf(caller).peers().map((p) => p.publicKey)).toEqual([ib.publicKey])
      expect(secureOf(host).peers().map((p) => p.publicKey)).toEqual([ia.publicKey])
      const failure = yield* Effect.flip((yield* probeOf(intruder, "a")).Increment({ by: 1 }))
      expect(failure).toMatchObject({ _tag: "HandshakeError", peer: nodeIdOf(host) })
      expect((failure as { reason: string }).reason).toContain("not trusted")
      expect(secureOf(host).stats().rejected).toEqual({ untrusted: 1 })
      expect(yield* (yield* probeOf(caller, "a")).Get()).toBe(1)
    }))

  it.scoped("a peer that restarts (same node id, new incarnation) gets a new session", () =>
    Effect.gen(function*() {
      const net = yield* makeNet
      const a = yield* endpoint(net, "a")
      const scope1 = yield* Scope.make()
      const b1 = yield* Scope.extend(endpoint(net, "b"), scope1)
      yield* a.transport.publish("node.b", tell(1))
      expect(bodies(b1.received)).toEqual([1])
      yield* Scope.close(scope1, Exit.void)
      const b2 = yield* endpoint(net, "b")
      // sealed with the old session: b2 cannot open it, and opens a new session
      yield* a.transport.publish("node.b", tell(2))
      expect(b2.secure.stats().rejected["unknown-session"]).toBe(1)
      yield* a.transport.publish("node.b", tell(3))
      expect(bodies(b2.received)).toEqual([3])
      expect(a.secure.peers()).toHaveLength(1)
      expect(a.secure.peers()[0]!.publicKey).toBe(b2.secure.publicKey)
    }))
})

/** a plain subscription of `node` to `topic`, once it can receive: the events it got */
const collect = <A>(node: SecureNode, topic: Topic.Topic<A, any>) =>
  Effect.gen(function*() {
    const received: Array<Topic.Event<A>> = []
    const bus = Context.get(node, TopicM.TopicBus)
    const before = bus.subscriptionCount()
    yield* TopicM.subscribe(topic).pipe(
      Stream.runForEach((event) => Effect.sync(() => received.push(event))),
      Effect.provide(node),
      Effect.forkScoped
    )
    yield* eventually(() => bus.subscriptionCount() === before + 1, "subscribed")
    return received
  })

/** a codec that keeps every frame `Secure` opened: what a (malicious) trusted node can read */
const spyCodec = (opened: Array<Envelope>): Codec.CodecShape => ({
  ...Codec.msgpackCodec,
  decode: (bytes) => {
    const decoded = Codec.msgpackCodec.decode(bytes)
    if (Either.isRight(decoded)) opened.push(decoded.right)
    return decoded
  }
})

/** the group keys `source` handed over, among the frames a node opened */
const groupKeysOf = (opened: ReadonlyArray<Envelope>, source: string) =>
  opened.flatMap((frame) => {
    if (frame._tag !== "Handshake" || frame.step !== 4 || frame.source !== source) return []
    const [epoch, key] = C.split(frame.body, 2)!
    return [{ epoch: epoch!.readUInt32BE(), key: key! }]
  })

const sealedTo = (wire: Wire, subject: string): Array<SealedFrame> =>
  wire.sent.flatMap(({ frame, subject: s }) => s === subject && frame._tag === "Sealed" ? [frame] : [])

describe("broadcast topics", () => {
  /**
   * A publisher, two subscriber nodes (two subscriptions on the first) and a third trusted node
   * that subscribes too, with a spy on what it opens; all trust exactly each other's keys.
   */
  const topicNodes = Effect.gen(function*() {
    const net = yield* makeNet
    const seeds = Array.from({ length: 4 }, () => randomBytes(32))
    const [ip, i1, i2, iF] = yield* Effect.forEach(seeds, Secure.identityFromSeed)
    const trust = [ip!.publicKey, i1!.publicKey, i2!.publicKey, iF!.publicKey]
    const wire = makeWire()
    const publisher = yield* secureNode(net, Layer.empty, { name: "pub", identity: ip!, trust }, { wire })
    const s1 = yield* secureNode(net, Layer.empty, { name: "s1", identity: i1!, trust })
    const s2 = yield* secureNode(net, Layer.empty, { name: "s2", identity: i2!, trust })
    const opened: Array<Envelope> = []
    const forger = yield* secureNode(net, Layer.empty, { name: "forger", identity: iF!, trust }, {
      codec: spyCodec(opened)
    })
    const subscriptions = [
      yield* collect(s1, news),
      yield* collect(s1, news),
      yield* collect(s2, news),
      yield* collect(forger, news)
    ]
    const publish = (value: string) => Effect.provide(TopicM.publish(news, value), publisher)
    const values = () => subscriptions.map((received) => received.map((event) => event.value))
    return { forger, net, opened, publish, publisher, s1, s2, seeds, subscriptions, values, wire }
  })

  it.scoped("an event is sealed and signed once by its publisher and reaches every subscriber on every trusted node", () =>
    Effect.gen(function*() {
      const { publish, publisher, s1, s2, subscriptions, values, wire } = yield* topicNodes
      const sent = ["EVENT-0", "EVENT-1", "EVENT-2", "EVENT-3", "EVENT-4"]
      for (const value of sent) yield* publish(value)
      yield* eventually(() => values().every((got) => got.length === sent.length), "every event everywhere")
      expect(values()).toEqual(subscriptions.map(() => sent))
      for (const received of subscriptions) {
        expect(received.map((event) => event.source)).toEqual(sent.map(() => nodeIdOf(publisher)))
      }
      // one sealed, signed frame per event, whatever the number of subscribers
      const frames = sealedTo(wire, "topic.news.flash")
      expect(frames).toHaveLength(sent.length)
      for (const frame of frames) {
        expect(frame).toMatchObject({ mode: 2, source: nodeIdOf(publisher), subject: "topic.news.flash" })
        expect(frame.sig).toHaveLength(64)
        for (const value of sent) expect(contains(frame.body, Buffer.from(value))).toBe(false)
      }
      expect(new Set(frames.map((frame) => frame.counter)).size).toBe(sent.length)
      expect(secureOf(s1).stats().rejected).toEqual({})
      expect(secureOf(s2).stats().rejected).toEqual({})
    }))

  it.scoped("an event whose signature is corrupted or missing is rejected by every subscriber and never delivered", () =>
    Effect.gen(function*() {
      const { publish, s1, s2, subscriptions, values, wire } = yield* topicNodes
      yield* publish("before")
      yield* eventually(() => values().every((got) => got.length === 1), "the first event everywhere")
      const onTopic = (rewrite: (frame: SealedFrame) => SealedFrame) => {
        wire.outgoing = (subject, frame) =>
          subject === "topic.news.flash" && frame._tag === "Sealed" ? rewrite(frame) : frame
      }
      // a bit of the signature flipped
      onTopic((frame) => {
        const sig = new Uint8Array(frame.sig!)
        sig[10]! ^= 1
        return { ...frame, sig }
      })
      yield* publish("bad signature")
      expect(secureOf(s1).stats().rejected).toEqual({ signature: 2 })
      expect(secureOf(s2).stats().rejected).toEqual({ signature: 1 })
      // the signature stripped
      onTopic(({ sig: _, ...frame }) => frame)
      yield* publish("no signature")
      expect(secureOf(s1).stats().rejected).toEqual({ signature: 4 })
      // stripped and passed off as an unsigned group frame
      onTopic(({ sig: _, ...frame }) => ({ ...frame, mode: 1 }))
      yield* publish("unsigned")
      expect(secureOf(s1).stats().rejected).toEqual({ signature: 4, unsigned: 2 })
      expect(secureOf(s2).stats().rejected).toEqual({ signature: 2, unsigned: 1 })
      wire.outgoing = undefined
      yield* publish("after")
      yield* eventually(() => values().every((got) => got.length === 2), "the last event everywhere")
      expect(values()).toEqual(subscriptions.map(() => ["before", "after"]))
    }))

  it.scoped("a trusted node cannot forge an event as another node: not signed with its own key, not by naming it inside", () =>
    Effect.gen(function*() {
      const { forger, net, opened, publish, publisher, s1, s2, seeds, subscriptions, values, wire } = yield* topicNodes
      yield* publish("genuine")
      yield* eventually(() => values().every((got) => got.length === 1), "the genuine event everywhere")
      const pub = nodeIdOf(publisher)
      // the forger, trusted, legitimately holds the publisher's group key
      const last = sealedTo(wire, "topic.news.flash").at(-1)!
      const groupKey = groupKeysOf(opened, pub).find((key) => key.epoch === last.key)
      expect(groupKey).toBeDefined()
      const sealedAs = (seed: Uint8Array, counter: number, value: string): SealedFrame => {
        const event: Envelope = {
          _tag: "Event",
          v: ProtocolVersion,
          source: pub,
          subject: "news.flash",
          headers: {},
          body: value
        }
        const plaintext = Either.getOrThrow(Codec.msgpackCodec.encode(event))
        const aad = C.additionalData(C.additionalPrefix(pub, "topic.news.flash", 2, last.key), counter)
        const body = C.seal(groupKey!.key, counter, aad, plaintext)
        const sig = C.signBytes(C.ed25519FromSeed(seed).privateKey, Buffer.concat([aad, body]))
        return {
          _tag: "Sealed",
          v: ProtocolVersion,
          source: pub,
          mode: 2,
          key: last.key,
          counter,
          subject: "topic.news.flash",
          body,
          sig
        }
      }
      const evil = attacker(net)
      // sealed as the publisher would, but signed with the forger's own key
      yield* evil.publish("topic.news.flash", sealedAs(seeds[3]!, last.counter + 10, "forged"))
      expect(secureOf(s1).stats().rejected).toEqual({ signature: 2 })
      expect(secureOf(s2).stats().rejected).toEqual({ signature: 1 })
      // (the same frame signed with the publisher's key would pass: only the signature stopped it)
      yield* evil.publish("topic.news.flash", sealedAs(seeds[0]!, last.counter + 11, "signed by the publisher's key"))
      yield* eventually(() => values().every((got) => got.length === 2), "the control event everywhere")
      // sealed and signed by the forger as itself, but naming the publisher as the event's source
      const forgerTransport = Context.get(forger, Transport.Transport)
      yield* forgerTransport.publish("topic.news.flash", {
        _tag: "Event",
        v: ProtocolVersion,
        source: pub,
        subject: "news.flash",
        headers: {},
        body: "impersonated"
      })
      expect(secureOf(s1).stats().rejected).toEqual({ signature: 4 })
      expect(secureOf(s2).stats().rejected).toEqual({ signature: 2 })
      yield* publish("genuine again")
      yield* eventually(() => values().slice(0, 3).every((got) => got.length === 3), "the last event")
      for (const received of subscriptions.slice(0, 3)) {
        expect(received.map((event) => event.value)).toEqual([
          "genuine",
          "signed by the publisher's key",
          "genuine again"
        ])
      }
    }))
})

/** a handshake frame's body with its part `index` (of `count`) replaced */
const withPart = (frame: Envelope, count: number, index: number, replace: (part: Buffer) => Uint8Array): Envelope => {
  if (frame._tag !== "Handshake") return frame
  const parts: Array<Uint8Array> = C.split(frame.body, count)!
  parts[index] = replace(parts[index] as Buffer)
  return { ...frame, body: C.concat(parts) }
}

const flipped = (bytes: Uint8Array): Uint8Array => {
  const copy = new Uint8Array(bytes)
  copy[copy.length >> 1]! ^= 1
  return copy
}

describe("handshake signatures", () => {
  /** a caller and a probe host that trust each other, each on a tapped link */
  const pair = Effect.gen(function*() {
    const net = yield* makeNet
    const [ic, ih] = [yield* Secure.generateIdentity, yield* Secure.generateIdentity]
    const trust = [ic.publicKey, ih.publicKey]
    const state = makeProbeState()
    const hostWire = makeWire()
    const callerWire = makeWire()
    const host = yield* secureNode(net, probeLayer(state), { name: "host", identity: ih, trust }, { wire: hostWire })
    const caller = yield* secureNode(net, Layer.empty, { name: "caller", identity: ic, trust }, { wire: callerWire })
    return { caller, callerWire, host, hostWire, net, state }
  })

  /** makes `wire` rewrite the handshake frames of `step` it receives; counts them */
  const onStep = (wire: Wire, step: number, rewrite: (frame: Envelope) => Envelope) => {
    const rewritten = { count: 0 }
    wire.incoming = (_, frame) => {
      if (frame._tag !== "Handshake" || frame.step !== step) return frame
      rewritten.count++
      return rewrite(frame)
    }
    return rewritten
  }

  const attacks: ReadonlyArray<{
    readonly name: string
    readonly side: "host" | "caller"
    readonly step: number
    readonly rewrite: (frame: Envelope) => Envelope
  }> = [
    // the hello's parts: namespace, incarnation, target, identity, ephemeral, session id
    {
      name: "swaps the initiator's ephemeral key in the hello",
      side: "host",
      step: 1,
      rewrite: (f) => withPart(f, 6, 4, () => C.ephemeral().publicKey)
    },
    // the reply's parts: namespace, incarnation, session id, identity, ephemeral, signature
    {
      name: "swaps the responder's ephemeral key in the reply",
      side: "caller",
      step: 2,
      rewrite: (f) => withPart(f, 6, 4, () => C.ephemeral().publicKey)
    },
    {
      name: "corrupts the responder's signature in the reply",
      side: "caller",
      step: 2,
      rewrite: (f) => withPart(f, 6, 5, flipped)
    }
  ]

  for (const attack of attacks) {
    it.scoped(`a man in the middle who ${attack.name} fails the handshake with HandshakeError naming the peer; no session, nothing delivered`, () =>
      Effect.gen(function*() {
        const { caller, callerWire, host, hostWire, state } = yield* pair
        const rewritten = onStep(attack.side === "host" ? hostWire : callerWire, attack.step, attack.rewrite)
        const probe = yield* probeOf(caller, "a")
        const failure = yield* Effect.flip(probe.Increment({ by: 1 }))
        expect(rewritten.count).toBe(1)
        expect(failure).toMatchObject({ _tag: "HandshakeError", peer: nodeIdOf(host) })
        expect((failure as { reason: string }).reason).toContain("signature")
        expect(secureOf(caller).stats()).toMatchObject({
          handshakes: 0,
          handshakeFailures: 1,
          rejected: { signature: 1 }
        })
        expect(secureOf(caller).peers()).toEqual([])
        expect(secureOf(host).peers()).toEqual([])
        expect(secureOf(host).stats().handshakes).toBe(0)
        expect(state.builds).toBe(0)
        // nothing sealed left the caller: its request failed with the handshake
        expect(callerWire.sent.filter(({ frame }) => frame._tag === "Sealed")).toEqual([])
      }))
  }

  it.scoped("a man in the middle who corrupts the initiator's signature in the confirmation: the responder opens no session, rejects every frame sealed with it, and opens its own", () =>
    Effect.gen(function*() {
      const { caller, callerWire, host, hostWire, state } = yield* pair
      // the confirmation's parts: session id, signature
      const rewritten = onStep(hostWire, 3, (f) => withPart(f, 2, 1, flipped))
      const probe = yield* probeOf(caller, "a")
      // in memory, the host's own handshake (started by the first frame it cannot open) completes
      // before the caller's request leaves: the request travels in the host's session
      expect(yield* probe.Increment({ by: 1 })).toBe(1)
      expect(rewritten.count).toBe(1)
      const hello = callerWire.sent.find(({ frame }) => frame._tag === "Handshake" && frame.step === 1)!.frame as
        & Envelope
        & { readonly body: Uint8Array }
      const corrupted = C.split(hello.body, 6)![5]!.readUInt32BE()
      const sealedWithIt = callerWire.sent.filter(({ frame }) => frame._tag === "Sealed" && frame.key === corrupted)
      expect(sealedWithIt.length).toBeGreaterThanOrEqual(1)
      expect(secureOf(host).stats().rejected).toEqual({ signature: 1, "unknown-session": sealedWithIt.length })
      const [hostSession] = secureOf(host).peers()
      expect(hostSession).toMatchObject({ nodeId: nodeIdOf(caller) })
      expect(hostSession!.sessionId).not.toBe(corrupted)
      expect(secureOf(caller).peers()[0]!.sessionId).toBe(hostSession!.sessionId)
      expect(state.builds).toBe(1)
      expect(yield* probe.Get()).toBe(1)
    }))
})

describe("the authenticated routing header", () => {
  it.scoped("a sealed frame given another source or moved to another subject is rejected and never reaches an actor", () =>
    Effect.gen(function*() {
      const state = makeProbeState()
      const serviceState = makeProbeState()
      const wire = makeWire()
      const { caller, host, net } = yield* hostAndCaller(
        Layer.merge(probeLayer(state), probeServiceLayer(serviceState)),
        { wire }
      )
      const other = yield* secureNode(net, Layer.empty, {
        name: "other",
        identity: yield* Secure.generateIdentity,
        trust: "any"
      })
      const [hostSubject, callerId, otherId] = [`node.${nodeIdOf(host)}`, nodeIdOf(caller), nodeIdOf(other)]
      const evil = attacker(net)
      const probe = yield* probeOf(caller, "a")
      const service = yield* Effect.provide(Actor.client(ProbeService), caller)
      expect(yield* probe.Increment({ by: 1 })).toBe(1)
      expect(yield* service.Whoami()).toBe("node")
      // the other node's session and group epoch with the host, as the wire shows them
      expect(yield* (yield* probeOf(other, "b")).Get()).toBe(0)
      expect(yield* (yield* Effect.provide(Actor.client(ProbeService), other)).Whoami()).toBe("node")
      // interrupts for a service are the group frames left (its requests go pairwise): a Block
      // whose caller gives up sends one to `interrupt.ProbeService`
      const giveUpOn = (from: SecureNode, key: string) =>
        Effect.gen(function*() {
          const client = yield* Effect.provide(Actor.client(ProbeService), from)
          const fiber = yield* Effect.fork(client.Block({ key }))
          yield* eventually(() => serviceState.latches.has(key), `Block ${key} running`)
          yield* Fiber.interrupt(fiber)
        })
      yield* giveUpOn(other, "other")
      yield* eventually(() => serviceState.interrupted.includes("other"))
      const lastFromOther = (subscription: string) =>
        wire.received.filter(({ frame, subscription: s }) =>
          s === subscription && frame._tag === "Sealed" && frame.source === otherId
        )
          .at(-1)!.frame as SealedFrame
      const otherSession = lastFromOther(hostSubject).key
      const otherEpoch = lastFromOther("interrupt.ProbeService").key
      // the caller's counters get ahead of the other's, so a rewritten frame passes their replay windows
      for (let i = 0; i < 5; i++) {
        yield* Actor.tell(probe.Increment({ by: 0 }))
        yield* giveUpOn(caller, `ahead-${i}`)
      }
      yield* eventually(() => serviceState.interrupted.length === 6, "the interrupts of the caller and the other")
      /** rewrites the caller's next sealed frame to the host's `subscription`; `undefined` takes it off the wire */
      const nextFromCaller = (subscription: string, rewrite: (frame: SealedFrame) => SealedFrame | undefined) => {
        const taken: Array<SealedFrame> = []
        wire.incoming = (s, frame) => {
          if (s !== subscription || frame._tag !== "Sealed" || frame.source !== callerId) return frame
          wire.incoming = undefined
          taken.push(frame)
          return rewrite(frame)
        }
        return taken
      }
      const rejected = () => secureOf(host).stats().rejected

      // pairwise: the source and session of another peer of the host
      nextFromCaller(hostSubject, (frame) => ({ ...frame, source: otherId, key: otherSession }))
      yield* Actor.tell(probe.Increment({ by: 100 }))
      expect(rejected()).toEqual({ tampered: 1 })
      // pairwise: another source alone (the session is then unknown)
      nextFromCaller(hostSubject, (frame) => ({ ...frame, source: otherId }))
      yield* Actor.tell(probe.Increment({ by: 100 }))
      expect(rejected()).toEqual({ tampered: 1, "unknown-session": 1 })
      // pairwise: moved to another subject the host receives alone
      const direct = nextFromCaller(hostSubject, () => undefined)
      yield* Actor.tell(probe.Increment({ by: 100 }))
      expect(direct).toHaveLength(1)
      yield* evil.publish("interrupt.Probe", direct[0]!)
      expect(rejected()).toEqual({ tampered: 2, "unknown-session": 1 })
      // group: the source and epoch of another peer
      nextFromCaller("interrupt.ProbeService", (frame) => ({ ...frame, source: otherId, key: otherEpoch }))
      yield* giveUpOn(caller, "forged")
      expect(rejected()).toEqual({ tampered: 3, "unknown-session": 1 })
      // group: moved to another kind's subject, its subject field rewritten to match...
      const taken = nextFromCaller("interrupt.ProbeService", () => undefined)
      yield* giveUpOn(caller, "moved")
      expect(taken).toHaveLength(1)
      const shared = taken[0]!
      yield* evil.publish("interrupt.Probe", { ...shared, subject: "interrupt.Probe" })
      expect(rejected()).toEqual({ tampered: 4, "unknown-session": 1 })
      // ... or not
      yield* evil.publish("interrupt.Probe", shared)
      expect(rejected()).toEqual({ tampered: 4, "unknown-session": 1, malformed: 1 })

      expect(yield* probe.Get()).toBe(1)
      expect(yield* service.Whoami()).toBe("node")
      // the interrupts taken off the wire or rewritten never reached the handlers they name
      expect(serviceState.interrupted.filter((key) => key === "forged" || key === "moved")).toEqual([])
      // the untouched frames were all accepted
      expect(rejected()).toEqual({ tampered: 4, "unknown-session": 1, malformed: 1 })
      // those two handlers still wait: let them finish, so that the nodes can shut down
      yield* openLatch(serviceState, "forged")
      yield* openLatch(serviceState, "moved")
    }))
})

describe("logging", () => {
  /** the ways a secret could be printed: hex, base64, base64url, as a Buffer or a byte array */
  const printedForms = (secret: Uint8Array): ReadonlyArray<string> => {
    const bytes = Buffer.from(secret)
    const head = [...bytes.subarray(0, 8)]
    return [
      bytes.toString("hex"),
      bytes.toString("hex").toUpperCase(),
      bytes.toString("base64"),
      bytes.toString("base64url"),
      head.map((b) => b.toString(16).padStart(2, "0")).join(" "),
      head.join(","),
      head.join(", ")
    ]
  }
  const leaks = (lines: ReadonlyArray<string>, keys: ReadonlyArray<Uint8Array>): ReadonlyArray<string> => {
    const needles = keys.flatMap(printedForms)
    return lines.filter((line) => needles.some((needle) => line.includes(needle)))
  }
  const render = (part: unknown): string => {
    if (typeof part === "string") return part
    let json = ""
    try {
      json = JSON.stringify(part) ?? ""
    } catch {
      // (not every value has a JSON form)
    }
    return `${inspect(part, { depth: 10 })} ${json}`
  }

  it.scoped("rejections are logged, boundedly, and no log line holds key material through handshakes, re-keys and rejections", () => {
    const logs: Array<string> = []
    const capture = Logger.make(({ annotations, cause, message }) => {
      const parts = Array.isArray(message) ? message : [message]
      logs.push([...parts.map(render), Cause.isEmpty(cause) ? "" : Cause.pretty(cause), render(annotations)].join(" "))
    })
    return Effect.gen(function*() {
      const net = yield* makeNet
      const seeds = [randomBytes(32), randomBytes(32)]
      const [ih, ic] = yield* Effect.forEach(seeds, Secure.identityFromSeed)
      const trust = [ih!.publicKey, ic!.publicKey]
      const rekey = { rekeyAfterMessages: 20, rekeyAfter: "10 minutes" } as const
      const state = makeProbeState()
      const wire = makeWire()
      const host = yield* secureNode(net, probeLayer(state), { name: "host", identity: ih!, trust, ...rekey })
      const caller = yield* secureNode(net, Layer.empty, { name: "caller", identity: ic!, trust, ...rekey }, { wire })
      const intruder = yield* secureNode(net, Layer.empty, {
        name: "intruder",
        identity: yield* Secure.generateIdentity,
        trust: "any"
      })
      const events = yield* collect(host, news)
      const probe = yield* probeOf(caller, "a")
      // handshakes and re-keys: of sessions by count and by age, of the group key by count
      for (let i = 1; i <= 50; i++) expect(yield* probe.Increment({ by: 1 })).toBe(i)
      for (let i = 0; i < 50; i++) yield* Effect.provide(TopicM.publish(news, `e${i}`), caller)
      yield* TestClock.adjust("10 minutes")
      // (the actor may passivate while the clock moves)
      expect(yield* probe.Whoami()).toBe("node")
      const count = yield* probe.Get()
      yield* eventually(() => events.length === 50, "every event")
      expect(secureOf(caller).stats().handshakes).toBeGreaterThanOrEqual(4)
      expect(new Set(sealedTo(wire, "topic.news.flash").map((frame) => frame.key)).size).toBeGreaterThanOrEqual(3)
      // rejections: an untrusted key, tampered frames (more than are logged), a replay, a bad signature, a plain frame
      expect(yield* Effect.flip((yield* probeOf(intruder, "a")).Get())).toMatchObject({ _tag: "HandshakeError" })
      const hostSubject = `node.${nodeIdOf(host)}`
      const request = sealedTo(wire, hostSubject).at(-1)!
      const evil = attacker(net)
      for (let i = 1; i <= 30; i++) yield* evil.publish(hostSubject, { ...request, counter: request.counter + i })
      yield* evil.publish(hostSubject, request)
      const event = sealedTo(wire, "topic.news.flash").at(-1)!
      yield* evil.publish("topic.news.flash", { ...event, counter: event.counter + 1, sig: flipped(event.sig!) })
      yield* evil.publish(hostSubject, tell(1))
      expect(secureOf(host).stats().rejected).toEqual({
        untrusted: 1,
        tampered: 30,
        replay: 1,
        signature: 1,
        plaintext: 1
      })
      expect(yield* probe.Get()).toBe(count)
      expect(events).toHaveLength(50)

      const rejections = (reason: string) =>
        logs.filter((line) => line.includes(`secure: rejected a frame from`) && line.includes(`(${reason}`))
      yield* eventually(() => rejections("plaintext").length === 1, "the last rejection logged")
      // the first ten of each reason are logged, then one in a thousand
      expect(rejections("tampered")).toHaveLength(10)
      expect(rejections("tampered")[0]).toContain(`from ${nodeIdOf(caller)}`)
      for (const reason of ["untrusted", "replay", "signature", "plaintext"]) expect(rejections(reason)).toHaveLength(1)
      expect(logs.some((line) => line.includes("HandshakeError") || line.includes("not trusted"))).toBe(true)

      // no key material: the identities' seeds, and every key the layer made
      const keys = [...seeds, ...secrets]
      expect(secrets.length).toBeGreaterThan(20)
      expect(leaks(logs, keys)).toEqual([])
      // (the check finds a key when there is one)
      expect(
        leaks([`planted ${inspect(Buffer.from(secrets.at(-1)!))}`, `planted ${seeds[0]!.toString("base64url")}`], keys)
      ).toHaveLength(2)
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)))
  })
})
