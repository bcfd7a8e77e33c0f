/**
 * Streams suite: a 256 MiB streamed reply through Troupe over a real nats-server (producer and
 * consumer nodes in this process, each with its own connection) against raw nats.js publishing
 * 16 KiB chunks from one connection to a subscriber on another, in the same run. Rounds are
 * interleaved, in alternating order; the figure is the median. The heap growth (heap + array buffers, peak over the
 * baseline) during the Troupe rounds is reported too.
 *
 * Target: Troupe ≥ 0.5× raw.
 *
 * @since 0.1.0
 */
import { Rpc } from "@effect/rpc"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { connect } from "nats"
import * as Actor from "../src/actors/Actor.ts"
import type { ActorSystem } from "../src/actors/ActorSystem.ts"
import * as Codec from "../src/layers/Codec.ts"
import * as Discovery from "../src/layers/Discovery.ts"
import * as Transport from "../src/layers/Transport.ts"
import * as Node from "../src/runtime/Node.ts"
import { median, type Result } from "./harness.ts"
import { natsServer } from "./nats.ts"

const MiB = 1024 * 1024
const TOTAL = Number(process.env["BENCH_STREAM_MIB"] ?? 256) * MiB
const ROUNDS = 5
const PIECE = 64 * 1024
const RAW_CHUNK = 16 * 1024
/** a round that takes longer than this is cut short (its rate is still measured) */
const ROUND_CAP_MILLIS = 60_000

const Source = Actor.service("BenchSource", [
  Rpc.make("Bytes", { payload: { size: Schema.Number }, success: Schema.Uint8ArrayFromSelf, stream: true })
])

const piece = new Uint8Array(PIECE).map((_, i) => i & 0xff)
const SourceLive = Actor.toLayer(Source, {
  Bytes: ({ size }) => Stream.repeatValue(piece).pipe(Stream.take(Math.ceil(size / PIECE)))
})

const nodeLayer = (url: string, name: string, kinds: Layer.Layer<never, never, ActorSystem>) =>
  kinds.pipe(
    Layer.provideMerge(Node.layer({ name })),
    Layer.provideMerge(Layer.provideMerge(
      Discovery.nats({ heartbeat: "1 second" }),
      Transport.nats({ servers: url, namespace: "bench-streams", name }).pipe(Layer.provide(Codec.msgpack))
    )),
    Layer.orDie
  )

/** raw nats.js: 16 KiB messages from one connection to a subscriber on another */
const rawRound = (url: string, bytes: number) =>
  Effect.promise(async () => {
    const [pub, sub] = await Promise.all([connect({ servers: url }), connect({ servers: url })])
    const chunk = new Uint8Array(RAW_CHUNK).map((_, i) => i & 0xff)
    const count = Math.ceil(bytes / RAW_CHUNK)
    let received = 0
    let done!: () => void
    const finished = new Promise<void>((resolve) => (done = resolve))
    sub.subscribe("bench.raw", {
      callback: () => {
        if (++received === count) done()
      }
    })
    await sub.flush()
    const started = performance.now()
    const deadline = started + ROUND_CAP_MILLIS
    for (let i = 0; i < count && performance.now() < deadline; i++) {
      pub.publish("bench.raw", chunk)
      // let the socket drain now and then, as a real producer must
      if (i % 256 === 255) await pub.flush()
    }
    await Promise.race([finished, new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - performance.now())))])
    const seconds = (performance.now() - started) / 1000
    await Promise.all([pub.close(), sub.close()])
    return (received * RAW_CHUNK) / MiB / seconds
  })

const troupeRound = (bytes: number, source: { readonly Bytes: (p: { size: number }) => Stream.Stream<Uint8Array, unknown> }) =>
  Effect.gen(function*() {
    let received = 0
    const started = performance.now()
    yield* Stream.runForEach(source.Bytes({ size: bytes }), (p) =>
      Effect.sync(() => {
        received += p.byteLength
      })).pipe(Effect.timeout(ROUND_CAP_MILLIS), Effect.ignore)
    return received / MiB / ((performance.now() - started) / 1000)
  })

const used = () => {
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.arrayBuffers
}

export const run = (): Promise<Array<Result>> =>
  Effect.gen(function*() {
    const server = yield* natsServer
    yield* Layer.build(nodeLayer(server.url, "producer", SourceLive))
    const consumer = yield* Layer.build(nodeLayer(server.url, "consumer", Layer.empty))
    yield* Effect.provide(Discovery.awaitServing("BenchSource", { timeout: "10 seconds" }), consumer)
    const source = yield* Effect.provide(Actor.client(Source), consumer)

    // warm-up
    yield* rawRound(server.url, 64 * MiB)
    yield* troupeRound(64 * MiB, source)

    const raw: Array<number> = []
    const troupe: Array<number> = []
    // CPU time of this process per MiB moved: robust to other load on the machine
    const rawCpu: Array<number> = []
    const troupeCpu: Array<number> = []
    const cpuMillis = () => {
      const usage = process.cpuUsage()
      return (usage.user + usage.system) / 1000
    }
    let peakGrowth = 0
    const measureRaw = Effect.gen(function*() {
      const cpu = cpuMillis()
      raw.push(yield* rawRound(server.url, TOTAL))
      rawCpu.push((cpuMillis() - cpu) / (TOTAL / MiB))
    })
    for (let round = 0; round < ROUNDS; round++) {
      // every other round runs Troupe first: the second of a pair collects the first one's garbage
      if (round % 2 === 0) yield* measureRaw
      const baseline = used()
      let peak = baseline
      const sampler = setInterval(() => {
        peak = Math.max(peak, used())
      }, 10)
      const cpu = cpuMillis()
      troupe.push(yield* troupeRound(TOTAL, source))
      troupeCpu.push((cpuMillis() - cpu) / (TOTAL / MiB))
      clearInterval(sampler)
      peakGrowth = Math.max(peakGrowth, peak - baseline)
      if (round % 2 === 1) yield* measureRaw
      console.log(
        `  round ${round + 1}: raw ${raw[round]!.toFixed(0)} MiB/s (${rawCpu[round]!.toFixed(1)} ms CPU/MiB), ` +
          `troupe ${troupe[round]!.toFixed(0)} MiB/s (${troupeCpu[round]!.toFixed(1)} ms CPU/MiB)`
      )
    }
    const rawValue = median(raw)
    const troupeValue = median(troupe)
    const ratio = troupeValue / rawValue
    return [
      {
        suite: "streams",
        name: `raw nats.js pub/sub, 16 KiB messages, ${TOTAL / MiB} MiB`,
        value: rawValue,
        unit: "MiB/s",
        note: `${median(rawCpu).toFixed(1)} ms CPU per MiB (both ends, this process)`
      },
      {
        suite: "streams",
        name: `Troupe streamed reply over NATS, ${TOTAL / MiB} MiB`,
        value: troupeValue,
        unit: "MiB/s",
        baseline: { name: "raw", value: rawValue },
        ratio,
        target: 0.5,
        pass: ratio >= 0.5,
        note: `${median(troupeCpu).toFixed(1)} ms CPU per MiB; peak heap+buffers growth ` +
          `${(peakGrowth / MiB).toFixed(1)} MiB (no forced GC)`
      }
    ]
  }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning), Effect.runPromise)
