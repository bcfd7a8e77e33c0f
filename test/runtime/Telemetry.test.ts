import { describe, expect, it } from "@effect/vitest"
import { Rpc } from "@effect/rpc"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { readFileSync } from "node:fs"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { dirname, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import * as Actor from "../../src/actors/Actor.ts"
import * as Telemetry from "../../src/runtime/Telemetry.ts"
import { makeCluster, nodeLayer } from "../fixtures/nodes.ts"

interface Post {
  readonly path: string
  readonly contentType: string
  readonly body: any
}

/** An OTLP/HTTP receiver on 127.0.0.1 (a free port) that records what it is sent. */
const receiver = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly posts: Array<Post>; readonly server: Http.Server }>((resume) => {
    const posts: Array<Post> = []
    const server = Http.createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8")
        posts.push({
          path: request.url ?? "",
          contentType: request.headers["content-type"] ?? "",
          body: request.method === "POST" ? JSON.parse(text) : undefined
        })
        response.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resume(Effect.succeed({ url: `http://127.0.0.1:${port}`, posts, server }))
    })
  }),
  ({ server }) =>
    Effect.async<void>((resume) => {
      server.close(() => resume(Effect.void))
    })
)

const Greeter = Actor.make("OtlpGreeter", [
  Rpc.make("Hello", { payload: { name: Schema.String }, success: Schema.String })
])

const GreeterLive = Actor.toLayer(Greeter, {
  Hello: ({ name }) => Effect.sync(() => `hello ${name}`)
})

const attributesOf = (item: { readonly attributes?: ReadonlyArray<any> }): Record<string, unknown> =>
  Object.fromEntries((item.attributes ?? []).map((a: any) => [a.key, Object.values(a.value)[0]]))

