import { describe, expect, it } from "@effect/vitest"
import { createHash } from "node:crypto"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as TestClock from "effect/TestClock"
import * as Actor from "../../src/actors/Actor.ts"
import * as Codec from "../../src/layers/Codec.ts"
import { BINARY_ITEMS, decodeBinaryItems, encodeBinaryItems } from "../../src/layers/internal/binaryItems.ts"
import { makeEncoder } from "../../src/layers/internal/fragments.ts"
import { decodePiece, type Piece } from "../../src/layers/internal/pieces.ts"
import { Reassembler, rejectedChunks } from "../../src/layers/internal/reassembly.ts"
import * as Transport from "../../src/layers/Transport.ts"
import { WINDOW } from "../../src/runtime/internal/streams.ts"
import { type Envelope, type ItemsFrame, ProtocolVersion } from "../../src/schema/Envelope.ts"
import { StreamError } from "../../src/schema/Errors.ts"
import { awaitSleeps, awaitSleepUntil, eventually } from "../fixtures/clock.ts"
import {
  endlessUpload,
  type FaultOf,
  faultyPair,
  frameFaultCases,
  once,
  partitionFrom,
  PieceFaults,
  pieceOf,
  setStatus
} from "../fixtures/faulty.ts"
import { makeCluster, modes, nodeOf } from "../fixtures/nodes.ts"
import {
  bytes,
  expectedSha256,
  makeStreamerState,
  type PutOutcome,
  type Reading,
  Streamer,
  streamerLayer,
  StreamerService,
  streamerServiceLayer
} from "../fixtures/streamer.ts"

const sha256 = (pieces: Iterable<Uint8Array>): string => {
  const hash = createHash("sha256")
  for (const piece of pieces) hash.update(piece)
  return hash.digest("hex")
}

/** a caller node and a host node of Streamer and StreamerService, in `mode` */
const twoNodes = (mode: (typeof modes)[number], state = makeStreamerState()) =>
  Effect.gen(function*() {
    const cluster = yield* makeCluster(mode)
    const host = yield* cluster.add(Layer.merge(streamerLayer(state), streamerServiceLayer(state)), { name: "host" })
    const caller = yield* cluster.add(Layer.empty, { name: "caller" })
    const streamer = (yield* Effect.provide(Actor.client(Streamer), caller))("s")
    const service = yield* Effect.provide(Actor.client(StreamerService), caller)
    return { state, host, caller, streamer, service, cluster }
  })

