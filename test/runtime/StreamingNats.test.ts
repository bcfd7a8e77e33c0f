/**
 * Streams between processes through a real nats-server: 64 MiB both ways with the child's
 * memory bounded, and interruption of a remote producer from the consumer's process.
 */
import { describe, expect, it } from "@effect/vitest"
import { createHash } from "node:crypto"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import * as Actor from "../../src/actors/Actor.ts"
import * as Codec from "../../src/layers/Codec.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as Transport from "../../src/layers/Transport.ts"
import { faultyPair, frameFaultCases, type WaitFor } from "../fixtures/faulty.ts"
import { type NatsServer, type NodeChild, spawnNode, startNatsServer } from "../fixtures/nats.ts"
import { natsCaller, nodeOf } from "../fixtures/nodes.ts"
import {
  bytes,
  expectedSha256,
  makeStreamerState,
  type PutOutcome,
  Streamer,
  streamerLayer,
  StreamerService
} from "../fixtures/streamer.ts"

const script = Path.join(import.meta.dirname, "../fixtures/streamer-node.ts")
const MiB = 1024 * 1024

let server: NatsServer
beforeAll(async () => {
  server = await startNatsServer()
}, 20_000)
afterAll(() => server?.stop())

const childNode = (codec: "json" | "msgpack", namespace: string, env: Readonly<Record<string, string>> = {}) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const child = spawnNode(script, [], {
        ...env,
        NATS_URL: server.url,
        NODE_NAME: "remote",
        CODEC: codec,
        NAMESPACE: namespace,
        // the child collects garbage before each memory sample: it reports what it holds
        NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --expose-gc`
      })
      await child.waitForLine(/"event":"ready"/, 20_000)
      return child
    }),
    (child) => Effect.promise(() => child.stop())
  )

/** a MessagePack caller node in `namespace`, once the child serves `kind` there */
const callerNode = (namespace: string, kind: string) =>
  Effect.tap(
    natsCaller({ url: server.url, namespace, codec: "msgpack", heartbeat: "1 second" }),
    (caller) => Effect.provide(Discovery.awaitServing(kind, { timeout: "10 seconds" }), caller)
  )

describe("streams across processes over NATS (msgpack)", () => {
  it.live(
    "64 MiB each way, intact, with the remote process's live memory growing by less than 64 MiB",
    () =>
      Effect.gen(function*() {
        yield* childNode("msgpack", "stream-1")
        const caller = yield* callerNode("stream-1", "Streamer")
        const streamer = (yield* Effect.provide(Actor.client(Streamer), caller))("big")
        const size = 64 * MiB
        const before = yield* streamer.Memory()

        // 16 KiB elements, the wire's chunk size. (With 64 KiB elements the child's peak after
        // `global.gc()` ranged over 20–66 MiB, too close to the bound: dead ArrayBuffers that
        // `global.gc()` leaves allocated and a heap-profiler collection frees, after which the
        // peak growth is about 10 MiB; no JavaScript object holds them.)
        // download: the child produces, this process hashes
        const hash = createHash("sha256")
        let received = 0
        yield* Stream.runForEach(streamer.Bytes({ size, chunk: 16 * 1024 }), (piece) =>
          Effect.sync(() => {
            hash.update(piece)
            received += piece.byteLength
          }))
        expect(received).toBe(size)
        expect(hash.digest("hex")).toBe(expectedSha256(size))
        const afterDownload = yield* streamer.Memory()

        // upload: this process produces, the child hashes
        const digest = yield* streamer.Put({ name: "upload.bin", data: bytes(size, 16 * 1024) })
        expect(digest).toMatchObject({ bytes: size, sha256: expectedSha256(size) })
        const afterUpload = yield* streamer.Memory()

        console.log(
          `download peak +${((afterDownload.peak - before.now) / MiB).toFixed(1)} MiB, upload peak +${
            ((afterUpload.peak - before.now) / MiB).toFixed(1)
          } MiB`
        )
        const growth = Math.max(afterDownload.peak, afterUpload.peak) - before.now
        console.log(
          `child memory: baseline ${(before.now / MiB).toFixed(1)} MiB, peak growth ${(growth / MiB).toFixed(1)} MiB`
        )
        expect(growth).toBeLessThan(64 * MiB)
      }).pipe(Effect.scoped),
    120_000
  )

  it.live("a consumer that stops early interrupts the producer in the other process", () =>
    Effect.gen(function*() {
      const child = yield* childNode("msgpack", "stream-2")
      const caller = yield* callerNode("stream-2", "StreamerService")
      const service = yield* Effect.provide(Actor.client(StreamerService), caller)
      const first = yield* Stream.runCollect(Stream.take(service.Forever(), 100))
      expect(first.length).toBe(100)
      yield* Effect.promise(() => child.waitForLine(/"event":"interrupted"/, 10_000))
      expect(child.lines.filter((line) => line.includes("\"interrupted\"")).length).toBe(1)
    }).pipe(Effect.scoped), 60_000)

  it.live(
    "an upload interrupted by its caller interrupts the handler in the other process",
    () =>
      Effect.gen(function*() {
        const child = yield* childNode("msgpack", "stream-3")
        const caller = yield* callerNode("stream-3", "Streamer")
        const streamer = (yield* Effect.provide(Actor.client(Streamer), caller))("up")
        let sent = 0
        const data = Stream.iterate(0, (n) => n + 1).pipe(
          Stream.map(() => new Uint8Array(16 * 1024)),
          Stream.tap(() => Effect.sync(() => sent++))
        )
        // the timeout interrupts the ask: the handler is interrupted and the pump stops
        const error = yield* Effect.flip(streamer.Put({ name: "endless", data }, { timeout: "500 millis" }))
        expect(error).toMatchObject({ _tag: "AskTimeout", tag: "Put" })
        // the handler's own interrupt hook ran in the other process
        yield* Effect.promise(() => child.waitForLine(/"event":"put-interrupted"/, 10_000))
        const sentAtTimeout = sent
        yield* Effect.sleep("300 millis")
        expect(sent).toBe(sentAtTimeout) // nothing more is produced
        // the actor is free again: its mailbox was not blocked by the abandoned upload
        const small = yield* streamer.Put({ name: "small", data: Stream.make(new Uint8Array([1])) })
        expect(small).toMatchObject({ bytes: 1 })
      }).pipe(Effect.scoped),
    60_000
  )
})

/** the node id a child announced in its `ready` line */
const nodeIdOf = (child: NodeChild): string =>
  JSON.parse(child.lines.find((line) => line.includes("\"ready\""))!).nodeId

describe("a process that dies mid-stream (SIGKILL), noticed by heartbeat discovery", () => {
  it.live.each(["Streamer", "StreamerService"] as const)(
    "a producer process (%s) killed mid-stream fails the consumer with TransportError, not a hang",
    (kind) =>
      Effect.gen(function*() {
        const namespace = `stream-kill-${kind}`
        const child = yield* childNode("msgpack", namespace)
        const childId = nodeIdOf(child)
        const caller = yield* callerNode(namespace, kind)
        const forever = kind === "Streamer"
          ? (yield* Effect.provide(Actor.client(Streamer), caller))("k").Forever
          : (yield* Effect.provide(Actor.client(StreamerService), caller)).Forever
        let pulled = 0
        // an idle timeout well above discovery's suspicion (3 heartbeats of 1 s), below the test's
        const error = yield* Effect.flip(Stream.runForEach(forever(undefined, { timeout: "20 seconds" }), () =>
          Effect.sync(() => {
            if (++pulled === 100) child.kill("SIGKILL")
          })))
        expect(error).toMatchObject({
          _tag: "TransportError",
          reason: `node ${childId} stopped answering while the ask was pending`
        })
        expect(
          yield* Effect.promise(() =>
            child.exited
          )
        ).toBeNull() // ended by the signal
        expect(nodeOf(caller).pendingAsks()).toBe(0)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "an upload whose caller process is killed mid-upload fails the handler's stream with StreamError; the actor is free again",
    () =>
      Effect.gen(function*() {
        const namespace = "stream-kill-upload"
        const state = makeStreamerState()
        const ended = yield* Deferred.make<PutOutcome>()
        state.onPutEnd = (outcome) => Deferred.unsafeDone(ended, Exit.succeed(outcome))
        // this process hosts the actor; the child uploads to it
        const host = yield* natsCaller({
          url: server.url,
          namespace,
          codec: "msgpack",
          heartbeat: "1 second",
          name: "host",
          kinds: streamerLayer(state)
        })
        const child = yield* childNode("msgpack", namespace, { UPLOAD_TO: "victim" })
        const childId = nodeIdOf(child)
        yield* Effect.promise(() => child.waitForLine(/"event":"uploading"/, 20_000))
        child.kill("SIGKILL")
        // the host's discovery suspects the silent caller after 3 heartbeats (its idle watch would take 30 s)
        const outcome = yield* Deferred.await(ended).pipe(Effect.timeout("20 seconds"))
        expect(outcome).toMatchObject({
          _tag: "Failed",
          error: { _tag: "StreamError", reason: `the caller ${childId} went away` }
        })
        const streamer = (yield* Effect.provide(Actor.client(Streamer), host))("victim")
        expect(yield* streamer.Put({ name: "after", data: Stream.make(new Uint8Array(5)) })).toMatchObject({ bytes: 5 })
      }).pipe(Effect.scoped),
    60_000
  )
})

/** polls `condition` every 20 ms, for at most 10 s */
const waitFor: WaitFor = (condition, what) =>
  Effect.gen(function*() {
    for (let i = 0; i < 500; i++) {
      if (condition()) return
      yield* Effect.sleep("20 millis")
    }
    return yield* Effect.dieMessage(`${what}: not within 10 s`)
  })

describe("a faulty transport under a stream (NATS, both nodes in this process)", () => {
  frameFaultCases.forEach((fault, i) => {
    it.live(fault.name, () => {
      const faults = fault.faults()
      const transport = Transport.nats({ servers: server.url, namespace: `faulty-${i}` }).pipe(
        Layer.provide(Codec.msgpack)
      )
      return Effect.flatMap(faultyPair(transport, faults), (pair) => fault.run(pair, waitFor, faults)).pipe(
        Effect.scoped
      )
    }, 30_000)
  })
})
