/**
 * The gateway's request pipeline: route → bounded body → merged payload → decode → ask →
 * JSON reply (or NDJSON lines for a streamed reply), and the one place where failures become
 * statuses.
 *
 * @internal
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as Rpc from "@effect/rpc/Rpc"
import * as RpcSchema from "@effect/rpc/RpcSchema"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createServer } from "node:http"
import { ActorSystem, type ActorSystemShape } from "../../actors/ActorSystem.ts"
import { DecodeError, PayloadTooLarge } from "../../schema/Errors.ts"
import type { AppOptions, GatewayOptions, Route, RouteRequest } from "../Gateway.ts"
import * as Json from "./json.ts"

const DEFAULT_MAX_BODY = 1024 * 1024

/** headers that describe one hop (or the body), never the request */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "content-length",
  "upgrade",
  "proxy-connection",
  "te",
  "trailer",
  "expect"
])

/** Troupe's own errors and their statuses */
const RUNTIME_STATUS: Readonly<Record<string, number>> = {
  DecodeError: 400,
  ActorNotFound: 404,
  PayloadTooLarge: 413,
  NoAvailableNode: 503,
  MailboxFull: 503,
  ActorStopped: 503,
  TransportError: 502,
  AskTimeout: 504,
  EncodeError: 500,
  RemoteDefect: 500,
  HandshakeError: 502,
  Unauthorized: 502,
  StreamError: 502
}

const json = (status: number, body: unknown) => HttpServerResponse.unsafeJson(body, { status })

const INTERNAL_ERROR = { _tag: "InternalServerError", message: "internal server error" } as const

const internalError = json(500, INTERNAL_ERROR)

const notFound = json(404, { _tag: "RouteNotFound", message: "no route for this method and path" })

/** compiled once per route */
interface CompiledRoute {
  readonly route: Route
  readonly rpc: Rpc.AnyWithProps
  readonly stream: boolean
  readonly decodePayload: (u: unknown) => Either.Either<unknown, ParseResult.ParseError>
  /** reports every issue, not the first: to find the query fields worth reading leniently */
  readonly decodePayloadAll: (u: unknown) => Either.Either<unknown, ParseResult.ParseError>
  readonly encodeSuccess: (a: unknown) => Either.Either<unknown, ParseResult.ParseError>
  /** a streamed reply: encodes a chunk of elements with the stream's element schema */
  readonly encodeElements: (
    items: ReadonlyArray<unknown>
  ) => Either.Either<ReadonlyArray<unknown>, ParseResult.ParseError>
  /** an encoded element as JSON text: binary as base64 when the element's encoded side may hold any */
  readonly elementJson: (encoded: unknown) => string
  /** a unary reply that may hold binary is written with it as base64, as stream elements are */
  readonly successHoldsBinary: boolean
  /** the Rpc's error, and for a streamed reply the stream's failure too */
  readonly encodeError: (e: unknown) => Either.Either<unknown, ParseResult.ParseError>
}

const compile = (route: Route): CompiledRoute => {
  const rpc = route.definition.rpcs.get(route.tag)!
  const streamed = RpcSchema.getStreamSchemas(rpc.successSchema.ast)
  const element = Option.isSome(streamed) ? streamed.value.success : Schema.Unknown
  const error = Option.isSome(streamed) ? Schema.Union(rpc.errorSchema, streamed.value.failure) : rpc.errorSchema
  return {
    route,
    rpc,
    stream: Option.isSome(streamed),
    decodePayload: Schema.decodeUnknownEither(rpc.payloadSchema as Schema.Schema<unknown, unknown>),
    decodePayloadAll: Schema.decodeUnknownEither(rpc.payloadSchema as Schema.Schema<unknown, unknown>, {
      errors: "all"
    }),
    encodeSuccess: Schema.encodeUnknownEither(rpc.successSchema as Schema.Schema<unknown, unknown>),
    encodeElements: Schema.encodeUnknownEither(
      Schema.Array(element as Schema.Schema<unknown, unknown>) as Schema.Schema<
        ReadonlyArray<unknown>,
        ReadonlyArray<unknown>
      >
    ),
    encodeError: Schema.encodeUnknownEither(error as Schema.Schema<unknown, unknown>),
    elementJson: Json.mayHoldBinary(element.ast) ? Json.stringifyBinary : Json.stringify,
    successHoldsBinary: Option.isNone(streamed) && Json.mayHoldBinary(rpc.successSchema.ast)
  }
}

