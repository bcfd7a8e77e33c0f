/**
 * The node whose discovery CPU the peers suite measures, run in its own process:
 * `node --import tsx bench/peers-discovery-node.ts <url>`.
 *
 * A Troupe node as a user would start it (`Node.layerNats`, MessagePack, default heartbeat
 * period) hosting `Counter`, in the namespace `DISCOVERY_NAMESPACE`, doing nothing but
 * discovery. Every 250 ms it prints `cpu <performance.now()> <user+system CPU µs> <members>
 * <changes>` (`process.cpuUsage()` of this process, the members its discovery lists, and how
 * many times its discovery state has changed since it started), from which the
 * suite computes the CPU spent per second over a window. Prints `ready` once the node is built;
 * SIGTERM closes the node and exits. `BENCH_CPU_PROFILE=<file>` writes a CPU profile of the
 * process there when it is stopped (`BENCH_PROFILE_DIR=dir` sets it from the suite).
 *
 * @since 0.5.0
 */
import { NodeRuntime } from "@effect/platform-node"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { Discovery, Node } from "../src/index.ts"
import { CounterLive } from "./actors.ts"
import { cpuProfile } from "./cpu-profile.ts"
import { DISCOVERY_NAMESPACE } from "./peers-kinds.ts"

const [url] = process.argv.slice(2)
if (url === undefined) {
  console.error("usage: peers-discovery-node.ts <nats-url>")
  process.exit(2)
}

/**
 * A `cpu` line.
 *
 * @since 0.5.0
 */
export const cpuLine = (members: number, changes: number): string => {
  const usage = process.cpuUsage()
  return `cpu ${performance.now().toFixed(3)} ${usage.user + usage.system} ${members} ${changes}`
}

const program = Effect.gen(function*() {
  const node = yield* Layer.build(CounterLive.pipe(Layer.provideMerge(
    Node.layerNats({ servers: url, name: "peers-discovery-node", namespace: DISCOVERY_NAMESPACE, codec: "msgpack" })
  )))
  // `BENCH_CPU_PROFILE=file.cpuprofile`: profile this process from now until it is stopped
  const profilePath = process.env["BENCH_CPU_PROFILE"]
  if (profilePath !== undefined && profilePath.length > 0) yield* cpuProfile(profilePath)
  yield* Effect.sync(() => console.log("ready"))
  const discovery = Context.get(node, Discovery.Discovery)
  let changes = 0
  yield* Effect.forkScoped(Stream.runForEach(discovery.changes, () => Effect.sync(() => changes++)))
  const report = Effect.sync(() => console.log(cpuLine(discovery.unsafeState().members.length, changes)))
  return yield* Effect.repeat(report, Schedule.fixed("250 millis"))
}).pipe(Effect.scoped, Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)))

NodeRuntime.runMain(program)
