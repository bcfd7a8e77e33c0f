/**
 * An HTTP gateway in front of the actors: each route maps a method and a path (with `:params`)
 * to an actor kind or a service and one of its Rpcs. Path params, query and JSON body are merged
 * and decoded with the Rpc's payload schema; the reply is JSON.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Gateway, Node } from "troupe"
 *
 * const Http = Gateway.layer({
 *   port: 8080,
 *   routes: [
 *     Gateway.route("GET", "/hello/:name", Greeter, "Hello", { id: ":name", timeout: "2 seconds" }),
 *     Gateway.route("POST", "/counters/:id/increment", Counter, "Increment", { errors: { CounterError: 409 } })
 *   ]
 * })
 * const App = Http.pipe(Layer.provide(Node.layerNats({ servers: "nats://127.0.0.1:4222", name: "edge" })))
 * ```
 *
 * Statuses: a payload that does not decode → 400 (`DecodeError`), unknown route or
 * `ActorNotFound` → 404, a body over `maxBodySize` or `PayloadTooLarge` → 413, `NoAvailableNode`
 * / `MailboxFull` / `ActorStopped` → 503, `TransportError` / `StreamError` → 502, `AskTimeout` → 504, a typed Rpc
 * error → the status its route declares (default 500) with the encoded error as the body, and a
 * defect (`RemoteDefect`, a bug) → 500 with a generic body (the detail is logged, never sent).
 *
 * A streamed Rpc (`stream: true`) answers `200` with `Content-Type: application/x-ndjson`: one
 * JSON line per element (in its schema's encoded form), sent as the elements arrive. Binary that
 * the encoding leaves as bytes (`Schema.Uint8ArrayFromSelf`, or any binary on a route by name)
 * is written as a base64 string; a schema with a JSON form of its own keeps it
 * (`Schema.Uint8ArrayFromBase64`: base64 text, `Schema.Uint8Array`: an array of numbers). A failure before the first element gets
 * the status above; a failure after it ends the body with the line `{"_error": {...}}` (the
 * encoded error, or `{"_tag":"InternalServerError"}` for a defect). The route's timeout is an
 * idle timeout there, and a client that goes away interrupts the producer.
 *
 * Query values are strings: a numeric payload field read from the query should be
 * `Schema.NumberFromString` (a field that fails to decode from the raw strings is retried once
 * with query values read as JSON literals, so `Schema.Number` works for `?n=3` too).
 *
 * @since 0.1.0
 */
import type * as HttpApp from "@effect/platform/HttpApp"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import type * as Rpc from "@effect/rpc/Rpc"
import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Actor from "../actors/Actor.ts"
import type { ActorSystem, KindDefinition } from "../actors/ActorSystem.ts"
import { dynamicKind } from "./internal/dynamic.ts"
import * as internal from "./internal/gateway.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const RouteTypeId: unique symbol = Symbol.for("troupe/Gateway/Route")

/**
 * @since 0.1.0
 * @category models
 */
export type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE"

/**
 * What a route's `id` function sees of the request.
 *
 * @since 0.1.0
 * @category models
 */
export interface RouteRequest {
  readonly method: string
  readonly url: string
  readonly params: Readonly<Record<string, string | undefined>>
  readonly headers: Readonly<Record<string, string>>
}

/**
 * The actor id of a request: `":name"` reads the path param `name`, any other string is a fixed
 * id, a function computes it. Default: the path param `:id`. Services take none.
 *
 * @since 0.1.0
 * @category models
 */
export type RouteId = string | ((request: RouteRequest) => string)

/**
 * @since 0.1.0
 * @category models
 */
export type ErrorTag<R extends Rpc.Any> = Rpc.Error<R> extends infer E ?
  E extends { readonly _tag: infer T extends string } ? T : never
  : never

/**
 * @since 0.1.0
 * @category models
 */
export interface RouteOptions<R extends Rpc.Any> {
  /** the actor id (ignored for services); default the path param `:id` */
  readonly id?: RouteId | undefined
  /** the ask timeout of this route; default the gateway's `timeout` */
  readonly timeout?: Duration.DurationInput | undefined
  /** HTTP statuses of the Rpc's typed errors, by tag; an undeclared typed error is 500 */
  readonly errors?: { readonly [Tag in ErrorTag<R>]?: number } | undefined
}

/**
 * One route: method + path → kind + Rpc tag.
 *
 * @since 0.1.0
 * @category models
 */
export interface Route {
  readonly [RouteTypeId]: RouteTypeId
  readonly method: Method
  readonly path: string
  readonly definition: KindDefinition
  readonly tag: string
  /** resolves the actor id; `undefined` for services */
  readonly id: ((request: RouteRequest) => string) | undefined
  readonly timeout: Duration.Duration | undefined
  readonly errors: Readonly<Record<string, number>>
}

/**
 * @since 0.1.0
 * @category type ids
 */
export type RouteTypeId = typeof RouteTypeId

const METHODS: ReadonlyArray<Method> = ["GET", "POST", "PUT", "PATCH", "DELETE"]