describe.each([...modes, "secure" as const])("streamed replies (%s)", (mode) => {
  it.scoped("deliver every element in order, across many frames, from an actor and a service", () =>
    Effect.gen(function*() {
      const { caller, service, streamer } = yield* twoNodes(mode)
      const n = 20_000 // many frames of at most 1024 elements
      const fromActor = yield* Stream.runCollect(streamer.Count({ n }))
      expect(Chunk.toReadonlyArray(fromActor)).toEqual(Array.from({ length: n }, (_, i) => i))
      const fromService = yield* Stream.runCollect(service.Count({ n: 10 }))
      expect(Chunk.toReadonlyArray(fromService)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      expect(nodeOf(caller).pendingAsks()).toBe(0)
    }))

  it.scoped("a typed error of the stream arrives typed, after the elements before it", () =>
    Effect.gen(function*() {
      const { streamer } = yield* twoNodes(mode)
      const seen: Array<number> = []
      const error = yield* Effect.flip(
        Stream.runForEach(streamer.Count({ n: 100, failAt: 42 }), (i) => Effect.sync(() => seen.push(i)))
      )
      expect(error).toMatchObject({ _tag: "TransferError", reason: "failed at 42" })
      expect(seen).toEqual(Array.from({ length: 42 }, (_, i) => i))
    }))

  it.scoped("a producer that dies mid-way fails the consumer with RemoteDefect, never a hang", () =>
    Effect.gen(function*() {
      const { streamer } = yield* twoNodes(mode)
      const error = yield* Effect.flip(Stream.runDrain(streamer.Count({ n: 100, dieAt: 7 })))
      expect(error).toMatchObject({ _tag: "RemoteDefect", kind: "Streamer", defect: "died at 7" })
      // the actor restarts (after the supervision backoff) and streams again
      const again = yield* Effect.fork(Stream.runCollect(streamer.Count({ n: 3 })))
      for (let i = 0; i < 50 && again.unsafePoll() === null; i++) {
        yield* TestClock.adjust("100 millis")
        for (let j = 0; j < 50; j++) yield* Effect.yieldNow()
      }
      expect(Chunk.toReadonlyArray(yield* Fiber.join(again))).toEqual([0, 1, 2])
    }))

  it.scoped("the producer never runs more than the window ahead of a consumer that does not pull", () =>
    Effect.gen(function*() {
      const { state, streamer } = yield* twoNodes(mode)
      const pulled: Array<number> = []
      const fiber = yield* Effect.fork(
        Stream.runForEach(
          streamer.Forever(),
          (i) => Effect.sync(() => pulled.push(i)).pipe(Effect.zipRight(Effect.never))
        )
      )
      yield* eventually(() => pulled.length === 1, "first element pulled")
      for (let i = 0; i < 2_000; i++) yield* Effect.yieldNow()
      // one element per frame: the window, plus the frame being pulled, plus one waiting for credit
      expect(state.produced).toBeGreaterThanOrEqual(WINDOW)
      expect(state.produced).toBeLessThanOrEqual(WINDOW + 2)
      yield* Fiber.interrupt(fiber)
      yield* eventually(() => state.interrupted === 1, "producer interrupted")
    }))

  it.scoped("a consumer that stops early (Stream.take) interrupts the remote producer", () =>
    Effect.gen(function*() {
      const { caller, state, streamer } = yield* twoNodes(mode)
      const first = yield* Stream.runCollect(Stream.take(streamer.Forever(), 5))
      expect(Chunk.toReadonlyArray(first)).toEqual([0, 1, 2, 3, 4])
      yield* eventually(() => state.interrupted === 1, "producer interrupted")
      expect(nodeOf(caller).pendingAsks()).toBe(0)
    }))

  it.scoped("a producer whose consumer's node is suspected gone stops waiting for credit and is interrupted", () =>
    Effect.gen(function*() {
      const { caller, cluster, state, streamer } = yield* twoNodes(mode)
      const pulled: Array<number> = []
      yield* Effect.fork(
        Stream.runForEach(
          streamer.Forever(),
          (i) => Effect.sync(() => pulled.push(i)).pipe(Effect.zipRight(Effect.never))
        )
      )
      yield* eventually(() => pulled.length === 1 && state.produced >= WINDOW, "producer waiting for credit")
      const callerId = nodeOf(caller).nodeId
      yield* SubscriptionRef.update(cluster.registry.ref, (current) => {
        const next = {
          ...current,
          members: current.members.map((m) => m.nodeId === callerId ? { ...m, status: "suspect" as const } : m)
        }
        cluster.registry.current = next
        return next
      })
      yield* eventually(() => state.interrupted === 1, "producer interrupted")
    }))

  it.scoped("a consumer whose producer's node is suspected gone fails with TransportError, from an actor and a service, and the producer is interrupted", () =>
    Effect.gen(function*() {
      const { caller, cluster, host, service, state, streamer } = yield* twoNodes(mode)
      const hostId = nodeOf(host).nodeId
      for (const [i, forever] of [streamer.Forever, service.Forever].entries()) {
        // the consumer holds its first element until the suspicion has been acted on, then pulls
        // again (boundedly: a consumer that is not failed ends after a few windows)
        const latch = yield* Deferred.make<void>()
        let pulled = 0
        const fiber = yield* Effect.fork(Effect.either(Stream.runForEach(
          Stream.take(forever(), 4 * WINDOW),
          () => Effect.suspend(() => ++pulled === 1 ? Deferred.await(latch) : Effect.void)
        )))
        yield* eventually(() => pulled === 1, "first element pulled")
        yield* setStatus(cluster.registry, hostId, "suspect")
        yield* eventually(() => nodeOf(caller).pendingAsks() === 0, "the stream abandoned")
        yield* Deferred.succeed(latch, undefined)
        yield* eventually(() => fiber.unsafePoll() !== null, "consumer ended")
        expect(yield* Fiber.join(fiber)).toMatchObject({
          left: { _tag: "TransportError", reason: `node ${hostId} stopped answering while the ask was pending` }
        })
        // the producer, alive after all, is not left waiting for credit (an actor's mailbox with it)
        yield* eventually(() => state.interrupted === i + 1, "producer interrupted")
        yield* setStatus(cluster.registry, hostId, "alive")
      }
      expect(Chunk.toReadonlyArray(yield* Stream.runCollect(streamer.Count({ n: 3 })))).toEqual([0, 1, 2])
    }))

  it.scoped("a silent producer times out with AskTimeout (TestClock) and is interrupted", () =>
    Effect.gen(function*() {
      const { caller, state, streamer } = yield* twoNodes(mode)
      const fiber = yield* Effect.fork(Stream.runDrain(streamer.Silent(undefined, { timeout: "2 seconds" })))
      yield* awaitSleeps(1)
      yield* TestClock.adjust("1999 millis")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error).toMatchObject({ _tag: "AskTimeout", kind: "Streamer", id: "s", tag: "Silent" })
      yield* eventually(() => state.interrupted === 1, "silent producer interrupted")
      expect(nodeOf(caller).pendingAsks()).toBe(0)
    }))

  it.scoped("a slow consumer is not a timeout: only producer silence is", () =>
    Effect.gen(function*() {
      const { streamer } = yield* twoNodes(mode)
      const fiber = yield* Effect.fork(
        Stream.runCollect(
          streamer.Count({ n: 3 }, { timeout: "1 second" }).pipe(
            Stream.tap(() => Effect.sleep("5 seconds"))
          )
        )
      )
      for (let i = 0; i < 3; i++) {
        yield* awaitSleeps(1)
        yield* TestClock.adjust("5 seconds")
      }
      expect(Chunk.toReadonlyArray(yield* Fiber.join(fiber))).toEqual([0, 1, 2])
    }))

  it.scoped("bytes stream through intact (SHA-256)", () =>
    Effect.gen(function*() {
      const { streamer } = yield* twoNodes(mode)
      const size = 3 * 1024 * 1024 + 17
      const pieces = yield* Stream.runCollect(streamer.Bytes({ size, chunk: 64 * 1024 }))
      expect(sha256(pieces)).toBe(expectedSha256(size))
    }))
})

