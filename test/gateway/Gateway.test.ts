import { describe, expect, it } from "@effect/vitest"
import { Rpc } from "@effect/rpc"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as http from "node:http"
import * as Actor from "../../src/actors/Actor.ts"
import { ActorSystem } from "../../src/actors/ActorSystem.ts"
import * as Gateway from "../../src/gateway/Gateway.ts"
import * as Node from "../../src/runtime/Node.ts"
import { freePort } from "../fixtures/nats.ts"
import { makeCluster, type TransportOptions } from "../fixtures/nodes.ts"

class Refused extends Schema.TaggedError<Refused>()("Refused", { reason: Schema.String }) {}
class Broken extends Schema.TaggedError<Broken>()("Broken", { code: Schema.Number }) {}

const rpcs = [
  Rpc.make("Hello", {
    payload: { name: Schema.String, greeting: Schema.optional(Schema.String) },
    success: Schema.String
  }),
  Rpc.make("Add", { payload: { a: Schema.Number, b: Schema.NumberFromString }, success: Schema.Number }),
  Rpc.make("Headers", { success: Schema.Record({ key: Schema.String, value: Schema.String }) }),
  Rpc.make("When", { payload: { at: Schema.Date }, success: Schema.Date }),
  Rpc.make("Refuse", { payload: { reason: Schema.String }, error: Schema.Union(Refused, Broken) }),
  Rpc.make("Break", { error: Schema.Union(Refused, Broken) }),
  Rpc.make("Die", {}),
  Rpc.make("Slow", { success: Schema.String }),
  Rpc.make("Nothing", {}),
  Rpc.make("Trace", { success: Schema.Struct({ traceparent: Schema.String, spanTraceId: Schema.String }) }),
  Rpc.make("Blob", { success: Schema.Struct({ name: Schema.String, data: Schema.Uint8ArrayFromSelf }) }),
  /** a reply of `bytes` characters */
  Rpc.make("Sized", { payload: { bytes: Schema.NumberFromString }, success: Schema.String })
] as const

const Greeter = Actor.make("GwGreeter", rpcs)
const GreeterService = Actor.service("GwGreeterService", rpcs)
const NotHosted = Actor.make("GwNowhere", rpcs)

/** completed when the `Slow` handler of that actor id is interrupted */
const slowInterrupted = new Map<string, Deferred.Deferred<void>>()
const slowInterruptedOf = (id: string): Deferred.Deferred<void> => {
  let signal = slowInterrupted.get(id)
  if (signal === undefined) {
    signal = Deferred.unsafeMake<void>(FiberId.none)
    slowInterrupted.set(id, signal)
  }
  return signal
}
/** waits (bounded) until the `Slow` handler of `id` has been interrupted on the hosting node */
const awaitSlowInterrupted = (id: string) =>
  Deferred.await(slowInterruptedOf(id)).pipe(
    Effect.timeoutFail({
      duration: "10 seconds",
      onTimeout: () => new Error(`the Slow handler of ${id} was not interrupted`)
    }),
    Effect.orDie
  )

const handlers: Actor.Handlers<Actor.Rpcs<typeof Greeter>, Actor.CurrentAddress> = {
  Hello: ({ greeting, name }) =>
    Effect.map(Actor.CurrentAddress, (address) => `${greeting ?? "hello"} ${name} from ${address.id}`),
  Add: ({ a, b }) => Effect.succeed(a + b),
  Headers: (_, { headers }) => Effect.succeed({ ...headers }),
  When: ({ at }) => Effect.succeed(new Date(at.getTime() + 1000)),
  Refuse: ({ reason }) => Effect.fail(new Refused({ reason })),
  Break: () => Effect.fail(new Broken({ code: 7 })),
  Die: () => Effect.die(new Error("secret internals: password=hunter2")),
  Slow: () =>
    Effect.flatMap(Actor.CurrentAddress, ({ id }) =>
      Effect.as(Effect.sleep("10 seconds"), "late").pipe(
        Effect.onInterrupt(() => Deferred.succeed(slowInterruptedOf(id), undefined))
      )),
  Nothing: () => Effect.void,
  Blob: () => Effect.succeed({ name: "blob", data: new Uint8Array([0, 1, 255]) }),
  Sized: ({ bytes }) => Effect.succeed("x".repeat(bytes)),
  Trace: (_, { headers }) =>
    Effect.map(Effect.orDie(Effect.currentSpan), (span) => ({
      traceparent: headers["traceparent"] ?? "",
      spanTraceId: span.traceId
    }))
}

