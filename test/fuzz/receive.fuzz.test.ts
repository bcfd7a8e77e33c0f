/**
 * Every receive path of a node under generated hostile frames: its direct subject, its actor and
 * service queue groups, interrupts, discovery, topics and stream frames, on the serializing
 * in-memory network with both codecs (each frame is delivered in both encodings). Properties:
 * nothing throws out of delivery, nothing a node publishes names an invalid subject, every
 * frame that must be dropped is counted, the nodes keep answering legitimate asks and events,
 * and their tables stay bounded and return to their baseline once the clock passes every
 * timeout. A failure names the path, the node codec, the fast-check seed and the frame's bytes.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as fc from "effect/FastCheck"
import * as Runtime from "effect/Runtime"
import * as TestClock from "effect/TestClock"
import { defaultPools, frames, type FrameType, type FuzzFrame, type Pools, wireOf } from "./arbitraries.ts"
import { bytesOf, corpus, type CorpusPath } from "./corpus/corpus.ts"
import { attempt, makeTarget, type Mode, type Target } from "./harness.ts"
import { check, FRAMES_PER_PATH, parameters } from "./settings.ts"
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
  ids: ["", "a", "b", "legit"],
  subjects: ["fuzz.a", "fuzz.b.c", "fuzz.legit"],
  requestIds: [0, 1, 2, 3, 4, 5],
  sources: ["n1", "stranger", `${t.callerId}x`],
  ...extra
})

export const paths: ReadonlyArray<PathSpec> = [
  {
    name: "direct",
    subjects: (t) => [`node.${t.victimId}`],
    weights: { Q: 5, X: 3, I: 2, E: 1, C: 1, T: 2, S: 1, Ack: 2, Heartbeat: 1, Handshake: 1, Objects: 3, Piece: 2, BinaryItems: 1 },
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
export const deliverOne = (t: Target, subject: string, bytes: Uint8Array, what: string): string | undefined => {
  const { drops: mustDrop, verdict } = judge(bytes)
  const before = t.drops()
  const badBefore = t.badSubjects.length
  const defectsBefore = t.defects.length
  const delivered = attempt(() => t.deliver(subject, bytes))
  const shown = `${what} to ${subject} (verdict ${verdict}), bytes ${hex(bytes.subarray(0, 160))}${bytes.byteLength > 160 ? `… (${bytes.byteLength} bytes)` : ""}`
  if (Either.isLeft(delivered)) return `delivery threw ${String(delivered.left).slice(0, 300)}: ${shown}`
  if (t.badSubjects.length > badBefore) return `the node published to an invalid subject ${JSON.stringify(t.badSubjects.slice(badBefore))}: ${shown}`
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
      if (size > TABLE_CAP) return `the table ${table} grew to ${size} (> ${TABLE_CAP}) from strangers' frames: ${JSON.stringify(tables)}`
    }
    return undefined
  })

/** once the clock has passed every timeout: strangers' state is gone, and the nodes still answer */
export const afterTimeouts = (t: Target): Effect.Effect<void, Error> =>
  Effect.gen(function*() {
    for (let i = 0; i < 65; i++) yield* TestClock.adjust("1 second")
    yield* t.legit(-1)
    const tables = t.tables()
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
    yield* Effect.promise(() =>
      check(
        what,
        fc.asyncProperty(arbitrary, fc.nat(subjects.length - 1), async (frame, which) => {
          const problem = deliverFrame(frame, subjects[which]!)
          delivered++
          if (problem !== undefined) throw new Error(problem)
          if (delivered % BATCH === 0) {
            const after = await Runtime.runPromise(runtime)(afterBatch(t, delivered))
            if (after !== undefined) throw new Error(`after ${delivered} frames, the last of them this one: ${after}`)
          }
        }),
        parameters(count)
      )
    )
    return delivered
  })

const bothEncodings = (t: Target) => (frame: FuzzFrame, subject: string): string | undefined => {
  for (const encoding of encodings) {
    const problem = deliverOne(t, subject, wireOf(frame, encoding), `a ${frame.type} frame in ${encoding}`)
    if (problem !== undefined) return problem
  }
  return undefined
}

const nodeCodecs: ReadonlyArray<Mode> = ["json", "msgpack"]

describe.each(nodeCodecs)("receive paths fuzz (node codec %s)", (mode) => {
  for (const path of paths) {
    it.scoped(`${path.name}: nothing throws, drops are counted, the node answers, tables stay bounded`, () =>
      Effect.gen(function*() {
        const t = yield* makeTarget(mode)
        const subjects = path.subjects(t)
        // each path gets FRAMES_PER_PATH generated frames over the two node codecs
        const count = Math.ceil(FRAMES_PER_PATH / nodeCodecs.length)
        const delivered = yield* fuzzPath(
          t,
          `receive path ${path.name}, node codec ${mode}`,
          subjects,
          frames(path.pools(t), path.weights),
          count,
          bothEncodings(t)
        )
        expect(delivered).toBeGreaterThanOrEqual(count)
        // and a last legitimate ask after the last frame
        expect(yield* afterBatch(t, count + 1)).toBeUndefined()
        yield* afterTimeouts(t)
      }), 60_000)
  }

  it.scoped("the corpus: each frame on each of its paths", () =>
    Effect.gen(function*() {
      const t = yield* makeTarget(mode)
      const problems: Array<string> = []
      for (const entry of corpus) {
        for (const name of entry.paths) {
          const path = paths.find((p) => p.name === name)
          if (path === undefined) continue
          for (const subject of path.subjects(t)) {
            const bytes = bytesOf(entry)
            const before = t.drops()
            const problem = deliverOne(t, subject, bytes, `corpus "${entry.name}"`)
            if (problem !== undefined) problems.push(problem.slice(0, 400))
            else if (entry.expect === "drop" && t.drops() === before) problems.push(`corpus "${entry.name}" to ${subject} was not counted as dropped`)
          }
        }
        const after = yield* afterBatch(t, 1)
        if (after !== undefined) problems.push(`after corpus "${entry.name}": ${after}`)
      }
      expect(problems).toEqual([])
    }))
})
