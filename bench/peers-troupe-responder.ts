/**
 * The Troupe responder of the peers suite, run in its own process:
 * `node --import tsx bench/peers-troupe-responder.ts <url>`, with `BENCH_CODEC=json` or
 * `msgpack` (the default).
 *
 * A Troupe node written as a user would write it: `Node.layerNats` (heartbeat discovery
 * included) with the codec, hosting the `Peer` service (`Add: ({ a, b }) => a + b`) in the
 * namespace of its codec. It also counts the events of `PeerEvent` with
 * `Topic.subscribe(PeerEvent, { bufferSize: EVENTS })` and `Stream.runForEach`, and follows the
 * round protocol of `topics-events.ts` on `PeerControl` (drops, if any, are counted from
 * `troupe_topic_dropped`).
 *
 * Prints `ready` once both topic subscriptions are live; SIGTERM interrupts the program, which
 * closes the node and exits. `BENCH_CPU_PROFILE=<file>` writes a CPU profile of the process
 * there when it is stopped.
 *
 * @since 0.5.0
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
import { EVENTS, PeerControl, PeerEvent, PeerLive, TROUPE_NAMESPACE } from "./peers-kinds.ts"
import { type Control, doneLine, roundLine } from "./topics-events.ts"

const [url] = process.argv.slice(2)
if (url === undefined) {
  console.error("usage: peers-troupe-responder.ts <nats-url>   (BENCH_CODEC=json|msgpack)")
  process.exit(2)
}
const codec = process.env["BENCH_CODEC"] === "json" ? "json" : "msgpack"

const droppedSoFar = Effect.map(Metric.value(droppedEvents), (state) => state.count)

const program = Effect.gen(function*() {
  const node = yield* Layer.build(PeerLive.pipe(Layer.provideMerge(
    Node.layerNats({ servers: url, name: `peers-troupe-${codec}`, namespace: TROUPE_NAMESPACE[codec], codec })
  )))
  const bus = Context.get(node, Topic.TopicBus)
  // `BENCH_CPU_PROFILE=file.cpuprofile`: profile this process from now until it is stopped
  const profilePath = process.env["BENCH_CPU_PROFILE"]
  if (profilePath !== undefined && profilePath.length > 0) yield* cpuProfile(profilePath)

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

  const count = Topic.subscribe(PeerEvent, { bufferSize: EVENTS }).pipe(
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
  const control = Topic.subscribe(PeerControl).pipe(Stream.runForEach((event) => onControl(event.value)))
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
    yield* Effect.sync(() => console.log("ready"))
    return yield* Effect.never
  })
  yield* Effect.all([count, control, watchDrops, announce], { concurrency: "unbounded", discard: true }).pipe(
    Effect.provide(node)
  )
}).pipe(Effect.scoped, Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)))

NodeRuntime.runMain(program)
