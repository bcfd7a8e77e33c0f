/**
 * The Troupe tour: a few actors and a service on one embedded in-memory node.
 *
 *   npm start
 *
 * Each step prints what it does and what came back. Read top to bottom: declarations first
 * (protocols as `Rpc.make`), then the handlers (`Actor.toLayer`), then the program that talks
 * to them through typed clients (`Actor.client`).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Rpc } from "@effect/rpc"
import { Console, Effect, Layer, Logger, LogLevel, Ref, Schedule, Schema } from "effect"
import { Actor, Node } from "../src/index.ts"

// ---- protocols ------------------------------------------------------------------------------

/** A declared, typed error: it reaches the caller as a value it can `catchTag`. */
class NotEnough extends Schema.TaggedError<NotEnough>()("NotEnough", {
  have: Schema.Number,
  wanted: Schema.Number
}) {}

/** An actor kind: one instance per id, one message at a time, state of its own. */
const Counter = Actor.make("Counter", [
  Rpc.make("Increment", { payload: { by: Schema.Number }, success: Schema.Number }),
  Rpc.make("Decrement", { payload: { by: Schema.Number }, success: Schema.Number, error: NotEnough }),
  Rpc.make("Get", { success: Schema.Number }),
  Rpc.make("Slow", { payload: { millis: Schema.Number } }),
  Rpc.make("Crash")
])

/** A service: no ids, any instance serves any request, handlers may run concurrently. */
const Greeter = Actor.service("Greeter", [
  Rpc.make("Greet", { payload: { name: Schema.String }, success: Schema.String })
])

/** A worker with a deliberately tiny mailbox, to show back-pressure. */
const Worker = Actor.make("Worker", [
  Rpc.make("Work", { payload: { job: Schema.Number } })
])

// ---- handlers -------------------------------------------------------------------------------

const CounterLive = Actor.toLayer(
  Counter,
  Effect.gen(function*() {
    // runs once per activation of an id (and again after a supervised restart)
    const { id } = yield* Actor.CurrentAddress
    const count = yield* Ref.make(0)
    yield* Console.log(`    [Counter ${id}] activated with count 0`)
    yield* Effect.addFinalizer(() => Console.log(`    [Counter ${id}] scope closed`))
    return {
      Increment: ({ by }) => Ref.updateAndGet(count, (n) => n + by),
      Decrement: ({ by }) =>
        Effect.flatMap(Ref.get(count), (have) =>
          have < by
            ? Effect.fail(new NotEnough({ have, wanted: by }))
            : Ref.updateAndGet(count, (n) => n - by)),
      Get: () => Ref.get(count),
      Slow: ({ millis }) =>
        Effect.sleep(millis).pipe(
          Effect.onInterrupt(() => Console.log(`    [Counter ${id}] slow handler interrupted`))
        ),
      Crash: () => Effect.die(new Error("the counter tripped over a bug"))
    }
  }),
  // restart after a defect every 50 ms, at most 3 times in a row (default: exponential from 100 ms, 5 times)
  { supervision: Schedule.spaced("50 millis").pipe(Schedule.intersect(Schedule.recurs(3))) }
)

const GreeterLive = Actor.toLayer(
  Greeter,
  Effect.succeed({
    // every handler gets its payload and the message's headers
    Greet: ({ name }, { headers }) => Effect.succeed(`Hello, ${name}! (asked by ${headers["x-caller"] ?? "someone"})`)
  })
)

const WorkerLive = Actor.toLayer(
  Worker,
  Effect.succeed({
    Work: ({ job }) => Effect.sleep("100 millis").pipe(Effect.zipRight(Console.log(`    [Worker] finished job ${job}`)))
  }),
  { mailboxCapacity: 2 }
)

// ---- the program ----------------------------------------------------------------------------

