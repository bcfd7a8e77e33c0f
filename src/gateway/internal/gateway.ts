/**
 * The gateway's request pipeline, wired: route → payload (`request.ts`) → ask or stream →
 * JSON reply (or NDJSON lines, `ndjson.ts`), every failure turned into a status by `outcome.ts`;
 * then the router of all routes and the HTTP server layer.
 *
 * @internal
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import { createServer } from "node:http"
import { ActorSystem, type ActorSystemShape } from "../../actors/ActorSystem.ts"
import type { AppOptions, GatewayOptions, RouteRequest } from "../Gateway.ts"
import { compile, type CompiledRoute } from "./compile.ts"
import * as Json from "./json.ts"
import { streamResponse } from "./ndjson.ts"
import { failureResponse, internalError, interrupted, json, notFound } from "./outcome.ts"
import { forwardedHeaders, forwardList, readPayload } from "./request.ts"

const DEFAULT_MAX_BODY = 1024 * 1024

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
  const timeout = route.timeout ?? options.timeout
  return Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const { params } = yield* HttpRouter.RouteContext
    const payload = yield* readPayload(compiled, request, params, options.limit)
    const headers = forwardedHeaders(request.headers, options.forward)
    const routeRequest: RouteRequest = { method: request.method, url: request.url, params, headers }
    const envelope = {
      definition: route.definition,
      id: route.id === undefined ? "" : route.id(routeRequest),
      tag: route.tag,
      payload,
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
