/**
 * A node for `monitor-state.ts` to watch: it joins, serves a Greeter service and a Counter actor,
 * drains (stops serving) after `DRAIN_AFTER` seconds and leaves after `LEAVE_AFTER` seconds
 * (or on Ctrl-C).
 *
 *   npx tsx examples/cluster-node.ts nats://127.0.0.1:4222 worker-1
 */
import { Rpc } from "@effect/rpc"
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Logger, LogLevel, Ref, Schema } from "effect"
import { Actor, Codec, Discovery, Node, Transport } from "../src/index.ts"

const url = process.argv[2] ?? "nats://127.0.0.1:4222"
const name = process.argv[3] ?? "worker"
const drainAfter = Number(process.env["DRAIN_AFTER"] ?? 10)
const leaveAfter = Number(process.env["LEAVE_AFTER"] ?? 15)
const namespace = process.env["TROUPE_NAMESPACE"] ?? "default"

const Greeter = Actor.service("Greeter", [
  Rpc.make("Hello", { payload: { name: Schema.String }, success: Schema.String })
])
const Counter = Actor.make("Counter", [
  Rpc.make("Increment", { payload: { by: Schema.Number }, success: Schema.Number })
])

const Kinds = Layer.mergeAll(
  Actor.toLayer(Greeter, Effect.succeed({ Hello: ({ name: who }) => Effect.succeed(`Hello, ${who}! (from ${name})`) })),
  Actor.toLayer(
    Counter,
    Effect.gen(function*() {
      const count = yield* Ref.make(0)
      return { Increment: ({ by }) => Ref.updateAndGet(count, (n) => n + by) }
    })
  )
)

const NodeLive = Kinds.pipe(
  Layer.provideMerge(Node.layer({ name })),
  Layer.provide(Layer.provideMerge(
    Discovery.nats({ heartbeat: "500 millis" }),
    Transport.nats({ servers: url, namespace, name }).pipe(Layer.provide(Codec.msgpack))
  ))
)

Effect.gen(function*() {
  const node = yield* Node.Node
  console.log(`${name}: up as ${node.nodeId}, hosting ${node.kinds().join(", ")}`)
  yield* Effect.sleep(`${drainAfter} seconds`)
  yield* node.setServing(false)
  console.log(`${name}: draining (no new routes)`)
  yield* Effect.sleep(`${Math.max(0, leaveAfter - drainAfter)} seconds`)
  console.log(`${name}: leaving`)
}).pipe(
  Effect.provide(NodeLive),
  Logger.withMinimumLogLevel(LogLevel.Warning),
  NodeRuntime.runMain
)
