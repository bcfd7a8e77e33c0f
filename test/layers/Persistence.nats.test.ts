/**
 * The JetStream key-value store on real nats-servers (`-js`): the Persistence contract, opening
 * and checking buckets, a server that stops and comes back, and a 3-server JetStream cluster
 * that loses a server in the middle of a load.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import { connect, type NatsConnection } from "nats"
import * as Fs from "node:fs"
import { afterAll, beforeAll } from "vitest"
import * as Persistence from "../../src/layers/Persistence.ts"
import type { PersistenceError } from "../../src/schema/Errors.ts"
import {
  freePort,
  natsClusterResource,
  type NatsCluster,
  type NatsServer,
  natsServerResource,
  startNatsCluster,
  startNatsServer
} from "../fixtures/nats.ts"
import { contract } from "./persistenceContract.ts"

let server: NatsServer
let cluster: NatsCluster

beforeAll(async () => {
  ;[server, cluster] = await Promise.all([
    startNatsServer({ jetstream: true }),
    startNatsCluster(3, { jetstream: true })
  ])
}, 30_000)

afterAll(async () => {
  await Promise.all([server?.stop(), cluster?.stop()])
})

let buckets = 0
/** a store on a bucket of its own */
const freshStore = (options: Partial<Persistence.NatsKvSettings> = {}) =>
  Persistence.makeNatsKv({ servers: server.url, bucket: `contract-${++buckets}`, timeout: "5 seconds", ...options })

contract("JetStream key-value", it.scopedLive, Effect.suspend(() => freshStore()), Effect.sleep("20 millis"))

contract(
  "JetStream key-value, 3 replicas on a cluster",
  it.scopedLive,
  Effect.suspend(() =>
    Persistence.makeNatsKv({
      servers: cluster.urls,
      bucket: `replicated-${++buckets}`,
      replicas: 3,
      timeout: "5 seconds"
    })
  ),
  Effect.sleep("20 millis")
)

const connection = Effect.acquireRelease(
  Effect.promise(() => connect({ servers: server.url })),
  (nc) => Effect.promise(() => nc.close())
)

const streamConfig = (nc: NatsConnection, bucket: string) =>
  Effect.promise(async () => (await (await nc.jetstreamManager()).streams.info(`KV_${bucket}`)).config)

const openError = (options: Persistence.NatsKvOptions) =>
  Effect.flip(Effect.scoped(Persistence.makeNatsKv(options))) as Effect.Effect<PersistenceError>

/** runs `effect` and returns how long it took, in ms (wall clock: these tests talk to real servers) */
const timed = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const start = Date.now()
    const result = yield* effect
    return [result, Date.now() - start] as const
  })