const pathParams = (path: string): ReadonlyArray<string> => Array.from(path.matchAll(/:([A-Za-z0-9_]+)/g), (m) => m[1]!)

const resolveId = (path: string, id: RouteId | undefined): (request: RouteRequest) => string => {
  if (typeof id === "function") return id
  const spec = id ?? ":id"
  if (!spec.startsWith(":")) return () => spec
  const param = spec.slice(1)
  if (!pathParams(path).includes(param)) {
    throw new TypeError(`route ${path}: the actor id comes from ":${param}", which the path does not have`)
  }
  return (request) => request.params[param] ?? ""
}

const makeRoute = (
  method: Method,
  path: string,
  definition: KindDefinition,
  tag: string,
  options: {
    readonly id?: RouteId | undefined
    readonly timeout?: Duration.DurationInput | undefined
    readonly errors?: Readonly<Record<string, number | undefined>> | undefined
  } | undefined
): Route => {
  if (!METHODS.includes(method)) throw new TypeError(`route ${path}: method must be one of ${METHODS.join(", ")}`)
  if (!path.startsWith("/")) throw new TypeError(`route ${path}: the path must start with "/"`)
  const errors: Record<string, number> = {}
  for (const [name, status] of Object.entries(options?.errors ?? {})) {
    if (status === undefined) continue
    if (!Number.isInteger(status) || status < 400 || status > 599) {
      throw new RangeError(`route ${path}: status of ${name} must be 400..599, got ${status}`)
    }
    errors[name] = status
  }
  return {
    [RouteTypeId]: RouteTypeId,
    method,
    path,
    definition,
    tag,
    id: definition._tag === "Service" ? undefined : resolveId(path, options?.id),
    timeout: options?.timeout === undefined ? undefined : Duration.decode(options.timeout),
    errors
  }
}

/**
 * A route to one Rpc of an actor kind or a service, typed against its Rpcs.
 *
 * @example
 * ```ts
 * Gateway.route("GET", "/hello/:name", Greeter, "Hello", { id: ":name" })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const route = <K extends Actor.Any, const Tag extends Actor.Rpcs<K>["_tag"]>(
  method: Method,
  path: string,
  kind: K,
  tag: Tag,
  options?: RouteOptions<Rpc.ExtractTag<Actor.Rpcs<K>, Tag>>
): Route => {
  if (!kind.rpcs.has(tag)) throw new TypeError(`kind "${kind.kind}" has no Rpc "${tag}"`)
  return makeRoute(method, path, kind, tag, options as Parameters<typeof makeRoute>[4])
}

/**
 * A route to a kind known only by name (a config file, no TypeScript definition at hand): the
 * merged request travels as the encoded payload, the hosting node decodes it with the real
 * schema (a mismatch is a 400), and the reply is returned as encoded there. Needs a serializing
 * transport (NATS, or `Transport.layerInMemory({ serialize: true })`). A streamed Rpc must be
 * declared `stream: true` (its elements are sent as they were encoded).
 *
 * @since 0.1.0
 * @category constructors
 */
export const routeByName = (
  method: Method,
  path: string,
  target: {
    readonly kind: string
    readonly tag: string
    readonly service?: boolean | undefined
    /** the Rpc has a streamed reply (`stream: true`) */
    readonly stream?: boolean | undefined
  },
  options?: {
    readonly id?: RouteId | undefined
    readonly timeout?: Duration.DurationInput | undefined
    readonly errors?: Readonly<Record<string, number>> | undefined
  }
): Route =>
  makeRoute(
    method,
    path,
    dynamicKind(target.kind, target.service === true, target.stream === true),
    target.tag,
    options
  )

/**
 * @since 0.1.0
 * @category guards
 */
export const isRoute = (u: unknown): u is Route => typeof u === "object" && u !== null && RouteTypeId in u

/**
 * @since 0.1.0
 * @category models
 */
export interface AppOptions {
  readonly routes: ReadonlyArray<Route>
  /** a request body over this many bytes is answered 413; default 1 MiB */
  readonly maxBodySize?: number | undefined
  /** the ask timeout of routes that set none; default the node's ask timeout */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * request headers passed to handlers: `"all"` (default; hop-by-hop headers such as
   * `connection` and `content-length` are dropped) or a list of names (any case: HTTP header
   * names are case-insensitive), and no others. A route's `id` function sees the same headers.
   */
  readonly forwardHeaders?: "all" | ReadonlyArray<string> | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface GatewayOptions extends AppOptions {
  readonly port: number
  /** default `"0.0.0.0"` */
  readonly host?: string | undefined
}

/**
 * The gateway as an `HttpApp`, to serve with any `@effect/platform` server or mount in a router.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeApp = (
  options: AppOptions
): Effect.Effect<HttpApp.Default<never, never>, never, ActorSystem> => internal.makeApp(options)

/**
 * Serves the gateway on a Node HTTP server listening on `port`, for as long as the layer lives.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: GatewayOptions): Layer.Layer<never, HttpServerError.ServeError, ActorSystem> =>
  internal.layer(options)
