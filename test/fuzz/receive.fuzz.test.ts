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
import { frames } from "./arbitraries.ts"
import { bytesOf, corpus } from "./corpus/corpus.ts"
import { makeTarget, type Mode } from "./harness.ts"
import { afterBatch, afterTimeouts, bothEncodings, deliverOne, fuzzPath, paths } from "./paths.ts"
import { FRAMES_PER_PATH } from "./settings.ts"

const nodeCodecs: ReadonlyArray<Mode> = ["json", "msgpack"]

describe.each(nodeCodecs)("receive paths fuzz (node codec %s)", (mode) => {
  for (const path of paths) {
    it.scoped(
      `${path.name}: nothing throws, drops are counted, the node answers, tables stay bounded`,
      () =>
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
        }),
      60_000
    )
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
            else if (entry.expect === "drop" && t.drops() === before) {
              problems.push(`corpus "${entry.name}" to ${subject} was not counted as dropped`)
            }
          }
        }
        const after = yield* afterBatch(t, 1)
        if (after !== undefined) problems.push(`after corpus "${entry.name}": ${after}`)
      }
      expect(problems).toEqual([])
    }))
})