describe.each([...modes, "secure" as const])("streamed requests (%s)", (mode) => {
  it.scoped("an upload reaches the handler as a Stream, intact, from an actor's and a service's caller", () =>
    Effect.gen(function*() {
      const { service, streamer } = yield* twoNodes(mode)
      const size = 2 * 1024 * 1024 + 3
      const digest = yield* streamer.Put({ name: "a.bin", data: bytes(size, 50_000) })
      expect(digest).toEqual({ bytes: size, chunks: Math.ceil(size / 50_000), sha256: expectedSha256(size) })
      const small = yield* service.Put({ name: "b.bin", data: Stream.make(new Uint8Array([1, 2, 3])) })
      expect(small).toMatchObject({ bytes: 3, chunks: 1 })
      const empty = yield* service.Put({ name: "c.bin", data: Stream.empty })
      expect(empty).toMatchObject({ bytes: 0, chunks: 0 })
    }))

  it.scoped("a streamed request of elements that are not bytes (Actor.streamOf) arrives decoded, across frames and pieces", () =>
    Effect.gen(function*() {
      const { service, streamer } = yield* twoNodes(mode)
      const n = 5_000 // frames of at most 1024 elements
      const epoch = 1_700_000_000_000
      // every 1000th label is larger than a piece of the wire
      const labelOf = (i: number) => i % 1_000 === 0 ? "y".repeat(40_000) : "x".repeat(i % 50)
      const readings = Stream.range(0, n - 1).pipe(
        Stream.map((i): Reading => ({ n: i, label: labelOf(i), at: new Date(epoch + i) }))
      )
      let labelChars = 0
      for (let i = 0; i < n; i++) labelChars += labelOf(i).length
      expect(yield* streamer.Sum({ readings })).toEqual({
        count: n,
        total: (n * (n - 1)) / 2,
        labelChars,
        latest: epoch + n - 1
      })
      const one = Stream.make<Array<Reading>>({ n: 2.5, label: "é", at: new Date(epoch) })
      expect(yield* service.Sum({ readings: one })).toEqual({ count: 1, total: 2.5, labelChars: 1, latest: epoch })
      expect(yield* service.Sum({ readings: Stream.empty })).toEqual({ count: 0, total: 0, labelChars: 0, latest: 0 })
    }))

  // zero-copy hands the caller's Stream to the handler as it is: nothing is encoded
  it.scoped.skipIf(mode === "zero-copy")(
    "an element its schema cannot encode fails the handler's stream with StreamError",
    () =>
      Effect.gen(function*() {
        const { streamer } = yield* twoNodes(mode)
        const epoch = 1_700_000_000_000
        const readings = Stream.make<Array<Reading>>(
          { n: 1, label: "a", at: new Date(epoch) },
          { n: "two" as unknown as number, label: "b", at: new Date(epoch) }
        )
        const error = yield* Effect.flip(streamer.Sum({ readings }))
        expect(error).toMatchObject({
          _tag: "StreamError",
          tag: "Sum",
          reason: expect.stringMatching(
            /^the caller's stream failed: cannot encode element of Streamer\.Sum\.readings[^]*Expected number, actual "two"/
          )
        })
      })
  )

  it.scoped("a caller's stream that fails mid-way fails the handler's stream with StreamError", () =>
    Effect.gen(function*() {
      const { streamer } = yield* twoNodes(mode)
      const data = Stream.concat(
        bytes(100_000, 10_000),
        Stream.fail(new StreamError({ kind: "disk", id: "", tag: "read", reason: "disk on fire" }))
      )
      const error = yield* Effect.flip(streamer.Put({ name: "x", data }))
      expect(error._tag).toBe("StreamError")
      expect(error.message).toContain("disk on fire")
    }))

  it.scoped("a handler that reads only part of an upload ends it: the caller's stream is stopped", () =>
    Effect.gen(function*() {
      const { streamer } = yield* twoNodes(mode)
      let produced = 0
      let stopped = false
      const data = Stream.iterate(0, (n) => n + 1).pipe(
        Stream.map(() => new Uint8Array(1000)),
        Stream.tap(() => Effect.sync(() => produced++)),
        Stream.ensuring(Effect.sync(() => {
          stopped = true
        }))
      )
      expect(yield* streamer.PutSome({ take: 10, data })).toBe(10)
      yield* eventually(() => stopped, "caller's stream stopped")
      expect(produced).toBeLessThan(10 + 2 * WINDOW * 64)
    }))

  it.scoped("interrupting the caller of an upload interrupts the handler and stops the caller's stream", () =>
    Effect.gen(function*() {
      const { caller, streamer } = yield* twoNodes(mode)
      let stopped = false
      const data = Stream.never.pipe(Stream.ensuring(Effect.sync(() => {
        stopped = true
      }))) as Stream.Stream<Uint8Array>
      const fiber = yield* Effect.fork(streamer.Put({ name: "never", data }))
      for (let i = 0; i < 200; i++) yield* Effect.yieldNow()
      yield* Fiber.interrupt(fiber)
      yield* eventually(() => stopped, "caller's stream stopped")
      expect(nodeOf(caller).pendingAsks()).toBe(0)
    }))

  // zero-copy hands the caller's own Stream to the handler: there is no wire to lose
  it.scoped.skipIf(mode === "zero-copy")(
    "an upload whose caller's node is suspected gone fails the handler's stream with StreamError at once; the actor is free again",
    () =>
      Effect.gen(function*() {
        const { caller, cluster, state, streamer } = yield* twoNodes(mode)
        const callerId = nodeOf(caller).nodeId
        const outcomes: Array<PutOutcome> = []
        state.onPutEnd = (outcome) => outcomes.push(outcome)
        const { data, probe } = endlessUpload()
        const fiber = yield* Effect.fork(Effect.either(streamer.Put({ name: "gone", data })))
        yield* eventually(() => probe.produced > 10, "upload under way")
        yield* setStatus(cluster.registry, callerId, "suspect")
        yield* eventually(() => outcomes.length === 1, "handler ended")
        const reason = `the caller ${callerId} went away`
        expect(outcomes).toMatchObject([{ _tag: "Failed", error: { _tag: "StreamError", reason } }])
        // the caller, alive after all, hears it, and its stream stops
        yield* eventually(() => fiber.unsafePoll() !== null, "caller's ask ended")
        expect(yield* Fiber.join(fiber)).toMatchObject({ left: { _tag: "StreamError", reason } })
        yield* eventually(() => probe.stopped, "caller's stream stopped")
        yield* setStatus(cluster.registry, callerId, "alive")
        expect(yield* streamer.Put({ name: "again", data: Stream.make(new Uint8Array(7)) })).toMatchObject({ bytes: 7 })
      })
  )

  it.scoped("tell refuses a request with a streamed field", () =>
    Effect.gen(function*() {
      const { streamer } = yield* twoNodes(mode)
      const result = yield* Effect.either(Actor.tell(streamer.Put({ name: "t", data: Stream.empty })))
      expect(result).toMatchObject({ left: { _tag: "EncodeError" } })
    }))
})

