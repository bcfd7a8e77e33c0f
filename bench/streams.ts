/**
 * Streams suite: 256 MiB through Troupe over a real nats-server, both ways (a streamed reply,
 * handler to caller, and a streamed request, caller to handler; both nodes in this process,
 * each with its own connection), against raw nats.js publishing 16 KiB chunks from one
 * connection to a subscriber on another, in the same run. Rounds are interleaved, their order
 * rotating from round to round; each figure is the median. The heap growth (heap + array
 * buffers, peak over the baseline) during the Troupe rounds is reported too.
 *
 * Target: the streamed reply ≥ 0.5× raw.
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
  Rpc.make("Bytes", { payload: { size: Schema.Number }, success: Schema.Uint8ArrayFromSelf, stream: true }),
  Rpc.make("Sink", { payload: { data: Actor.Upload }, success: Schema.Number })
])

const piece = new Uint8Array(PIECE).map((_, i) => i & 0xff)
const pieces = (size: number) => Stream.repeatValue(piece).pipe(Stream.take(Math.ceil(size / PIECE)))
const SourceLive = Actor.toLayer(Source, {
  Bytes: ({ size }) => pieces(size),
  Sink: ({ data }) => Stream.runFold(data, 0, (n, p) => n + p.byteLength).pipe(Effect.orDie)
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
    await Promise.race([
      finished,
      new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - performance.now())))
    ])
    const seconds = (performance.now() - started) / 1000
    await Promise.all([pub.close(), sub.close()])
    return (received * RAW_CHUNK) / MiB / seconds
  })

interface SourceClient {
  readonly Bytes: (p: { size: number }) => Stream.Stream<Uint8Array, unknown>
  readonly Sink: (p: { data: Stream.Stream<Uint8Array> }) => Effect.Effect<number, unknown>
}

/** a streamed reply: the caller pulls `bytes` from the handler */
const replyRound = (bytes: number, source: SourceClient) =>
  Effect.gen(function*() {
    let received = 0
    const started = performance.now()
    yield* Stream.runForEach(source.Bytes({ size: bytes }), (p) =>
      Effect.sync(() => {
        received += p.byteLength
      })).pipe(Effect.timeout(ROUND_CAP_MILLIS), Effect.ignore)
    return received / MiB / ((performance.now() - started) / 1000)
  })

/** a streamed request: the handler pulls `bytes` from the caller and answers how many arrived */
const uploadRound = (bytes: number, source: SourceClient) =>
  Effect.gen(function*() {
    const started = performance.now()
    const received = yield* source.Sink({ data: pieces(bytes) }).pipe(
      Effect.timeout(ROUND_CAP_MILLIS),
      Effect.orElseSucceed(() => 0)
    )
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
    yield* replyRound(64 * MiB, source)
    yield* uploadRound(64 * MiB, source)

    // CPU time of this process per MiB moved: robust to other load on the machine
    const cpuMillis = () => {
      const usage = process.cpuUsage()
      return (usage.user + usage.system) / 1000
    }
    const rates = { raw: [] as Array<number>, reply: [] as Array<number>, upload: [] as Array<number> }
    const cpu = { raw: [] as Array<number>, reply: [] as Array<number>, upload: [] as Array<number> }
    let peakGrowth = 0
    const measure = (name: keyof typeof rates, round: Effect.Effect<number>) =>
      Effect.gen(function*() {
        const baseline = used()
        let peak = baseline
        const sampler = setInterval(() => {
          peak = Math.max(peak, used())
        }, 10)
        const started = cpuMillis()
        rates[name].push(yield* round)
        cpu[name].push((cpuMillis() - started) / (TOTAL / MiB))
        clearInterval(sampler)
        if (name !== "raw") peakGrowth = Math.max(peakGrowth, peak - baseline)
      })
    const order: ReadonlyArray<keyof typeof rates> = ["raw", "reply", "upload"]
    const rounds = {
      raw: rawRound(server.url, TOTAL),
      reply: replyRound(TOTAL, source),
      upload: uploadRound(TOTAL, source)
    }
    for (let round = 0; round < ROUNDS; round++) {
      // the order rotates: a round collects the garbage of the one before it
      for (let i = 0; i < order.length; i++) {
        const name = order[(round + i) % order.length]!
        yield* measure(name, rounds[name])
      }
      const line = (name: keyof typeof rates) =>
        `${name} ${rates[name][round]!.toFixed(0)} MiB/s (${cpu[name][round]!.toFixed(1)} ms CPU/MiB)`
      console.log(`  round ${round + 1}: ${line("raw")}, ${line("reply")}, ${line("upload")}`)
    }
    const rawValue = median(rates.raw)
    const troupe = (name: "reply" | "upload", label: string, target: boolean): Result => {
      const value = median(rates[name])
      const ratio = value / rawValue
      return {
        suite: "streams",
        name: `${label}, ${TOTAL / MiB} MiB`,
        value,
        unit: "MiB/s",
        baseline: { name: "raw", value: rawValue },
        ratio,
        ...(target ? { target: 0.5, pass: ratio >= 0.5 } : {}),
        note: `${median(cpu[name]).toFixed(1)} ms CPU per MiB`
      }
    }
    return [
      {
        suite: "streams",
        name: `raw nats.js pub/sub, 16 KiB messages, ${TOTAL / MiB} MiB`,
        value: rawValue,
        unit: "MiB/s",
        note: `${median(cpu.raw).toFixed(1)} ms CPU per MiB (both ends, this process)`
      },
      troupe("reply", "Troupe streamed reply over NATS", true),
      {
        ...troupe("upload", "Troupe streamed request (upload) over NATS", false),
        note: `${median(cpu.upload).toFixed(1)} ms CPU per MiB; peak heap+buffers growth ` +
          `${(peakGrowth / MiB).toFixed(1)} MiB over both directions (no forced GC)`
      }
    ]
  }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning), Effect.runPromise)
