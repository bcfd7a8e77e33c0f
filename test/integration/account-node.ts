/**
 * A node in its own OS process hosting the durable `Account` kind of `test/fixtures/account.ts`
 * over NATS, with its state in the JetStream key-value store (`Node.layerNats({ persistence })`).
 * Prints `{"event":"ready",...}` once serving, and one `{"event":"billed",...}` line per Bill run.
 *
 * env: NATS_URL, NODE_NAME, NAMESPACE, BUCKET, HEARTBEAT_MS (default 250), ASK_TIMEOUT_MS (default 10000)
 */
import { NodeRuntime } from "@effect/platform-node"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Node from "../../src/runtime/Node.ts"
import { accountLayer, makeAccountLog } from "../fixtures/account.ts"

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback
  if (value === undefined) throw new Error(`${name} is required`)
  return value
}

const name = env("NODE_NAME", "account-node")
const print = (event: string, detail: Record<string, unknown> = {}) =>
  process.stdout.write(`${JSON.stringify({ event, node: name, ...detail })}\n`)

const log = makeAccountLog()
const billed = log.billed
billed.push = (...plans: Array<string>) => {
  for (const plan of plans) print("billed", { plan, at: Date.now() })
  return Array.prototype.push.apply(billed, plans)
}

const NodeLive = accountLayer(log, { label: name }).pipe(
  Layer.provideMerge(Node.layerNats({
    servers: env("NATS_URL"),
    namespace: env("NAMESPACE", "durable"),
    name,
    heartbeat: Duration.millis(Number(env("HEARTBEAT_MS", "250"))),
    askTimeout: Duration.millis(Number(env("ASK_TIMEOUT_MS", "10000"))),
    shutdownTimeout: "2 seconds",
    persistence: { bucket: env("BUCKET", "troupe") }
  }))
)

Effect.gen(function*() {
  const node = yield* Node.Node
  print("ready", { nodeId: node.nodeId })
  return yield* Effect.never
}).pipe(
  Effect.provide(NodeLive),
  Effect.ensuring(Effect.sync(() => print("stopped"))),
  Logger.withMinimumLogLevel(LogLevel.Warning),
  NodeRuntime.runMain
)