describe.each([...modes, "secure" as const])("stream bookkeeping (%s)", (mode) => {
  it.scoped("streams that end, fail, stop early or are interrupted, both ways, leave nothing open on either node", () =>
    Effect.gen(function*() {
      const { caller, host, service, state, streamer } = yield* twoNodes(mode)
      const settled = () =>
        nodeOf(host).openStreams() === 0 && nodeOf(caller).openStreams() === 0 &&
        nodeOf(host).pendingAsks() === 0 && nodeOf(caller).pendingAsks() === 0
      // streamed replies: to the end, stopped early by the consumer (service and actor), failed
      expect(Chunk.size(yield* Stream.runCollect(service.Bytes({ size: 100_000, chunk: 10_000 })))).toBe(10)
      expect(Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(service.Forever(), 3)))).toEqual([0, 1, 2])
      expect(Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(streamer.Forever(), 3)))).toEqual([0, 1, 2])
      expect(yield* Effect.flip(Stream.runDrain(service.Count({ n: 10, failAt: 5 })))).toMatchObject({
        _tag: "TransferError"
      })
      // a consumer interrupted while the producer runs
      const consuming = yield* Effect.fork(Stream.runDrain(service.Forever()))
      yield* eventually(() => state.produced > 3 * WINDOW, "the producer under way")
      yield* Fiber.interrupt(consuming)
      // a request still in the actor's mailbox (the actor busy streaming) whose caller gives up
      const producedBefore = state.produced
      const busy = yield* Effect.fork(Stream.runDrain(streamer.Forever()))
      yield* eventually(() => state.produced > producedBefore + 3 * WINDOW, "the actor busy")
      const queued = yield* Effect.fork(Stream.runDrain(streamer.Count({ n: 5 })))
      yield* eventually(() => nodeOf(caller).pendingAsks() === 2, "the second request sent")
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow()
      yield* Fiber.interrupt(queued)
      yield* Fiber.interrupt(busy)
      // uploads: read to the end, read in part, failed by the caller's stream
      expect(yield* service.Put({ name: "all", data: bytes(100_000, 10_000) })).toMatchObject({ bytes: 100_000 })
      expect(yield* service.PutSome({ take: 2, data: bytes(1_000_000, 10_000) })).toBe(2)
      const failing = Stream.concat(
        bytes(30_000, 10_000),
        Stream.fail(new StreamError({ kind: "t", id: "t", tag: "t", reason: "no" }))
      )
      yield* Effect.flip(service.Put({ name: "failing", data: failing }))
      // an upload whose caller is interrupted while the handler reads it
      const { data, probe } = endlessUpload()
      const uploading = yield* Effect.fork(service.Put({ name: "endless", data }))
      yield* eventually(() => probe.produced > 3, "the upload under way")
      yield* Fiber.interrupt(uploading)
      yield* eventually(settled, "nothing open on either node")
      expect(state.interrupted).toBe(4)
    }))
})

