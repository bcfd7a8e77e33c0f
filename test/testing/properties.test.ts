/**
 * Troupe's own guarantees under random fault schedules, on a TestCluster: each property runs
 * 100 seeded schedules (fast-check prints the seed and the shrunk schedule of a failure; the
 * cluster's report, printed with it, has the trace of the frames).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Topic from "../../src/actors/Topic.ts"
import * as TestCluster from "../../src/testing/TestCluster.ts"
import { Counter, counterLive, type Journal, Ticks } from "./fixtures.ts"

type Name = "a" | "b" | "c"
const names: ReadonlyArray<Name> = ["a", "b", "c"]
const ASK_TIMEOUT = 2000
const MAX_IDLE = 5000
const RUNS = Number(process.env["TROUPE_PROPERTY_RUNS"] ?? 100)
/** `TROUPE_PROPERTY_SEED` replays the runs of a printed fast-check seed */
const params = {
  numRuns: RUNS,
  ...(process.env["TROUPE_PROPERTY_SEED"] === undefined ? {} : { seed: Number(process.env["TROUPE_PROPERTY_SEED"]) })
}

type Step =
  | { readonly op: "ask"; readonly from: Name; readonly id: number; readonly sleep: number }
  | { readonly op: "faults"; readonly drop: number; readonly delay: number }
  | { readonly op: "partition"; readonly side: ReadonlyArray<Name> }
  | { readonly op: "crash" | "restart" | "disconnect" | "reconnect"; readonly node: Name }
  | { readonly op: "advance"; readonly millis: number }
  | { readonly op: "heal" }

const node = FastCheck.constantFrom<Name>(...names)
const step: FastCheck.Arbitrary<Step> = FastCheck.oneof(
  {
    weight: 4,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("ask" as const),
      from: node,
      id: FastCheck.integer({ min: 0, max: 5 }),
      sleep: FastCheck.constantFrom(0, 0, 100, 1500, 2500)
    })
  },
  {
    weight: 1,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("faults" as const),
      drop: FastCheck.constantFrom(0, 0.05, 0.3),
      delay: FastCheck.constantFrom(0, 20, 300)
    })
  },
  {
    weight: 1,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("partition" as const),
      side: FastCheck.subarray([...names], { minLength: 1, maxLength: 2 })
    })
  },
  {
    weight: 1,
    arbitrary: FastCheck.record({
      op: FastCheck.constantFrom("crash" as const, "restart" as const, "disconnect" as const, "reconnect" as const),
      node
    })
  },
  {
    weight: 2,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("advance" as const),
      millis: FastCheck.constantFrom(1, 50, 700, 3000)
    })
  },
  { weight: 1, arbitrary: FastCheck.record({ op: FastCheck.constant("heal" as const) }) }
)
const schedule = FastCheck.record({
  seed: FastCheck.integer({ min: 0, max: 0x7fffffff }),
  steps: FastCheck.array(step, { maxLength: 10 })
})

interface Ask {
  readonly from: Name
  readonly incarnation: string
  readonly startedAt: number
  endedAt: number | undefined
  exit: Exit.Exit<number, unknown> | undefined
  /** its node crashed while it was pending: it is lost with the node */
  lost: boolean
  readonly fiber: Fiber.RuntimeFiber<void>
}

interface Outcome {
  readonly asks: ReadonlyArray<Ask>
  /** per id, the nodes where it is active after settling, before and after asking each id again */
  readonly activeAfterSettle: ReadonlyArray<number>
  readonly activeAfterAsk: ReadonlyArray<number>
  readonly tables: ReadonlyArray<{ readonly node: string; readonly pending: number; readonly streams: number }>
  readonly instancesAfterIdle: number
  readonly timers: number
  readonly report: string
}

const now = Effect.clockWith((clock) => clock.currentTimeMillis)

/** applies one step of a schedule to the cluster */
const apply = (cluster: TestCluster.TestCluster<Name>, s: Step, asks: Array<Ask>) =>
  Effect.gen(function*() {
    switch (s.op) {
      case "ask": {
        if (cluster.status(s.from) !== "running") return
        const counter = yield* cluster.client(s.from, Counter)
        const startedAt = yield* now
        const ask = { from: s.from, incarnation: cluster.node(s.from).nodeId, startedAt, lost: false } as Ask
        const call = s.sleep === 0
          ? counter(`id-${s.id}`).Increment({ by: 1 })
          : counter(`id-${s.id}`).Sleep({ millis: s.sleep })
        const fiber = yield* Effect.fork(Effect.gen(function*() {
          const exit = yield* Effect.exit(call)
          ask.exit = exit
          ask.endedAt = yield* now
        }))
        asks.push(Object.assign(ask, { fiber }))
        return
      }
      case "faults":
        return yield* cluster.faults({ drop: s.drop, delay: [`${s.delay / 10} millis`, `${s.delay} millis`] })
      case "partition":
        return yield* cluster.partition(s.side, names.filter((n) => !s.side.includes(n)))
      case "crash": {
        if (cluster.status(s.node) !== "running") return
        const id = cluster.node(s.node).nodeId
        for (const ask of asks) if (ask.incarnation === id && ask.exit === undefined) ask.lost = true
        return yield* cluster.crash(s.node)
      }
      case "restart":
        return yield* cluster.restart(s.node)
      case "disconnect":
        return yield* cluster.disconnect(s.node)
      case "reconnect":
        return yield* cluster.reconnect(s.node)
      case "advance":
        return yield* cluster.advance(s.millis)
      case "heal":
        return yield* cluster.heal
    }
  })

