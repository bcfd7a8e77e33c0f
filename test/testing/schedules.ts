/**
 * The random fault schedules of the property tests, and the runners that apply them to a
 * TestCluster and measure what the properties look at (also used by the regression tests that
 * keep the schedules a property once failed on).
 */
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Topic from "../../src/actors/Topic.ts"
import * as TestCluster from "../../src/testing/TestCluster.ts"
import { Counter, counterLive, type Journal, Ticks } from "./fixtures.ts"

export type Name = "a" | "b" | "c"
export const names: ReadonlyArray<Name> = ["a", "b", "c"]
export const ASK_TIMEOUT = 2000
export const MAX_IDLE = 5000

export type Step =
  | { readonly op: "ask"; readonly from: Name; readonly id: number; readonly sleep: number }
  | { readonly op: "faults"; readonly drop: number; readonly delay: number }
  | { readonly op: "partition"; readonly side: ReadonlyArray<Name> }
  | { readonly op: "crash" | "restart" | "disconnect" | "reconnect"; readonly node: Name }
  | { readonly op: "advance"; readonly millis: number }
  | { readonly op: "heal" }

const node = FastCheck.constantFrom<Name>(...names)
export const step: FastCheck.Arbitrary<Step> = FastCheck.oneof(
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
export const schedule = FastCheck.record({
  seed: FastCheck.integer({ min: 0, max: 0x7fffffff }),
  steps: FastCheck.array(step, { maxLength: 10 })
})

export interface Ask {
  readonly from: Name
  readonly incarnation: string
  readonly startedAt: number
  endedAt: number | undefined
  exit: Exit.Exit<number, unknown> | undefined
  /** its node crashed while it was pending: it is lost with the node */
  lost: boolean
  readonly fiber: Fiber.RuntimeFiber<void>
}

export interface Outcome {
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
export const runSchedule = (seed: number, steps: ReadonlyArray<Step>): Promise<Outcome> =>
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
    // every node may have crashed: then nothing is asked, and nothing can be active
    const activeAfterAsk = asker === undefined ? [] : ids.map(activeOf)
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

export type TopicStep =
  | { readonly op: "publish"; readonly count: number }
  | { readonly op: "delay"; readonly max: number }
  | { readonly op: "isolate" | "crash" | "restart" | "disconnect" | "reconnect" }
  | { readonly op: "advance"; readonly millis: number }
  | { readonly op: "heal" }

// faults that spare the path from the publisher (a) to the plain subscriber (b): delays, and
// anything done to c, a member of the queue group with b
export const topicStep: FastCheck.Arbitrary<TopicStep> = FastCheck.oneof(
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

export interface TopicOutcome {
  readonly published: ReadonlyArray<number>
  readonly plain: ReadonlyArray<number>
  readonly group: ReadonlyArray<number>
  readonly report: string
}

export const runTopics = (seed: number, steps: ReadonlyArray<TopicStep>): Promise<TopicOutcome> =>
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
