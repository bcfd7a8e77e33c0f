/**
 * The Troupe subscriber of the topics suite, run in its own process:
 * `node --import tsx bench/topics-subscriber.ts <url> <bufferSize>`.
 *
 * A Troupe node over NATS (`Node.layerNats`, MessagePack, namespace `bench`) counts the events of
 * `orders.placed` with `Topic.subscribe(OrderPlaced, { bufferSize })` and `Stream.runForEach`,
 * and follows the round protocol of `topics-events.ts` on the topic `bench.control`: prints
 * `round <r>` on `start`, and `done <r> <received> <dropped>` once `expect` events have arrived
 * or been dropped (a full buffer drops, counted in `troupe_topic_dropped`), or on `report`.
 * Prints `ready` once both subscriptions are live (`subscriptionCount() === 2`); SIGTERM
 * interrupts the program, which closes the node and exits. `BENCH_CPU_PROFILE=<file>` writes a
 * CPU profile of the process there when it is stopped.
 *
 * @since 0.1.0
 */
import { NodeRuntime } from "@effect/platform-node"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { Node, Topic } from "../src/index.ts"
import { droppedEvents } from "../src/runtime/internal/topics.ts"
import { cpuProfile } from "./cpu-profile.ts"
import { BenchControl, type Control, doneLine, NAMESPACE, OrderPlaced, roundLine } from "./topics-events.ts"

const [url, bufferArg] = process.argv.slice(2)
const bufferSize = Number(bufferArg)
if (url === undefined || !Number.isInteger(bufferSize) || bufferSize < 1) {
  console.error("usage: topics-subscriber.ts <nats-url> <bufferSize>")
  process.exit(2)
}

const droppedSoFar = Effect.map(Metric.value(droppedEvents), (state) => state.count)

const program = Effect.gen(function*() {
  const node = yield* Layer.build(
    Node.layerNats({ servers: url, name: "bench-topics-subscriber", namespace: NAMESPACE, codec: "msgpack" })
  )
  const bus = Context.get(node, Topic.TopicBus)

  let round = -1
  let expect = Number.POSITIVE_INFINITY
  let received = 0
  let droppedAtStart = 0
  let dropped = 0
  let open = false
  const finish = () => {
    open = false
    console.log(doneLine(round, received, dropped))
  }

  const count = Topic.subscribe(OrderPlaced, { bufferSize }).pipe(
    Stream.runForEach(() =>
      Effect.sync(() => {
        received++
        if (open && received + dropped >= expect) finish()
      })
    )
  )

  const onControl = (control: Control) =>
    Effect.map(droppedSoFar, (total) => {
      if (control.command === "start") {
        round = control.round
        expect = control.expect
        received = 0
        droppedAtStart = total
        dropped = 0
        open = true
        console.log(roundLine(round))
      } else if (control.round === round) {
        dropped = total - droppedAtStart
        finish()
      }
    })
  const control = Topic.subscribe(BenchControl).pipe(Stream.runForEach((event) => onControl(event.value)))

  // dropped events never reach the stream: notice them from the counter
  const watchDrops = Effect.repeat(
    Effect.flatMap(droppedSoFar, (total) =>
      Effect.sync(() => {
        if (!open) return
        dropped = total - droppedAtStart
        if (received + dropped >= expect) finish()
      })),
    Schedule.spaced("20 millis")
  )

  const announce = Effect.gen(function*() {
    yield* Effect.repeat(Effect.sync(() => bus.subscriptionCount()), {
      until: (live) => live === 2,
      schedule: Schedule.spaced("10 millis")
    })
    // `BENCH_CPU_PROFILE=file.cpuprofile`: profile this process from now until it is stopped
    const profilePath = process.env["BENCH_CPU_PROFILE"]
    if (profilePath !== undefined && profilePath.length > 0) yield* cpuProfile(profilePath)
    yield* Effect.sync(() => console.log("ready"))
    return yield* Effect.never
  })

  yield* Effect.all([count, control, watchDrops, announce], { concurrency: "unbounded", discard: true }).pipe(
    Effect.provide(node)
  )
}).pipe(Effect.scoped, Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)))

NodeRuntime.runMain(program)