const tagOf = (u: unknown): string | undefined =>
  typeof u === "object" && u !== null && typeof (u as { _tag?: unknown })._tag === "string"
    ? (u as { _tag: string })._tag
    : undefined

/** an error of the runtime (not the Rpc's): a class instance, or its encoded form from a dynamic route */
const runtimeErrorFields = (error: object): Record<string, unknown> => {
  const fields: Record<string, unknown> = { ...error }
  if (error instanceof Error) fields["message"] = error.message
  delete fields["stack"]
  return fields
}

interface Outcome {
  readonly status: number
  readonly body: unknown
}

const internalOutcome: Outcome = { status: 500, body: INTERNAL_ERROR }

/** the one place where an ask's (or a stream's) failure becomes a status and a body (interruptions never get here) */
const failureOutcome = (compiled: CompiledRoute, cause: Cause.Cause<unknown>): Effect.Effect<Outcome> => {
  const failure = Cause.failureOption(cause)
  if (Option.isNone(failure)) {
    return Effect.as(Effect.logError("gateway: defect while serving a request", cause), internalOutcome)
  }
  const error = failure.value
  const tag = tagOf(error)
  const declared = tag === undefined ? undefined : compiled.route.errors[tag]
  if (tag !== undefined && declared === undefined && tag in RUNTIME_STATUS) {
    const status = RUNTIME_STATUS[tag]!
    if (status === 500) {
      // a handler died or a value could not be written: log the detail, send nothing of it
      return Effect.as(
        Effect.logError(`gateway: ${compiled.route.definition.kind}.${compiled.route.tag} failed`, error),
        internalOutcome
      )
    }
    return Effect.succeed({ status, body: runtimeErrorFields(error as object) })
  }
  // a typed error of the Rpc: its declared status (default 500) and its encoded form
  const encoded = compiled.encodeError(error)
  if (Either.isLeft(encoded)) {
    return Effect.as(Effect.logError("gateway: cannot encode a typed error", encoded.left), internalOutcome)
  }
  return Effect.succeed({ status: declared ?? 500, body: encoded.right })
}

/** an interrupted-only cause (it holds no failure) passed on */
const interrupted = (cause: Cause.Cause<unknown>): Effect.Effect<never> => Effect.failCause(cause as Cause.Cause<never>)

const failureResponse = (compiled: CompiledRoute, cause: Cause.Cause<unknown>) =>
  Effect.map(failureOutcome(compiled, cause), ({ body, status }) => json(status, body))

const encoder = new TextEncoder()

/**
 * One JSON line per element, the chunk as one piece of the body: each element in its schema's
 * encoded form, and binary left in it (a `Uint8ArrayFromSelf`, or any binary of a route by name)
 * as a base64 string.
 */
const ndjson = (compiled: CompiledRoute, items: Chunk.Chunk<unknown>): Effect.Effect<Uint8Array> => {
  const encoded = compiled.encodeElements(Chunk.toReadonlyArray(items))
  if (Either.isLeft(encoded)) return Effect.die(encoded.left)
  let text = ""
  for (const item of encoded.right) text += `${compiled.elementJson(item)}\n`
  return Effect.succeed(encoder.encode(text))
}

/**
 * A streamed reply as NDJSON. The first element is awaited here, so that a failure before it
 * still gets its status; the rest is pulled while the body is written. The pull lives in the
 * request's scope, which the server closes when the response ends or the client goes away (it
 * interrupts the request fiber), and closing it interrupts the producer.
 */
const streamResponse = (
  compiled: CompiledRoute,
  stream: Stream.Stream<unknown, unknown>
): Effect.Effect<HttpServerResponse.HttpServerResponse, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const pull = yield* Stream.toPull(stream)
    const next = Effect.catchAll(
      Effect.map(pull, Option.some),
      (error) => Option.isNone(error) ? Effect.succeed(Option.none<Chunk.Chunk<unknown>>()) : Effect.fail(error.value)
    )
    let first = Chunk.empty<unknown>()
    let ended = false
    while (Chunk.isEmpty(first)) {
      const chunk = yield* next
      if (Option.isNone(chunk)) {
        ended = true
        break
      }
      first = chunk.value
    }
    const head = Chunk.isEmpty(first) ? Stream.empty : Stream.fromEffect(ndjson(compiled, first))
    const rest = ended ?
      Stream.empty :
      Stream.mapChunksEffect(
        Stream.repeatEffectChunkOption(pull),
        (chunk) => Effect.map(ndjson(compiled, chunk), Chunk.of)
      )
    const body = Stream.concat(head, rest).pipe(
      // after the status is sent a failure can only end the body: as a last line (an
      // interruption, the client gone or the server closing, is left to the server)
      Stream.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause) ? Stream.fromEffect(interrupted(cause)) : Stream.fromEffect(
          Effect.map(
            failureOutcome(compiled, cause),
            (outcome) => encoder.encode(`${JSON.stringify({ _error: outcome.body })}\n`)
          )
        )
      )
    )
    return HttpServerResponse.stream(body, { contentType: "application/x-ndjson" })
  })