/** streamed replies; what happens to the producers of `Forever` is recorded in `ticks` */
const Ticker = Actor.make("GwTicker", [
  Rpc.make("Count", {
    payload: { n: Schema.Number, failAt: Schema.optional(Schema.Number), dieAt: Schema.optional(Schema.Number) },
    success: Schema.Struct({ i: Schema.Number, at: Schema.Date }),
    error: Refused,
    stream: true
  }),
  Rpc.make("Forever", { success: Schema.Number, stream: true }),
  /** one element, then silence */
  Rpc.make("Stall", { success: Schema.Number, stream: true }),
  /** silence from the start; what happens to it is recorded in `hangs` */
  Rpc.make("Hang", { success: Schema.Number, stream: true }),
  /** `piece(0)`, …, `piece(n - 1)` with schemas that have no JSON encoding for bytes */
  Rpc.make("Bytes", { payload: { n: Schema.Number }, success: Schema.Uint8ArrayFromSelf, stream: true }),
  Rpc.make("Files", {
    payload: { n: Schema.Number },
    success: Schema.Struct({ name: Schema.String, data: Schema.Uint8ArrayFromSelf }),
    stream: true
  }),
  /** ... and with schemas that have one */
  Rpc.make("Base64", { payload: { n: Schema.Number }, success: Schema.Uint8ArrayFromBase64, stream: true }),
  Rpc.make("Octets", { payload: { n: Schema.Number }, success: Schema.Uint8Array, stream: true })
])

/** three bytes */
const piece = (i: number): Uint8Array => new Uint8Array([i, i + 1, 255 - i])
const pieces = (n: number) => Stream.range(0, n - 1).pipe(Stream.map(piece))

const ticks = { started: 0, finalized: 0, produced: 0 }
const hangs = { started: 0, finalized: 0 }

const TickerLive = Actor.toLayer(Ticker, {
  Count: ({ dieAt, failAt, n }) =>
    Stream.range(0, n - 1).pipe(
      Stream.mapEffect((i) =>
        i === failAt
          ? Effect.fail(new Refused({ reason: `failed at ${i}` }))
          : i === dieAt
          ? Effect.die(new Error("secret internals: password=hunter2"))
          : Effect.succeed({ i, at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)) })
      )
    ),
  Forever: () =>
    Stream.iterate(0, (i) => i + 1).pipe(
      Stream.tap(() => Effect.sync(() => ticks.produced++).pipe(Effect.zipRight(Effect.sleep("2 millis")))),
      Stream.onStart(Effect.sync(() => ticks.started++)),
      Stream.ensuring(Effect.sync(() => ticks.finalized++))
    ),
  Stall: () => Stream.concat(Stream.succeed(1), Stream.never),
  Hang: () =>
    Stream.never.pipe(
      Stream.onStart(Effect.sync(() => hangs.started++)),
      Stream.ensuring(Effect.sync(() => hangs.finalized++))
    ),
  Bytes: ({ n }) => pieces(n),
  Files: ({ n }) => Stream.range(0, n - 1).pipe(Stream.map((i) => ({ name: `f${i}`, data: piece(i) }))),
  Base64: ({ n }) => pieces(n),
  Octets: ({ n }) => pieces(n)
})

const GreeterLive = Layer.mergeAll(
  Actor.toLayer(Greeter, handlers),
  Actor.toLayer(GreeterService, handlers),
  TickerLive
)

