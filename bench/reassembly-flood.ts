/**
 * Memory held by forged first pieces: a flood of 100k first pieces, each 40-odd bytes long and
 * announcing a 5 MiB frame, from 10,000 made-up senders, published with raw nats.js to 8
 * subscriptions of one `Transport.nats` (a node has about that many), then the memory of this
 * process against its baseline.
 *
 * Memory is read three ways: after `global.gc()`, after a heap-profiler collection
 * (`v8.queryObjects`, which also frees the dead `ArrayBuffer`s that `global.gc()` leaves
 * allocated), and again after the partial messages' idle expiry has passed.
 *
 * Run: `npx tsx --expose-gc bench/reassembly-flood.ts` (or `node --expose-gc --import tsx ...`).
 * `FLOOD_PIECES`, `FLOOD_SENDERS` and `FLOOD_EXPIRY_WAIT_MS` override the defaults.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import { connect } from "nats"
import * as v8 from "node:v8"
import { Codec, Transport } from "../src/index.ts"
import { PIECE, rejectedChunks } from "../src/layers/internal/fragments.ts"
import { type Envelope, ProtocolVersion } from "../src/schema/Envelope.ts"
import { startNatsServer } from "../testing/nats.ts"

const PIECES = Number(process.env.FLOOD_PIECES ?? 100_000)
const SENDERS = Number(process.env.FLOOD_SENDERS ?? 10_000)
const SUBSCRIPTIONS = 8
const ANNOUNCED = 5 * 1024 * 1024
const EXPIRY_WAIT_MS = Number(process.env.FLOOD_EXPIRY_WAIT_MS ?? 12_000)

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) {
  console.error("run with --expose-gc")
  process.exitCode = 1
}

const MiB = (n: number) => (n / 1024 / 1024).toFixed(1)

interface Reading {
  readonly heap: number
  readonly arrayBuffers: number
}

const read = (): Reading => {
  const usage = process.memoryUsage()
  return { heap: usage.heapUsed, arrayBuffers: usage.arrayBuffers }
}

const afterGc = (): Reading => {
  for (let i = 0; i < 3; i++) gc?.()
  return read()
}

/** a heap-profiler collection: precise, and it frees what `global.gc()` leaves behind */
const afterProfilerCollection = (): Reading => {
  const query =
    (v8 as unknown as { queryObjects?: (ctor: unknown, options: { format: "count" }) => number }).queryObjects
  query?.(ArrayBuffer, { format: "count" })
  gc?.()
  return read()
}

const show = (label: string, reading: Reading, baseline: Reading) =>
  console.log(
    `${label.padEnd(44)} heap ${MiB(reading.heap).padStart(7)} MiB (${
      (reading.heap >= baseline.heap ? "+" : "") + MiB(reading.heap - baseline.heap)
    })` +
      `   arrayBuffers ${MiB(reading.arrayBuffers).padStart(7)} MiB (${
        (reading.arrayBuffers >= baseline.arrayBuffers ? "+" : "") + MiB(reading.arrayBuffers - baseline.arrayBuffers)
      })`
  )

/** a first piece of message `id` from `source`, announcing `total` bytes, carrying `body` */
const forgedPiece = (source: string, id: number, total: number, body: Uint8Array): Uint8Array => {
  const sourceBytes = new TextEncoder().encode(source)
  const bytes = new Uint8Array(4 + sourceBytes.byteLength + 12 + body.byteLength)
  const view = new DataView(bytes.buffer)
  bytes[0] = PIECE
  bytes[1] = ProtocolVersion
  bytes[2] = 0
  bytes[3] = sourceBytes.byteLength
  bytes.set(sourceBytes, 4)
  const at = 4 + sourceBytes.byteLength
  view.setUint32(at, id)
  view.setUint32(at + 4, 0)
  view.setUint32(at + 8, total)
  bytes.set(body, at + 12)
  return bytes
}

const sentinel = (n: number): Uint8Array => {
  const frame: Envelope = { _tag: "Event", v: ProtocolVersion, source: "bench", subject: `s${n}`, headers: {}, body: n }
  return Either.getOrThrow(Codec.msgpackCodec.encode(frame))
}

const rejectedBy = (reason: string) =>
  Metric.value(rejectedChunks.pipe(Metric.tagged("reason", reason))).pipe(Effect.map((state) => state.count))

const flood = (url: string) =>
  Effect.gen(function*() {
    const transport = yield* Transport.Transport
    const sentinels = new Set<number>()
    for (let n = 0; n < SUBSCRIPTIONS; n++) {
      yield* transport.subscribe(`flood.${n}`, (frame) => {
        if (frame._tag === "Event" && typeof frame.body === "number") sentinels.add(frame.body)
      })
    }
    const flooder = yield* Effect.acquireRelease(
      Effect.promise(() => connect({ servers: url })),
      (nc) => Effect.promise(() => nc.close())
    )
    yield* Effect.promise(() => flooder.flush())
    const baseline = afterProfilerCollection()
    show("baseline (8 subscriptions, after collection)", baseline, baseline)

    const body = new Uint8Array(24).fill(7)
    const started = performance.now()
    for (let i = 0; i < PIECES; i++) {
      flooder.publish(
        `troupe.default.flood.${i % SUBSCRIPTIONS}`,
        forgedPiece(`forger-${i % SENDERS}`, i, ANNOUNCED, body)
      )
      if (i % 5_000 === 4_999) yield* Effect.promise(() => flooder.flush())
    }
    for (let n = 0; n < SUBSCRIPTIONS; n++) flooder.publish(`troupe.default.flood.${n}`, sentinel(n))
    yield* Effect.promise(() => flooder.flush())
    while (sentinels.size < SUBSCRIPTIONS) yield* Effect.sleep("10 millis")
    const elapsed = performance.now() - started
    console.log(
      `${PIECES} forged first pieces (${SENDERS} senders, ${
        MiB(ANNOUNCED)
      } MiB announced each) over ${SUBSCRIPTIONS} subscriptions in ${elapsed.toFixed(0)} ms`
    )
    const reasons = ["evicted", "sender-limit", "too-large", "expired", "missing", "inconsistent"]
    const counts = yield* Effect.forEach(reasons, rejectedBy)
    console.log(`troupe_chunks_rejected: ${reasons.map((reason, i) => `${reason}=${counts[i]}`).join(" ")}`)
    show("after the flood, global.gc()", afterGc(), baseline)
    show("after the flood, heap-profiler collection", afterProfilerCollection(), baseline)
    yield* Effect.sleep(EXPIRY_WAIT_MS)
    const expired = yield* rejectedBy("expired")
    console.log(`after ${EXPIRY_WAIT_MS} ms idle: expired=${expired}`)
    show("after expiry, global.gc()", afterGc(), baseline)
    show("after expiry, heap-profiler collection", afterProfilerCollection(), baseline)
  })

Effect.runPromise(
  Effect.scoped(
    Effect.gen(function*() {
      const server = yield* Effect.acquireRelease(
        Effect.promise(() => startNatsServer()),
        (server) => Effect.promise(() => server.stop().catch(() => undefined))
      )
      yield* flood(server.url).pipe(
        Effect.scoped,
        Effect.provide(Transport.nats({ servers: server.url }).pipe(Layer.provide(Codec.msgpack)))
      )
    })
  )
).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
