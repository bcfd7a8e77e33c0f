/**
 * The reassembler of large frames under what strangers can send: forged first pieces, floods
 * under many names, bad sequences, silence. Bounds are asserted on the reassembler's own
 * accounting of reserved bytes (deterministic), time on the TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as TestClock from "effect/TestClock"
import { connect } from "nats"
import { afterAll, beforeAll } from "vitest"
import * as Actor from "../../src/actors/Actor.ts"
import * as Codec from "../../src/layers/Codec.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import { makeEncoder } from "../../src/layers/internal/fragments.ts"
import { decodePiece, type Piece, PIECE } from "../../src/layers/internal/pieces.ts"
import * as Nats from "../../src/layers/internal/nats.ts"
import { expireIn, Reassembler, rejectedChunks } from "../../src/layers/internal/reassembly.ts"
import * as Transport from "../../src/layers/Transport.ts"
import * as Node from "../../src/runtime/Node.ts"
import { type Envelope, ProtocolVersion } from "../../src/schema/Envelope.ts"
import { awaitSleeps, eventually } from "../fixtures/clock.ts"
import { type NatsServer, startNatsServer } from "../fixtures/nats.ts"
import { nodeOf } from "../fixtures/nodes.ts"
import { makeProbeState, Probe, probeLayer } from "../fixtures/probe.ts"

const MiB = 1024 * 1024

const piece = (
  source: string,
  requestId: number,
  seq: number,
  total: number,
  body: Uint8Array | number,
  last = false
): Piece => ({
  _tag: "Chunk",
  v: ProtocolVersion,
  source,
  requestId,
  seq,
  total,
  last,
  body: typeof body === "number" ? new Uint8Array(body).fill(seq + 1) : body
})

const rejected = (reason: string) =>
  Metric.value(rejectedChunks.pipe(Metric.tagged("reason", reason))).pipe(Effect.map((state) => state.count))

/** the counts of every reason */
const counts = Effect.gen(function*() {
  const reasons = ["missing", "duplicate", "too-large", "inconsistent", "expired", "sender-limit", "evicted"] as const
  const out: Record<string, number> = {}
  for (const reason of reasons) out[reason] = yield* rejected(reason)
  return out
})

/** what was counted since `before`, by reason (the reasons with none left out) */
const countedSince = (before: Record<string, number>) =>
  Effect.map(counts, (after) => {
    const delta: Record<string, number> = {}
    for (const reason of Object.keys(after)) {
      if (after[reason]! > before[reason]!) delta[reason] = after[reason]! - before[reason]!
    }
    return delta
  })

/** the pieces of a real frame of about `size` bytes, as the encoder cuts them */
const piecesOf = (source: string, size: number, chunkBytes = 16 * 1024): ReadonlyArray<Piece> => {
  const encode = makeEncoder(Codec.msgpackCodec, { chunkBytes, maxMessageBytes: 5 * MiB, wireLimit: MiB })
  const frame: Envelope = {
    _tag: "Event",
    v: ProtocolVersion,
    source,
    subject: "big",
    headers: {},
    body: new Uint8Array(size).fill(9)
  }
  const wire = Either.getOrThrow(encode(frame, true))
  if (wire instanceof Uint8Array) throw new Error("expected pieces")
  return wire.map((bytes) => decodePiece(bytes)!)
}

