import { describe, expect, it } from "@effect/vitest"
import { Rpc } from "@effect/rpc"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Actor from "../../src/actors/Actor.ts"
import { makeCluster } from "../fixtures/nodes.ts"

const Traced = Actor.make("Traced", [
  Rpc.make("Where", {
    success: Schema.Struct({ traceparent: Schema.String, traceId: Schema.String, parentSpanId: Schema.String })
  })
])

const TracedLive = Actor.toLayer(Traced, {
  Where: (_, { headers }) =>
    Effect.map(Effect.currentSpan.pipe(Effect.option), (span) => ({
      traceparent: headers["traceparent"] ?? "",
      traceId: Option.match(span, { onNone: () => "", onSome: (s) => s.traceId }),
      parentSpanId: Option.match(span, {
        onNone: () => "",
        onSome: (s) => Option.match(s.parent, { onNone: () => "", onSome: (p) => p.spanId })
      })
    }))
})

describe("tracing of asks", () => {
  it.scoped("an ask inside a span carries its trace to the handler's span on another node", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster("msgpack")
      yield* cluster.add(TracedLive, { name: "host" })
      const caller = yield* cluster.add(Layer.empty, { name: "caller" })
      const traced = yield* Effect.provide(Actor.client(Traced), caller)
      const { outer, reply } = yield* Effect.gen(function*() {
        const outer = yield* Effect.orDie(Effect.currentSpan)
        return { outer, reply: yield* traced("t1").Where() }
      }).pipe(Effect.withSpan("caller-operation"))
      expect(reply.traceId).toBe(outer.traceId)
      // the handler's parent is the ask's client span, itself a child of the caller's span
      const [, traceId, askSpanId] = reply.traceparent.split("-")
      expect(traceId).toBe(outer.traceId)
      expect(reply.parentSpanId).toBe(askSpanId)
      expect(askSpanId).not.toBe(outer.spanId)
    }))

  it.scoped("an ask outside any span is not traced, unless the node traces every ask", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster("json")
      yield* cluster.add(TracedLive, { name: "host" })
      const quiet = yield* cluster.add(Layer.empty, { name: "quiet" })
      const loud = yield* cluster.add(Layer.empty, { name: "loud", tracing: true })
      const fromQuiet = yield* Effect.provide(Actor.client(Traced), quiet)
      const fromLoud = yield* Effect.provide(Actor.client(Traced), loud)
      expect(yield* fromQuiet("t2").Where()).toEqual({ traceparent: "", traceId: "", parentSpanId: "" })
      const traced = yield* fromLoud("t2").Where()
      expect(traced.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/)
      expect(traced.traceId).toBe(traced.traceparent.split("-")[1])
    }))
})
