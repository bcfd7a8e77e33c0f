/**
 * JSON text of values on their way out of the runtime (the gateway's NDJSON lines, `troupe call`):
 * binary (`Uint8Array`, `Buffer`) becomes a base64 string, not an object with one key per byte
 * (nor a Buffer's `{ type, data }`).
 *
 * The replacer that does it makes `JSON.stringify` about twice as slow, so a typed route uses it
 * only when its schema's encoded side may hold binary (`mayHoldBinary`).
 *
 * @internal
 */
import type * as AST from "effect/SchemaAST"
import { base64Of } from "../../layers/internal/binary.ts"

function binaryAsBase64(this: unknown, key: string, value: unknown): unknown {
  return base64Of(this, key, value) ?? value
}

/** @internal JSON text of a value (`undefined` as `null`), binary as base64 (standard alphabet, padded) */
export const stringifyBinary = (value: unknown): string => JSON.stringify(value ?? null, binaryAsBase64)

/** @internal JSON text of a value (`undefined` as `null`) known to hold no binary */
export const stringify = (value: unknown): string => JSON.stringify(value ?? null)

/**
 * @internal whether a value encoded with this schema may hold binary: a declaration
 * (`Uint8ArrayFromSelf`, …), `unknown`, `any`, `object` or a recursive schema may; strings,
 * numbers, literals and structures of them may not. Transformations are followed to their
 * encoded side.
 */
export const mayHoldBinary = (ast: AST.AST): boolean => {
  switch (ast._tag) {
    case "Declaration":
    case "UnknownKeyword":
    case "AnyKeyword":
    case "ObjectKeyword":
    case "Suspend":
      return true
    case "Refinement":
    case "Transformation":
      return mayHoldBinary(ast.from)
    case "Union":
      return ast.types.some(mayHoldBinary)
    case "TupleType":
      return ast.elements.some((element) => mayHoldBinary(element.type)) ||
        ast.rest.some((rest) => mayHoldBinary(rest.type))
    case "TypeLiteral":
      return ast.propertySignatures.some((property) => mayHoldBinary(property.type)) ||
        ast.indexSignatures.some((index) => mayHoldBinary(index.type))
    default:
      return false
  }
}