describe("Reassembler", () => {
  it.effect("a forged first piece reserves the bytes it carries, not the 5 MiB it announces", () =>
    Effect.gen(function*() {
      const reassembler = new Reassembler(5 * MiB)
      expect(reassembler.accept(piece("forger", 1, 0, 5 * MiB, 24))).toBeUndefined()
      expect(reassembler.heldBytes).toBe(24)
      expect(reassembler.heldMessages).toBe(1)
      // the next piece grows the buffer geometrically: at most 8× what arrived, never the total
      expect(reassembler.accept(piece("forger", 1, 1, 5 * MiB, 100))).toBeUndefined()
      expect(reassembler.heldBytes).toBe(Math.max(124, 8 * 24))
      expect(reassembler.heldBytes).toBeLessThanOrEqual(8 * 124)
      // 10,000 of them under 10,000 names: the subscription's count bound holds
      for (let i = 0; i < 10_000; i++) reassembler.accept(piece(`forger-${i}`, i, 0, 5 * MiB, 24))
      expect(reassembler.heldMessages).toBe(1024)
      expect(reassembler.heldBytes).toBeLessThanOrEqual(1023 * 24 + 8 * 124)
    }))

  it.effect("a real frame joins intact; its buffer reserves at most 8× what arrived and ends exactly its size", () =>
    Effect.gen(function*() {
      const reassembler = new Reassembler(5 * MiB)
      const pieces = piecesOf("n1", 3 * MiB)
      expect(pieces.length).toBeGreaterThan(100)
      let arrived = 0
      let joined: Uint8Array | undefined
      for (const p of pieces) {
        arrived += p.body.byteLength
        joined = reassembler.accept(p)
        if (joined === undefined) expect(reassembler.heldBytes).toBeLessThanOrEqual(8 * arrived)
      }
      expect(joined?.byteLength).toBe(pieces[0]!.total)
      expect(joined!.buffer.byteLength).toBe(pieces[0]!.total) // no oversized buffer behind it
      const frame = Either.getOrThrow(Codec.msgpackCodec.decode(joined!))
      expect(frame).toMatchObject({ _tag: "Event", subject: "big" })
      expect((frame as { readonly body: Uint8Array }).body.byteLength).toBe(3 * MiB)
      expect(reassembler.heldBytes).toBe(0)
      expect(reassembler.heldMessages).toBe(0)
    }))

  it.effect("a sender over its own cap drops its own oldest partial message, never another sender's", () =>
    Effect.gen(function*() {
      const before = yield* counts
      const reassembler = new Reassembler(MiB)
      const honest = piecesOf("honest", 200_000)
      for (const p of honest.slice(0, 3)) reassembler.accept(p)
      const honestHeld = reassembler.heldBytesOf("honest")
      // the forger starts 10 messages: only its 4 newest stay
      for (let i = 0; i < 10; i++) reassembler.accept(piece("forger", i, 0, MiB, 1000))
      expect(reassembler.heldMessagesOf("forger")).toBe(4)
      expect(yield* countedSince(before)).toEqual({ "sender-limit": 6 })
      expect(reassembler.heldMessagesOf("honest")).toBe(1)
      // by bytes: a fifth message (its oldest goes) grows to 1 MiB, and the three others go
      let seq = 0
      reassembler.accept(piece("forger", 100, seq++, MiB, 100_000))
      while (reassembler.heldBytesOf("forger") <= MiB && seq < 9) {
        reassembler.accept(piece("forger", 100, seq++, MiB, 100_000))
      }
      expect(reassembler.heldBytesOf("forger")).toBeLessThanOrEqual(MiB)
      expect(reassembler.heldMessagesOf("forger")).toBe(1)
      expect(yield* countedSince(before)).toEqual({ "sender-limit": 10 })
      // the honest sender's message never moved, and completes
      expect(reassembler.heldBytesOf("honest")).toBe(honestHeld)
      const joined = honest.slice(3).map((p) => reassembler.accept(p)).find((x) => x !== undefined)
      expect(joined?.byteLength).toBe(honest[0]!.total)
    }))

  it.effect("a flood of first pieces under many names evicts its own kind before a frame whose pieces keep arriving", () =>
    Effect.gen(function*() {
      const before = yield* counts
      const reassembler = new Reassembler(5 * MiB)
      const honest = piecesOf("honest", MiB)
      const half = Math.floor(honest.length / 2)
      for (const p of honest.slice(0, half)) reassembler.accept(p)
      for (let i = 0; i < 5_000; i++) reassembler.accept(piece(`forger-${i}`, i, 0, 5 * MiB, 24))
      expect(reassembler.heldMessages).toBe(1024)
      expect(yield* countedSince(before)).toEqual({ evicted: 5_000 - 1023 })
      const joined = honest.slice(half).map((p) => reassembler.accept(p)).find((x) => x !== undefined)
      expect(joined?.byteLength).toBe(honest[0]!.total)
      // over the bytes bound, the partial message idle the longest goes
      const tight = new Reassembler(MiB, { maxPartialBytes: 300_000 })
      for (const name of ["a", "b", "c", "d"]) {
        tight.accept(piece(name, 1, 0, 150_000, 50_000))
        tight.accept(piece(name, 1, 1, 150_000, 50_000)) // grows to its total, 150,000
        expect(tight.heldBytes).toBeLessThanOrEqual(300_000)
      }
      expect(["a", "b", "c", "d"].map((name) => tight.heldMessagesOf(name))).toEqual([0, 0, 1, 1])
      expect(tight.accept(piece("d", 1, 2, 150_000, 50_000, true))?.byteLength).toBe(150_000)
    }))

  it.effect("bad sequences are dropped and counted, and never reserve the announced size", () =>
    Effect.gen(function*() {
      const reassembler = new Reassembler(MiB)
      const cases: ReadonlyArray<readonly [string, ReadonlyArray<Piece>, Record<string, number>]> = [
        ["a piece without its first", [piece("s", 1, 3, MiB, 10)], { missing: 1 }],
        ["out of order", [piece("s", 2, 0, MiB, 10), piece("s", 2, 2, MiB, 10)], { missing: 1 }],
        [
          "repeated (the message kept)",
          [piece("s", 3, 0, 30, 10), piece("s", 3, 0, 30, 10), piece("s", 3, 1, 30, 10)],
          { duplicate: 1 }
        ],
        ["another total than the first", [piece("s", 4, 0, MiB, 10), piece("s", 4, 1, MiB - 1, 10)], {
          inconsistent: 1
        }],
        ["beyond the announced total", [
          piece("s", 5, 0, 25, 10),
          piece("s", 5, 1, 25, 10),
          piece("s", 5, 2, 25, 10, true)
        ], {
          inconsistent: 1
        }],
        ["a last piece that leaves the total unfilled", [piece("s", 6, 0, 100, 10), piece("s", 6, 1, 100, 10, true)], {
          inconsistent: 1
        }],
        ["a piece before the last that fills the total", [piece("s", 7, 0, 20, 10), piece("s", 7, 1, 20, 10)], {
          inconsistent: 1
        }],
        ["an empty piece", [piece("s", 8, 0, 100, 10), piece("s", 8, 1, 100, 0)], { inconsistent: 1 }],
        ["an empty first piece", [piece("s", 9, 0, 100, 0)], { inconsistent: 1 }],
        ["a first piece larger than its total", [piece("s", 10, 0, 5, 10)], { inconsistent: 1 }],
        ["a first piece announcing more than the limit", [piece("s", 11, 0, MiB + 1, 10)], { "too-large": 1 }]
      ]
      for (const [name, sequence, expected] of cases) {
        const before = yield* counts
        for (const p of sequence) {
          expect(reassembler.accept(p), name).toBeUndefined()
          expect(reassembler.heldBytes, name).toBeLessThanOrEqual(1000)
        }
        expect(yield* countedSince(before), name).toEqual(expected)
        if (name.startsWith("repeated")) {
          expect(reassembler.accept(piece("s", 3, 2, 30, 10, true))?.byteLength).toBe(30)
        }
        expect(reassembler.heldBytes, name).toBe(0)
        expect(reassembler.heldMessages, name).toBe(0)
      }
    }))

  it.scoped("a partial message that receives no piece for 10 s expires on the Clock; the expiry sleeps only while some are held", () =>
    Effect.gen(function*() {
      const reassembler = new Reassembler(MiB)
      yield* expireIn(reassembler)
      expect(yield* TestClock.sleeps()).toHaveLength(0)
      const before = yield* counts
      reassembler.accept(piece("a", 1, 0, MiB, 100))
      reassembler.accept(piece("b", 1, 0, MiB, 100))
      yield* awaitSleeps(1)
      yield* TestClock.adjust("5 seconds")
      // a piece at 5 s keeps "a" another 10 s
      expect(reassembler.accept(piece("a", 1, 1, MiB, 100))).toBeUndefined()
      yield* TestClock.adjust("4999 millis")
      expect(reassembler.heldMessages).toBe(2)
      yield* TestClock.adjust("1 millis")
      yield* eventually(() => reassembler.heldMessages === 1, "b expired")
      expect(reassembler.heldMessagesOf("a")).toBe(1)
      expect(yield* countedSince(before)).toEqual({ expired: 1 })
      yield* awaitSleeps(1)
      yield* TestClock.adjust("4999 millis")
      expect(reassembler.heldMessages).toBe(1)
      yield* TestClock.adjust("1 millis")
      yield* eventually(() => reassembler.heldMessages === 0, "a expired")
      expect(yield* countedSince(before)).toEqual({ expired: 2 })
      expect(reassembler.heldBytes).toBe(0)
      // nothing held: no timer left
      expect(yield* TestClock.sleeps()).toHaveLength(0)
      // and it wakes again for the next one
      reassembler.accept(piece("c", 1, 0, MiB, 100))
      yield* awaitSleeps(1)
      yield* TestClock.adjust("10 seconds")
      yield* eventually(() => reassembler.heldMessages === 0, "c expired")
    }))

  it.scoped("over the serialized in-memory transport, a subscription's partial messages expire on the TestClock", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const transport = Transport.makeInMemorySerialized(Codec.msgpackCodec, { network })
      const frames: Array<Envelope> = []
      yield* transport.subscribe("node.x", (frame) => frames.push(frame))
      const before = yield* counts
      // a frame whose last piece never comes
      const wire = Either.getOrThrow(
        makeEncoder(Codec.msgpackCodec, { chunkBytes: 16 * 1024, maxMessageBytes: 5 * MiB, wireLimit: Infinity })({
          _tag: "Event",
          v: ProtocolVersion,
          source: "n1",
          subject: "big",
          headers: {},
          body: new Uint8Array(100_000)
        }, true)
      ) as ReadonlyArray<Uint8Array>
      expect(wire.length).toBeGreaterThan(2)
      for (const bytes of wire.slice(0, -1)) network.route("troupe.default.node.x", bytes)
      yield* awaitSleeps(1)
      yield* TestClock.adjust("10 seconds")
      for (let i = 0; i < 1_000 && (yield* rejected("expired")) === before.expired; i++) yield* Effect.yieldNow()
      expect(yield* countedSince(before)).toEqual({ expired: 1 })
      network.route("troupe.default.node.x", wire.at(-1)!)
      expect(frames).toEqual([])
      expect(yield* countedSince(before)).toEqual({ expired: 1, missing: 1 })
    }))
})

