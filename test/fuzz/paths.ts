/**
 * The receive paths of a node and the checks made on each frame delivered to one: shared by the
 * plain and the secure fuzz suites.
 */
import { expect } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as fc from "effect/FastCheck"
import * as Runtime from "effect/Runtime"
import * as TestClock from "effect/TestClock"
import { defaultPools, type FrameType, type FuzzFrame, type Pools, wireOf } from "./arbitraries.ts"
import type { CorpusPath } from "./corpus/corpus.ts"
import { attempt, type Target } from "./harness.ts"
import { check, nodeParameters, triage } from "./settings.ts"
import { encodings, hex, judge } from "./wireBytes.ts"

/** frames per property run: a legitimate ask and the table checks follow each batch */
export const BATCH = 100

/** no table may grow past this from strangers' frames */
export const TABLE_CAP = 1024

export interface PathSpec {
  readonly name: CorpusPath
  readonly subjects: (t: Target) => ReadonlyArray<string>
  readonly weights: Partial<Record<FrameType, number>>
  readonly pools: (t: Target) => Pools
}

const strangerPools = (t: Target, extra: Partial<Pools> = {}): Pools => ({
  ...defaultPools,
  kinds: ["FuzzActor", "FuzzService", "Nope"],
  tags: ["Echo", "Count", "Put", "Nope"],
  // not "legit": a stranger can hold an actor's mailbox (one message at a time) as any caller can
  ids: ["", "a", "b"],
  subjects: ["fuzz.a", "fuzz.b.c", "fuzz.legit"],
  requestIds: [0, 1, 2, 3, 4, 5],
  sources: ["n1", "stranger", `${t.callerId}x`],
  ...extra
})

export const paths: ReadonlyArray<PathSpec> = [
  {
    name: "direct",
    subjects: (t) => [`node.${t.victimId}`],
    weights: {
      Q: 5,
      X: 3,
      I: 2,
      E: 1,
      C: 1,
      T: 2,
      S: 1,
      Ack: 2,
      Heartbeat: 1,
      Handshake: 1,
      Objects: 3,
      Piece: 2,
      BinaryItems: 1
    },
    pools: (t) => strangerPools(t)
  },
  {
    name: "actor",
    subjects: () => ["actor.FuzzActor", "actor.FuzzService"],
    weights: { Q: 10, Objects: 3, X: 1, I: 1, T: 1, Ack: 1 },
    pools: (t) => strangerPools(t)
  },
  {
    name: "interrupt",
    subjects: () => ["interrupt.FuzzActor", "interrupt.FuzzService"],
    weights: { I: 10, Q: 2, Objects: 2, X: 1 },
    pools: (t) => strangerPools(t)
  },
  {
    name: "discovery",
    subjects: () => ["discovery"],
    weights: { Heartbeat: 10, Objects: 1, Q: 1, E: 1 },
    pools: (t) => strangerPools(t, { kinds: ["K", "Other", "FuzzElse"] })
  },
  {
    name: "topic",
    subjects: () => ["topic.fuzz.a", "topic.fuzz.b.c", "topic.fuzz.legit"],
    weights: { E: 10, Objects: 2, Q: 1 },
    pools: (t) => strangerPools(t)
  },
  {
    name: "stream",
    subjects: (t) => [`node.${t.victimId}`, `node.${t.callerId}`],
    weights: { T: 6, Ack: 5, Piece: 5, BinaryItems: 4, C: 1, X: 1, Q: 1 },
    // the frames meet real state: the caller's id, small request ids
    pools: (t) => strangerPools(t, { sources: ["n1", "stranger", t.callerId], requestIds: [0, 1, 2, 3, 4, 5, 6, 7] })
  }
]

/** what a delivery broke, if anything (a message naming the frame) */
export const deliverOne = (
  t: Target,
  subject: string,
  bytes: Uint8Array,
  what: string,
  judged: { readonly verdict: string; readonly drops: number } = judge(bytes)
): string | undefined => {
  const { drops: mustDrop, verdict } = judged
  const before = t.drops()
  const badBefore = t.badSubjects.length
  const defectsBefore = t.defects.length
  const delivered = attempt(() => t.deliver(subject, bytes))
  const shown = `${what} to ${subject} (verdict ${verdict}), bytes ${hex(bytes.subarray(0, 160))}${
    bytes.byteLength > 160 ? `… (${bytes.byteLength} bytes)` : ""
  }`
  if (Either.isLeft(delivered)) return `delivery threw ${String(delivered.left).slice(0, 300)}: ${shown}`
  if (t.badSubjects.length > badBefore) {
    return `the node published to an invalid subject ${JSON.stringify(t.badSubjects.slice(badBefore))}: ${shown}`
  }
  const counted = t.drops() - before
  if (counted < mustDrop) return `a dropped frame was not counted (${counted} of ${mustDrop}): ${shown}`
  if (t.defects.length > defectsBefore) return `a defect was logged: ${t.defects[defectsBefore]}: ${shown}`
  return undefined
}

