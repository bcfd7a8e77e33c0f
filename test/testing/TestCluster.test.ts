import { describe, expect, it } from "@effect/vitest"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Topic from "../../src/actors/Topic.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as TestCluster from "../../src/testing/TestCluster.ts"
import { Counter, type Journal, kinds, Ticks } from "./fixtures.ts"

const three = (seed: number, journal?: Journal) =>
  TestCluster.make({ nodes: ["a", "b", "c"], seed, layer: kinds(journal) })

/** the node names a node's discovery lists, alive ones only, sorted */
const view = (cluster: TestCluster.TestCluster<"a" | "b" | "c">, node: "a" | "b" | "c") =>
  cluster.on(node)(
    Effect.map(Discovery.Discovery, (discovery) =>
      discovery.unsafeState().members.filter((m) => m.status === "alive").map((m) => m.name).sort())
  )

/** one scenario under faults: its trace and node ids */
const scenario = (seed: number) =>
  Effect.scoped(Effect.gen(function*() {
    const cluster = yield* three(seed)
    yield* cluster.settle
    yield* cluster.faults({ drop: 0.1, delay: ["1 millis", "40 millis"] })
    const counter = yield* cluster.client("a", Counter)
    const results = yield* Effect.forEach(
      [1, 2, 3, 4, 5, 6],
      (i) => Effect.either(counter(`c-${i}`).Increment({ by: i }, { timeout: "500 millis" })),
      { concurrency: "unbounded" }
    )
    yield* cluster.heal
    yield* cluster.settle
    return {
      trace: cluster.trace(),
      ids: cluster.nodes.map((name) => cluster.node(name).nodeId),
      results: results.map((r) => r._tag)
    }
  }))

