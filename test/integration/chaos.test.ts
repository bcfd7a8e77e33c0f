/**
 * Chaos over real servers: nats-server processes SIGKILLed and restarted under load, a
 * responder process SIGKILLed, a server of a 3-server cluster SIGKILLed, and a long run of asks
 * whose memory must not grow. Every load loop is bounded in count and in time; every failure
 * must be typed (a defect or an interruption fails the test); the figures are printed.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { Session } from "node:inspector"
import * as Path from "node:path"
import * as Actor from "../../src/actors/Actor.ts"
import type { ActorSystem } from "../../src/actors/ActorSystem.ts"
import * as Codec from "../../src/layers/Codec.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as Transport from "../../src/layers/Transport.ts"
import * as Node from "../../src/runtime/Node.ts"
import { type NatsServer, spawnNode, startNatsCluster, startNatsServer } from "../fixtures/nats.ts"
import { makeProbeState, Probe, probeLayer, ProbeService } from "../fixtures/probe.ts"

const script = Path.join(import.meta.dirname, "../fixtures/troupe-node.ts")

/** the errors a caller may see while servers and nodes die: anything else fails the test */
const TYPED = ["TransportError", "AskTimeout", "NoAvailableNode"]

/** a node in this process over NATS, with its transport in the context (to watch the connection) */
const natsNode = (options: {
  readonly servers: string | ReadonlyArray<string>
  readonly namespace: string
  readonly name: string
  readonly heartbeat: Duration.DurationInput
  readonly askTimeout?: Duration.DurationInput
  readonly kinds?: Layer.Layer<never, never, ActorSystem>
}) =>
  Layer.build(
    (options.kinds ?? Layer.empty).pipe(
      Layer.provideMerge(Node.layer({ name: options.name, askTimeout: options.askTimeout ?? "2 seconds" })),
      Layer.provideMerge(Layer.provideMerge(
        Discovery.nats({ heartbeat: options.heartbeat }),
        Transport.nats({ servers: options.servers, namespace: options.namespace, name: options.name }).pipe(
          Layer.provide(Codec.msgpack)
        )
      )),
      Layer.orDie
    )
  )

/** a responder in its own process (Probe and ProbeService, answering `Whoami` with its name) */
const responder = (url: string, namespace: string, name: string, heartbeat: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const child = spawnNode(script, [], {
        NATS_URL: url,
        NODE_NAME: name,
        NAMESPACE: namespace,
        HEARTBEAT: heartbeat
      })
      await child.waitForLine(/"event":"ready"/, 20_000)
      return child
    }),
    (child) => Effect.promise(() => child.stop())
  )

/** the wall-clock times of the connection events of a node's transport */
const connectionEvents = (context: Context.Context<Transport.Transport>) =>
  Effect.gen(function*() {
    const events: Array<{ readonly event: Transport.TransportEvent; readonly at: number }> = []
    yield* Context.get(context, Transport.Transport).watch((event) => events.push({ event, at: Date.now() }))
    return events
  })

interface Outcome {
  readonly startedAt: number
  readonly endedAt: number
  /** "ok" or the error's tag */
  readonly tag: string
}

/**
 * `workers` loops of asks, each ask bounded by its timeout, until `stop()` or `maxAsks` in all.
 * A defect or an interruption (not a typed failure) is recorded as `"defect"`.
 */
const load = (
  ask: (i: number) => Effect.Effect<unknown, { readonly _tag: string }>,
  options: {
    readonly workers: number
    readonly maxAsks: number
    readonly stop: () => boolean
    readonly pause: Duration.DurationInput
  }
) =>
  Effect.gen(function*() {
    const outcomes: Array<Outcome> = []
    let next = 0
    const fiber = yield* Effect.fork(Effect.forEach(
      Array.from({ length: options.workers }, (_, w) => w),
      () =>
        Effect.gen(function*() {
          while (!options.stop() && next < options.maxAsks) {
            const i = next++
            const startedAt = Date.now()
            const exit = yield* Effect.exit(ask(i))
            const tag = Exit.isSuccess(exit)
              ? "ok"
              : Option.match(Cause.failureOption(exit.cause), { onNone: () => "defect", onSome: (error) => error._tag })
            outcomes.push({ startedAt, endedAt: Date.now(), tag })
            yield* Effect.sleep(options.pause)
          }
        }),
      { concurrency: options.workers, discard: true }
    ))
    return { outcomes, fiber }
  })

