import { describe, expect, it } from "@effect/vitest"
import { Batch, BatchReplies, flushAfterMicrotasks } from "../../src/layers/internal/coalesce.ts"

describe("coalescing", () => {
  it("a batch counts its frames' bytes with their length prefixes and keeps only the reply slots given", () => {
    const batch = new Batch("node.a", "key")
    batch.add(new Uint8Array(10), "r1")
    batch.add(new Uint8Array(3), undefined)
    expect(batch.bytes).toBe(10 + 4 + 3 + 4)
    expect(batch.replyTos).toEqual(["r1"])
    expect(batch.frames.length).toBe(2)
  })

  it("batch reply slots: none for a batch without any, each taken once, the oldest forgotten past the bound", () => {
    const replies = new BatchReplies(2)
    expect(replies.track([])).toBeUndefined()
    const a = replies.track(["a1", "a2"])!
    const b = replies.track(["b1"])!
    const c = replies.track(["c1"])!
    expect(replies.take(a)).toEqual([]) // forgotten: the bound is 2
    expect(replies.take(b)).toEqual(["b1"])
    expect(replies.take(b)).toEqual([])
    expect(replies.take(c)).toEqual(["c1"])
  })

  it("a flush asked for many times in one turn runs once, after the microtasks queued before it", async () => {
    const order: Array<string> = []
    const schedule = flushAfterMicrotasks(() => order.push("flush"))
    queueMicrotask(() => order.push("queued before"))
    schedule()
    schedule()
    await Promise.resolve()
    await Promise.resolve()
    expect(order).toEqual(["queued before", "flush"])
    // and again in a later turn
    schedule()
    await Promise.resolve()
    expect(order).toEqual(["queued before", "flush", "flush"])
  })
})
