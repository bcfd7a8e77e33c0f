/**
 * Raw byte floods over a real nats-server: with plain nats.js, as anyone who can publish on the
 * broker would, a bounded flood (random bytes, and generated hostile frames of every type in both
 * encodings) to every Troupe subject of a running node. The node must stay connected, keep
 * answering asks during and after the flood, and discovery must still see it serving.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as fc from "effect/FastCheck"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import { connect } from "nats"
import * as Actor from "../../src/actors/Actor.ts"
import * as Topic from "../../src/actors/Topic.ts"
import * as Codec from "../../src/layers/Codec.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import * as Transport from "../../src/layers/Transport.ts"
import * as Node from "../../src/runtime/Node.ts"
import { natsServerResource } from "../fixtures/nats.ts"
import { defaultPools, frames, wireOf } from "./arbitraries.ts"
import { bytesOf, corpus } from "./corpus/corpus.ts"
import { FuzzActor, FuzzService, fuzzKinds, FuzzTopic } from "./harness.ts"
import { seed as fixedSeed } from "./settings.ts"

const NAMESPACE = "flood"
const FLOOD = 20_000
/** frames published between two legitimate asks */
const EVERY = 2_000

const natsNode = (url: string, name: string, hosted: boolean) =>
  Layer.build(
    (hosted ? fuzzKinds : Layer.empty).pipe(
      Layer.provideMerge(Node.layer({ name })),
      Layer.provideMerge(Layer.provideMerge(
        Discovery.nats({ heartbeat: "500 millis" }),
        Transport.nats({ servers: url, namespace: NAMESPACE }).pipe(Layer.provide(Codec.msgpack))
      )),
      Layer.orDie
    )
  )

describe("raw floods over NATS", () => {
  it.live(
    "a flood of random bytes and hostile frames on every subject: the node stays connected, answers, and is seen serving",
    () =>
      Effect.gen(function*() {
        const server = yield* natsServerResource()
        const victim = yield* natsNode(server.url, "victim", true)
        const caller = yield* natsNode(server.url, "caller", false)
        const victimId = Context.get(victim, Node.Node).nodeId
        const events: Array<string> = []
        yield* Context.get(victim, Transport.Transport).watch((event) => events.push(event))
        let received = 0
        yield* Topic.subscribe(FuzzTopic).pipe(
          Stream.runForEach(() => Effect.sync(() => void received++)),
          Effect.provide(victim),
          Effect.forkScoped
        )
        yield* Discovery.awaitServing("FuzzActor", { timeout: "10 seconds" }).pipe(Effect.provide(caller))
        const actor = (yield* Effect.provide(Actor.client(FuzzActor), caller))("legit")
        const service = yield* Effect.provide(Actor.client(FuzzService), caller)
        const legit = (n: number) =>
          Effect.gen(function*() {
            expect(yield* actor.Echo({ n }, { timeout: "5 seconds" })).toBe(n)
            expect(yield* service.Echo({ n }, { timeout: "5 seconds" })).toBe(n)
          })
        yield* legit(0)

        const seed = fixedSeed ?? Date.now() % 2 ** 31
        const pools = {
          ...defaultPools,
          kinds: ["FuzzActor", "FuzzService", "Nope"],
          tags: ["Echo", "Count", "Put"],
          subjects: ["fuzz.a", "fuzz.b"],
          sources: ["n1", "stranger"]
        }
        const generated = fc.sample(
          frames(pools, {
            Q: 4,
            X: 2,
            I: 2,
            E: 2,
            C: 1,
            T: 2,
            S: 2,
            Ack: 2,
            Heartbeat: 3,
            Handshake: 1,
            Objects: 3,
            Piece: 2,
            BinaryItems: 1
          }),
          { numRuns: FLOOD / 2, seed }
        )
        const random = fc.sample(fc.uint8Array({ maxLength: 128 }), { numRuns: FLOOD / 2, seed: seed + 1 })
        const messages: Array<Uint8Array> = []
        generated.forEach((frame, i) => messages.push(wireOf(frame, i % 2 === 0 ? "json" : "msgpack"), random[i]!))
        // and the corpus, once each
        for (const entry of corpus) messages.push(bytesOf(entry))
        const prefix = `troupe.${NAMESPACE}.`
        const subjects = [
          "discovery",
          `node.${victimId}`,
          "actor.FuzzActor",
          "actor.FuzzService",
          "interrupt.FuzzActor",
          "interrupt.FuzzService",
          "topic.fuzz.a"
        ].map((s) => prefix + s)

        const nc = yield* Effect.acquireRelease(
          Effect.promise(() => connect({ servers: server.url, name: "flooder" })),
          (nc) => Effect.promise(() => nc.close())
        )
        const problems: Array<string> = []
        for (let i = 0; i < messages.length; i++) {
          nc.publish(subjects[i % subjects.length]!, messages[i]!)
          if ((i + 1) % 500 === 0) yield* Effect.promise(() => nc.flush())
          if ((i + 1) % EVERY === 0) {
            // during the flood: each legitimate ask is answered
            const answered = yield* Effect.either(legit(i))
            if (answered._tag === "Left") {
              problems.push(`after ${i + 1} frames (seed ${seed}): ${String(answered.left)}`)
              break
            }
          }
        }
        yield* Effect.promise(() => nc.flush())
        expect(problems, `the node stopped answering during the flood (replay with FUZZ_SEED=${seed})`).toEqual([])
        // after the flood: it answers, its events arrive, and discovery sees it serving and alive
        yield* legit(-1)
        const before = received
        yield* Topic.publish(FuzzTopic, { n: 1 }, { subject: "fuzz.legit" }).pipe(Effect.provide(caller))
        yield* Effect.gen(function*() {
          while (received === before) yield* Effect.sleep("10 millis")
        }).pipe(Effect.timeout("5 seconds"))
        yield* Effect.sleep("1200 millis") // two heartbeat periods
        const state = yield* Discovery.state.pipe(Effect.provide(caller))
        expect(
          state.members.find((m) => m.nodeId === victimId),
          `discovery of the victim after the flood (seed ${seed})`
        )
          .toMatchObject({ status: "alive", isServing: true })
        expect(events, "the victim's connection").toEqual([])
      }).pipe(Effect.scoped),
    60_000
  )
})