describe("Persistence.natsKv", () => {
  it.scopedLive("writes of one key wait their turn: 20 at one revision, exactly one wins, then the key serves on", () =>
    Effect.gen(function*() {
      const store = yield* freshStore()
      const key = Persistence.key("state", "Counter", "hot")
      const first = yield* store.put(key, new Uint8Array([0]), 0)
      const outcomes = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) => Effect.either(store.put(key, new Uint8Array([i + 1]), first)),
        { concurrency: "unbounded" }
      )
      const won = outcomes.filter(Either.isRight)
      expect(won.length).toBe(1)
      expect(outcomes.filter((o) => Either.isLeft(o) && o.left._tag === "Conflict").length).toBe(19)
      const stored = Option.getOrThrow(yield* store.get(key))
      expect(stored.revision).toBe(won[0]!.right)
      // no lock is left held: the next write goes through
      expect(yield* store.put(key, new Uint8Array([99]), stored.revision)).toBeGreaterThan(stored.revision)
    }))

  it.scopedLive("a write interrupted while it waits for its key neither writes nor keeps the key locked", () =>
    Effect.gen(function*() {
      const store = yield* freshStore()
      const key = Persistence.key("state", "Counter", "waiter")
      const revision = yield* store.put(key, new Uint8Array([0]), 0)
      // three writes at once: the first holds the key, the other two wait; the second is interrupted
      const holder = yield* Effect.fork(store.put(key, new Uint8Array([1]), revision))
      const waiter = yield* Effect.fork(store.put(key, new Uint8Array([2]), revision + 100))
      const last = yield* Effect.fork(Effect.either(store.put(key, new Uint8Array([3]), revision)))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(waiter)
      const written = yield* Fiber.join(holder)
      // the third write ran after the holder: it lost on its stale revision, and nothing hung
      const third = yield* Fiber.join(last)
      expect(Either.isLeft(third) && third.left._tag).toBe("Conflict")
      const stored = Option.getOrThrow(yield* store.get(key))
      expect([stored.revision, [...stored.value]]).toEqual([written, [1]])
      expect(yield* store.put(key, new Uint8Array([4]), written)).toBeGreaterThan(written)
    }))

  it.scopedLive("creates a missing bucket with the settings asked for; reopened, it keeps them", () =>
    Effect.gen(function*() {
      const nc = yield* connection
      const store = yield* Persistence.makeNatsKv({ connection: nc, bucket: "settings", maxValueBytes: 1000 })
      expect(store.name).toBe("nats-kv")
      expect(store.maxValueBytes).toBe(1000)
      const config = yield* streamConfig(nc, "settings")
      expect(config).toMatchObject({ num_replicas: 1, max_msgs_per_subject: 1, max_msg_size: 1256, storage: "file" })
      const again = yield* Persistence.makeNatsKv({ connection: nc, bucket: "settings" })
      expect(again.maxValueBytes).toBe(1000)
      const same = yield* Persistence.makeNatsKv({
        connection: nc,
        bucket: "settings",
        maxValueBytes: 1000,
        replicas: 1
      })
      expect(same.maxValueBytes).toBe(1000)
    }))

  it.scopedLive("a bucket that exists with other settings fails with a PersistenceError naming them", () =>
    Effect.gen(function*() {
      const nc = yield* connection
      yield* Persistence.makeNatsKv({ connection: nc, bucket: "taken", maxValueBytes: 1000 })
      const limit = yield* openError({ connection: nc, bucket: "taken", maxValueBytes: 2000 })
      expect(limit.reason).toMatch(/bucket "taken" exists with maxValueBytes 1000, not 2000/)
      const replicas = yield* openError({ connection: nc, bucket: "taken", replicas: 3 })
      expect(replicas.reason).toMatch(/bucket "taken" exists with replicas 1, not 3/)
      // a new bucket with 3 replicas on a server without a cluster: the server says no
      const alone = yield* openError({ connection: nc, bucket: "alone", replicas: 3 })
      expect(alone._tag).toBe("PersistenceError")
      expect(alone.reason).toMatch(/replicas/i)
    }))

  it.scopedLive("the default value limit is the server's max payload less the header room", () =>
    Effect.gen(function*() {
      const store = yield* freshStore()
      expect(store.maxValueBytes).toBe(1024 * 1024 - 256)
      const small = yield* natsServerResource({ jetstream: true, maxPayload: 64 * 1024 })
      const onSmall = yield* Persistence.makeNatsKv({ servers: small.url })
      expect(onSmall.maxValueBytes).toBe(64 * 1024 - 256)
      const error = yield* openError({ servers: small.url, bucket: "over", maxValueBytes: 64 * 1024 })
      expect(error.reason).toMatch(/over what the server carries/)
    }))

  it.live("bad settings fail with a PersistenceError before anything is created", () =>
    Effect.gen(function*() {
      const reasons = yield* Effect.forEach(
        [
          { servers: server.url, bucket: "a.b" },
          { servers: server.url, replicas: 0 },
          { servers: server.url, replicas: 1.5 },
          { servers: server.url, maxValueBytes: 0 },
          { servers: server.url, timeout: Infinity },
          { servers: [] as Array<string> }
        ],
        (options) => Effect.map(openError(options), (error) => error.reason)
      )
      expect(reasons).toEqual([
        expect.stringMatching(/bucket "a.b" must match/),
        expect.stringMatching(/replicas must be a whole number from 1 to 5, got 0/),
        expect.stringMatching(/got 1.5/),
        expect.stringMatching(/maxValueBytes must be a whole number >= 1, got 0/),
        expect.stringMatching(/timeout must be a finite positive duration/),
        expect.stringMatching(/give servers or a connection/)
      ])
    }))

  it.live("no JetStream on the server: opening fails with a PersistenceError that says -js", () =>
    Effect.scoped(Effect.gen(function*() {
      const plain = yield* natsServerResource()
      const error = yield* openError({ servers: plain.url, timeout: "2 seconds" })
      expect(error.reason).toMatch(/-js/)
    })))

  it.live("no server: opening fails with a PersistenceError within the timeout", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(() => freePort())
      const [error] = yield* timed(openError({ servers: `nats://127.0.0.1:${port}`, timeout: "1 second" }))
      expect(error.operation).toBe("connect")
      expect(error.reason).toMatch(/cannot connect/)
    }).pipe(Effect.timeout("10 seconds")))

  it.live("its own connection closes with the scope; a connection it is given stays open", () =>
    Effect.gen(function*() {
      const name = "persistence-own-connection"
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Persistence.makeNatsKv({ servers: server.url, name })
        expect(yield* Effect.promise(() => server.connectionCount(name))).toBe(1)
      }))
      yield* Effect.promise(async () => {
        for (let i = 0; i < 100 && (await server.connectionCount(name)) > 0; i++) {
          await new Promise((r) => setTimeout(r, 50))
        }
      })
      expect(yield* Effect.promise(() => server.connectionCount(name))).toBe(0)
      const nc = yield* Effect.promise(() => connect({ servers: server.url }))
      yield* Effect.scoped(Persistence.makeNatsKv({ connection: nc }))
      expect(nc.isClosed()).toBe(false)
      yield* Effect.promise(() => nc.close())
    }))

  it.live(
    "a stopped server fails each operation with PersistenceError within the timeout; restarted, the store serves its data again",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const restarting = yield* natsServerResource({ jetstream: true })
        const storeDir = restarting.storeDir!
        expect(Fs.existsSync(storeDir)).toBe(true)
        const store = yield* Persistence.makeNatsKv({ servers: restarting.url, timeout: "1 second" })
        const key = Persistence.key("state", "Account", "kept")
        const revision = yield* store.put(key, new Uint8Array([42]), 0)
        const changes = yield* Queue.unbounded<Persistence.Change>()
        yield* Effect.forkScoped(Stream.runForEach(store.watch("state."), (change) => changes.offer(change)))
        yield* Effect.sleep("200 millis")

        restarting.kill("SIGKILL")
        const operations: Array<Effect.Effect<unknown, unknown>> = [
          store.get(key),
          store.put(key, new Uint8Array([43]), revision),
          store.remove(key, revision),
          store.keys("state.")
        ]
        const failures = yield* Effect.forEach(operations, (operation) => timed(Effect.flip(operation)))
        for (const [error] of failures) expect(error).toMatchObject({ _tag: "PersistenceError" })
        // bounded: each failed on its own timeout (1 s), with room for a loaded machine
        for (const [, elapsed] of failures) expect(elapsed).toBeLessThan(5_000)

        yield* Effect.promise(() => restarting.restart())
        // served again once the client has reconnected
        const back = yield* store.get(key).pipe(
          Effect.tapError(() => Effect.sleep("250 millis")),
          Effect.retry({ times: 40 })
        )
        expect(Option.map(back, (entry) => [entry.value[0], entry.revision])).toEqual(Option.some([42, revision]))
        const next = yield* store.put(key, new Uint8Array([44]), revision)
        expect(next).toBeGreaterThan(revision)
        // the watch started before the outage resumes and sees the write made after it
        const change = yield* Queue.take(changes).pipe(Effect.timeout("30 seconds"))
        expect(change).toMatchObject({ key, entry: { revision: next } })
        yield* Effect.promise(() => restarting.stop())
        expect(Fs.existsSync(storeDir)).toBe(false)
      })),
    60_000
  )
})

