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

  it("batch reply slots: none for a batch without any, each taken once, at most two generations of `max` kept", () => {
    const replies = new BatchReplies(2, 1_000, 65_536, () => 0)
    expect(replies.track([])).toBeUndefined()
    const a = replies.track(["a1", "a2"])!
    const b = replies.track(["b1"])!
    const c = replies.track(["c1"])! // the generation is full: a and b become the older one
    const d = replies.track(["d1"])!
    const e = replies.track(["e1"])! // full again: a and b are forgotten
    expect(replies.slots).toBe(3)
    expect(replies.take(a)).toEqual([])
    expect(replies.take(b)).toEqual([])
    expect(replies.take(c)).toEqual(["c1"])
    expect(replies.take(c)).toEqual([])
    expect(replies.take(d)).toEqual(["d1"])
    expect(replies.take(e)).toEqual(["e1"])
    expect(replies.slots).toBe(0)
  })

  it("over the budget, batch reply slots are kept for the retention time to twice that, however few batches follow", () => {
    let now = 0
    const replies = new BatchReplies(4096, 1_000, 1, () => now)
    const a = replies.track(["a1"])!
    const b = replies.track(["b1"])!
    now = 999
    const c = replies.track(["c1"])! // still the first generation
    expect(replies.take(a)).toEqual(["a1"])
    now = 1_000
    const d = replies.track(["d1"])! // b and c become the older generation
    now = 1_999
    expect(replies.take(b)).toEqual(["b1"]) // kept: younger than twice the retention
    now = 2_000
    replies.track(["e1"]) // c is forgotten, d becomes the older generation
    expect(replies.take(c)).toEqual([])
    expect(replies.take(d)).toEqual(["d1"])
    expect(replies.slots).toBe(1)
  })

  it("within the budget, batch reply slots are kept however old (a reconnect may bring the answer late)", () => {
    let now = 0
    const replies = new BatchReplies(4096, 1_000, 100, () => now)
    const a = replies.track(["a1", "a2"])!
    now = 60_000
    const b = replies.track(["b1"])!
    now = 120_000
    replies.track(["c1"])
    expect(replies.take(a)).toEqual(["a1", "a2"])
    expect(replies.take(b)).toEqual(["b1"])
    expect(replies.slots).toBe(1)
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
