import { describe, expect, it } from "@effect/vitest"
import { Rpc } from "@effect/rpc"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Tracer from "effect/Tracer"
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

/** A tracer that records every span it starts and otherwise is the current one. */
const recordingTracer = Effect.map(Effect.tracer, (base) => {
  const spans: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) => {
      const span = base.span(name, parent, context, links, startTime, kind, options)
      spans.push(span)
      return span
    },
    context: (f, fiber) => base.context(f, fiber)
  })
  return { tracer, spans }
})

const troupeSpans = (spans: ReadonlyArray<Tracer.Span>) => spans.filter((span) => span.name.startsWith("troupe."))

const parentIdOf = (span: Tracer.Span): string =>
  Option.match(span.parent, { onNone: () => "", onSome: (parent) => parent.spanId })

describe("tracing of asks", () => {
  it.scoped("the ask's client span on the caller is the parent of the handler's server span on the host", () =>
    Effect.gen(function*() {
      const { spans, tracer } = yield* recordingTracer
      yield* Effect.gen(function*() {
        // the nodes are built under the recording tracer, so their handler fibers use it too
        const cluster = yield* makeCluster("msgpack")
        yield* cluster.add(TracedLive, { name: "host" })
        const caller = yield* cluster.add(Layer.empty, { name: "caller", tracing: true })
        const quiet = yield* cluster.add(Layer.empty, { name: "quiet", tracing: false })
        const auto = yield* cluster.add(Layer.empty, { name: "auto" })
        const traced = yield* Effect.provide(Actor.client(Traced), caller)
        const fromQuiet = yield* Effect.provide(Actor.client(Traced), quiet)
        const fromAuto = yield* Effect.provide(Actor.client(Traced), auto)

        // outside any span, a node with `tracing: false` opens no span
        expect((yield* fromQuiet("t3").Where()).traceparent).toBe("")
        expect(troupeSpans(spans)).toEqual([])
        // a node by default ("auto") traces every ask when a tracer is installed (this one)
        const autoReply = yield* fromAuto("t3").Where()
        const [autoAsk, autoHandle, ...autoRest] = troupeSpans(spans)
        expect(autoRest).toEqual([])
        expect([autoAsk!.name, autoHandle!.name]).toEqual(["troupe.ask Traced.Where", "troupe.handle Traced.Where"])
        expect(autoReply.traceparent).toBe(`00-${autoAsk!.traceId}-${autoAsk!.spanId}-01`)
        spans.length = 0

        // outside any span, the tracing node traces the ask
        const reply = yield* traced("t3").Where()
        const [ask, handle, ...rest] = troupeSpans(spans)
        expect(rest).toEqual([])
        for (const [span, name, kind] of [[ask!, "ask", "client"], [handle!, "handle", "server"]] as const) {
          expect(span.name).toBe(`troupe.${name} Traced.Where`)
          expect(span.kind).toBe(kind)
          expect(Object.fromEntries(span.attributes)).toMatchObject({
            "troupe.kind": "Traced",
            "troupe.id": "t3",
            "troupe.tag": "Where"
          })
        }
        expect(ask!.parent).toEqual(Option.none())
        // across the wire: the handler's parent is the caller's ask span, in one trace
        expect(parentIdOf(handle!)).toBe(ask!.spanId)
        expect(handle!.traceId).toBe(ask!.traceId)
        expect(reply.traceparent).toBe(`00-${ask!.traceId}-${ask!.spanId}-01`)
        expect(reply.parentSpanId).toBe(ask!.spanId)
        // both ended, successfully
        for (const span of [ask!, handle!]) {
          expect(span.status._tag).toBe("Ended")
          if (span.status._tag === "Ended") expect(Exit.isSuccess(span.status.exit)).toBe(true)
        }

        // inside a caller's span, even a node with `tracing: false` traces the ask, as a child of it
        spans.length = 0
        const outer = yield* Effect.withSpan(
          Effect.zipRight(fromQuiet("t4").Where(), Effect.orDie(Effect.currentSpan)),
          "caller-operation"
        )
        const [innerAsk, innerHandle] = troupeSpans(spans)
        expect(innerAsk!.name).toBe("troupe.ask Traced.Where")
        expect(parentIdOf(innerAsk!)).toBe(outer.spanId)
        expect(parentIdOf(innerHandle!)).toBe(innerAsk!.spanId)
        expect(new Set([outer.traceId, innerAsk!.traceId, innerHandle!.traceId]).size).toBe(1)
      }).pipe(Effect.withTracer(tracer))
    }))

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

  it.scoped("under Effect's built-in tracer an ask outside any span is not traced, unless the node traces every ask", () =>
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