const decodeFailure = (what: string, issue: string) => new DecodeError({ what, issue })

/** reads at most `limit` bytes of the body; more fails with `PayloadTooLarge` (413) */
const readBody = (
  request: HttpServerRequest.HttpServerRequest,
  limit: number
): Effect.Effect<string | undefined, PayloadTooLarge | DecodeError> => {
  const length = request.headers["content-length"]
  const chunked = request.headers["transfer-encoding"] !== undefined
  if (!chunked && (length === undefined || length === "0")) return Effect.succeed(undefined)
  if (length !== undefined) {
    if (Number(length) > limit) return Effect.fail(new PayloadTooLarge({ size: Number(length), limit }))
    // a declared length within the limit: one read (Node stops at the declared length)
    return Effect.mapError(request.text, (error) => decodeFailure("request body", error.message))
  }
  // chunked: count while reading and keep nothing past the limit. The rest is read and dropped
  // (up to as much again, at least 64 KiB) so the client, still sending, gets its 413 instead of
  // a reset connection; a body beyond that is cut off.
  const drainLimit = limit + Math.max(limit, 64 * 1024)
  return request.stream.pipe(
    Stream.mapError((error) => decodeFailure("request body", error.message)),
    Stream.runFoldEffect({ size: 0, chunks: Chunk.empty<Uint8Array>() }, (acc, chunk) => {
      const size = acc.size + chunk.length
      if (size > drainLimit) return Effect.fail(new PayloadTooLarge({ size, limit }))
      return Effect.succeed({ size, chunks: size > limit ? acc.chunks : Chunk.append(acc.chunks, chunk) })
    }),
    Effect.flatMap(({ chunks, size }) =>
      size > limit
        ? Effect.fail(new PayloadTooLarge({ size, limit }))
        : Effect.succeed(Buffer.concat(Chunk.toReadonlyArray(chunks)).toString("utf8"))
    )
  )
}

const parseQuery = (url: string): Record<string, string | Array<string>> => {
  const at = url.indexOf("?")
  const query: Record<string, string | Array<string>> = {}
  if (at < 0) return query
  for (const [key, value] of new URLSearchParams(url.slice(at + 1))) {
    const previous = query[key]
    query[key] = previous === undefined ? value : Array.isArray(previous) ? [...previous, value] : [previous, value]
  }
  return query
}

/** `"3"` → 3, `"true"` → true; anything that is not a JSON literal stays a string */
const coerce = (value: string): unknown => {
  if (/^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null)$/.test(value)) return JSON.parse(value)
  return value
}
/** the query with the values of `keys` read as JSON literals */
const coerceQuery = (
  query: Record<string, string | Array<string>>,
  keys: ReadonlySet<PropertyKey>
): Record<string, unknown> => {
  const out: Record<string, unknown> = { ...query }
  for (const key of keys) {
    const value = query[key as string]
    if (value !== undefined) out[key as string] = Array.isArray(value) ? value.map(coerce) : coerce(value)
  }
  return out
}

const forwardedHeaders = (
  headers: Readonly<Record<string, string>>,
  forward: AppOptions["forwardHeaders"]
): Record<string, string> => {
  const out: Record<string, string> = {}
  if (forward === undefined || forward === "all") {
    for (const name in headers) if (!HOP_BY_HOP.has(name)) out[name] = headers[name]!
  } else {
    for (const name of forward) if (headers[name] !== undefined) out[name] = headers[name]!
  }
  return out
}

/** the allow-list in lower case, as Node hands request headers over; `"all"` as it is */
const forwardList = (forward: AppOptions["forwardHeaders"]): AppOptions["forwardHeaders"] =>
  forward === undefined || forward === "all" ? forward : Array.from(new Set(forward.map((name) => name.toLowerCase())))

