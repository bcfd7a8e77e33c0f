/**
 * Prints the discovery state of a Troupe namespace every 500 ms: which nodes are up, what they
 * host, whether they serve, when they were last heard from.
 *
 *   nats-server -p 4222 &
 *   npx tsx examples/monitor-state.ts nats://127.0.0.1:4222
 *   npx tsx examples/cluster-node.ts nats://127.0.0.1:4222 worker-1   # in other terminals
 *
 * env: TROUPE_NAMESPACE (default "default"), TROUPE_ADDRESS_REMAP (see docs/discovery.md)
 */
import { NodeRuntime } from "@effect/platform-node"
import { Clock, Effect, Layer, Schedule } from "effect"
import { Codec, Discovery, Transport } from "../src/index.ts"

const url = process.argv[2] ?? "nats://127.0.0.1:4222"
const namespace = process.env["TROUPE_NAMESPACE"] ?? "default"

const Monitor = Discovery.nats({ heartbeat: "500 millis" }).pipe(
  Layer.provide(Transport.nats({ servers: url, namespace, name: "troupe-monitor" })),
  Layer.provide(Codec.msgpack)
)

const render = (state: Discovery.DiscoveryState, now: number): string => {
  const rows = state.members.map((m) =>
    [
      m.name.padEnd(12),
      m.nodeId.padEnd(24),
      (m.isServing ? "serving" : "draining").padEnd(9),
      m.status.padEnd(8),
      `${((now - m.lastSeen) / 1000).toFixed(1)}s ago`.padEnd(10),
      m.address.padEnd(28),
      m.kinds.join(",")
    ].join(" ")
  )
  const header = `${
    new Date(now).toISOString()
  }  ${url} namespace=${namespace}  members=${state.members.length}  lastUpdated=${
    state.lastUpdated === 0 ? "-" : new Date(state.lastUpdated).toISOString()
  }`
  return [header, ...(rows.length > 0 ? rows : ["  (no nodes)"]), ""].join("\n")
}

Effect.gen(function*() {
  const state = yield* Discovery.state
  const now = yield* Clock.currentTimeMillis
  console.log(render(state, now))
}).pipe(
  Effect.repeat(Schedule.spaced("500 millis")),
  Effect.provide(Monitor),
  NodeRuntime.runMain
)
