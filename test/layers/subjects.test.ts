import { describe, expect, it } from "@effect/vitest"
import * as Subjects from "../../src/layers/internal/subjects.ts"

// the grammar node.ts matched reply slots with before the subjects had one home
const REPLY_SLOT = /^node\.([A-Za-z0-9_-]{1,255})\.nr\.(\d{1,15})$/

describe("wire subjects", () => {
  it("a reply slot is parsed back into its caller and request id", () => {
    const slot = Subjects.replySlot("n-1_a", 42)
    expect(slot).toBe("node.n-1_a.nr.42")
    expect(slot.startsWith(Subjects.replySlotsOf("n-1_a"))).toBe(true)
    expect(Subjects.parseReplySlot(slot)).toEqual({ caller: "n-1_a", requestId: 42 })
  })

  it("parseReplySlot accepts exactly what the reply-slot grammar accepts", () => {
    const long = "a".repeat(255)
    const samples = [
      "node.a.nr.1",
      "node.a.nr.",
      "node..nr.1",
      "node.a.b.nr.1",
      "node.a.nr.1.2",
      "node.a.nr.b.nr.5",
      "node.a.nr.1234567890123456",
      "node.a.nr.123456789012345",
      `node.${long}.nr.7`,
      `node.${long}a.nr.7`,
      "node.a b.nr.1",
      "node.a.nr.1\n",
      "node.é.nr.1",
      "node.a.nr.٣",
      "node.a.fwd.1",
      "actor.a.nr.1",
      "xnode.a.nr.1"
    ]
    for (const subject of samples) {
      const match = REPLY_SLOT.exec(subject)
      expect(Subjects.parseReplySlot(subject), subject).toEqual(
        match === null ? undefined : { caller: match[1], requestId: Number(match[2]) }
      )
    }
  })

  it("directPeerOf reads the node of exactly a direct subject, as the secure layer's grammar does", () => {
    const NODE_SUBJECT = /^node\.([^.*>]+)$/
    const samples = ["node.a", "node.", "node.a.b", "node.*", "node.>", "node.a b", "nodes.a", "node.é", "actor.a"]
    for (const subject of samples) {
      expect(Subjects.directPeerOf(subject), subject).toBe(NODE_SUBJECT.exec(subject)?.[1])
    }
    expect(Subjects.directPeerOf(Subjects.node("n-1"))).toBe("n-1")
  })

  it("events and heartbeats are the signed subjects", () => {
    expect(Subjects.isSigned(Subjects.topic("a.b"))).toBe(true)
    expect(Subjects.isSigned(Subjects.DISCOVERY)).toBe(true)
    expect(Subjects.isSigned(Subjects.actor("k"))).toBe(false)
    expect(Subjects.isSigned(Subjects.node("n"))).toBe(false)
  })

  it("a namespace is one token without wildcards", () => {
    expect(Subjects.isNamespace("default")).toBe(true)
    expect(Subjects.isNamespace("a.b")).toBe(false)
    expect(Subjects.isNamespace("*")).toBe(false)
    expect(Subjects.isNamespace("")).toBe(false)
    expect(Subjects.prefixOf(undefined)).toBe("troupe.default.")
  })

  it("builds every shared subject", () => {
    expect([
      Subjects.node("n"),
      Subjects.actor("k"),
      Subjects.interrupt("k"),
      Subjects.topic("orders.placed"),
      Subjects.DISCOVERY,
      Subjects.forwardsOf("n"),
      Subjects.handshakeSlot("n", "p"),
      Subjects.sealedBatchSlot("n", 3),
      Subjects.batchSlot("_batch.x", "*")
    ]).toEqual([
      "node.n",
      "actor.k",
      "interrupt.k",
      "topic.orders.placed",
      "discovery",
      "node.n.fwd.",
      "node.n.hs.p",
      "node.n.hb.3",
      "_batch.x.*"
    ])
    expect(Subjects.isTopic(Subjects.topic("a"))).toBe(true)
    expect(Subjects.isDirect(Subjects.replySlot("n", 1))).toBe(true)
  })
})
