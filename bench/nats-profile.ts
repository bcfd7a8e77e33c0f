/**
 * A load driver for profiling Troupe's ask over NATS: one nats-server, one Troupe responder in a
 * child process, one caller node here, `callers` fibers asking for `seconds`. Not a suite: no
 * baseline, no rounds; it exists so the hot path can be profiled without the raw baseline's
 * samples mixed in. Mode `raw` runs the raw nats.js baseline (msgpackr) instead, to compare,
 * mode `fibers` the same raw requests in one `Effect.async` each on the harness's fibers, and
 * mode `secure` Troupe's ask over Secure sessions (MessagePack).
 * It also reports the CPU time per request of each process (this caller, the responder, the
 * nats-server, from `/proc/<pid>/stat`) and counts this process's socket writes, to show how
 * well requests are batched.
 *
 * ```sh
 * mkdir -p /tmp/prof
 * BENCH_PROFILE_DIR=/tmp/prof npx tsx bench/nats-profile.ts msgpack 100 10   # or json, raw, fibers
 * npx tsx bench/profile-top.ts /tmp/prof/caller-msgpack.cpuprofile
 * npx tsx bench/profile-top.ts /tmp/prof/troupe-responder-msgpack.cpuprofile
 * ```
 * With `BENCH_PROFILE_DIR`, this process profiles the measured load (not the start-up nor the
 * warm-up) and the responder profiles itself from when it is serving until it is stopped.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { connect } from "nats"
import { Socket } from "node:net"
import { join } from "node:path"
import { cpuMicros, cpuProfile } from "./cpu-profile.ts"
import { concurrent, sequential } from "./harness.ts"
import {
  callerNode,
  child,
  makeRawClient,
  NAMESPACE,
  natsServer,
  RAW_SUBJECT,
  rawRequestEffect,
  rawRound,
  ready,
  wireCodecs
} from "./nats.ts"
import { callerNodeFor, NAMESPACE as SECURE_NAMESPACE } from "./secure.ts"

const modes = ["msgpack", "json", "raw", "fibers", "secure"] as const
const mode: (typeof modes)[number] = modes.find((m) => m === process.argv[2]) ?? "msgpack"
const callers = Number(process.argv[3] ?? 100)
const seconds = Number(process.argv[4] ?? 10)

let socketWrites = 0
const write = Socket.prototype.write
Socket.prototype.write = function(this: Socket, ...args: Parameters<Socket["write"]>) {
  socketWrites++
  return write.apply(this, args)
} as Socket["write"]

/** The load for `seconds`, after a warm-up, as an Effect, with the responder's pid. */
const makeLoad = (url: string) =>
  Effect.gen(function*() {
    const budget = { maxOps: Number.MAX_SAFE_INTEGER, maxMillis: seconds * 1000 }
    const warmUp = { maxOps: 5_000, maxMillis: 5_000 }
    if (mode === "raw" || mode === "fibers") {
      const responder = yield* child("raw-responder.ts", [url, RAW_SUBJECT])
      yield* ready(responder, "raw responder")
      const nc = yield* Effect.acquireRelease(Effect.promise(() => connect({ servers: url })), (nc) =>
        Effect.promise(() => nc.close()))
      const client = makeRawClient(nc)
      yield* Effect.promise(() =>
        nc.flush()
      )
      const codec = wireCodecs.msgpack
      const subject = `${RAW_SUBJECT}.msgpack`
      const request = rawRequestEffect(client)
      const round = (budget: { maxOps: number; maxMillis: number }) =>
        mode === "raw"
          ? Effect.promise(() => rawRound(client, codec, subject, budget, callers))
          : concurrent(budget, callers, () => request)
      yield* round(warmUp)
      return { load: round(budget), responderPid: responder.pid }
    }
    if (mode === "secure") {
      const responder = yield* child("troupe-responder.ts", [url, SECURE_NAMESPACE.secure], {
        BENCH_CODEC: "msgpack",
        BENCH_SECURE: "1"
      })
      yield* ready(responder, "Troupe secure responder")
      const adder = yield* callerNodeFor(url, "secure")
      const ask = () => adder.Increment({ by: 1 })
      yield* concurrent(warmUp, callers, ask)
      return {
        load: callers === 1 ? sequential(budget, ask) : concurrent(budget, callers, ask),
        responderPid: responder.pid
      }
    }
    const responder = yield* child("troupe-responder.ts", [url, NAMESPACE[mode]], { BENCH_CODEC: mode })
    yield* ready(responder, `Troupe ${mode} responder`)
    const adder = yield* callerNode(url, mode)
    const ask = () => adder.Increment({ by: 1 })
    yield* concurrent(warmUp, callers, ask)
    return {
      load: callers === 1 ? sequential(budget, ask) : concurrent(budget, callers, ask),
      responderPid: responder.pid
    }
  })

const program = Effect.gen(function*() {
  const server = yield* natsServer
  const { load, responderPid } = yield* makeLoad(server.url)
  const profileDir = process.env["BENCH_PROFILE_DIR"]
  const writesBefore = socketWrites
  const pids = { caller: process.pid, responder: responderPid, "nats-server": server.pid }
  const cpuBefore = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuMicros(pid)]))
  const round = yield* (profileDir === undefined || profileDir.length === 0
    ? load
    : Effect.scoped(Effect.zipRight(cpuProfile(join(profileDir, `caller-${mode}.cpuprofile`)), load)))
  const writes = socketWrites - writesBefore
  const cpu = Object.entries(pids).map(([name, pid]) =>
    `${name} ${((cpuMicros(pid) - cpuBefore[name]!) / Math.max(round.ops, 1)).toFixed(1)}`
  )
  console.log(
    `${mode}, ${callers} in flight: ${Math.round(round.ops / round.millis * 1000)} req/s over ${
      (round.millis / 1000).toFixed(1)
    } s, ${round.failures} failed; ${writes} socket writes, ${
      (round.ops / Math.max(writes, 1)).toFixed(1)
    } requests per write`
  )
  console.log(`  CPU µs per request: ${cpu.join(", ")}`)
}).pipe(Effect.scoped, Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)))

Effect.runPromise(program).then(
  () => setTimeout(() => process.exit(0), 2_000).unref(),
  (error) => {
    console.error(error)
    process.exitCode = 1
  }
)