const routes = [
  Gateway.route("GET", "/hello/:name", Greeter, "Hello", { id: ":name" }),
  Gateway.route("POST", "/hello/:name", Greeter, "Hello", { id: "fixed-id" }),
  Gateway.route("GET", "/svc/hello/:name", GreeterService, "Hello"),
  Gateway.route("GET", "/add/:id", Greeter, "Add"),
  Gateway.route("POST", "/add/:id", Greeter, "Add"),
  Gateway.route("GET", "/headers/:id", Greeter, "Headers"),
  Gateway.route("POST", "/when/:id", Greeter, "When"),
  Gateway.route("POST", "/refuse/:id", Greeter, "Refuse", { errors: { Refused: 409 } }),
  Gateway.route("GET", "/break/:id", Greeter, "Break", { errors: { Refused: 409 } }),
  Gateway.route("GET", "/break-unavailable/:id", Greeter, "Break", { errors: { Broken: 503 } }),
  Gateway.route("GET", "/die/:id", Greeter, "Die"),
  Gateway.route("GET", "/slow/:id", Greeter, "Slow", { timeout: "150 millis" }),
  // no timeout of its own: the gateway's `timeout`, else the node's ask timeout
  Gateway.route("GET", "/slow-default/:id", Greeter, "Slow"),
  // a bounded wait, so that a reply lost on the way shows as a 504 rather than a hung test
  Gateway.route("GET", "/sized/:id", Greeter, "Sized", { timeout: "2 seconds" }),
  Gateway.route("DELETE", "/nothing/:id", Greeter, "Nothing"),
  Gateway.route("GET", "/trace/:id", Greeter, "Trace"),
  Gateway.route("GET", "/blob/:id", Greeter, "Blob"),
  Gateway.route("GET", "/nowhere/:name", NotHosted, "Hello", { id: ":name" }),
  Gateway.routeByName("GET", "/dynamic/:name", { kind: "GwGreeter", tag: "Hello" }, { id: "dyn" }),
  Gateway.routeByName("POST", "/dynamic-refuse", { kind: "GwGreeterService", tag: "Refuse", service: true }, {
    errors: { Refused: 422 }
  }),
  Gateway.route("GET", "/count/:id", Ticker, "Count", { errors: { Refused: 409 } }),
  Gateway.route("GET", "/forever/:id", Ticker, "Forever"),
  Gateway.route("GET", "/stall/:id", Ticker, "Stall", { timeout: "200 millis" }),
  Gateway.route("GET", "/hang/:id", Ticker, "Hang"),
  // by name, declared streamed, but the Rpc is not
  Gateway.routeByName("GET", "/not-a-stream/:name", { kind: "GwGreeter", tag: "Hello", stream: true }, { id: ":name" }),
  Gateway.routeByName("POST", "/dynamic-count/:id", { kind: "GwTicker", tag: "Count", stream: true }, {
    errors: { Refused: 422 }
  }),
  Gateway.route("GET", "/bytes/:id", Ticker, "Bytes"),
  Gateway.route("GET", "/files/:id", Ticker, "Files"),
  Gateway.route("GET", "/base64/:id", Ticker, "Base64"),
  Gateway.route("GET", "/octets/:id", Ticker, "Octets"),
  Gateway.routeByName("POST", "/dynamic-bytes/:id", { kind: "GwTicker", tag: "Bytes", stream: true }),
  Gateway.routeByName("POST", "/dynamic-files/:id", { kind: "GwTicker", tag: "Files", stream: true })
]

interface Reply {
  readonly status: number
  readonly body: any
  readonly text: string
  readonly headers: Headers
}

const request = (
  port: number,
  method: string,
  path: string,
  init?: { body?: string; headers?: Record<string, string> }
) =>
  Effect.promise(async (): Promise<Reply> => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      ...(init?.body === undefined ? {} : { body: init.body }),
      headers: { "content-type": "application/json", ...init?.headers },
      signal: AbortSignal.timeout(5_000)
    })
    const text = await response.text()
    let body: unknown = undefined
    try {
      body = text === "" ? undefined : JSON.parse(text)
    } catch {
      body = text
    }
    return { status: response.status, body, text, headers: response.headers }
  })

/** a POST without content-length: the body goes chunked (`transfer-encoding: chunked`) */
const chunkedPost = (port: number, path: string, chunks: ReadonlyArray<string>) =>
  Effect.async<{ status: number; body: any }>((resume) => {
    const req = http.request({
      host: "127.0.0.1",
      port,
      method: "POST",
      path,
      headers: { "content-type": "application/json" }
    }, (res) => {
      let data = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => (data += chunk))
      res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, body: JSON.parse(data) })))
    })
    req.setTimeout(5_000, () => req.destroy(new Error("timeout")))
    req.on("error", (error) => resume(Effect.die(error)))
    for (const chunk of chunks) req.write(chunk)
    req.end()
  })

/**
 * Two nodes on one serializing in-memory network: `b` hosts the kinds, `a` hosts nothing and
 * runs the gateway on a real port, so every request crosses the wire (and its codec). `gateway`
 * adds to (or overrides) the gateway's options; `transport` applies to both nodes.
 */
const setupWith = (options: {
  readonly gateway?: Partial<Gateway.AppOptions>
  readonly transport?: TransportOptions
}) =>
  Effect.gen(function*() {
    const cluster = yield* makeCluster("json", options.transport)
    const b = yield* cluster.add(GreeterLive, { name: "b" })
    const a = yield* cluster.add(Layer.empty, { name: "a" })
    const port = yield* Effect.promise(freePort)
    // what the gateway logs, kept for the assertions (and out of the test output)
    const logs: Array<string> = []
    const capture = Logger.make(({ cause, message }) => {
      logs.push(`${Array.isArray(message) ? message.join(" ") : String(message)} ${Cause.pretty(cause)}`)
    })
    yield* Layer.build(
      Gateway.layer({ port, host: "127.0.0.1", routes, maxBodySize: 1024, ...options.gateway }).pipe(
        Layer.provide(Layer.succeedContext(a)),
        Layer.provide(Logger.replace(Logger.defaultLogger, capture))
      )
    )
    return { port, a, b, logs }
  })

const setup = setupWith({})

/** the NDJSON lines of a reply, parsed */
const lines = (reply: Reply): Array<any> =>
  reply.text.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line))