const program = Effect.gen(function*() {
  const counter = yield* Actor.client(Counter) // (id) => typed client
  const greeter = yield* Actor.client(Greeter) // a service's client is the typed client itself
  const worker = yield* Actor.client(Worker)

  yield* Console.log("1. ask: request/reply, typed end to end")
  yield* Console.log(`    Increment c-1 by 2 -> ${yield* counter("c-1").Increment({ by: 2 })}`)
  yield* Console.log(`    Increment c-1 by 3 -> ${yield* counter("c-1").Increment({ by: 3 })}`)

  yield* Console.log("2. tell: fire and forget (messages from one sender stay in order)")
  yield* Actor.tell(counter("c-1").Increment({ by: 1 }))
  yield* Console.log(`    told Increment by 1; Get c-1 -> ${yield* counter("c-1").Get()}`)

  yield* Console.log("3. a service, with headers")
  yield* Console.log(`    ${yield* greeter.Greet({ name: "Ada" }, { headers: { "x-caller": "the demo" } })}`)

  yield* Console.log("4. a typed error declared in the Rpc")
  yield* counter("c-1").Decrement({ by: 100 }).pipe(
    Effect.flatMap((n) => Console.log(`    Decrement -> ${n}`)),
    Effect.catchTag("NotEnough", (e) => Console.log(`    NotEnough: have ${e.have}, wanted ${e.wanted}`))
  )

  yield* Console.log("5. a per-call timeout cancels the handler")
  yield* counter("c-1").Slow({ millis: 5_000 }, { timeout: "200 millis" }).pipe(
    Effect.catchTag(
      "AskTimeout",
      (e) => Console.log(`    AskTimeout after ${e.elapsedMillis} ms (${e.kind}/${e.id}.${e.tag})`)
    )
  )

  yield* Console.log("6. Effect.timeout on the caller interrupts the handler too")
  yield* counter("c-1").Slow({ millis: 5_000 }).pipe(
    Effect.timeout("200 millis"),
    Effect.catchTag("TimeoutException", () => Console.log("    TimeoutException on the caller side"))
  )
  yield* Console.log(`    the actor carries on: Get c-1 -> ${yield* counter("c-1").Get()}`)

  yield* Console.log("7. a defect: RemoteDefect at the caller, then a supervised restart with fresh state")
  yield* Console.log(`    Increment c-2 by 5 -> ${yield* counter("c-2").Increment({ by: 5 })}`)
  yield* counter("c-2").Crash().pipe(
    Effect.catchTag("RemoteDefect", (e) => Console.log(`    RemoteDefect: ${e.defect} (on ${e.node})`))
  )
  // this message waits in the mailbox while the actor restarts
  yield* Console.log(`    Get c-2 after the restart -> ${yield* counter("c-2").Get()}`)
  yield* Console.log(`    c-1 was not affected: Get c-1 -> ${yield* counter("c-1").Get()}`)

  yield* Console.log("8. a bounded mailbox: MailboxFull instead of unbounded memory")
  yield* worker("w-1").Work({ job: 0 }) // activates the worker
  for (const job of [1, 2, 3, 4]) {
    // job 1 runs at once, jobs 2 and 3 wait in the mailbox (capacity 2), job 4 is refused
    yield* Actor.tell(worker("w-1").Work({ job })).pipe(
      Effect.zipRight(Console.log(`    tell job ${job}: accepted`)),
      Effect.catchTag("MailboxFull", (e) => Console.log(`    tell job ${job}: MailboxFull (capacity ${e.capacity})`))
    )
  }

  yield* Console.log("9. shutdown: the node lets accepted work finish, then closes every actor's scope")
})

// Everything outside an actor is a Layer: the kinds hosted on one embedded in-memory node.
const App = Layer.mergeAll(CounterLive, GreeterLive, WorkerLive).pipe(Layer.provideMerge(Node.inMemory))

program.pipe(
  Effect.provide(App),
  Effect.zipRight(Console.log("done")),
  // keep the output to the demo's own lines (the runtime logs restarts at INFO)
  Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)),
  NodeRuntime.runMain
)
