import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as Codec from "../../src/layers/Codec.ts"
import * as Subject from "../../src/layers/Subject.ts"
import * as Transport from "../../src/layers/Transport.ts"
import { type Envelope, ProtocolVersion } from "../../src/schema/Envelope.ts"

const event = (n: number): Envelope => ({
  _tag: "Event",
  v: ProtocolVersion,
  source: "t",
  subject: "s",
  headers: {},
  body: n
})

describe("subject matching", () => {
  it("follows NATS wildcards: * is one token, > the rest", () => {
    const cases: ReadonlyArray<[string, string, boolean]> = [
      ["a.b.c", "a.b.c", true],
      ["a.*.c", "a.b.c", true],
      ["a.*.c", "a.b.d", false],
      ["a.*", "a.b.c", false],
      ["a.>", "a.b.c", true],
      ["a.>", "a", false],
      [">", "a", true],
      ["*.*", "a.b", true],
      ["*", "a.b", false],
      ["a.b", "a.b.c", false]
    ]
    for (const [pattern, subject, expected] of cases) {
      expect([pattern, subject, Subject.matches(pattern, subject)]).toEqual([pattern, subject, expected])
    }
  })

  it("validates subjects", () => {
    expect(Subject.isValidSubject("a.b", false)).toBe(true)
    expect(Subject.isValidSubject("a.*", false)).toBe(false)
    expect(Subject.isValidSubject("a.>.b", true)).toBe(false)
    expect(Subject.isValidSubject("a..b", true)).toBe(false)
    expect(Subject.isValidSubject("a b", true)).toBe(false)
    expect(Subject.isValidSubject("a.b*", true)).toBe(false)
  })
})

describe("Transport.inMemory", () => {
  it.effect("delivers to every subscriber, and to one member of each queue group in turn", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const transport = Transport.makeInMemory({ network })
      const scope = yield* Scope.make()
      const got: Record<string, Array<number>> = { all: [], wild: [], q1: [], q2: [] }
      const take = (name: string) => (frame: Envelope) => got[name]!.push((frame as { body: number }).body)
      yield* Scope.extend(
        Effect.all([
          transport.subscribe("orders.eu", take("all")),
          transport.subscribe("orders.*", take("wild")),
          transport.subscribe("orders.eu", take("q1"), { queue: "workers" }),
          transport.subscribe("orders.>", take("q2"), { queue: "workers" })
        ]),
        scope
      )
      expect(network.subscriptionCount).toBe(4)
      for (let n = 0; n < 4; n++) yield* transport.publish("orders.eu", event(n))
      expect(got.all).toEqual([0, 1, 2, 3])
      expect(got.wild).toEqual([0, 1, 2, 3])
      expect([...got.q1!, ...got.q2!].sort()).toEqual([0, 1, 2, 3])
      expect(got.q1!.length).toBe(2)
      yield* Scope.close(scope, Exit.void)
      expect(network.subscriptionCount).toBe(0)
    }))

  it.effect("keeps namespaces apart", () =>
    Effect.gen(function*() {
      const network = Transport.makeNetwork()
      const a = Transport.makeInMemory({ network, namespace: "a" })
      const b = Transport.makeInMemory({ network, namespace: "b" })
      const got: Array<number> = []
      yield* a.subscribe("x", (f) => got.push((f as { body: number }).body))
      yield* b.publish("x", event(1))
      yield* a.publish("x", event(2))
      expect(got).toEqual([2])
    }).pipe(Effect.scoped))

  it.effect("rejects an invalid subject with TransportError", () =>
    Effect.gen(function*() {
      const transport = Transport.makeInMemory()
      const error = yield* Effect.flip(transport.subscribe("a..b", () => {}))
      expect(error._tag).toBe("TransportError")
    }).pipe(Effect.scoped))
})

describe("the receivers' last resort", () => {
  const malformed = () => Effect.map(Metric.value(Transport.malformedFrames), (state) => state.count)
  const capture = (lines: Array<string>) =>
    Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ message }) => {
        lines.push(Array.isArray(message) ? message.join(" ") : String(message))
      })
    )

  for (const serialize of [false, true]) {
    it.scoped(`whatever a frame makes throw in a callback is a counted drop, logged once per second (${serialize ? "serialized" : "zero-copy"})`, () =>
      Effect.gen(function*() {
        const lines: Array<string> = []
        const network = Transport.makeNetwork()
        const transport = serialize
          ? Transport.makeInMemorySerialized(Codec.msgpackCodec, { network })
          : Transport.makeInMemory({ network })
        let seen = 0
        yield* transport.subscribe("s", () => {
          seen++
          throw new TypeError("a handler defect")
        }).pipe(Effect.provide(capture(lines)))
        const before = yield* malformed()
        // the publisher never sees the receiver's defect
        for (let i = 0; i < 5; i++) expect(transport.unsafePublish("s", event(i))).toBeUndefined()
        expect(seen).toBe(5)
        expect((yield* malformed()) - before).toBe(5)
        yield* Effect.yieldNow()
        expect(lines).toEqual([
          expect.stringMatching(
            /^dropped 1 malformed frame on troupe\.default\.s since the last report; the latest: TypeError: a handler defect$/
          )
        ])
        yield* TestClock.adjust("999 millis")
        transport.unsafePublish("s", event(5))
        yield* Effect.yieldNow()
        expect(lines.length).toBe(1)
        yield* TestClock.adjust("1 millis")
        for (let i = 0; i < 2; i++) transport.unsafePublish("s", event(6 + i))
        yield* Effect.yieldNow()
        // the line says how many were dropped since the one before
        expect(lines.length).toBe(2)
        expect(lines[1]).toMatch(/^dropped 6 malformed frames on troupe\.default\.s since the last report/)
        expect((yield* malformed()) - before).toBe(8)
        // the subscription still delivers
        expect(seen).toBe(8)
      }))
  }

  it.scoped("garbage bytes are counted and reported at the same bounded rate, the detail only in the line written", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const network = Transport.makeNetwork()
      const transport = Transport.makeInMemorySerialized(Codec.jsonCodec, { network })
      const received: Array<Envelope> = []
      yield* transport.subscribe("g", (frame) => received.push(frame)).pipe(Effect.provide(capture(lines)))
      const before = yield* malformed()
      const garbage = [
        "[{\"toString\":1}]",
        "{\"_tag\":{\"toString\":1}}",
        "[".repeat(10_000) + "]".repeat(10_000),
        "[\"Q\",1,\"a b c\",1,\"K\",\"i\",\"T\",0,2,0]"
      ]
      for (let round = 0; round < 100; round++) {
        for (const text of garbage) network.route("troupe.default.g", new TextEncoder().encode(text))
      }
      transport.unsafePublish("g", event(1))
      yield* Effect.yieldNow()
      expect((yield* malformed()) - before).toBe(400)
      expect(lines).toEqual([expect.stringContaining("a frame whose tag is not a string")])
      expect(received).toMatchObject([{ _tag: "Event", body: 1 }])
    }))
})