/** after each batch: the nodes still answer, and no table grew past its bound */
export const afterBatch = (t: Target, run: number): Effect.Effect<string | undefined> =>
  Effect.gen(function*() {
    const defectsBefore = t.defects.length
    const legit = yield* Effect.either(t.legit(run))
    if (t.defects.length > defectsBefore) return `a defect was logged: ${t.defects[defectsBefore]}`
    if (Either.isLeft(legit)) return `the node stopped answering: ${legit.left.message}`
    const tables = t.tables()
    if (tables.victimPending !== 0 || tables.callerPending !== 0) return `asks left pending: ${JSON.stringify(tables)}`
    for (const [table, size] of Object.entries(tables)) {
      if (size > TABLE_CAP) {
        return `the table ${table} grew to ${size} (> ${TABLE_CAP}) from strangers' frames: ${JSON.stringify(tables)}`
      }
    }
    return undefined
  })

/** once the clock has passed every timeout: strangers' state is gone, and the nodes still answer */
export const afterTimeouts = (t: Target): Effect.Effect<void, Error> =>
  Effect.gen(function*() {
    for (let i = 0; i < 65; i++) yield* TestClock.adjust("1 second")
    const legit = yield* Effect.either(t.legit(-1))
    const tables = t.tables()
    if (triage) {
      console.log(
        `[fuzz triage] after every timeout: ${Either.isLeft(legit) ? legit.left.message : "answering"}, tables ${
          JSON.stringify(tables)
        }`
      )
      return
    }
    if (Either.isLeft(legit)) return yield* Effect.fail(legit.left)
    expect(tables, "after every timeout, only the two nodes and no stranger's stream remain").toMatchObject({
      victimPending: 0,
      callerPending: 0,
      victimStreams: 0,
      callerStreams: 0,
      victimMembers: 2,
      callerMembers: 2
    })
    expect(tables.actorInstances).toBeLessThanOrEqual(1)
  })

/**
 * Runs `count` generated frames through one path of `t`: one property run per frame, the
 * legitimate ask and the table checks after every `BATCH` frames.
 */
export const fuzzPath = (
  t: Target,
  what: string,
  subjects: ReadonlyArray<string>,
  arbitrary: fc.Arbitrary<FuzzFrame>,
  count: number,
  deliverFrame: (frame: FuzzFrame, subject: string) => string | undefined
): Effect.Effect<number, never> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    let delivered = 0
    const found = new Map<string, { count: number; example: string }>()
    const fail = (problem: string, frame: FuzzFrame): void => {
      if (!triage) throw new Error(problem)
      const key = `${problem.replace(/\bvictim-\w+/g, "victim").split(/[:(]/)[0]!.slice(0, 80)} / ${frame.type}`
      const entry = found.get(key)
      if (entry !== undefined) entry.count++
      else {found.set(key, {
          count: 1,
          example: `${problem.slice(0, 600)}\n    frame: ${fc.stringify(frame).slice(0, 600)}`
        })}
    }
    const started = Date.now()
    const costs = new Map<string, { n: number; ms: number }>()
    yield* Effect.promise(() =>
      check(
        what,
        fc.asyncProperty(arbitrary, fc.nat(subjects.length - 1), async (frame, which) => {
          const at = performance.now()
          const problem = deliverFrame(frame, subjects[which]!)
          if (triage) {
            const cost = costs.get(frame.type) ?? { n: 0, ms: 0 }
            cost.n++
            cost.ms += performance.now() - at
            costs.set(frame.type, cost)
          }
          delivered++
          if (problem !== undefined) fail(problem, frame)
          if (delivered % BATCH === 0) {
            const after = await Runtime.runPromise(runtime)(afterBatch(t, delivered))
            if (after !== undefined) fail(`after ${delivered} frames, the last of them this one: ${after}`, frame)
          }
        }),
        nodeParameters(count)
      )
    )
    if (triage) {
      const lines = [...found.entries()].map(([key, { count, example }]) => `  ${count}× ${key}\n    ${example}`)
      const spent = [...costs.entries()].map(([type, { ms, n }]) => `${type} ${n}×${(ms / n).toFixed(3)}ms`).join(", ")
      console.log(
        `[fuzz triage] ${what}: ${delivered} frames in ${
          Date.now() - started
        } ms (delivery: ${spent}), ${found.size} distinct failures\n${lines.join("\n")}`
      )
    }
    return delivered
  })

export const bothEncodings = (t: Target) => (frame: FuzzFrame, subject: string): string | undefined => {
  for (const encoding of encodings) {
    const problem = deliverOne(t, subject, wireOf(frame, encoding), `a ${frame.type} frame in ${encoding}`)
    if (problem !== undefined) return problem
  }
  return undefined
}
