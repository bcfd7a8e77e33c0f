/**
 * A gateway route compiled once: its Rpc, and the decoders and encoders of its payload, reply,
 * stream elements and errors (with whether their encoded side may hold binary).
 *
 * @internal
 */
import type * as Rpc from "@effect/rpc/Rpc"
import * as RpcSchema from "@effect/rpc/RpcSchema"
import type * as Either from "effect/Either"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type { Route } from "../Gateway.ts"
import * as Json from "./json.ts"

/** @internal compiled once per route */
export interface CompiledRoute {
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

/** @internal */
export const compile = (route: Route): CompiledRoute => {
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