describe("forged first pieces over a real nats-server", () => {
  let server: NatsServer
  beforeAll(async () => {
    server = await startNatsServer()
  }, 30_000)
  afterAll(async () => {
    await server?.stop()
  })

  it.live(
    "a flood of 20k forged first pieces announcing 5 MiB leaves 1 MiB asks working and holds only what arrived",
    () =>
      Effect.gen(function*() {
        const registry = yield* Discovery.makeRegistry
        const namespace = "flood"
        // the host's transport, its reassemblers in view
        const reassemblers: Array<Reassembler> = []
        const watched: typeof Transport.makeReceiver = (codec, limits, onFrame, onTooLarge, drop, reassembler) => {
          if (reassembler !== undefined) reassemblers.push(reassembler)
          return Transport.makeReceiver(codec, limits, onFrame, onTooLarge, drop, reassembler)
        }
        const options = { servers: server.url, namespace }
        const hostTransport = Layer.scoped(
          Transport.Transport,
          Nats.make(
            Codec.msgpackCodec,
            options,
            (wireLimit) => Transport.resolveLimits({}, wireLimit),
            (c, l, f, t, d, r) => watched(c, l, f, t, d, r)
          )
        )
        const state = makeProbeState()
        const host = yield* Layer.build(
          probeLayer(state).pipe(
            Layer.provideMerge(Node.layer({ name: "host" })),
            Layer.provide(Layer.merge(hostTransport, Discovery.layerInMemory(registry))),
            Layer.orDie
          )
        )
        const caller = yield* Layer.build(Layer.empty.pipe(
          Layer.provideMerge(Node.layer({ name: "caller" })),
          Layer.provide(Layer.merge(
            Transport.nats(options).pipe(Layer.provide(Codec.msgpack)),
            Discovery.layerInMemory(registry)
          )),
          Layer.orDie
        ))
        const probe = (yield* Effect.provide(Actor.client(Probe), caller))("a")
        const data = Array.from({ length: 120_000 }, (_, i) => i * 1.5) // about 1 MiB
        expect(yield* probe.Echo({ data })).toEqual(data)

        const flooder = yield* Effect.acquireRelease(
          Effect.promise(() => connect({ servers: server.url })),
          (nc) => Effect.promise(() => nc.close())
        )
        const before = yield* counts
        const direct = `troupe.${namespace}.node.${nodeOf(host).nodeId}`
        const PIECES = 20_000
        const body = new Uint8Array(24).fill(7)
        const forged = (source: string, id: number): Uint8Array => {
          const name = new TextEncoder().encode(source)
          const bytes = new Uint8Array(4 + name.byteLength + 12 + body.byteLength)
          const view = new DataView(bytes.buffer)
          bytes.set([PIECE, ProtocolVersion, 0, name.byteLength])
          bytes.set(name, 4)
          view.setUint32(4 + name.byteLength, id)
          view.setUint32(8 + name.byteLength, 0)
          view.setUint32(12 + name.byteLength, 5 * MiB)
          bytes.set(body, 16 + name.byteLength)
          return bytes
        }
        let peak = 0
        const held = () => reassemblers.reduce((sum, r) => sum + r.heldBytes, 0)
        // asks of 1 MiB during the flood
        const asks = yield* Effect.fork(Effect.forEach(
          [1, 2, 3],
          () => probe.Echo({ data }, { timeout: "20 seconds" }),
          { concurrency: 1 }
        ))
        for (let i = 0; i < PIECES; i++) {
          flooder.publish(direct, forged(`forger-${i % 5_000}`, i))
          if (i % 1_000 === 999) {
            yield* Effect.promise(() => flooder.flush())
            peak = Math.max(peak, held())
          }
        }
        yield* Effect.promise(() => flooder.flush())
        const answers = yield* asks.await
        expect(answers._tag).toBe("Success")
        if (answers._tag === "Success") { for (const answer of answers.value) expect(answer).toEqual(data) }
        // every forged piece was handled: evicted, or among the subscription's last 1024 held
        const heldMessages = () => reassemblers.reduce((n, r) => n + r.heldMessages, 0)
        const handled = () => Effect.map(countedSince(before), (counted) => (counted.evicted ?? 0) + heldMessages())
        const deadline = Date.now() + 20_000
        while ((yield* handled()) < PIECES && Date.now() < deadline) {
          peak = Math.max(peak, held())
          yield* Effect.sleep("20 millis")
        }
        expect(yield* handled()).toBe(PIECES)
        expect(Object.keys(yield* countedSince(before))).toEqual(["evicted"])
        expect(heldMessages()).toBeGreaterThanOrEqual(1023)
        expect(heldMessages()).toBeLessThanOrEqual(1024)
        // the memory held is what the pieces carried, 24 bytes each, never the 5 MiB announced;
        // at its peak, that and one legitimate 1 MiB request being joined
        expect(held()).toBe(heldMessages() * 24)
        expect(peak).toBeLessThanOrEqual(1024 * 24 + 2 * MiB)
        // and a large ask after it still works
        expect(yield* probe.Echo({ data })).toEqual(data)
      }).pipe(Effect.scoped),
    60_000
  )
})