describe.each(["json", "msgpack", "secure"] as const)("large messages in pieces (%s)", (mode) => {
  it.scoped("a payload far above the chunk size travels in pieces, and one above the limit fails before sending", () =>
    Effect.gen(function*() {
      const { host, streamer } = yield* twoNodes(mode)
      const data = Array.from({ length: 200_000 }, (_, i) => i) // ~1 MiB: 64+ pieces of 16 KiB
      expect(yield* streamer.Echo({ data })).toEqual(data)
      const huge = Array.from({ length: 1_500_000 }, (_, i) => i * 1.5) // > 5 MiB in both codecs
      const error = yield* Effect.flip(streamer.Echo({ data: huge }))
      expect(error).toMatchObject({ _tag: "PayloadTooLarge", limit: 5 * 1024 * 1024 })
      expect(nodeOf(host).activeInstances("Streamer")).toBe(1)
    }))

  it.effect("missing, repeated and reordered pieces are detected and counted; the message is dropped", () =>
    Effect.gen(function*() {
      const codec = mode === "json" ? Codec.jsonCodec : Codec.msgpackCodec
      const encode = makeEncoder(codec, { chunkBytes: 1024, maxMessageBytes: 1024 * 1024, wireLimit: 1024 * 1024 })
      const frame: Envelope = {
        _tag: "Event",
        v: ProtocolVersion,
        source: "n1",
        subject: "big",
        headers: {},
        body: Array.from({ length: 3_000 }, (_, i) => i)
      }
      const pieces = encode(frame, true)
      if (Either.isLeft(pieces) || pieces.right instanceof Uint8Array) return expect.unreachable("expected pieces")
      const chunks = pieces.right.map((bytes) => decodePiece(bytes)!)
      expect(chunks.length).toBeGreaterThan(4)
      const join = (order: ReadonlyArray<Piece>) => {
        const reassembler = new Reassembler(1024 * 1024)
        const out = order.map((chunk) => reassembler.accept(chunk)).filter((x) => x !== undefined)
        return { out, held: reassembler.heldBytes }
      }
      const count = (reason: string) =>
        Metric.value(rejectedChunks.pipe(Metric.tagged("reason", reason))).pipe(Effect.map((s) => s.count))

      const whole = join(chunks)
      expect(whole.out.length).toBe(1)
      expect(Either.getOrThrow(codec.decode(whole.out[0]!))).toMatchObject({ _tag: "Event", body: frame.body })

      const missingBefore = yield* count("missing")
      const missing = join([...chunks.slice(0, 2), ...chunks.slice(3)])
      expect(missing.out).toEqual([])
      expect(missing.held).toBe(0) // nothing of the broken message is kept
      expect(yield* count("missing")).toBeGreaterThan(missingBefore)

      const duplicateBefore = yield* count("duplicate")
      const repeated = join([chunks[0]!, chunks[1]!, chunks[1]!, ...chunks.slice(2)])
      expect(repeated.out.length).toBe(1) // the repeat is ignored, the message intact
      expect(yield* count("duplicate")).toBe(duplicateBefore + 1)

      const reordered = join([chunks[0]!, chunks[2]!, chunks[1]!, ...chunks.slice(3)])
      expect(reordered.out).toEqual([])

      const tooLargeBefore = yield* count("too-large")
      const small = new Reassembler(2048)
      for (const chunk of chunks) expect(small.accept(chunk)).toBeUndefined()
      expect(yield* count("too-large")).toBe(tooLargeBefore + 1)
      expect(small.heldBytes).toBe(0)
    }))

  it.effect("an Items frame of bytes travels in the binary layout, in pieces when large; anything else through the codec", () =>
    Effect.gen(function*() {
      const codec = mode === "json" ? Codec.jsonCodec : Codec.msgpackCodec
      const limits = { chunkBytes: 1024, maxMessageBytes: 1024 * 1024, wireLimit: 1024 * 1024 }
      const encode = makeEncoder(codec, limits)
      const received: Array<Envelope> = []
      const receive = Transport.makeReceiver(codec, limits, (frame) => received.push(frame))
      const send = (frame: Envelope) => {
        const wire = Either.getOrThrow(encode(frame, true))
        for (const bytes of wire instanceof Uint8Array ? [wire] : wire) receive(bytes)
        return wire
      }
      const bytesOf = (n: number, salt: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + salt) & 0xff)
      const items: Envelope = {
        _tag: "Items",
        v: ProtocolVersion,
        source: "node-é1",
        requestId: 7,
        seq: 3,
        items: [bytesOf(10, 1), new Uint8Array(0), bytesOf(300, 2)],
        upload: true,
        end: true
      }
      const small = send(items)
      expect(small instanceof Uint8Array && small[0]).toBe(BINARY_ITEMS)
      const large = send({
        ...items,
        seq: 4,
        upload: undefined,
        end: undefined,
        items: [bytesOf(5000, 3), bytesOf(20, 4)]
      })
      expect(Array.isArray(large) && large.length).toBe(5)
      const plain = (frame: Envelope | undefined) =>
        frame?._tag === "Items" ? { ...frame, items: frame.items.map((item) => [...(item as Uint8Array)]) } : frame
      expect(plain(received[0])).toEqual(plain(items))
      expect(plain(received[1])).toEqual({
        _tag: "Items",
        v: ProtocolVersion,
        source: "node-é1",
        requestId: 7,
        seq: 4,
        items: [[...bytesOf(5000, 3)], [...bytesOf(20, 4)]]
      })
      // many elements, their lengths and bytes crossing the pieces' boundaries anywhere
      const many = Array.from({ length: 100 }, (_, i) => bytesOf(i, i))
      const manyWire = send({ ...items, seq: 9, upload: undefined, end: undefined, items: many })
      expect(Array.isArray(manyWire) && manyWire.length).toBeGreaterThan(4)
      expect(plain(received.at(-1))).toMatchObject({ seq: 9, items: many.map((item) => [...item]) })
      received.pop()
      // elements that are not bytes, or a failure, go through the codec (and still arrive)
      const numbers = send({ ...items, seq: 5, items: [1, 2] })
      expect(numbers instanceof Uint8Array && numbers[0]).not.toBe(BINARY_ITEMS)
      const failed = send({ ...items, seq: 6, items: [], failure: "boom" })
      expect(failed instanceof Uint8Array && failed[0]).not.toBe(BINARY_ITEMS)
      expect(received.slice(2)).toMatchObject([{ seq: 5, items: [1, 2] }, { seq: 6, items: [], failure: "boom" }])
      // malformed: cut short, a count beyond the bytes, another version; none is delivered
      const whole = small as Uint8Array
      expect(decodeBinaryItems(whole)).toBeDefined()
      expect(decodeBinaryItems(whole.subarray(0, whole.byteLength - 1))).toBeUndefined()
      const tooMany = whole.slice()
      new DataView(tooMany.buffer).setUint32(4 + whole[3]! + 8, 1000)
      expect(decodeBinaryItems(tooMany)).toBeUndefined()
      const otherVersion = whole.slice()
      otherVersion[1] = 99
      expect(decodeBinaryItems(otherVersion)).toBeUndefined()
      const before = yield* Metric.value(Transport.malformedFrames)
      for (const bad of [whole.subarray(0, 20), tooMany, otherVersion]) receive(bad)
      expect((yield* Metric.value(Transport.malformedFrames)).count).toBe(before.count + 3)
      expect(received.length).toBe(4)
    }))

  it.effect("a frame just over a multiple of the chunk size ends in a slightly larger piece, not a tiny extra one", () =>
    Effect.sync(() => {
      const codec = mode === "json" ? Codec.jsonCodec : Codec.msgpackCodec
      const chunkBytes = 4096
      const encode = makeEncoder(codec, { chunkBytes, maxMessageBytes: 1024 * 1024, wireLimit: 1024 * 1024 })
      const frameOf = (body: string): Extract<Envelope, { readonly _tag: "Event" }> => ({
        _tag: "Event",
        v: ProtocolVersion,
        source: "n1",
        subject: "big",
        headers: {},
        body
      })
      const piecesOf = (frame: Envelope) => {
        const encoded = encode(frame, true)
        if (Either.isLeft(encoded) || encoded.right instanceof Uint8Array) return expect.unreachable("expected pieces")
        return encoded.right.map((bytes) => decodePiece(bytes)!)
      }
      const joined = (pieces: ReadonlyArray<Piece>) => {
        const reassembler = new Reassembler(1024 * 1024)
        return pieces.map((piece) => reassembler.accept(piece)).find((x) => x !== undefined)
      }
      // 3 chunks of text and the frame around them: a little over 3 chunks
      const justOver = frameOf("x".repeat(3 * chunkBytes))
      const justOverPieces = piecesOf(justOver)
      const size = justOverPieces[0]!.total
      expect(size).toBeGreaterThan(3 * chunkBytes)
      expect(size).toBeLessThanOrEqual(3 * chunkBytes + chunkBytes / 32)
      expect(justOverPieces.map((piece) => piece.body.byteLength)).toEqual([
        chunkBytes,
        chunkBytes,
        size - 2 * chunkBytes
      ])
      expect(Either.getOrThrow(codec.decode(joined(justOverPieces)!))).toMatchObject({ body: justOver.body })
      // well over: the remainder gets a piece of its own, and no piece exceeds the chunk size
      const wellOver = frameOf("x".repeat(3 * chunkBytes + chunkBytes / 2))
      const wellOverPieces = piecesOf(wellOver)
      expect(wellOverPieces.length).toBe(4)
      for (const piece of wellOverPieces) expect(piece.body.byteLength).toBeLessThanOrEqual(chunkBytes)
      expect(Either.getOrThrow(codec.decode(joined(wellOverPieces)!))).toMatchObject({ body: wellOver.body })
    }))

  it.effect("bytes elements written straight into pieces join to exactly their binary layout, for any chunk size", () =>
    Effect.sync(() => {
      const codec = mode === "json" ? Codec.jsonCodec : Codec.msgpackCodec
      // element sizes that straddle piece boundaries, including an empty element
      const items = [1000, 0, 4095, 4097, 1, 9000].map((n, k) => new Uint8Array(n).map((_, i) => (i * 7 + k) & 0xff))
      const frame: ItemsFrame = {
        _tag: "Items",
        v: ProtocolVersion,
        source: "node-7",
        requestId: 9,
        seq: 3,
        items,
        end: true
      }
      const whole = encodeBinaryItems(frame, new TextEncoder().encode("node-7"), items)
      for (const chunkBytes of [256, 1000, 4096, 8192]) {
        const encode = makeEncoder(codec, { chunkBytes, maxMessageBytes: 1024 * 1024, wireLimit: 1024 * 1024 })
        const encoded = Either.getOrThrow(encode(frame, true))
        if (encoded instanceof Uint8Array) return expect.unreachable("expected pieces")
        const reassembler = new Reassembler(1024 * 1024)
        const joined = encoded.map((bytes) => reassembler.accept(decodePiece(bytes)!)).find((x) => x !== undefined)
        expect(joined).toEqual(whole)
        expect(decodeBinaryItems(joined!)?.items).toEqual(items)
      }
    }))
})