describe("Telemetry.layerOtlp", () => {
  it.live("exports an ask's spans across two nodes and the ask metrics to an OTLP/HTTP receiver", () =>
    Effect.gen(function*() {
      const otlp = yield* receiver
      const telemetry = (serviceName: string) =>
        Telemetry.layerOtlp({ url: otlp.url, serviceName, serviceVersion: "9.9.9" })
      const reply = yield* Effect.gen(function*() {
        const cluster = yield* makeCluster("msgpack")
        // the host as an app layer with the exporter provided below it (as in the README); it is
        // released after the node, so its last export carries the handler's span
        yield* Layer.build(
          nodeLayer("msgpack", cluster.network, cluster.registry, GreeterLive, { name: "host" }).pipe(
            Layer.provide(telemetry("troupe-host"))
          )
        )
        // the caller inside a program that its own exporter is provided around: by default a node
        // traces every ask under an installed tracer, so this ask, made outside any span, is traced
        return yield* Effect.gen(function*() {
          const caller = yield* cluster.add(Layer.empty, { name: "caller" })
          const greeter = yield* Effect.provide(Actor.client(Greeter), caller)
          return yield* greeter("g1").Hello({ name: "ada" })
        }).pipe(Effect.provide(telemetry("troupe-caller")))
      }).pipe(Effect.scoped)
      expect(reply).toBe("hello ada")

      const traces = otlp.posts.filter((post) => post.path === "/v1/traces")
      const metrics = otlp.posts.filter((post) => post.path === "/v1/metrics")
      expect(traces.length).toBeGreaterThan(0)
      expect(metrics.length).toBeGreaterThan(0)
      for (const post of [...traces, ...metrics]) expect(post.contentType).toContain("application/json")

      // each span with the service that exported it
      const spans = traces.flatMap((post) =>
        post.body.resourceSpans.flatMap((r: any) => {
          const resource = attributesOf(r.resource)
          expect(resource["service.version"]).toBe("9.9.9")
          return r.scopeSpans.flatMap((s: any) =>
            s.spans.map((span: any) => ({ ...span, service: resource["service.name"] }))
          )
        })
      )
      const ask = spans.find((span: any) => span.name === "troupe.ask OtlpGreeter.Hello")
      const handle = spans.find((span: any) => span.name === "troupe.handle OtlpGreeter.Hello")
      expect(ask?.service).toBe("troupe-caller")
      expect(handle?.service).toBe("troupe-host")
      expect(attributesOf(ask)).toMatchObject({
        "troupe.kind": "OtlpGreeter",
        "troupe.id": "g1",
        "troupe.tag": "Hello"
      })
      expect(attributesOf(handle)).toMatchObject({
        "troupe.kind": "OtlpGreeter",
        "troupe.id": "g1",
        "troupe.tag": "Hello"
      })
      // OTLP span kinds: 2 server, 3 client
      expect(ask.kind).toBe(3)
      expect(handle.kind).toBe(2)
      expect(handle.traceId).toBe(ask.traceId)
      expect(handle.parentSpanId).toBe(ask.spanId)

      // metrics: a snapshot of the registry; the last one counts this test's ask
      const last = metrics[metrics.length - 1]!.body
      const all = last.resourceMetrics.flatMap((r: any) => r.scopeMetrics.flatMap((s: any) => s.metrics))
      const byName = (name: string) => all.find((metric: any) => metric.name === name)
      const asks = byName("troupe_asks")
      expect(asks).toBeDefined()
      const asksHere = asks.sum.dataPoints.find((point: any) => attributesOf(point)["kind"] === "OtlpGreeter")
      expect(asksHere.asDouble ?? asksHere.asInt).toBe(1)
      const latency = byName("troupe_ask_latency_ms")
      const latencyHere = latency.histogram.dataPoints.find((point: any) =>
        attributesOf(point)["kind"] === "OtlpGreeter"
      )
      expect(latencyHere.count).toBe(1)
      expect(
        byName("troupe_active_actors").gauge.dataPoints.some((point: any) =>
          attributesOf(point)["kind"] === "OtlpGreeter"
        )
      ).toBe(true)
    }).pipe(Effect.scoped))

  it("rejects a url that is not http(s) when the layer is built", async () => {
    const exit = await Effect.runPromiseExit(
      Layer.launch(Telemetry.layerOtlp({ url: "nats://127.0.0.1:4222", serviceName: "x" }))
    )
    expect(exit._tag).toBe("Failure")
    expect(String(exit._tag === "Failure" ? exit.cause : "")).toContain("must be http: or https:")
    // a typed failure, not a defect
    expect(exit._tag === "Failure" && Cause.failureOption(exit.cause)).toMatchObject({
      _tag: "Some",
      value: { _tag: "TelemetryConfigError" }
    })
  })

  it("`troupe` is an entry point without @effect/opentelemetry; `troupe/Telemetry` is its own", async () => {
    const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..")
    const pkg = JSON.parse(readFileSync(resolve(root, "package.json"), "utf8"))
    // the package's own name resolves through its `exports`
    expect((await import("troupe/Telemetry")).layerOtlp).toBe(Telemetry.layerOtlp)
    expect(pkg.peerDependenciesMeta["@effect/opentelemetry"].optional).toBe(true)
    // every module `import "troupe"` reaches, through its relative imports
    const seen = new Set<string>()
    const external = new Set<string>()
    const visit = (file: string) => {
      if (seen.has(file)) return
      seen.add(file)
      const source = readFileSync(file, "utf8")
      for (const match of source.matchAll(/^\s*(?:import|export)\s[^"']*?from\s+["']([^"']+)["']/gm)) {
        const specifier = match[1]!
        if (specifier.startsWith(".")) visit(resolve(dirname(file), specifier))
        else external.add(specifier)
      }
    }
    visit(resolve(root, pkg.exports["."]["troupe-source"]))
    expect(seen.size).toBeGreaterThan(10)
    expect([...seen].some((file) => file.endsWith("Telemetry.ts"))).toBe(false)
    expect([...external].filter((specifier) => specifier.startsWith("@effect/opentelemetry"))).toEqual([])
    expect([...external].filter((specifier) => specifier.startsWith("@opentelemetry"))).toEqual([])
  })
})
