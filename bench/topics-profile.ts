/**
 * A load driver for profiling topics over NATS: one nats-server, one subscriber in a child
 * process, the publisher here, rounds of `EVENTS` events back to back for `seconds`. Not a suite:
 * no baseline, no median; it exists so that the publisher and the subscriber can be profiled
 * without the other path's samples mixed in. Mode `raw` drives the raw nats.js path instead.
 * It also reports the CPU time per event of each process (this publisher, the subscriber, the
 * nats-server, from `/proc/<pid>/stat`).
 *
 * ```sh
 * mkdir -p /tmp/prof
 * BENCH_PROFILE_DIR=/tmp/prof npx tsx bench/topics-profile.ts troupe 10   # or raw
 * npx tsx bench/topics-profile.ts troupe 10 1024   # the default buffer of a remote subscription: drops?
 * npx tsx bench/profile-top.ts /tmp/prof/topics-publisher-troupe.cpuprofile
 * npx tsx bench/profile-top.ts /tmp/prof/topics-subscriber.cpuprofile
 * ```
 * With `BENCH_PROFILE_DIR`, this process profiles the measured rounds (not the start-up nor the
 * warm-up) and the subscriber profiles itself from when it is ready until it is stopped.
 *
 * @since 0.1.0
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { connect } from "nats"
import { join } from "node:path"
import { Node, type Topic } from "../src/index.ts"
import { cpuMicros, cpuProfile } from "./cpu-profile.ts"
import { child, natsServer, ready } from "./nats.ts"
import { NAMESPACE, RAW_SUBJECT } from "./topics-events.ts"
import { deliver, EVENTS, rawPath, ROUND_MILLIS, troupePath } from "./topics.ts"

const mode = process.argv[2] === "raw" ? "raw" : "troupe"
const seconds = Number(process.argv[3] ?? 10)
/** the Troupe subscriber's `bufferSize`; default a whole round, as in the suite */
const bufferSize = Number(process.argv[4] ?? EVENTS)

const makePath = (url: string) =>
  Effect.gen(function*() {
    if (mode === "raw") {
      const subscriber = yield* child("raw-subscriber.ts", [url, RAW_SUBJECT])
      yield* ready(subscriber, "raw subscriber")
      const nc = yield* Effect.acquireRelease(
        Effect.promise(() => connect({ servers: url, name: "bench-raw-publisher" })),
        (nc) => Effect.promise(() => nc.close())
      )
      return rawPath(nc, subscriber)
    }
    const subscriber = yield* child("topics-subscriber.ts", [url, String(bufferSize)])
    yield* ready(subscriber, "Troupe subscriber")
    const publisher: Context.Context<Topic.TopicBus> = yield* Layer.build(
      Node.layerNats({ servers: url, name: "bench-topics-publisher", namespace: NAMESPACE, codec: "msgpack" })
    )
    return troupePath(publisher, subscriber)
  })

const program = Effect.gen(function*() {
  const server = yield* natsServer
  const path = yield* makePath(server.url)
  const budget = { maxOps: EVENTS, maxMillis: ROUND_MILLIS }
  let round = 0
  for (let i = 0; i < 2; i++) yield* deliver(path, round++, budget)

  const load = Effect.gen(function*() {
    let received = 0
    let published = 0
    let dropped = 0
    const start = performance.now()
    while (performance.now() - start < seconds * 1000) {
      const delivery = yield* deliver(path, round++, budget)
      received += delivery.received
      published += delivery.published
      dropped += delivery.dropped
    }
    return { received, published, dropped, millis: performance.now() - start }
  })

  const pids = { publisher: process.pid, subscriber: path.subscriber.pid, "nats-server": server.pid }
  const cpuBefore = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuMicros(pid)]))
  const profileDir = process.env["BENCH_PROFILE_DIR"]
  const result = yield* (profileDir === undefined || profileDir.length === 0
    ? load
    : Effect.scoped(Effect.zipRight(cpuProfile(join(profileDir, `topics-publisher-${mode}.cpuprofile`)), load)))
  const cpu = Object.entries(pids).map(([name, pid]) =>
    `${name} ${((cpuMicros(pid) - cpuBefore[name]!) / Math.max(result.received, 1)).toFixed(2)}`
  )
  console.log(
    `${mode}: ${Math.round((result.received / result.millis) * 1000)} events/s delivered over ${
      (result.millis / 1000).toFixed(1)
    } s (${result.published} published, ${result.received} received, ${result.dropped} dropped)`
  )
  console.log(`  CPU µs per event: ${cpu.join(", ")}`)
}).pipe(Effect.scoped, Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)))

Effect.runPromise(program).then(
  () => setTimeout(() => process.exit(0), 2_000).unref(),
  (error) => {
    console.error(error)
    process.exitCode = 1
  }
)
