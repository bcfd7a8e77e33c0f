/**
 * Optional OpenTelemetry export of Troupe's spans and metrics (and, on request, logs) over
 * OTLP/HTTP with JSON bodies, through `@effect/opentelemetry`'s `Otlp` modules and Node's HTTP
 * client. No OpenTelemetry SDK is involved: the layer installs an Effect `Tracer` that batches
 * ended spans and a reader that posts snapshots of Effect's metric registry.
 *
 * This is a separate entry point, `troupe/Telemetry`, so that `import "troupe"` never loads
 * `@effect/opentelemetry` (an optional peer dependency: `npm install @effect/opentelemetry@0.64.1`).
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Node } from "troupe"
 * import * as Telemetry from "troupe/Telemetry"
 *
 * const App = CounterLive.pipe(
 *   Layer.provideMerge(Node.inMemory),
 *   Layer.provide(Telemetry.layerOtlp({ url: "http://127.0.0.1:4318", serviceName: "shop" }))
 * )
 * ```
 *
 * @since 0.4.0
 */
import * as OtlpLogger from "@effect/opentelemetry/OtlpLogger"
import * as OtlpMetrics from "@effect/opentelemetry/OtlpMetrics"
import * as OtlpSerialization from "@effect/opentelemetry/OtlpSerialization"
import * as OtlpTracer from "@effect/opentelemetry/OtlpTracer"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"

/**
 * The exporter's options are wrong (its `url` is not an http(s) URL).
 *
 * @since 0.4.0
 * @category errors
 */
export class TelemetryConfigError extends Schema.TaggedError<TelemetryConfigError>()("TelemetryConfigError", {
  reason: Schema.String
}) {
  override get message(): string {
    return `Telemetry: ${this.reason}`
  }
}

/**
 * @since 0.4.0
 * @category models
 */
export interface OtlpOptions {
  /**
   * the collector's OTLP/HTTP base URL, e.g. `"http://127.0.0.1:4318"`: spans are posted to
   * `<url>/v1/traces`, metrics to `<url>/v1/metrics`, logs to `<url>/v1/logs`
   */
  readonly url: string
  /** the resource's `service.name` */
  readonly serviceName: string
  /** the resource's `service.version`; default none */
  readonly serviceVersion?: string | undefined
  /** more resource attributes; default none */
  readonly attributes?: Record<string, unknown> | undefined
  /** headers of every export request (an API key, say); default none */
  readonly headers?: Record<string, string> | undefined
  /** how often ended spans are posted; default 5 seconds (and whenever 1000 are waiting) */
  readonly tracesInterval?: Duration.DurationInput | undefined
  /** how often a snapshot of every metric is posted; default 10 seconds */
  readonly metricsInterval?: Duration.DurationInput | undefined
  /** export Effect's logs too (added beside the current logger); default `false` */
  readonly logs?: boolean | undefined
  /** on release, how long the last export may take; default 3 seconds */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
}

/**
 * Exports spans and metrics over OTLP/HTTP (JSON) with a given `HttpClient`. Use `layerOtlp`
 * for Node's client.
 *
 * @since 0.4.0
 * @category layers
 */
export const layerOtlpWith = (
  options: OtlpOptions
): Layer.Layer<never, TelemetryConfigError, HttpClient.HttpClient> =>
  Layer.unwrapEffect(Effect.map(baseUrl(options.url), (base) => {
    const resource = {
      serviceName: options.serviceName,
      serviceVersion: options.serviceVersion,
      ...(options.attributes === undefined ? {} : { attributes: options.attributes })
    }
    const common = { resource, headers: options.headers, shutdownTimeout: options.shutdownTimeout }
    const traces = OtlpTracer.layer({ ...common, url: `${base}/v1/traces`, exportInterval: options.tracesInterval })
    const metrics = OtlpMetrics.layer({ ...common, url: `${base}/v1/metrics`, exportInterval: options.metricsInterval })
    const exporters = options.logs === true
      ? Layer.mergeAll(traces, metrics, OtlpLogger.layer({ ...common, url: `${base}/v1/logs` }))
      : Layer.merge(traces, metrics)
    return Layer.provide(exporters, OtlpSerialization.layerJson)
  }))

/**
 * Exports spans and metrics over OTLP/HTTP (JSON) with Node's HTTP client. Provide it below the
 * node's layers (or around a program) so that their spans go to its tracer; metrics are
 * process-wide. Whatever is still buffered is posted when the layer is released.
 *
 * @example
 * ```ts
 * const Exported = NodeLive.pipe(
 *   Layer.provide(Telemetry.layerOtlp({ url: "http://otel-collector:4318", serviceName: "edge" }))
 * )
 * ```
 *
 * @since 0.4.0
 * @category layers
 */
export const layerOtlp = (options: OtlpOptions): Layer.Layer<never, TelemetryConfigError> =>
  layerOtlpWith(options).pipe(Layer.provide(NodeHttpClient.layer))

const baseUrl = (url: string): Effect.Effect<string, TelemetryConfigError> => {
  const parsed = URL.canParse(url) ? new URL(url) : undefined
  if (parsed === undefined) {
    return Effect.fail(
      new TelemetryConfigError({ reason: `url "${url}" is not a URL (expected e.g. "http://127.0.0.1:4318")` })
    )
  }
  return parsed.protocol === "http:" || parsed.protocol === "https:"
    ? Effect.succeed(url.replace(/\/+$/, ""))
    : Effect.fail(new TelemetryConfigError({ reason: `url "${url}" must be http: or https:` }))
}