const handler = (
  compiled: CompiledRoute,
  system: ActorSystemShape,
  options: {
    readonly limit: number
    readonly timeout: Duration.Duration | undefined
    readonly forward: AppOptions["forwardHeaders"]
  }
) => {
  const { route } = compiled
  const what = `payload of ${route.definition.kind}.${route.tag}`
  const timeout = route.timeout ?? options.timeout
  return Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const { params } = yield* HttpRouter.RouteContext
    const text = yield* readBody(request, options.limit)
    let body: Record<string, unknown> = {}
    if (text !== undefined && text.trim() !== "") {
      let parsed: unknown
      try {
        parsed = JSON.parse(text)
      } catch (error) {
        return yield* Effect.fail(decodeFailure("request body", `invalid JSON: ${(error as Error).message}`))
      }
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        return yield* Effect.fail(decodeFailure("request body", "the body must be a JSON object"))
      }
      body = parsed as Record<string, unknown>
    }
    const query = parseQuery(request.url)
    const pathParams: Record<string, string> = {}
    for (const key in params) if (params[key] !== undefined) pathParams[key] = params[key]!
    let decoded = compiled.decodePayload({ ...query, ...body, ...pathParams })
    if (Either.isLeft(decoded) && Object.keys(query).length > 0) {
      // query values are strings: retry once with the failing query fields read as JSON literals
      const all = compiled.decodePayloadAll({ ...query, ...body, ...pathParams })
      if (Either.isLeft(all)) {
        const failing = new Set(ParseResult.ArrayFormatter.formatErrorSync(all.left).map((issue) => issue.path[0]))
        for (const key of failing) if (key === undefined || key in body || key in pathParams) failing.delete(key)
        if (failing.size > 0) {
          const lenient = compiled.decodePayload({ ...coerceQuery(query, failing), ...body, ...pathParams })
          if (Either.isRight(lenient)) decoded = lenient
        }
      }
    }
    if (Either.isLeft(decoded)) {
      return yield* Effect.fail(decodeFailure(what, ParseResult.TreeFormatter.formatErrorSync(decoded.left)))
    }
    const headers = forwardedHeaders(request.headers, options.forward)
    const routeRequest: RouteRequest = { method: request.method, url: request.url, params, headers }
    const envelope = {
      definition: route.definition,
      id: route.id === undefined ? "" : route.id(routeRequest),
      tag: route.tag,
      payload: decoded.right,
      // for a streamed reply, an idle timeout
      timeout,
      headers
    }
    if (compiled.stream) return yield* streamResponse(compiled, system.stream(envelope))
    const value = yield* system.ask(envelope)
    const encoded = compiled.encodeSuccess(value)
    if (Either.isLeft(encoded)) {
      return yield* Effect.die(encoded.left)
    }
    return encoded.right === undefined
      ? HttpServerResponse.empty({ status: 204 })
      : compiled.successHoldsBinary
      ? HttpServerResponse.text(Json.stringifyBinary(encoded.right), { status: 200, contentType: "application/json" })
      : json(200, encoded.right)
  }).pipe(
    // an interruption (the client went away, the server is closing) is left to the server: a
    // response written to a closed connection would never finish, and keep the request's scope
    // (and a stream's producer) open
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause) ? interrupted(cause) : failureResponse(compiled, cause)
    )
  )
}

/** @internal */
export const makeApp = (options: AppOptions) =>
  Effect.gen(function*() {
    const system = yield* ActorSystem
    const limit = options.maxBodySize ?? DEFAULT_MAX_BODY
    if (!Number.isInteger(limit) || limit < 0) {
      throw new RangeError(`maxBodySize must be a whole number >= 0, got ${limit}`)
    }
    const resolved = {
      limit,
      timeout: options.timeout === undefined ? undefined : Duration.decode(options.timeout),
      forward: forwardList(options.forwardHeaders)
    }
    let router: HttpRouter.HttpRouter<never, never> = HttpRouter.empty
    for (const route of options.routes) {
      router = HttpRouter.route(route.method)(
        router,
        route.path as HttpRouter.PathInput,
        handler(compile(route), system, resolved)
      )
    }
    return router.pipe(
      Effect.catchTag("RouteNotFound", () => Effect.succeed(notFound)),
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause)
          ? interrupted(cause)
          : Effect.as(Effect.logError("gateway: request failed", cause), internalError)
      )
    )
  })

/** @internal */
export const layer = (options: GatewayOptions): Layer.Layer<never, HttpServerError.ServeError, ActorSystem> =>
  Layer.unwrapEffect(Effect.map(makeApp(options), (app) => HttpServer.serve(app))).pipe(
    Layer.provide(NodeHttpServer.layer(() => createServer(), { port: options.port, host: options.host ?? "0.0.0.0" }))
  )
