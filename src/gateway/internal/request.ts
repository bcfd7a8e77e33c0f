/**
 * Reading a gateway request: the body within its size limit, the query, the headers forwarded
 * to the handler, and the payload merged from path params, query and body and decoded with the
 * Rpc's schema (query values retried once as JSON literals).
 *
 * @internal
 */
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Stream from "effect/Stream"
import { DecodeError, PayloadTooLarge } from "../../schema/Errors.ts"
import type { AppOptions } from "../Gateway.ts"
import type { CompiledRoute } from "./compile.ts"

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

/** @internal */
export const decodeFailure = (what: string, issue: string) => new DecodeError({ what, issue })

/** @internal reads at most `limit` bytes of the body; more fails with `PayloadTooLarge` (413) */
export const readBody = (
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

/** @internal the query string as fields, a repeated key as an array */
export const parseQuery = (url: string): Record<string, string | Array<string>> => {
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

/** @internal the request headers the handler sees: the allow-list, or all but hop-by-hop ones */
export const forwardedHeaders = (
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

/** @internal the allow-list in lower case, as Node hands request headers over; `"all"` as it is */
export const forwardList = (forward: AppOptions["forwardHeaders"]): AppOptions["forwardHeaders"] =>
  forward === undefined || forward === "all" ? forward : Array.from(new Set(forward.map((name) => name.toLowerCase())))

/**
 * @internal
 * The payload of a request: its path params over its JSON body over its query, decoded with the
 * Rpc's payload schema. Query values are strings, so the query fields that fail are retried once
 * read as JSON literals.
 */
export const readPayload = (
  compiled: CompiledRoute,
  request: HttpServerRequest.HttpServerRequest,
  params: Readonly<Record<string, string | undefined>>,
  limit: number
): Effect.Effect<unknown, PayloadTooLarge | DecodeError> =>
  Effect.gen(function*() {
    const text = yield* readBody(request, limit)
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
      return yield* Effect.fail(decodeFailure(
        `payload of ${compiled.route.definition.kind}.${compiled.route.tag}`,
        ParseResult.TreeFormatter.formatErrorSync(decoded.left)
      ))
    }
    return decoded.right
  })