const tally = (outcomes: ReadonlyArray<Outcome>) => {
  const counts: Record<string, number> = {}
  for (const { tag } of outcomes) counts[tag] = (counts[tag] ?? 0) + 1
  return counts
}

const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

const waitUntil = (condition: () => boolean, timeoutMillis: number, what: string) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMillis
    while (!condition()) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`${what} did not happen within ${timeoutMillis} ms`)
      yield* Effect.sleep("10 millis")
    }
  })

/** which nodes of `kind` the caller sees serving */
const serving = (context: Context.Context<Discovery.Discovery>, kind: string) =>
  Discovery.servingMembers(Context.get(context, Discovery.Discovery).unsafeState(), kind).length

describe("chaos over real servers", () => {
  it.live(
    "nats-server SIGKILLed and restarted three times under load: no ask hangs, every failure is typed, nodes come back fast",
    () =>
      Effect.gen(function*() {
        const server: NatsServer = yield* Effect.acquireRelease(
          Effect.promise(() => startNatsServer()),
          (s) => Effect.promise(() => s.stop())
        )
        yield* responder(server.url, "chaos-restart", "responder", "1 second")
        const caller = yield* natsNode({
          servers: server.url,
          namespace: "chaos-restart",
          name: "caller",
          heartbeat: "1 second"
        })
        yield* Effect.provide(
          Effect.zip(
            Discovery.awaitServing("Probe", { timeout: "10 seconds" }),
            Discovery.awaitServing("ProbeService", { timeout: "10 seconds" })
          ),
          caller
        )
        const events = yield* connectionEvents(caller)
        const probe = yield* Effect.provide(Actor.client(Probe), caller)
        const service = yield* Effect.provide(Actor.client(ProbeService), caller)
        let stopped = false
        const traffic = yield* load(
          (i) => i % 2 === 0 ? probe(`id-${i % 50}`).Increment({ by: 1 }) : service.Increment({ by: 1 }),
          { workers: 4, maxAsks: 20_000, stop: () => stopped, pause: "5 millis" }
        )
        yield* waitUntil(() => traffic.outcomes.filter((o) => o.tag === "ok").length >= 50, 10_000, "50 asks answered")

        const rounds: Array<{ reconnect: number; firstOk: number }> = []
        for (let round = 0; round < 3; round++) {
          const before = events.filter((e) => e.event === "reconnected").length
          server.kill("SIGKILL")
          yield* Effect.sleep("1 second") // the outage
          yield* Effect.promise(() => server.restart())
          const ready = Date.now() // the restarted server accepts connections
          yield* waitUntil(
            () => events.filter((e) => e.event === "reconnected").length > before,
            10_000,
            "the reconnect"
          )
          yield* waitUntil(
            () => traffic.outcomes.some((o) => o.tag === "ok" && o.endedAt > ready),
            10_000,
            "an answered ask"
          )
          const reconnectedAt = events.filter((e) => e.event === "reconnected")[before]!.at
          const firstOkAt = Math.min(
            ...traffic.outcomes.filter((o) => o.tag === "ok" && o.endedAt > ready).map((o) => o.endedAt)
          )
          rounds.push({ reconnect: reconnectedAt - ready, firstOk: firstOkAt - ready })
          yield* Effect.sleep("500 millis") // answered traffic between the outages
        }
        stopped = true
        // every ask ends: each is bounded by its timeout (2 s), and a wait for the connection by it too
        yield* Fiber.join(traffic.fiber).pipe(
          Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("an ask hung") })
        )

        const counts = tally(traffic.outcomes)
        const longest = Math.max(...traffic.outcomes.map((o) => o.endedAt - o.startedAt))
        console.log(
          `server restarts: reconnect after the restarted server was ready ${
            rounds.map((r) => r.reconnect).join(", ")
          } ms ` +
            `(median ${median(rounds.map((r) => r.reconnect))}), first answered ask ${
              rounds.map((r) => r.firstOk).join(", ")
            } ms; ` +
            `outcomes ${JSON.stringify(counts)}; longest ask ${longest} ms`
        )
        for (const tag of Object.keys(counts)) expect(["ok", ...TYPED]).toContain(tag)
        expect((counts["TransportError"] ?? 0) + (counts["NoAvailableNode"] ?? 0)).toBeGreaterThan(0) // the outages were felt
        expect(median(rounds.map((r) => r.reconnect))).toBeLessThan(1_500)
        for (const { firstOk } of rounds) expect(firstOk).toBeLessThan(2_000)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a responder process SIGKILLed: callers' asks fail typed, then the other responder answers for its ids",
    () =>
      Effect.gen(function*() {
        const server: NatsServer = yield* Effect.acquireRelease(
          Effect.promise(() => startNatsServer()),
          (s) => Effect.promise(() => s.stop())
        )
        const [doomed] = yield* Effect.all([
          responder(server.url, "chaos-responder", "doomed", "250 millis"),
          responder(server.url, "chaos-responder", "survivor", "250 millis")
        ], { concurrency: 2 })
        const caller = yield* natsNode({
          servers: server.url,
          namespace: "chaos-responder",
          name: "caller",
          heartbeat: "250 millis"
        })
        yield* waitUntil(
          () => serving(caller, "Probe") === 2 && serving(caller, "ProbeService") === 2,
          10_000,
          "both responders serving"
        )
        const probe = yield* Effect.provide(Actor.client(Probe), caller)
        const service = yield* Effect.provide(Actor.client(ProbeService), caller)
        const ids = Array.from({ length: 40 }, (_, i) => `id-${i}`)
        // both own some ids
        const owners = yield* Effect.forEach(ids, (id) => probe(id).Whoami())
        expect(new Set(owners)).toEqual(new Set(["doomed", "survivor"]))

        let stopped = false
        const traffic = yield* load(
          (i) => i % 4 === 3 ? service.Increment({ by: 1 }) : probe(ids[i % ids.length]!).Increment({ by: 1 }),
          { workers: 4, maxAsks: 20_000, stop: () => stopped, pause: "5 millis" }
        )
        yield* waitUntil(() => traffic.outcomes.length >= 100, 10_000, "100 asks")
        doomed.kill("SIGKILL")
        const killedAt = Date.now()
        // suspicion (3 periods of 250 ms) and removal (5) of the dead one, with traffic going on
        yield* Effect.sleep("2 seconds")
        stopped = true
        yield* Fiber.join(traffic.fiber).pipe(
          Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("an ask hung") })
        )
        const after = traffic.outcomes.filter((o) => o.startedAt > killedAt)
        const counts = tally(traffic.outcomes)
        const lastFailure = Math.max(killedAt, ...after.filter((o) => o.tag !== "ok").map((o) => o.endedAt))
        console.log(
          `responder killed: outcomes ${JSON.stringify(counts)}; last failure ${
            lastFailure - killedAt
          } ms after the kill`
        )
        for (const tag of Object.keys(counts)) expect(["ok", ...TYPED]).toContain(tag)
        expect(after.filter((o) => o.tag === "ok").length).toBeGreaterThan(0)
        // every id, including those the dead one owned, answers from the survivor
        const now = yield* Effect.forEach(ids, (id) => probe(id).Whoami())
        expect(new Set(now)).toEqual(new Set(["survivor"]))
        expect(yield* service.Whoami()).toBe("survivor")
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "one server of a 3-server cluster SIGKILLed: the nodes connected to it fail over and asks resume",
    () =>
      Effect.gen(function*() {
        const cluster = yield* Effect.acquireRelease(
          Effect.promise(() => startNatsCluster(3)),
          (c) => Effect.promise(() => c.stop())
        )
        // both connect to server 0 only, and learn the others from it
        yield* responder(cluster.urls[0]!, "chaos-cluster", "responder", "250 millis")
        const caller = yield* natsNode({
          servers: cluster.urls[0]!,
          namespace: "chaos-cluster",
          name: "caller",
          heartbeat: "250 millis"
        })
        yield* waitUntil(
          () => serving(caller, "Probe") === 1 && serving(caller, "ProbeService") === 1,
          10_000,
          "the responder serving"
        )
        const events = yield* connectionEvents(caller)
        const probe = yield* Effect.provide(Actor.client(Probe), caller)
        const service = yield* Effect.provide(Actor.client(ProbeService), caller)
        let stopped = false
        const traffic = yield* load(
          (i) => i % 2 === 0 ? probe(`id-${i % 20}`).Increment({ by: 1 }) : service.Increment({ by: 1 }),
          { workers: 4, maxAsks: 20_000, stop: () => stopped, pause: "5 millis" }
        )
        yield* waitUntil(() => traffic.outcomes.filter((o) => o.tag === "ok").length >= 50, 10_000, "50 asks answered")
        cluster.servers[0]!.kill("SIGKILL")
        const killedAt = Date.now()
        yield* waitUntil(() => events.some((e) => e.event === "reconnected"), 10_000, "the caller's failover")
        yield* waitUntil(
          () => traffic.outcomes.some((o) => o.tag === "ok" && o.startedAt > killedAt),
          10_000,
          "an answered ask"
        )
        const failover = events.find((e) => e.event === "reconnected")!.at - killedAt
        const firstOk = Math.min(
          ...traffic.outcomes.filter((o) => o.tag === "ok" && o.startedAt > killedAt).map((o) => o.endedAt)
        ) - killedAt
        yield* Effect.sleep("500 millis")
        stopped = true
        yield* Fiber.join(traffic.fiber).pipe(
          Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("an ask hung") })
        )
        const counts = tally(traffic.outcomes)
        console.log(
          `cluster failover: reconnected ${failover} ms after the kill, first answered ask ${firstOk} ms; outcomes ${
            JSON.stringify(counts)
          }`
        )
        for (const tag of Object.keys(counts)) expect(["ok", ...TYPED]).toContain(tag)
        // both now live on the surviving servers
        const [one, two] = yield* Effect.promise(() =>
          Promise.all([cluster.servers[1]!.connectionCount(), cluster.servers[2]!.connectionCount()])
        )
        expect(one + two).toBeGreaterThanOrEqual(2)
        // the asks after the failover are answered
        const late = traffic.outcomes.filter((o) => o.startedAt > killedAt + firstOk)
        expect(late.filter((o) => o.tag === "ok").length).toBeGreaterThan(late.length / 2)
        expect(yield* probe("id-0").Get().pipe(Effect.retry({ times: 20, schedule: Schedule.spaced("100 millis") })))
          .toBeGreaterThan(0)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "50,000 asks over 1,000 actor ids through a real nats-server: the heap grows by less than 8 MiB",
    () =>
      Effect.gen(function*() {
        const server: NatsServer = yield* Effect.acquireRelease(
          Effect.promise(() => startNatsServer()),
          (s) => Effect.promise(() => s.stop())
        )
        const host = natsNode({
          servers: server.url,
          namespace: "chaos-memory",
          name: "host",
          heartbeat: "1 second",
          kinds: probeLayer(makeProbeState(), { label: "host" })
        })
        yield* host
        const caller = yield* natsNode({
          servers: server.url,
          namespace: "chaos-memory",
          name: "caller",
          heartbeat: "1 second"
        })
        yield* waitUntil(() => serving(caller, "Probe") === 1, 10_000, "the host serving")
        const probe = yield* Effect.provide(Actor.client(Probe), caller)
        const run = (count: number) =>
          Effect.forEach(
            Array.from({ length: count }, (_, i) => i),
            (i) => probe(`id-${i % 1_000}`).Increment({ by: 1 }, { timeout: "10 seconds" }),
            { concurrency: 100, discard: true }
          )
        // every actor active, every table at its working size
        yield* run(5_000)
        const baseline = yield* liveBytes
        const started = Date.now()
        yield* run(50_000)
        const elapsed = Date.now() - started
        const after = yield* liveBytes
        const growth = after - baseline
        console.log(
          `50k asks over 1,000 ids in ${elapsed} ms: live heap + buffers ${
            (baseline / 2 ** 20).toFixed(1)
          } MiB before, ` +
            `${(after / 2 ** 20).toFixed(1)} MiB after (growth ${(growth / 2 ** 20).toFixed(2)} MiB)`
        )
        expect(growth).toBeLessThan(8 * 2 ** 20)
        // the actors counted every ask: 55 each
        expect(yield* probe("id-7").Get()).toBe(55)
      }).pipe(Effect.scoped),
    90_000
  )
})

/**
 * What the process holds (heap + array buffers) after a heap-profiler collection, which also
 * frees the dead `ArrayBuffer`s that `global.gc()` leaves allocated (README, "Streams"). Needs
 * no `--expose-gc`.
 */
const liveBytes: Effect.Effect<number, never, Scope.Scope> = Effect.gen(function*() {
  const session = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const session = new Session()
      session.connect()
      return session
    }),
    (session) => Effect.sync(() => session.disconnect())
  )
  const collect = Effect.async<void>((resume) => {
    session.post("HeapProfiler.collectGarbage", () => resume(Effect.void))
  })
  yield* collect
  yield* Effect.sleep("50 millis")
  yield* collect
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.arrayBuffers
})