/** runs a schedule, heals, settles, and measures what the properties look at */
const runSchedule = (seed: number, steps: ReadonlyArray<Step>): Promise<Outcome> =>
  Effect.gen(function*() {
    const journal: Journal = { activations: 0, finalized: 0 }
    const cluster = yield* TestCluster.make({
      nodes: names,
      seed,
      layer: Layer.mergeAll(counterLive(journal, `${MAX_IDLE / 1000} seconds`)),
      node: { askTimeout: `${ASK_TIMEOUT} millis` },
      onClose: "abandon"
    })
    yield* cluster.settle
    const asks: Array<Ask> = []
    for (const s of steps) yield* apply(cluster, s, asks)
    yield* cluster.heal
    yield* cluster.settle
    // every ask made from a node that did not crash meanwhile ends, within its timeout
    yield* cluster.advance(ASK_TIMEOUT)
    const activeOf = (id: number) =>
      names.filter((n) => cluster.status(n) === "running" && cluster.node(n).isActive("Counter", `id-${id}`)).length
    const ids = [0, 1, 2, 3, 4, 5]
    const activeAfterSettle = ids.map(activeOf)
    const asker = names.find((n) => cluster.status(n) === "running")
    if (asker !== undefined) {
      const counter = yield* cluster.client(asker, Counter)
      for (const id of ids) yield* Effect.exit(counter(`id-${id}`).Increment({ by: 0 }))
    }
    const activeAfterAsk = ids.map(activeOf)
    const running = names.filter((n) => cluster.status(n) === "running")
    const tables = running.map((n) => ({
      node: n,
      pending: cluster.node(n).pendingAsks(),
      streams: cluster.node(n).openStreams()
    }))
    yield* cluster.advance(MAX_IDLE + 2000)
    const instancesAfterIdle = running.reduce((sum, n) => sum + cluster.node(n).activeInstances("Counter"), 0)
    for (const ask of asks) if (ask.exit === undefined) yield* Fiber.interrupt(ask.fiber)
    return {
      asks,
      activeAfterSettle,
      activeAfterAsk,
      tables,
      instancesAfterIdle,
      timers: cluster.stats().timers,
      report: cluster.report()
    } satisfies Outcome
  }).pipe(Effect.scoped, Effect.runPromise)

const check = (property: (outcome: Outcome) => void) =>
  FastCheck.asyncProperty(schedule, async ({ seed, steps }) => {
    const outcome = await runSchedule(seed, steps)
    try {
      property(outcome)
    } catch (error) {
      console.error(outcome.report)
      throw error
    }
  })

/** every ask made from a node that did not crash under it ends, within its timeout, in success or a typed error */
const asksEnd = (outcome: Outcome) => {
  for (const ask of outcome.asks) {
    if (ask.exit === undefined) {
      expect(ask.lost, "an ask that never ended, though its node did not crash").toBe(true)
      continue
    }
    expect(ask.endedAt! - ask.startedAt, "an ask outlived its timeout").toBeLessThanOrEqual(ASK_TIMEOUT)
    if (Exit.isFailure(ask.exit)) {
      const failure = Cause.failureOption(ask.exit.cause)
      expect(Cause.isDie(ask.exit.cause), Cause.pretty(ask.exit.cause)).toBe(false)
      expect(failure._tag === "Some" && typeof (failure.value as { _tag?: unknown })._tag, Cause.pretty(ask.exit.cause))
        .toBe("string")
    }
  }
}

/** after settle, each id is active on at most one node, and on exactly one once asked */
const oneActivation = (outcome: Outcome) => {
  for (const count of outcome.activeAfterSettle) {
    expect(count, "an id active on two nodes after settle").toBeLessThanOrEqual(1)
  }
  for (const count of outcome.activeAfterAsk) expect(count, "an id not active on exactly one node once asked").toBe(1)
}

/** pending asks and streams are 0 after settle, instances passivate, the timers are few */
const tablesEmpty = (outcome: Outcome) => {
  for (const table of outcome.tables) {
    expect(table, "a node's tables after settle").toEqual({ node: table.node, pending: 0, streams: 0 })
  }
  expect(outcome.instancesAfterIdle, "instances left after maxIdleTime").toBe(0)
  // heartbeat, membership check and deadline timers per node, and little else
  expect(outcome.timers, "timers left after settle").toBeLessThanOrEqual(30)
}

