/**
 * A load driver for the peers' request/response over NATS: one nats-server, one responder in a
 * child process (`peers-troupe-responder.ts` or `peers-moleculer-responder.ts`), one caller here
 * asking `PAYLOAD` for `seconds` with `callers` in flight. It reports the CPU time per request
 * of each process (this caller, the responder, the nats-server, from `/proc/<pid>/stat`, user and
 * system apart), and this process's garbage-collection pauses per request: on a
 * shared machine that is steadier than a rate, and it is what decides the rate when the cores
 * are busy. Mode `moleculer` runs Moleculer's `broker.call` (NATS transporter, JSON), modes
 * `msgpack` and `json` Troupe's `peer.Add` with that codec, as the peers suite writes them.
 *
 * ```sh
 * npx tsx bench/peers-profile.ts moleculer 100 8     # or msgpack, json; callers; seconds
 * mkdir -p /tmp/prof
 * BENCH_PROFILE_DIR=/tmp/prof npx tsx bench/peers-profile.ts msgpack 1 8
 * npx tsx bench/profile-top.ts /tmp/prof/peers-caller-msgpack.cpuprofile
 * npx tsx bench/profile-top.ts /tmp/prof/peers-troupe-responder-msgpack.cpuprofile
 * ```
 * With `BENCH_PROFILE_DIR`, this process profiles the measured load (not the start-up nor the
 * warm-up) and a Troupe responder profiles itself from when it is serving until it is stopped.
 *
 * @since 0.5.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Schedule from "effect/Schedule"
import { join } from "node:path"
import { PerformanceObserver } from "node:perf_hooks"
import { Actor, Discovery, Node } from "../src/index.ts"
import { readFileSync } from "node:fs"
import { cpuProfile } from "./cpu-profile.ts"
import { type Budget, concurrent, concurrentPromises, type Round, sequential } from "./harness.ts"
import { child, natsServer, ready } from "./nats.ts"
import { moleculerBroker } from "./peers-nats.ts"
import { ANSWER, MOLECULER_ACTION, MOLECULER_NAMESPACE, PAYLOAD, Peer, TROUPE_NAMESPACE } from "./peers-kinds.ts"

const modes = ["moleculer", "msgpack", "json"] as const
const mode: (typeof modes)[number] = modes.find((m) => m === process.argv[2]) ?? "msgpack"
const callers = Number(process.argv[3] ?? 100)
const seconds = Number(process.argv[4] ?? 8)

/** user and system CPU time of process `pid` so far, in µs (`/proc/<pid>/stat`, fields 14 and 15) */
const cpuOf = (pid: number): { readonly user: number; readonly system: number } => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return { user: Number(fields[11]) * 1e4, system: Number(fields[12]) * 1e4 }
}

const sequentialPromises = async (budget: Budget, op: () => Promise<unknown>): Promise<Round> => {
  let ops = 0
  let failures = 0
  const start = performance.now()
  const deadline = start + budget.maxMillis
  for (let i = 0; i < budget.maxOps; i++) {
    try {
      await op()
      ops++
    } catch {
      failures++
    }
    if ((i & 127) === 127 && performance.now() > deadline) break
  }
  return { ops, failures, millis: performance.now() - start }
}

/** The load for `seconds`, after a warm-up, as an Effect, with the responder's pid. */
const makeLoad = (url: string) =>
  Effect.gen(function*() {
    const budget = { maxOps: Number.MAX_SAFE_INTEGER, maxMillis: seconds * 1000 }
    const warmUp = { maxOps: 5_000, maxMillis: 5_000 }
    if (mode === "moleculer") {
      const responder = yield* child("peers-moleculer-responder.ts", [url])
      yield* ready(responder, "Moleculer responder")
      const broker = yield* moleculerBroker({
        namespace: MOLECULER_NAMESPACE,
        nodeID: "peers-profile-moleculer-caller",
        transporter: { type: "NATS", options: { url } },
        serializer: "JSON"
      })
      yield* Effect.tryPromise(() => broker.waitForServices([MOLECULER_ACTION.split(".")[0]!], 20_000))
      const call = () => broker.call(MOLECULER_ACTION, PAYLOAD)
      const round = (budget: Budget) =>
        Effect.promise(() =>
          callers === 1 ? sequentialPromises(budget, call) : concurrentPromises(budget, callers, call)
        )
      yield* round(warmUp)
      return { load: round(budget), responderPid: responder.pid }
    }
    const responder = yield* child("peers-troupe-responder.ts", [url], { BENCH_CODEC: mode })
    yield* ready(responder, `Troupe ${mode} responder`)
    const node = yield* Layer.build(
      Node.layerNats({
        servers: url,
        name: `peers-profile-caller-${mode}`,
        namespace: TROUPE_NAMESPACE[mode],
        codec: mode
      })
    )
    yield* Effect.provide(Discovery.awaitServing(Peer.kind, { timeout: "20 seconds" }), node)
    const peer = yield* Effect.provide(Actor.client(Peer), node)
    const answer = yield* peer.Add(PAYLOAD, { timeout: "1 second" }).pipe(
      Effect.retry(Schedule.intersect(Schedule.spaced("100 millis"), Schedule.recurs(100)))
    )
    if (answer !== ANSWER) return yield* Effect.dieMessage(`the responder answered ${answer}`)
    const ask = () => peer.Add(PAYLOAD)
    yield* concurrent(warmUp, 100, ask)
    return {
      load: callers === 1 ? sequential(budget, ask) : concurrent(budget, callers, ask),
      responderPid: responder.pid
    }
  })

const program = Effect.gen(function*() {
  const server = yield* natsServer
  const { load, responderPid } = yield* makeLoad(server.url)
  const profileDir = process.env["BENCH_PROFILE_DIR"]
  const pids = { caller: process.pid, responder: responderPid, "nats-server": server.pid }
  let gcMillis = 0
  const gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcMillis += entry.duration
  })
  gc.observe({ entryTypes: ["gc"] })
  const cpuBefore = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuOf(pid)]))
  const round = yield* (profileDir === undefined || profileDir.length === 0
    ? load
    : Effect.scoped(Effect.zipRight(cpuProfile(join(profileDir, `peers-caller-${mode}.cpuprofile`)), load)))
  gc.disconnect()
  const ops = Math.max(round.ops, 1)
  const perRequest = Object.entries(pids).map(([name, pid]) => {
    const after = cpuOf(pid)
    const before = cpuBefore[name]!
    return [name, (after.user - before.user) / ops, (after.system - before.system) / ops] as const
  })
  const total = perRequest.reduce((sum, [, user, system]) => sum + user + system, 0)
  console.log(
    `${mode}, ${callers} in flight: ${Math.round(round.ops / round.millis * 1000)} req/s over ${
      (round.millis / 1000).toFixed(1)
    } s, ${round.failures} failed`
  )
  console.log(
    `  CPU µs per request: ${
      perRequest.map(([name, user, system]) =>
        `${name} ${(user + system).toFixed(1)} (user ${user.toFixed(1)}, sys ${system.toFixed(1)})`
      ).join(", ")
    }, total ${total.toFixed(1)}`
  )
  console.log(`  caller GC pauses: ${(gcMillis * 1000 / ops).toFixed(1)} µs per request`)
}).pipe(Effect.scoped, Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)))

Effect.runPromise(program).then(
  () => setTimeout(() => process.exit(0), 2_000).unref(),
  (error) => {
    console.error(error)
    process.exitCode = 1
  }
)
