/**
 * The per-Rpc codecs of the node: the Schema encoders and decoders of one Rpc's payload, reply,
 * error, streamed reply elements and streamed request field, compiled once per Rpc.
 *
 * @internal
 */
import type * as Rpc from "@effect/rpc/Rpc"
import * as RpcSchema from "@effect/rpc/RpcSchema"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { streamedField } from "../../actors/internal/streamOf.ts"
import { decodeWith, encodeWith } from "../../layers/Codec.ts"
import type { DecodeError, EncodeError } from "../../schema/Errors.ts"

/**
 * Schema encoders/decoders of one Rpc, compiled once.
 *
 * @internal
 */
export interface RpcCodec {
  readonly encodePayload: (value: unknown) => Either.Either<unknown, EncodeError>
  readonly decodePayload: (value: unknown) => Either.Either<unknown, DecodeError>
  readonly encodeSuccess: (value: unknown) => Either.Either<unknown, EncodeError>
  readonly decodeSuccess: (value: unknown) => Either.Either<unknown, DecodeError>
  readonly encodeError: (value: unknown) => Either.Either<unknown, EncodeError>
  readonly decodeError: (value: unknown) => Either.Either<unknown, DecodeError>
  /** a streamed reply: its elements' codecs (the `Exit` then carries the number of frames) */
  readonly items: ItemCodec | undefined
  /** a streamed request: the payload field that carries it, and its elements' codecs */
  readonly upload: (ItemCodec & { readonly field: string }) | undefined
}

/**
 * The codec of the elements of a streamed reply or request.
 *
 * @internal
 */
export interface ItemCodec {
  readonly encode: (items: ReadonlyArray<unknown>) => Either.Either<unknown, EncodeError>
  readonly decode: (items: ReadonlyArray<unknown>) => Either.Either<ReadonlyArray<unknown>, DecodeError>
}

const itemCodec = (item: Schema.Schema<unknown, unknown>, what: string): ItemCodec => {
  const schema = Schema.Array(item) as Schema.Schema<ReadonlyArray<unknown>, unknown>
  return {
    encode: encodeWith(schema, what),
    decode: decodeWith(schema, what) as ItemCodec["decode"]
  }
}

const identity = <A>(value: A) => Either.right(value)

const rpcCodecs = new WeakMap<Rpc.AnyWithProps, RpcCodec>()
/**
 * The codecs of `rpc` of `kind`, compiled on first use.
 *
 * @internal
 */
export const rpcCodec = (kind: string, rpc: Rpc.AnyWithProps): RpcCodec => {
  let codec = rpcCodecs.get(rpc)
  if (codec === undefined) {
    const payload = rpc.payloadSchema as Schema.Schema<unknown, unknown>
    const streamed = RpcSchema.getStreamSchemas(rpc.successSchema.ast)
    const success = rpc.successSchema as Schema.Schema<unknown, unknown>
    const error = (Option.isSome(streamed)
      ? Schema.Union(rpc.errorSchema, streamed.value.failure)
      : rpc.errorSchema) as Schema.Schema<unknown, unknown>
    const name = `${kind}.${rpc._tag}`
    const field = streamedField(rpc.payloadSchema)
    codec = {
      encodePayload: encodeWith(payload, `payload of ${name}`),
      decodePayload: decodeWith(payload, `payload of ${name}`),
      encodeSuccess: Option.isSome(streamed) ? identity : encodeWith(success, `reply of ${name}`),
      decodeSuccess: Option.isSome(streamed) ? identity : decodeWith(success, `reply of ${name}`),
      encodeError: encodeWith(error, `error of ${name}`),
      decodeError: decodeWith(error, `error of ${name}`),
      items: Option.isSome(streamed)
        ? itemCodec(streamed.value.success as Schema.Schema<unknown, unknown>, `stream element of ${name}`)
        : undefined,
      upload: field === undefined
        ? undefined
        : { field: field.name, ...itemCodec(field.item, `element of ${name}.${field.name}`) }
    }
    rpcCodecs.set(rpc, codec)
  }
  return codec
}
