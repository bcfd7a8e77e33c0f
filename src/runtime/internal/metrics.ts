/**
 * Observability of the ask path: one client span per ask (W3C `traceparent` in the request
 * headers), the handler's server span continued from it, and the node's metrics through
 * Effect's `Metric`. Kept apart from the node so the hot path gains one call on each side.
 *
 * @internal
 */
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import type * as Headers from "@effect/platform/Headers"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricLabel from "effect/MetricLabel"
import * as Tracer from "effect/Tracer"
import type { Envelope } from "../../actors/ActorSystem.ts"

/** asks started by this process, labelled by `kind` */
export const asks = Metric.counter("troupe_asks", { description: "asks started", incremental: true })

/** asks that ended in a failure (typed, runtime or defect), labelled by `kind` */
export const askErrors = Metric.counter("troupe_ask_errors", { description: "asks that failed", incremental: true })

/** ask round-trip time at the caller in milliseconds, labelled by `kind` */
export const askLatency = Metric.histogram(
  "troupe_ask_latency_ms",
  MetricBoundaries.exponential({ start: 0.05, factor: 2, count: 20 }),
  "ask round-trip time at the caller (ms)"
)

/** messages waiting in the mailboxes of a hosted kind in this process, labelled by `kind` */
export const mailboxDepth = Metric.gauge("troupe_mailbox_depth", { description: "messages waiting in mailboxes" })

/** live instances of a hosted kind in this process, labelled by `kind` */
export const activeActors = Metric.gauge("troupe_active_actors", { description: "live actor instances" })

const labelCache = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
const labelsOf = (kind: string): ReadonlyArray<MetricLabel.MetricLabel> => {
  let labels = labelCache.get(kind)
  if (labels === undefined) {
    labels = [MetricLabel.make("kind", kind)]
    labelCache.set(kind, labels)
  }
  return labels
}

/** the W3C trace-context header the caller sets from its span */
export const TRACEPARENT = "traceparent"

/**
 * Counts an ask attempt and returns its `resume` wrapped so that the outcome is timed and a
 * failure counted. Plain callbacks, no Effect layer: this runs on every ask.
 */
export const observeAsk = <E extends Effect.Effect<unknown, unknown>>(
  kind: string,
  resume: (effect: E) => void
): (effect: E) => void => {
  const labels = labelsOf(kind)
  asks.unsafeUpdate(1, labels)
  const startedAt = performance.now()
  return (effect) => {
    askLatency.unsafeUpdate(performance.now() - startedAt, labels)
    if (Exit.isExit(effect) && Exit.isFailure(effect)) askErrors.unsafeUpdate(1, labels)
    resume(effect)
  }
}

/** Counts an ask that failed before it could be sent (no node hosts or serves the kind). */
export const askRejected = (kind: string): void => {
  const labels = labelsOf(kind)
  asks.unsafeUpdate(1, labels)
  askErrors.unsafeUpdate(1, labels)
}

let builtInTracer: Tracer.Tracer | undefined

/** whether `tracer` is Effect's own default one, whose spans go nowhere (no exporter installed) */
export const isBuiltInTracer = (tracer: Tracer.Tracer): boolean =>
  tracer === (builtInTracer ??= Effect.runSync(Effect.tracer))

/** Whether the fiber runs inside a span (then its asks are traced). */
export const hasParentSpan = (fiber: Fiber.RuntimeFiber<unknown, unknown>): boolean =>
  Context.getOption(fiber.currentContext, Tracer.ParentSpan)._tag === "Some"

/**
 * Runs an ask in a client span whose W3C context travels in the request's `traceparent` header.
 * A span costs more than a whole in-memory ask, so the node traces asks made inside a span, and
 * every ask only under an installed tracer or with `Node.layer({ tracing: true })`.
 */
export const tracedAsk = (
  envelope: Envelope,
  run: (envelope: Envelope) => Effect.Effect<unknown, unknown>
): Effect.Effect<unknown, unknown> =>
  Effect.useSpan(`troupe.ask ${envelope.definition.kind}.${envelope.tag}`, {
    kind: "client",
    captureStackTrace: false,
    attributes: { "troupe.kind": envelope.definition.kind, "troupe.id": envelope.id, "troupe.tag": envelope.tag }
  }, (span) => run({ ...envelope, headers: { ...envelope.headers, ...HttpTraceContext.toHeaders(span) } }))

/**
 * Runs a handler in a server span that continues the caller's trace, when the request carries a
 * `traceparent`; otherwise returns the handler untouched.
 */
export const continueTrace = <A, E, R>(
  kind: string,
  id: string,
  tag: string,
  headers: Readonly<Record<string, string>>,
  handler: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> => {
  if (headers[TRACEPARENT] === undefined) return handler
  const parent = HttpTraceContext.fromHeaders(headers as Headers.Headers)
  if (parent._tag === "None") return handler
  return Effect.withSpan(handler, `troupe.handle ${kind}.${tag}`, {
    kind: "server",
    parent: parent.value,
    captureStackTrace: false,
    attributes: { "troupe.kind": kind, "troupe.id": id, "troupe.tag": tag }
  })
}

/**
 * The share of one hosted kind on one node in the process-wide gauges. The node moves the gauges
 * by its own change, so several nodes of one process hosting a kind add up instead of
 * overwriting each other, and a released node takes its share back out. Called after every
 * change of the mailboxes or instances: two comparisons when nothing changed (a message that
 * is started as soon as it is delivered), a gauge update when something did.
 */
export class KindGauges {
  private depth = 0
  private live = 0
  private readonly labels: ReadonlyArray<MetricLabel.MetricLabel>
  constructor(kind: string) {
    this.labels = labelsOf(kind)
  }
  publish(depth: number, live: number): void {
    if (depth !== this.depth) {
      mailboxDepth.unsafeModify(depth - this.depth, this.labels)
      this.depth = depth
    }
    if (live !== this.live) {
      activeActors.unsafeModify(live - this.live, this.labels)
      this.live = live
    }
  }
}