describe("TestCluster", () => {
  it.effect("the same seed replays the same deliveries and node ids; another seed differs", () =>
    Effect.gen(function*() {
      const first = yield* scenario(7)
      const again = yield* scenario(7)
      const other = yield* scenario(8)
      expect(first.trace.length).toBeGreaterThan(20)
      expect(again.trace).toEqual(first.trace)
      expect(again.ids).toEqual(first.ids)
      expect(again.results).toEqual(first.results)
      expect(other.ids).not.toEqual(first.ids)
      expect(other.trace).not.toEqual(first.trace)
    }))

  it.scoped("settle: every node sees the three; an ask from any node reaches the owner", () =>
    Effect.gen(function*() {
      const cluster = yield* three(1)
      yield* cluster.settle
      for (const node of cluster.nodes) expect(yield* view(cluster, node)).toEqual(["a", "b", "c"])
      for (const node of cluster.nodes) {
        const counter = yield* cluster.client(node, Counter)
        yield* counter("shared").Increment({ by: 1 })
      }
      const active = cluster.nodes.filter((node) => cluster.node(node).isActive("Counter", "shared"))
      expect(active).toHaveLength(1)
      expect(yield* Effect.flatMap(cluster.client("b", Counter), (c) => c("shared").Increment({ by: 0 }))).toBe(3)
    }))

  it.scoped("a partition splits the views; heal and settle join them again", () =>
    Effect.gen(function*() {
      const cluster = yield* three(2)
      yield* cluster.settle
      yield* cluster.partition(["a"], ["b", "c"])
      yield* cluster.settle
      expect(yield* view(cluster, "a")).toEqual(["a"])
      expect(yield* view(cluster, "b")).toEqual(["b", "c"])
      // each side serves every id on its own
      const fromA = yield* cluster.client("a", Counter)
      expect(yield* fromA("x").Increment({ by: 1 })).toBe(1)
      expect(cluster.node("a").isActive("Counter", "x")).toBe(true)
      expect(cluster.trace().some((line) => / a→b Heartbeat/.test(line) && line.includes("partition"))).toBe(false)
      yield* cluster.heal
      yield* cluster.settle
      for (const node of cluster.nodes) expect(yield* view(cluster, node)).toEqual(["a", "b", "c"])
    }))

  it.scoped("crash is abrupt: no leave heartbeat, no finalizer; the others drop it after removeAfter", () =>
    Effect.gen(function*() {
      const journal: Journal = { activations: 0, finalized: 0 }
      const cluster = yield* three(3, journal)
      yield* cluster.settle
      const counter = yield* cluster.client("b", Counter)
      // activate ids until one lives on b
      let onB = ""
      for (let i = 0; onB === "" && i < 50; i++) {
        yield* counter(`k-${i}`).Increment({ by: 1 })
        if (cluster.node("b").isActive("Counter", `k-${i}`)) onB = `k-${i}`
      }
      expect(onB).not.toBe("")
      const crashedAt = cluster.trace().length
      yield* cluster.crash("b")
      expect(cluster.status("b")).toBe("crashed")
      yield* cluster.settle
      expect(journal.finalized).toBe(0)
      const after = cluster.trace().slice(crashedAt)
      expect(after.some((line) => line.includes("b→"))).toBe(false)
      expect(yield* view(cluster, "a")).toEqual(["a", "c"])
      // the id moved: it answers from its new owner, from scratch
      const fromA = yield* cluster.client("a", Counter)
      expect(yield* fromA(onB).Increment({ by: 1 })).toBe(1)
      // a graceful stop sends its leave heartbeat and runs the finalizers
      yield* cluster.stop("c")
      expect(cluster.trace().some((line) => line.includes("c→a Heartbeat leaving"))).toBe(true)
      expect(journal.finalized).toBeGreaterThan(0)
    }))

  it.scoped("restart starts a new incarnation with a new node id, which joins", () =>
    Effect.gen(function*() {
      const cluster = yield* three(4)
      yield* cluster.settle
      const before = cluster.node("b").nodeId
      yield* cluster.crash("b")
      yield* cluster.restart("b")
      yield* cluster.settle
      expect(cluster.status("b")).toBe("running")
      expect(cluster.node("b").nodeId).not.toBe(before)
      expect(yield* view(cluster, "a")).toEqual(["a", "b", "c"])
      expect(cluster.trace().some((line) => line.includes("b#2→a Heartbeat"))).toBe(true)
    }))

  it.scoped("a dropped connection: the node's asks fail typed, its publishes fail, the others lose it; reconnect restores", () =>
    Effect.gen(function*() {
      const cluster = yield* three(5)
      yield* cluster.settle
      const counter = yield* cluster.client("a", Counter)
      const slow = yield* Effect.fork(Effect.exit(counter("s-1").Sleep({ millis: 5000 })))
      yield* cluster.advance("10 millis")
      yield* cluster.disconnect("a")
      const exit = yield* Fiber.join(slow)
      expect(Exit.isFailure(exit)).toBe(true)
      const published = yield* cluster.on("a")(Effect.exit(Topic.publish(Ticks, { n: 1 }, { subject: "ticks.x" })))
      expect(published).toMatchObject({ _tag: "Failure" })
      yield* cluster.advance("8 seconds")
      expect(yield* view(cluster, "b")).toEqual(["b", "c"])
      yield* cluster.reconnect("a")
      yield* cluster.settle
      expect(yield* view(cluster, "b")).toEqual(["a", "b", "c"])
    }))

  it.scoped("delay keeps each publisher's order: 50 events arrive in the order sent", () =>
    Effect.gen(function*() {
      const cluster = yield* three(6)
      yield* cluster.settle
      const got: Array<number> = []
      yield* cluster.on("b")(
        Topic.subscribe(Ticks).pipe(Stream.runForEach((event) => Effect.sync(() => got.push(event.value.n))))
      ).pipe(Effect.forkScoped)
      yield* cluster.advance(0)
      yield* cluster.faults({ delay: ["0 millis", "30 millis"] })
      for (let n = 0; n < 50; n++) {
        yield* cluster.on("a")(Topic.publish(Ticks, { n }, { subject: "ticks.x" }))
        if (n % 5 === 0) yield* cluster.advance("3 millis")
      }
      yield* cluster.settle
      expect(got).toEqual(Array.from({ length: 50 }, (_, n) => n))
      expect(cluster.stats().delayed).toBeGreaterThan(20)
    }))

  it.scoped("settle fails with SettleTimeout, naming what is wrong, when every frame is lost", () =>
    Effect.gen(function*() {
      const cluster = yield* TestCluster.make({
        nodes: ["a", "b"],
        seed: 9,
        layer: kinds(),
        settleTimeout: "20 seconds"
      })
      yield* cluster.settle
      yield* cluster.faults({ drop: 1 })
      const error = yield* Effect.flip(cluster.settle)
      expect(error._tag).toBe("SettleTimeout")
      expect(error.seed).toBe(9)
      expect(error.message).toContain("a misses b")
    }))

  it.scoped("TestClock in a cluster test is the cluster's clock", () =>
    Effect.gen(function*() {
      const cluster = yield* three(10)
      const before = yield* TestClock.currentTimeMillis
      yield* TestClock.adjust("5 seconds")
      expect((yield* TestClock.currentTimeMillis) - before).toBe(5000)
      expect(cluster.node("a").nodeId).toMatch(/^a-[0-9a-z]{8}$/)
    }))

  it.effect("withReport prints the seed and the trace when the test fails", () =>
    Effect.gen(function*() {
      const printed: Array<string> = []
      const base = yield* Console.consoleWith(Effect.succeed)
      const console: Console.Console = {
        ...base,
        error: (...args: ReadonlyArray<unknown>) => Effect.sync(() => void printed.push(args.join(" ")))
      }
      const exit = yield* Effect.exit(
        Effect.scoped(Effect.gen(function*() {
          const cluster = yield* three(11)
          yield* cluster.settle
          return yield* Effect.fail("boom")
        })).pipe(TestCluster.withReport, Effect.withConsole(console))
      )
      expect(Exit.isFailure(exit)).toBe(true)
      expect(printed).toHaveLength(1)
      expect(printed[0]).toMatch(/^TestCluster seed 11: the last \d+ frames/)
      expect(printed[0]).toMatch(/\n +\d+ms a→b Heartbeat delivered/)
    }))
})
