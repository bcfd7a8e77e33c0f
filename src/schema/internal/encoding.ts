/**
 * Values through their schemas, with the errors as typed values: the encode and decode helpers
 * of the per-Rpc and per-topic codecs, and the lazily formatted `DecodeError` of what comes off
 * the wire.
 *
 * @internal
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import { DecodeError, EncodeError } from "../Errors.ts"

/** @internal a parse error formatted, or a description of anything else */
export const issueOf = (error: unknown): string =>
  ParseResult.isParseError(error) ? ParseResult.TreeFormatter.formatErrorSync(error) : describe(error)

/** @internal a description of a caught error or value that never throws (it may come off the wire) */
export const describe = (u: unknown): string => {
  try {
    return u instanceof Error ? u.message : String(u)
  } catch {
    return typeof u
  }
}

/**
 * A `DecodeError` whose `issue` is computed when it is first read (formatting a schema's parse
 * error costs far more than the decoding that failed): an error nobody looks at costs no message.
 *
 * @internal
 */
export const lazyDecodeError = (what: string, issue: () => string): DecodeError => {
  const error = new DecodeError({ what, issue: "" }, true)
  let computed: string | undefined
  Object.defineProperty(error, "issue", {
    get: () => computed ??= issue(),
    enumerable: true,
    configurable: true
  })
  return error
}

/**
 * Encodes a value with a schema, as a typed `EncodeError` on failure.
 *
 * @internal
 */
export const encodeWith = <A, I>(schema: Schema.Schema<A, I, never>, what: string) => {
  // a schema whose encoded form is its type (no transformation) has nothing to encode: the value
  // goes as it is, and the receiver, which decodes (and so validates) it, reports a mismatch
  if (SchemaAST.encodedAST(schema.ast) === schema.ast) {
    return (value: unknown): Either.Either<I, EncodeError> => Either.right(value as I)
  }
  const encode = Schema.encodeUnknownEither(schema)
  return (value: unknown): Either.Either<I, EncodeError> =>
    Either.mapLeft(encode(value), (error) => new EncodeError({ what, issue: issueOf(error) }))
}

/**
 * Decodes a value with a schema, as a typed `DecodeError` on failure.
 *
 * @internal
 */
export const decodeWith = <A, I>(schema: Schema.Schema<A, I, never>, what: string) => {
  const decode = Schema.decodeUnknownEither(schema)
  // the value comes off the wire: the issue is formatted only if someone reads it, and a schema
  // that throws on it (a user's transformation, say) fails like any other
  return (value: unknown): Either.Either<A, DecodeError> => {
    try {
      const decoded = decode(value)
      // the success as it is: no second Either on every request and reply
      return Either.isRight(decoded)
        ? decoded as Either.Either<A, never>
        : Either.left(lazyDecodeError(what, () => issueOf(decoded.left)))
    } catch (error) {
      return Either.left(lazyDecodeError(what, () => describe(error)))
    }
  }
}
