/**
 * The secure receive paths under generated hostile frames: handshakes and sealed frames from
 * strangers (every field of `Handshake` and `Sealed` frames, handshake bodies whose part lengths
 * lie), and frames of every type sealed by an insider with a valid session, pairwise to the
 * victim's direct subject and with its group key to shared subjects. The same properties as the
 * plain paths: nothing throws, nothing reaches an invalid subject, drops are counted, the nodes
 * keep answering, their tables stay bounded.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Codec from "../../src/layers/Codec.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as Secure from "../../src/layers/Secure.ts"
import { ProtocolVersion } from "../../src/schema/Envelope.ts"
import { defaultPools, frames, type FuzzFrame, wireOf } from "./arbitraries.ts"
import { bytesOf, corpus } from "./corpus/corpus.ts"
import { bounded, makeInsider, makeTarget, type Target } from "./harness.ts"
import { afterBatch, afterTimeouts, bothEncodings, deliverOne, fuzzPath } from "./paths.ts"
import { FRAMES_PER_PATH } from "./settings.ts"
import { encodings, judge } from "./wireBytes.ts"

const pools = (t: Target) => ({
  ...defaultPools,
  kinds: ["FuzzActor", "FuzzService"],
  tags: ["Echo", "Count", "Put"],
  // not "legit": a stranger (or an insider) can hold an actor's mailbox as any caller can
  ids: ["", "a", "b"],
  subjects: ["fuzz.a", "fuzz.legit", "discovery", "actor.FuzzService", `node.${t.victimId}`],
  // strangers, and the caller's id (a stranger claiming to be a known peer)
  sources: ["n1", "stranger", t.callerId]
})

describe("secure receive paths fuzz", () => {
  it.scoped("handshake: forged handshake frames of every step", () =>
    Effect.gen(function*() {
      const t = yield* makeTarget("secure")
      const delivered = yield* fuzzPath(
        t,
        "secure handshake",
        [`node.${t.victimId}`],
        frames(pools(t), { Handshake: 10, S: 1, Objects: 1 }),
        FRAMES_PER_PATH,
        bothEncodings(t)
      )
      expect(delivered).toBeGreaterThanOrEqual(FRAMES_PER_PATH)
      expect(yield* afterBatch(t, 0)).toBeUndefined()
      yield* afterTimeouts(t)
    }), 60_000)

  it.scoped("sealed: forged sealed frames on every subject", () =>
    Effect.gen(function*() {
      const t = yield* makeTarget("secure")
      const delivered = yield* fuzzPath(
        t,
        "secure sealed (strangers)",
        [
          `node.${t.victimId}`,
          "actor.FuzzService",
          "actor.FuzzActor",
          "interrupt.FuzzActor",
          "discovery",
          "topic.fuzz.a"
        ],
        frames(pools(t), { S: 10, Handshake: 1 }),
        FRAMES_PER_PATH,
        bothEncodings(t)
      )
      expect(delivered).toBeGreaterThanOrEqual(FRAMES_PER_PATH)
      expect(yield* afterBatch(t, 0)).toBeUndefined()
      yield* afterTimeouts(t)
    }), 60_000)

  it.scoped("sealed by an insider: frames of every type inside a valid session", () =>
    Effect.gen(function*() {
      const t = yield* makeTarget("secure")
      const insider = yield* makeInsider(t.network)
      const sealInside = (frame: FuzzFrame, subject: string): string | undefined => {
        for (const encoding of encodings) {
          const bytes = wireOf(frame, encoding)
          const judged = judge(bytes, { receiver: false })
          // the plaintext is one frame: one drop at least when it must be dropped. A group frame
          // may wait (bounded) for the insider's group key, and is judged when it is opened: its
          // drop is counted then, not within this delivery
          const problem = deliverOne(t, subject, bytes, `a ${frame.type} frame in ${encoding} sealed by an insider`, {
            verdict: judged.verdict,
            drops: subject.startsWith("node.") ? Math.min(1, judged.drops) : 0
          })
          if (problem !== undefined) return problem
        }
        return undefined
      }
      // deliver = seal: the insider's publish reaches the victim synchronously
      const insideTarget: Target = {
        ...t,
        deliver: (subject, bytes) => (insider.seal(subject, bytes) === undefined ? 1 : 0)
      }
      const sealed = (frame: FuzzFrame, subject: string) => {
        const saved = t.deliver
        Object.assign(t, { deliver: insideTarget.deliver })
        try {
          return sealInside(frame, subject)
        } finally {
          Object.assign(t, { deliver: saved })
        }
      }
      const delivered = yield* fuzzPath(
        t,
        "secure sealed (insider)",
        [`node.${t.victimId}`, "actor.FuzzService", "discovery", "topic.fuzz.a"],
        frames({
          ...pools(t),
          sources: ["n1", "stranger", insider.nodeId, t.callerId],
          // an insider is a trusted member: announcing in its own name that it hosts the kinds
          // the legitimate asks use is its right, and those asks would then wait for their
          // timeout, which never comes here as the clock stands still (asks to a member that
          // does not answer end in AskTimeout: test/runtime/Node.test.ts). Announcements in
          // another node's name are refused: see the impersonation test below
          heartbeatKinds: ["K", "Other"]
        }, {
          Q: 5,
          X: 2,
          I: 2,
          E: 2,
          C: 1,
          T: 2,
          S: 1,
          Ack: 2,
          Heartbeat: 2,
          Handshake: 2,
          Objects: 3
        }, { batches: false }),
        FRAMES_PER_PATH,
        sealed
      )
      expect(delivered).toBeGreaterThanOrEqual(FRAMES_PER_PATH)
      expect(yield* afterBatch(t, 0)).toBeUndefined()
      yield* afterTimeouts(t)
    }), 60_000)

  it.scoped("an insider cannot speak in another node's name: its heartbeats and interrupts must name itself", () =>
    Effect.gen(function*() {
      const t = yield* makeTarget("secure")
      const insider = yield* makeInsider(t.network)
      const victimSecure = Context.get(t.victim, Secure.Secure)
      const victimDiscovery = Context.get(t.victim, Discovery.Discovery)
      // a signed group frame (a heartbeat on "discovery") fails its signature check first, which
      // vouches for the signer only; the others are refused as impersonation
      const impersonations = () => {
        const { rejected } = victimSecure.stats()
        return (rejected["impersonation"] ?? 0) + (rejected["signature"] ?? 0)
      }
      const heartbeat = (source: string) =>
        Codec.msgpackCodec.encode({
          _tag: "Heartbeat",
          v: ProtocolVersion,
          source,
          name: source,
          incarnation: `${source}.1`,
          address: "in-memory://ghost",
          kinds: ["FuzzActor", "FuzzService"],
          isServing: true,
          startedAt: 0,
          periodMillis: 1000
        }).pipe(Either.getOrThrow)
      const interrupt = Codec.msgpackCodec.encode({
        _tag: "Interrupt",
        v: ProtocolVersion,
        source: t.callerId,
        requestId: 1
      }).pipe(Either.getOrThrow)
      // pairwise to the victim and with the group key on the shared subjects
      expect(insider.seal(`node.${t.victimId}`, heartbeat("ghost-1"))).toBeUndefined()
      expect(insider.seal("discovery", heartbeat("ghost-2"))).toBeUndefined()
      expect(insider.seal("interrupt.FuzzActor", interrupt)).toBeUndefined()
      expect(insider.seal(`node.${t.victimId}`, interrupt)).toBeUndefined()
      // in its own name, it is a member
      expect(insider.seal("discovery", heartbeat(insider.nodeId))).toBeUndefined()
      yield* bounded(
        "the insider's frames being opened",
        Effect.gen(function*() {
          while (
            impersonations() < 4 ||
            !victimDiscovery.unsafeState().members.some((m) => m.nodeId === insider.nodeId)
          ) yield* Effect.yieldNow()
        })
      )
      expect(impersonations()).toBe(4)
      const members = victimDiscovery.unsafeState().members.map((m) => m.nodeId)
      expect(members).not.toContain("ghost-1")
      expect(members).not.toContain("ghost-2")
    }))

  it.scoped("the corpus, on a secure node", () =>
    Effect.gen(function*() {
      const t = yield* makeTarget("secure")
      const problems: Array<string> = []
      for (const entry of corpus) {
        if (!entry.paths.includes("handshake") && !entry.paths.includes("sealed")) continue
        const problem = deliverOne(t, `node.${t.victimId}`, bytesOf(entry), `corpus "${entry.name}"`)
        if (problem !== undefined) problems.push(problem.slice(0, 400))
      }
      expect(yield* afterBatch(t, 1)).toBeUndefined()
      expect(problems).toEqual([])
    }))
})