describe("Gateway", () => {
  it.live("serves an actor on another node: path params, query, body, fixed ids, services", () =>
    Effect.gen(function*() {
      const { port } = yield* setup
      const get = yield* request(port, "GET", "/hello/ada")
      expect(get.status).toBe(200)
      expect(get.body).toBe("hello ada from ada")
      expect(get.headers.get("content-type")).toContain("application/json")

      const query = yield* request(port, "GET", "/hello/ada?greeting=bonjour")
      expect(query.body).toBe("bonjour ada from ada")

      const post = yield* request(port, "POST", "/hello/bob", { body: JSON.stringify({ greeting: "hi" }) })
      expect(post.status).toBe(200)
      expect(post.body).toBe("hi bob from fixed-id")

      const service = yield* request(port, "GET", "/svc/hello/cy")
      expect(service.body).toBe("hello cy from ")

      // Schema.Number from a query string is read leniently; NumberFromString takes the string
      const add = yield* request(port, "GET", "/add/x?a=2&b=40")
      expect(add).toMatchObject({ status: 200, body: 42 })
      const addBody = yield* request(port, "POST", "/add/x", { body: JSON.stringify({ a: 1.5, b: "2" }) })
      expect(addBody).toMatchObject({ status: 200, body: 3.5 })

      // transformations run both ways: a Date in, a Date out, ISO strings on the wire
      const when = yield* request(port, "POST", "/when/x", { body: JSON.stringify({ at: "2026-01-01T00:00:00.000Z" }) })
      expect(when).toMatchObject({ status: 200, body: "2026-01-01T00:00:01.000Z" })

      const nothing = yield* request(port, "DELETE", "/nothing/x")
      expect(nothing.status).toBe(204)
      expect(nothing.text).toBe("")
    }).pipe(Effect.scoped))

  it.live("passes request headers to the handler, without hop-by-hop ones", () =>
    Effect.gen(function*() {
      const { port } = yield* setup
      const reply = yield* request(port, "GET", "/headers/x", {
        headers: { "x-user": "ada", authorization: "Bearer t" }
      })
      expect(reply.status).toBe(200)
      expect(reply.body["x-user"]).toBe("ada")
      expect(reply.body["authorization"]).toBe("Bearer t")
      expect(reply.body["connection"]).toBeUndefined()
    }).pipe(Effect.scoped))

  it.live("maps every failure to its status", () =>
    Effect.gen(function*() {
      const { logs, port } = yield* setup

      const missing = yield* request(port, "POST", "/add/x", { body: JSON.stringify({ a: 1 }) })
      expect(missing.status).toBe(400)
      expect(missing.body).toMatchObject({ _tag: "DecodeError", what: "payload of GwGreeter.Add" })
      expect(missing.body.issue).toContain("b")

      const badJson = yield* request(port, "POST", "/add/x", { body: "{not json" })
      expect(badJson.status).toBe(400)
      expect(badJson.body.issue).toContain("invalid JSON")

      const notObject = yield* request(port, "POST", "/add/x", { body: "[1,2]" })
      expect(notObject.status).toBe(400)

      const unknownRoute = yield* request(port, "GET", "/no/such/route")
      expect(unknownRoute).toMatchObject({ status: 404, body: { _tag: "RouteNotFound" } })
      const wrongMethod = yield* request(port, "PUT", "/hello/ada")
      expect(wrongMethod.status).toBe(404)

      const notHosted = yield* request(port, "GET", "/nowhere/x")
      expect(notHosted).toMatchObject({ status: 404, body: { _tag: "ActorNotFound", kind: "GwNowhere" } })

      const tooLarge = yield* request(port, "POST", "/hello/ada", {
        body: JSON.stringify({ greeting: "x".repeat(2000) })
      })
      expect(tooLarge).toMatchObject({ status: 413, body: { _tag: "PayloadTooLarge", limit: 1024 } })

      // without a content-length the body is counted while it is read
      const chunkedTooLarge = yield* chunkedPost(port, "/hello/ada", [
        "{\"greeting\":\"",
        "y".repeat(800),
        "y".repeat(800),
        "\"}"
      ])
      expect(chunkedTooLarge).toMatchObject({ status: 413, body: { _tag: "PayloadTooLarge", limit: 1024 } })
      const chunkedOk = yield* chunkedPost(port, "/hello/ada", ["{\"greeting\":", "\"yo\"}"])
      expect(chunkedOk).toEqual({ status: 200, body: "yo ada from fixed-id" })

      const declared = yield* request(port, "POST", "/refuse/x", { body: JSON.stringify({ reason: "no" }) })
      expect(declared).toMatchObject({ status: 409, body: { _tag: "Refused", reason: "no" } })

      const undeclared = yield* request(port, "GET", "/break/x")
      expect(undeclared).toMatchObject({ status: 500, body: { _tag: "Broken", code: 7 } })

      // a typed error declared with a 5xx status: that status, and the error itself as the body
      const declared5xx = yield* request(port, "GET", "/break-unavailable/x")
      expect(declared5xx).toMatchObject({ status: 503, body: { _tag: "Broken", code: 7 } })

      const defect = yield* request(port, "GET", "/die/x")
      expect(defect).toMatchObject({ status: 500, body: { _tag: "InternalServerError" } })
      expect(defect.text).not.toContain("hunter2")
      expect(defect.text).not.toContain("at ")
      // ...while the detail is logged on the gateway's side
      expect(logs.some((line) => line.includes("gateway: GwGreeter.Die failed") && line.includes("hunter2"))).toBe(true)

      const timeout = yield* request(port, "GET", "/slow/x")
      expect(timeout).toMatchObject({
        status: 504,
        body: { _tag: "AskTimeout", kind: "GwGreeter", id: "x", tag: "Slow" }
      })
      // the timeout reached the handler on node b: it was interrupted
      yield* awaitSlowInterrupted("x")
    }).pipe(Effect.scoped))

  it.live("the gateway-wide timeout applies to a route without its own: 504, and the handler is interrupted", () =>
    Effect.gen(function*() {
      // the node's ask timeout stays at its default (30 s), longer than the client waits (5 s)
      const { port } = yield* setupWith({ gateway: { timeout: "200 millis" } })
      const reply = yield* request(port, "GET", "/slow-default/gw")
      expect(reply).toMatchObject({
        status: 504,
        body: { _tag: "AskTimeout", kind: "GwGreeter", id: "gw", tag: "Slow" }
      })
      yield* awaitSlowInterrupted("gw")
      // the other routes go on answering
      expect(yield* request(port, "GET", "/hello/ada")).toMatchObject({ status: 200, body: "hello ada from ada" })
    }).pipe(Effect.scoped))

  it.live("a PayloadTooLarge from the runtime (request or reply over the node's per-message limit) is 413", () =>
    Effect.gen(function*() {
      // the HTTP body may be 64 KiB, a frame between the nodes only 4 KiB
      const { port } = yield* setupWith({ gateway: { maxBodySize: 64 * 1024 }, transport: { maxMessageBytes: 4096 } })
      expect(yield* request(port, "GET", "/sized/a?bytes=100")).toMatchObject({ status: 200, body: "x".repeat(100) })

      // a request within the body limit whose frame is over the node's limit: refused before it leaves node a
      const bigRequest = yield* request(port, "POST", "/hello/ada", {
        body: JSON.stringify({ greeting: "y".repeat(10_000) })
      })
      expect(bigRequest).toMatchObject({ status: 413, body: { _tag: "PayloadTooLarge", limit: 4096 } })
      expect(bigRequest.body.size).toBeGreaterThan(4096)

      // a reply over the limit: node b cannot send it, and says so instead
      const bigReply = yield* request(port, "GET", "/sized/a?bytes=10000")
      expect(bigReply).toMatchObject({ status: 413, body: { _tag: "PayloadTooLarge", limit: 4096 } })
      expect(bigReply.body.size).toBeGreaterThan(10_000)

      // the actor is unharmed
      expect(yield* request(port, "GET", "/sized/a?bytes=3")).toMatchObject({ status: 200, body: "xxx" })
    }).pipe(Effect.scoped))

  it.live("forwardHeaders as a list: the listed headers reach the handler (any case in the list), the others do not", () =>
    Effect.gen(function*() {
      const { port } = yield* setupWith({ gateway: { forwardHeaders: ["x-user", "X-Tenant"] } })
      const reply = yield* request(port, "GET", "/headers/x", {
        headers: { "x-user": "ada", "x-tenant": "acme", "x-secret": "s3cret", authorization: "Bearer t" }
      })
      expect(reply.status).toBe(200)
      expect(reply.body["x-user"]).toBe("ada")
      expect(reply.body["x-tenant"]).toBe("acme")
      expect(reply.body["x-secret"]).toBeUndefined()
      expect(reply.body["authorization"]).toBeUndefined()
      expect(reply.body["content-type"]).toBeUndefined()
      expect(reply.text).not.toContain("s3cret")
    }).pipe(Effect.scoped))

  it.live("answers 503 when the kind is hosted but no node serves it", () =>
    Effect.gen(function*() {
      const { port, b } = yield* setup
      yield* Context.get(b, Node.Node).setServing(false)
      const reply = yield* request(port, "GET", "/hello/ada")
      expect(reply).toMatchObject({ status: 503, body: { _tag: "NoAvailableNode", kind: "GwGreeter" } })
      yield* Context.get(b, Node.Node).setServing(true)
      expect((yield* request(port, "GET", "/hello/ada")).status).toBe(200)
    }).pipe(Effect.scoped))

  it.live("routes by kind name: the hosting node decodes with the real schema", () =>
    Effect.gen(function*() {
      const { port } = yield* setup
      const ok = yield* request(port, "GET", "/dynamic/eve?greeting=hey")
      expect(ok).toMatchObject({ status: 200, body: "hey eve from dyn" })
      const refused = yield* request(port, "POST", "/dynamic-refuse", { body: JSON.stringify({ reason: "nope" }) })
      expect(refused).toMatchObject({ status: 422, body: { _tag: "Refused", reason: "nope" } })
      const invalid = yield* request(port, "POST", "/dynamic-refuse", { body: JSON.stringify({ reason: 3 }) })
      expect(invalid).toMatchObject({ status: 400, body: { _tag: "DecodeError" } })
    }).pipe(Effect.scoped))

  it.live("an incoming traceparent reaches the handler's span on the other node", () =>
    Effect.gen(function*() {
      const { port } = yield* setup
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
      const reply = yield* request(port, "GET", "/trace/x", {
        headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` }
      })
      expect(reply.status).toBe(200)
      // the ask's own client span (a child of the HTTP server span) travels to node b
      expect(reply.body.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`))
      expect(reply.body.traceparent).not.toContain("00f067aa0ba902b7")
      expect(reply.body.spanTraceId).toBe(traceId)
    }).pipe(Effect.scoped))

  it.live("serves concurrent requests and counts them in the ask metrics", () =>
    Effect.gen(function*() {
      const { port, a } = yield* setup
      const asks = Node.metrics.asks.pipe(Metric.tagged("kind", "GwGreeter"))
      const errors = Node.metrics.askErrors.pipe(Metric.tagged("kind", "GwGreeter"))
      const latency = Node.metrics.askLatency.pipe(Metric.tagged("kind", "GwGreeter"))
      const before = {
        asks: (yield* Metric.value(asks)).count,
        errors: (yield* Metric.value(errors)).count,
        latency: (yield* Metric.value(latency)).count
      }
      const replies = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) => request(port, "GET", `/add/k${i % 4}?a=${i}&b=1`),
        { concurrency: 10 }
      )
      expect(replies.map((r) => r.body)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
      expect((yield* request(port, "POST", "/refuse/k0", { body: JSON.stringify({ reason: "x" }) })).status).toBe(409)
      // the metrics are process-wide: other tests of this file may have added theirs
      expect((yield* Metric.value(asks)).count - before.asks).toBeGreaterThanOrEqual(21)
      expect((yield* Metric.value(errors)).count - before.errors).toBeGreaterThanOrEqual(1)
      expect((yield* Metric.value(latency)).count - before.latency).toBeGreaterThanOrEqual(21)
      // the node of the gateway is still usable from code
      const client = yield* Effect.provide(Actor.client(Greeter), a)
      expect(yield* client("z").Add({ a: 1, b: 2 })).toBe(3)
      expect(Context.get(a, ActorSystem).nodeId).toMatch(/^a-/)
    }).pipe(Effect.scoped))

  it.live("counts the active actors of a hosted kind in a gauge", () =>
    Effect.gen(function*() {
      // a kind of its own: the gauges are per process and kind
      const Gauged = Actor.make("GwGauged", [Rpc.make("Ping", { success: Schema.String })])
      const cluster = yield* makeCluster("json")
      yield* cluster.add(Actor.toLayer(Gauged, { Ping: () => Effect.succeed("pong") }), { name: "host" })
      const caller = yield* cluster.add(Layer.empty, { name: "caller" })
      const client = yield* Effect.provide(Actor.client(Gauged), caller)
      for (const id of ["g1", "g2", "g3"]) expect(yield* client(id).Ping()).toBe("pong")
      const gauge = Node.metrics.activeActors.pipe(Metric.tagged("kind", "GwGauged"))
      // the gauge moves as instances come and go, no sampling period to wait for
      expect((yield* Metric.value(gauge)).value).toBe(3)
      const depth = Node.metrics.mailboxDepth.pipe(Metric.tagged("kind", "GwGauged"))
      expect((yield* Metric.value(depth)).value).toBe(0)
    }).pipe(Effect.scoped))

  it.live("a streamed reply is NDJSON: one line per encoded element; typed and by-name routes", () =>
    Effect.gen(function*() {
      const { port } = yield* setup
      const reply = yield* request(port, "GET", "/count/a?n=3")
      expect(reply.status).toBe(200)
      expect(reply.headers.get("content-type")).toBe("application/x-ndjson")
      expect(reply.headers.get("transfer-encoding")).toBe("chunked")
      expect(lines(reply)).toEqual([
        { i: 0, at: "2026-01-01T00:00:00.000Z" },
        { i: 1, at: "2026-01-01T00:00:01.000Z" },
        { i: 2, at: "2026-01-01T00:00:02.000Z" }
      ])
      // many elements, over many frames
      const many = yield* request(port, "GET", "/count/a?n=3000")
      expect(lines(many).map((line) => line.i)).toEqual(Array.from({ length: 3000 }, (_, i) => i))
      // no element: an empty body, still 200
      const none = yield* request(port, "GET", "/count/a?n=0")
      expect(none).toMatchObject({ status: 200, text: "" })
      // by name: the elements as the hosting node encoded them
      const dynamic = yield* request(port, "POST", "/dynamic-count/b", { body: JSON.stringify({ n: 2 }) })
      expect(dynamic.status).toBe(200)
      expect(lines(dynamic)).toEqual([{ i: 0, at: "2026-01-01T00:00:00.000Z" }, {
        i: 1,
        at: "2026-01-01T00:00:01.000Z"
      }])
    }).pipe(Effect.scoped))

  it.live("binary: base64 strings where the schema has no JSON encoding, else its own; streamed or not", () =>
    Effect.gen(function*() {
      const { port } = yield* setup
      // [0, 1, 255] and [1, 2, 254]
      const base64 = ["AAH/", "AQL+"]
      const bytes = yield* request(port, "GET", "/bytes/a?n=2")
      expect(bytes.status).toBe(200)
      expect(lines(bytes)).toEqual(base64)
      expect(lines(yield* request(port, "GET", "/files/a?n=2"))).toEqual([
        { name: "f0", data: base64[0] },
        { name: "f1", data: base64[1] }
      ])
      // a unary reply too
      const blob = yield* request(port, "GET", "/blob/a")
      expect(blob).toMatchObject({ status: 200, body: { name: "blob", data: base64[0] } })
      expect(blob.headers.get("content-type")).toContain("application/json")
      // the schema's own JSON encoding wins: base64 text for one, an array of numbers for the other
      expect(lines(yield* request(port, "GET", "/base64/a?n=2"))).toEqual(base64)
      expect(lines(yield* request(port, "GET", "/octets/a?n=2"))).toEqual([[0, 1, 255], [1, 2, 254]])
      // by name: binary as the hosting node encoded it, still base64 in the line
      const dynamic = yield* request(port, "POST", "/dynamic-bytes/b", { body: JSON.stringify({ n: 2 }) })
      expect(lines(dynamic)).toEqual(base64)
      const files = yield* request(port, "POST", "/dynamic-files/b", { body: JSON.stringify({ n: 2 }) })
      expect(lines(files)).toEqual([{ name: "f0", data: base64[0] }, { name: "f1", data: base64[1] }])
      // many pieces over many frames decode back to the same bytes
      const many = lines(yield* request(port, "GET", "/bytes/a?n=200"))
      expect(many.map((line: string) => [...Buffer.from(line, "base64")])).toEqual(
        Array.from({ length: 200 }, (_, i) => [i, i + 1, 255 - i])
      )
    }).pipe(Effect.scoped))

  it.live("a streamed reply failing before its first element gets the failure's status", () =>
    Effect.gen(function*() {
      const { port } = yield* setup
      const refused = yield* request(port, "GET", "/count/a?n=3&failAt=0")
      expect(refused).toMatchObject({ status: 409, body: { _tag: "Refused", reason: "failed at 0" } })
      expect(refused.headers.get("content-type")).toContain("application/json")
      const dynamic = yield* request(port, "POST", "/dynamic-count/b", { body: JSON.stringify({ n: 3, failAt: 0 }) })
      expect(dynamic).toMatchObject({ status: 422, body: { _tag: "Refused", reason: "failed at 0" } })
      const died = yield* request(port, "GET", "/count/a?n=3&dieAt=0")
      expect(died).toMatchObject({ status: 500, body: { _tag: "InternalServerError" } })
      expect(died.text).not.toContain("hunter2")
      const invalid = yield* request(port, "GET", "/count/a?n=many")
      expect(invalid).toMatchObject({ status: 400, body: { _tag: "DecodeError" } })
      const mismatch = yield* request(port, "GET", "/not-a-stream/ada")
      expect(mismatch).toMatchObject({
        status: 502,
        body: {
          _tag: "StreamError",
          kind: "GwGreeter",
          tag: "Hello",
          reason: "this Rpc replies once: call it with ask, not as a stream"
        }
      })
    }).pipe(Effect.scoped))

  it.live("a streamed reply failing after its first element ends with an `_error` line", () =>
    Effect.gen(function*() {
      const { logs, port } = yield* setup
      const refused = yield* request(port, "GET", "/count/a?n=5&failAt=2")
      expect(refused.status).toBe(200)
      expect(lines(refused)).toEqual([
        { i: 0, at: "2026-01-01T00:00:00.000Z" },
        { i: 1, at: "2026-01-01T00:00:01.000Z" },
        { _error: { _tag: "Refused", reason: "failed at 2" } }
      ])
      const dynamic = yield* request(port, "POST", "/dynamic-count/b", { body: JSON.stringify({ n: 5, failAt: 1 }) })
      expect(lines(dynamic)).toEqual([{ i: 0, at: "2026-01-01T00:00:00.000Z" }, {
        _error: { _tag: "Refused", reason: "failed at 1" }
      }])
      // a defect: a generic line, the detail only in the gateway's log
      const died = yield* request(port, "GET", "/count/a?n=5&dieAt=1")
      expect(lines(died)).toEqual([
        { i: 0, at: "2026-01-01T00:00:00.000Z" },
        { _error: { _tag: "InternalServerError", message: "internal server error" } }
      ])
      expect(died.text).not.toContain("hunter2")
      expect(logs.some((line) => line.includes("gateway: GwTicker.Count failed") && line.includes("hunter2"))).toBe(
        true
      )
      // the route's timeout is an idle timeout: a producer silent that long ends the body
      const stalled = yield* request(port, "GET", "/stall/a")
      expect(lines(stalled)).toEqual([1, {
        _error: expect.objectContaining({ _tag: "AskTimeout", kind: "GwTicker", tag: "Stall" })
      }])
    }).pipe(Effect.scoped))

  it.live("a client that goes away mid-stream interrupts the remote producer", () =>
    Effect.gen(function*() {
      const { port } = yield* setup
      const before = { ...ticks }
      const received = yield* Effect.promise(async () => {
        const controller = new AbortController()
        const response = await fetch(`http://127.0.0.1:${port}/forever/x`, { signal: controller.signal })
        const reader = response.body!.getReader()
        const decoder = new TextDecoder()
        let text = ""
        while (text.split("\n").length < 4) {
          const { done, value } = await reader.read()
          if (done) break
          text += decoder.decode(value, { stream: true })
        }
        controller.abort()
        return text.split("\n").slice(0, 3).map((line) => JSON.parse(line))
      })
      expect(received).toEqual([0, 1, 2])
      expect(ticks.started).toBe(before.started + 1)
      // real sockets: poll (bounded) until the interrupt has crossed to node b
      for (let i = 0; i < 100 && ticks.finalized === before.finalized; i++) yield* Effect.sleep("20 millis")
      expect(ticks.finalized).toBe(before.finalized + 1)
      // and it produces no more
      const produced = ticks.produced
      yield* Effect.sleep("100 millis")
      expect(ticks.produced).toBe(produced)

      // the same while the gateway still waits for the first element (no status sent yet)
      const hung = { ...hangs }
      const req = http.get({ host: "127.0.0.1", port, path: "/hang/x" })
      const pending = new Promise((resolve) =>
        req.on("error", () => resolve("aborted")).on("response", () => resolve("answered"))
      )
      for (let i = 0; i < 100 && hangs.started === hung.started; i++) yield* Effect.sleep("20 millis")
      expect(hangs.started).toBe(hung.started + 1)
      req.destroy()
      expect(yield* Effect.promise(() => pending)).toBe("aborted")
      for (let i = 0; i < 100 && hangs.finalized === hung.finalized; i++) yield* Effect.sleep("20 millis")
      expect(hangs.finalized).toBe(hung.finalized + 1)
    }).pipe(Effect.scoped))

  it("rejects routes that cannot resolve an id", () => {
    expect(() => Gateway.route("GET", "/hello", Greeter, "Hello")).toThrow(/:id/)
    expect(() => Gateway.route("GET", "/hello/:name", Greeter, "Hello", { id: ":who" })).toThrow(/:who/)
    expect(() => Gateway.route("GET", "hello", Greeter, "Hello", { id: "x" })).toThrow(/start with/)
    expect(Gateway.route("GET", "/svc", GreeterService, "Hello").id).toBeUndefined()
    // @ts-expect-error the tag must be one of the kind's Rpcs
    expect(() => Gateway.route("GET", "/x/:id", Greeter, "NoSuchTag")).toThrow(/no Rpc "NoSuchTag"/)
    // @ts-expect-error statuses are keyed by the Rpc's typed error tags
    Gateway.route("POST", "/refuse/:id", Greeter, "Refuse", { errors: { Nope: 409 } })
    expect(() => Gateway.route("POST", "/refuse/:id", Greeter, "Refuse", { errors: { Refused: 200 } })).toThrow(
      /400\.\.599/
    )
  })
})
