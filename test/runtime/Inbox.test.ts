import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import { Inbox } from "../../src/runtime/internal/streams.ts"

const inboxOf = (
  window: number,
  decode: (items: ReadonlyArray<unknown>) => Either.Either<ReadonlyArray<unknown>, Error> = Either.right
) => {
  const credits: Array<number> = []
  const inbox = new Inbox(window, (credit) => credits.push(credit), decode, (reason) => new Error(reason))
  return { inbox, credits }
}

describe("a stream's inbox", () => {
  it.effect("frames buffered when the user pulls arrive as one chunk; their credit returns at the next pull", () =>
    Effect.gen(function*() {
      const { credits, inbox } = inboxOf(8)
      for (let seq = 0; seq < 4; seq++) inbox.offer(seq, [seq * 2, seq * 2 + 1])
      const chunks: Array<ReadonlyArray<unknown>> = []
      const creditsAtPull: Array<number> = []
      yield* inbox.stream.pipe(
        Stream.mapChunks((chunk) => {
          chunks.push(Chunk.toReadonlyArray(chunk))
          creditsAtPull.push(credits.reduce((a, b) => a + b, 0))
          return chunk
        }),
        Stream.take(8),
        Stream.runDrain
      )
      // the four frames at once, and no credit while the user holds them
      expect(chunks).toEqual([[0, 1, 2, 3, 4, 5, 6, 7]])
      expect(creditsAtPull).toEqual([0])
      // the next pull returns their credit
      inbox.offer(4, [8])
      const next = yield* inbox.stream.pipe(Stream.take(1), Stream.runCollect)
      expect(Chunk.toReadonlyArray(next)).toEqual([8])
      expect(credits).toEqual([4])
    }))

  it.effect("frames arriving in separate callbacks of one event-loop turn reach a waiting user as one chunk", () =>
    Effect.gen(function*() {
      const { inbox } = inboxOf(8)
      const chunks: Array<ReadonlyArray<unknown>> = []
      const consumer = yield* inbox.stream.pipe(
        Stream.mapChunks((chunk) => {
          chunks.push(Chunk.toReadonlyArray(chunk))
          return chunk
        }),
        Stream.take(3),
        Stream.runDrain,
        Effect.fork
      )
      // the user waits for its first frame
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      expect(chunks).toEqual([])
      // three frames, each in a callback of its own (as socket reads are), in one phase of the
      // loop: microtasks run between them, so a user woken by the first would pull it alone
      yield* Effect.promise(() =>
        new Promise<void>((resolve) => {
          for (let seq = 0; seq < 3; seq++) {
            setImmediate(() => {
              inbox.offer(seq, [seq])
              if (seq === 2) resolve()
            })
          }
        })
      )
      yield* Fiber.join(consumer)
      expect(chunks).toEqual([[0, 1, 2]])
    }))

  it.effect("an undecodable frame fails the stream after the elements of the frames before it", () =>
    Effect.gen(function*() {
      const { inbox } = inboxOf(
        8,
        (items) =>
          items.includes("bad") ? Either.left(new Error("frame does not match its schema")) : Either.right(items)
      )
      inbox.offer(0, [1, 2])
      inbox.offer(1, ["bad"])
      inbox.offer(2, [3])
      const received: Array<unknown> = []
      const error = yield* inbox.stream.pipe(
        Stream.runForEach((element) => Effect.sync(() => received.push(element))),
        Effect.flip
      )
      expect(received).toEqual([1, 2])
      expect(error).toMatchObject({ message: "frame does not match its schema" })
    }))
})