describe("Persistence.natsKv on a 3-server JetStream cluster", () => {
  it.live(
    "replicas 3: the stream leader is SIGKILLed mid-load and restarted, and no acknowledged increment is lost",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const cluster = yield* natsClusterResource(3, { jetstream: true })
        const store = yield* Persistence.makeNatsKv({ servers: cluster.urls, replicas: 3, timeout: "2 seconds" })
        const keys = ["a", "b", "c", "d"].map((id) => Persistence.key("state", "Counter", id))
        const acked = new Map(keys.map((key) => [key, [] as Array<number>]))
        const uncertain = new Map(keys.map((key) => [key, 0]))
        let total = 0
        let done = false
        const deadline = Date.now() + 60_000

        const increment = (key: string) =>
          Effect.gen(function*() {
            const current = yield* store.get(key)
            const value = Option.match(current, { onNone: () => 0, onSome: (entry) => decodeCount(entry.value) })
            yield* store.put(
              key,
              encodeCount(value + 1),
              Option.match(current, {
                onNone: () => 0,
                onSome: (entry) => entry.revision
              })
            )
            return value + 1
          })
        // two writers per key, so compare-and-set conflicts happen too
        const worker = (key: string) =>
          Effect.gen(function*() {
            while (!done && Date.now() < deadline) {
              const result = yield* Effect.either(increment(key))
              if (Either.isRight(result)) {
                acked.get(key)!.push(result.right)
                total++
              } else if (result.left._tag !== "Conflict") {
                // the write may or may not have happened
                uncertain.set(key, uncertain.get(key)! + 1)
              }
              yield* Effect.sleep("10 millis")
            }
          })
        const until = (count: number) =>
          Effect.gen(function*() {
            while (total < count && Date.now() < deadline) yield* Effect.sleep("20 millis")
            expect(total).toBeGreaterThanOrEqual(count)
          })

        const workers = yield* Effect.forkScoped(
          Effect.forEach([...keys, ...keys], worker, { concurrency: "unbounded", discard: true })
        )
        yield* until(100)
        const nc = yield* Effect.acquireRelease(
          Effect.promise(() => connect({ servers: [...cluster.urls] })),
          (nc) => Effect.promise(() => nc.close())
        )
        const leader = yield* Effect.promise(async () =>
          (await (await nc.jetstreamManager()).streams.info("KV_troupe")).cluster?.leader
        )
        const victim = cluster.servers[Number(leader?.replace("troupe-test-", ""))]!
        expect(victim).toBeDefined()
        victim.kill("SIGKILL")
        const killedAt = total
        // the load goes on through the election of a new leader, then the server comes back
        yield* until(killedAt + 100)
        yield* Effect.promise(() => victim.restart())
        yield* Effect.promise(() => cluster.waitForRoutes())
        yield* Effect.promise(() => cluster.waitForJetStream())
        yield* until(killedAt + 200)
        done = true
        yield* workers.await

        const counted = (yield* Effect.forEach(keys, (key) =>
          Effect.map(
            store.get(key).pipe(Effect.tapError(() => Effect.sleep("250 millis")), Effect.retry({ times: 20 })),
            (entry) => [key, decodeCount(Option.getOrThrow(entry).value)] as const
          ))).map(([key, final]) => ({
            key,
            final,
            acked: acked.get(key)!,
            uncertain: uncertain.get(key)!
          }))
        for (const { acked, final, uncertain } of counted) {
          // each acknowledged increment made a value of its own, and every one is in the final value
          expect(new Set(acked).size).toBe(acked.length)
          expect(final).toBeGreaterThanOrEqual(Math.max(0, ...acked))
          expect(final).toBeGreaterThanOrEqual(acked.length)
          expect(final).toBeLessThanOrEqual(acked.length + uncertain)
        }
        expect(total).toBeGreaterThanOrEqual(killedAt + 200)
        if (process.env["PERSISTENCE_STATS"] !== undefined) {
          console.log(JSON.stringify({
            killedAt,
            total,
            keys: counted.map(({ acked, final, uncertain }) => ({ final, acked: acked.length, uncertain }))
          }))
        }
      })),
    120_000
  )
})

const encodeCount = (count: number) => new TextEncoder().encode(String(count))
const decodeCount = (bytes: Uint8Array) => Number(new TextDecoder().decode(bytes))
