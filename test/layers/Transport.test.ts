import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
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
    for (const [pattern, subject, expected] of cases) expect([pattern, subject, Subject.matches(pattern, subject)]).toEqual([pattern, subject, expected])
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