describe("TestCluster properties", () => {
  // one run of each schedule checks the three properties: each is checked on every schedule
  it(
    `asks end within their timeout, typed; one activation per id after settle; tables return to 0 (${RUNS} schedules)`,
    async () => {
      await FastCheck.assert(
        check((outcome) => {
          asksEnd(outcome)
          oneActivation(outcome)
          tablesEmpty(outcome)
        }),
        params
      )
    },
    120_000
  )
})

type TopicStep =
  | { readonly op: "publish"; readonly count: number }
  | { readonly op: "delay"; readonly max: number }
  | { readonly op: "isolate" | "crash" | "restart" | "disconnect" | "reconnect" }
  | { readonly op: "advance"; readonly millis: number }
  | { readonly op: "heal" }

// faults that spare the path from the publisher (a) to the plain subscriber (b): delays, and
// anything done to c, a member of the queue group with b
const topicStep: FastCheck.Arbitrary<TopicStep> = FastCheck.oneof(
  {
    weight: 3,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("publish" as const),
      count: FastCheck.integer({ min: 1, max: 5 })
    })
  },
  {
    weight: 1,
    arbitrary: FastCheck.record({ op: FastCheck.constant("delay" as const), max: FastCheck.constantFrom(0, 10, 200) })
  },
  {
    weight: 1,
    arbitrary: FastCheck.record({
      op: FastCheck.constantFrom(
        "isolate" as const,
        "crash" as const,
        "restart" as const,
        "disconnect" as const,
        "reconnect" as const
      )
    })
  },
  {
    weight: 2,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("advance" as const),
      millis: FastCheck.constantFrom(1, 100, 2000)
    })
  },
  { weight: 1, arbitrary: FastCheck.record({ op: FastCheck.constant("heal" as const) }) }
)

interface TopicOutcome {
  readonly published: ReadonlyArray<number>
  readonly plain: ReadonlyArray<number>
  readonly group: ReadonlyArray<number>
  readonly report: string
}

const runTopics = (seed: number, steps: ReadonlyArray<TopicStep>): Promise<TopicOutcome> =>
  Effect.gen(function*() {
    const cluster = yield* TestCluster.make({ nodes: names, seed, layer: Layer.empty, onClose: "abandon" })
    yield* cluster.settle
    const plain: Array<number> = []
    const group: Array<number> = []
    const subscribe = (name: Name, into: Array<number>, options?: Topic.SubscribeOptions) =>
      cluster.on(name)(
        Topic.subscribe(Ticks, options).pipe(
          Stream.runForEach((event) => Effect.sync(() => void into.push(event.value.n)))
        )
      ).pipe(Effect.forkScoped)
    yield* subscribe("b", plain)
    yield* subscribe("b", group, { group: "g" })
    yield* subscribe("c", group, { group: "g" })
    yield* cluster.advance(0)
    const published: Array<number> = []
    for (const s of steps) {
      switch (s.op) {
        case "publish":
          for (let i = 0; i < s.count; i++) {
            const n = published.length
            yield* cluster.on("a")(Topic.publish(Ticks, { n }, { subject: "ticks.t" }))
            published.push(n)
          }
          break
        case "delay":
          yield* cluster.faults({ delay: ["0 millis", `${s.max} millis`] })
          break
        case "isolate":
          yield* cluster.partition(["a", "b"], ["c"])
          break
        case "crash":
        case "disconnect":
        case "reconnect":
          yield* cluster[s.op]("c")
          break
        case "restart":
          // a new incarnation of c has no subscriptions: it leaves the group
          yield* cluster.restart("c")
          break
        case "advance":
          yield* cluster.advance(s.millis)
          break
        case "heal":
          yield* cluster.heal
      }
    }
    yield* cluster.heal
    yield* cluster.settle
    return { published, plain, group, report: cluster.report() }
  }).pipe(Effect.scoped, Effect.runPromise)

describe("TestCluster topic properties", () => {
  it(
    `a subscriber not partitioned gets every event, in order; a queue group delivers each at most once (${RUNS} schedules)`,
    async () => {
      await FastCheck.assert(
        FastCheck.asyncProperty(
          FastCheck.record({
            seed: FastCheck.integer({ min: 0, max: 0x7fffffff }),
            steps: FastCheck.array(topicStep, { maxLength: 12 })
          }),
          async ({ seed, steps }) => {
            const outcome = await runTopics(seed, steps)
            try {
              expect(outcome.plain, "the plain subscriber's events").toEqual(outcome.published)
              const seen = new Set<number>()
              for (const n of outcome.group) {
                expect(seen.has(n), `event ${n} reached two members of the group`).toBe(false)
                seen.add(n)
              }
            } catch (error) {
              console.error(outcome.report)
              throw error
            }
          }
        ),
        params
      )
    },
    120_000
  )
})