/** one serializing in-memory network: every node built from the layer joins it */
const memoryTransport = () =>
  Transport.layerInMemory({ network: Transport.makeNetwork(), serialize: true }).pipe(Layer.provide(Codec.msgpack))

describe("a faulty transport under a stream (in memory)", () => {
  for (const fault of frameFaultCases) {
    it.scoped(fault.name, () => {
      const faults = fault.faults()
      return Effect.flatMap(faultyPair(memoryTransport(), faults), (pair) => fault.run(pair, eventually, faults))
    })
  }

  it.scoped("a lost end of an upload fails the handler's stream with StreamError after the node's ask timeout (TestClock)", () =>
    Effect.gen(function*() {
      let ended = false
      const { state, streamer } = yield* faultyPair(memoryTransport(), {
        caller: once(
          (frame) => (ended ||= frame._tag === "Items" && frame.upload === true && frame.end === true),
          "drop"
        ),
        hostAskTimeout: "5 seconds"
      })
      const outcomes: Array<PutOutcome> = []
      state.onPutEnd = (outcome) => outcomes.push(outcome)
      const start = yield* Clock.currentTimeMillis
      const fiber = yield* Effect.fork(
        Effect.flip(streamer.Put({ name: "x", data: bytes(50_000, 10_000) }, { timeout: "1 minute" }))
      )
      yield* eventually(() => ended, "the upload's end dropped")
      yield* awaitSleepUntil(start + 5_000) // the handler's idle watch
      yield* TestClock.adjust("4999 millis")
      expect(outcomes).toEqual([])
      yield* TestClock.adjust("1 millis")
      yield* eventually(() => fiber.unsafePoll() !== null, "the caller's ask ended")
      const error = yield* Fiber.join(fiber)
      expect(error).toMatchObject({
        _tag: "StreamError",
        tag: "Put",
        reason: expect.stringMatching(/^the caller caller-\w+ sent nothing for 5000 ms$/)
      })
      expect(outcomes).toMatchObject([{ _tag: "Failed", error: { _tag: "StreamError" } }])
    }))

  it.scoped("a producer node that goes silent mid-stream fails the consumer with AskTimeout after the idle timeout (TestClock), and the producer is interrupted", () =>
    Effect.gen(function*() {
      const partition = partitionFrom((frame) => frame._tag === "Items" && frame.seq === 5)
      const { state, streamer } = yield* faultyPair(memoryTransport(), { host: partition })
      let pulled = 0
      const start = yield* Clock.currentTimeMillis
      const fiber = yield* Effect.fork(Effect.flip(Stream.runForEach(
        streamer.Forever(undefined, { timeout: "2 seconds" }),
        () => Effect.sync(() => pulled++)
      )))
      // the frames before the silence pulled, the producer out of credit
      yield* eventually(() => pulled === 5 && state.produced >= WINDOW, "the producer silent mid-stream")
      yield* awaitSleepUntil(start + 2_000)
      yield* TestClock.adjust("1999 millis")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      yield* eventually(() => fiber.unsafePoll() !== null, "consumer failed")
      expect(yield* Fiber.join(fiber)).toMatchObject({
        _tag: "AskTimeout",
        kind: "Streamer",
        tag: "Forever",
        elapsedMillis: 2_000
      })
      expect(pulled).toBe(5)
      yield* eventually(() => state.interrupted === 1, "producer interrupted")
    }))

  it.scoped("an upload whose caller goes silent mid-way fails the handler's stream with StreamError after the node's ask timeout (TestClock); the actor is free again", () =>
    Effect.gen(function*() {
      const partition = partitionFrom((frame) => frame._tag === "Items" && frame.upload === true && frame.seq === 5)
      const { caller, state, streamer } = yield* faultyPair(memoryTransport(), {
        caller: partition,
        hostAskTimeout: "5 seconds"
      })
      const outcomes: Array<PutOutcome> = []
      state.onPutEnd = (outcome) => outcomes.push(outcome)
      const { data, probe } = endlessUpload()
      const start = yield* Clock.currentTimeMillis
      const fiber = yield* Effect.fork(Effect.flip(streamer.Put({ name: "silent", data }, { timeout: "1 minute" })))
      yield* eventually(() => partition.started, "the caller silent mid-upload")
      yield* awaitSleepUntil(start + 5_000) // the handler's idle watch
      yield* TestClock.adjust("4999 millis")
      expect(outcomes).toEqual([])
      yield* TestClock.adjust("1 millis")
      yield* eventually(() => outcomes.length === 1, "handler ended")
      const reason = `the caller ${nodeOf(caller).nodeId} sent nothing for 5000 ms`
      expect(outcomes).toMatchObject([{ _tag: "Failed", error: { _tag: "StreamError", reason } }])
      // the caller hears it (the other way works), and its stream stops
      yield* eventually(() => fiber.unsafePoll() !== null, "caller's ask ended")
      expect(yield* Fiber.join(fiber)).toMatchObject({ _tag: "StreamError", tag: "Put", reason })
      yield* eventually(() => probe.stopped, "caller's stream stopped")
      partition.heal()
      expect(yield* streamer.Put({ name: "again", data: Stream.make(new Uint8Array(7)) })).toMatchObject({ bytes: 7 })
    }))

  const rejected = (reason: string) =>
    Metric.value(rejectedChunks.pipe(Metric.tagged("reason", reason))).pipe(Effect.map((state) => state.count))
  /** a caller and a host whose network applies `fault` to the pieces of large frames */
  const piecesPair = (fault: FaultOf<Piece>) =>
    faultyPair(
      Transport.layerInMemory({ network: new PieceFaults(fault), serialize: true }).pipe(Layer.provide(Codec.msgpack))
    )

  it.scoped("a piece of a large reply element reordered behind the next drops its frame: the consumer fails with StreamError", () =>
    Effect.gen(function*() {
      const fault = pieceOf("host", 2, 1, "hold")
      const { streamer } = yield* piecesPair(fault)
      const missingBefore = yield* rejected("missing")
      // 64 KiB elements: one frame each, four 16 KiB pieces each
      const error = yield* Effect.flip(Stream.runDrain(streamer.Bytes({ size: 1024 * 1024, chunk: 64 * 1024 })))
      expect(fault.fired).toBe(true)
      expect(error).toMatchObject({ _tag: "StreamError", kind: "Streamer", reason: "frames 2..2 are missing" })
      // the pieces after the gap, the held one and the rest of its frame are rejected, not joined
      expect(yield* rejected("missing")).toBeGreaterThanOrEqual(missingBefore + 3)
    }))

  it.scoped("a piece of a large upload element reordered behind the next drops its frame: the handler's stream fails with StreamError", () =>
    Effect.gen(function*() {
      const fault = pieceOf("caller", 2, 1, "hold")
      const { state, streamer } = yield* piecesPair(fault)
      const outcomes: Array<PutOutcome> = []
      state.onPutEnd = (outcome) => outcomes.push(outcome)
      const error = yield* Effect.flip(streamer.Put({ name: "pieces", data: bytes(1024 * 1024, 64 * 1024) }))
      expect(fault.fired).toBe(true)
      expect(error).toMatchObject({ _tag: "StreamError", tag: "Put", reason: "frames 2..2 are missing" })
      expect(outcomes).toMatchObject([{ _tag: "Failed", error: { _tag: "StreamError" } }])
    }))

  it.scoped("a repeated piece of a large element is ignored: the stream arrives intact", () =>
    Effect.gen(function*() {
      const fault = pieceOf("host", 2, 1, "repeat")
      const { streamer } = yield* piecesPair(fault)
      const duplicatesBefore = yield* rejected("duplicate")
      const size = 1024 * 1024 + 3
      const pieces = yield* Stream.runCollect(streamer.Bytes({ size, chunk: 64 * 1024 }))
      expect(fault.fired).toBe(true)
      expect(sha256(pieces)).toBe(expectedSha256(size))
      expect(yield* rejected("duplicate")).toBe(duplicatesBefore + 1)
    }))
})
