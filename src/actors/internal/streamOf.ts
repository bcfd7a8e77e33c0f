/**
 * Streamed request bodies: the schema of a payload field that carries a `Stream` (`Actor.streamOf`,
 * `Actor.Upload`), marked by an annotation, and finding that field in a payload schema.
 *
 * @internal
 */
import { hasProperty } from "effect/Predicate"
import * as Schema from "effect/Schema"
import type * as AST from "effect/SchemaAST"
import * as Stream from "effect/Stream"
import type { StreamError } from "../../schema/Errors.ts"
import type * as Actor from "../StreamOf.ts"

/** @internal */
export const StreamOfAnnotationId: typeof Actor.StreamOfAnnotationId = Symbol.for(
  "troupe/Actor/StreamOf"
) as typeof Actor.StreamOfAnnotationId

/** @internal see `Actor.streamOf` */
export const streamOf = <Item extends Schema.Schema.Any>(item: Item): Actor.StreamOf<Item> =>
  Object.assign(
    Schema.declare(
      (u: unknown): u is Stream.Stream<Schema.Schema.Type<Item>, StreamError> => hasProperty(u, Stream.StreamTypeId),
      { identifier: "Stream", [StreamOfAnnotationId]: item }
    ),
    { item }
  )

/** @internal see `Actor.streamedField` */
export const streamedField = (
  payload: Schema.Schema.All
): { readonly name: string; readonly item: Schema.Schema<unknown, unknown> } | undefined => {
  let ast: AST.AST = payload.ast
  while (ast._tag === "Transformation") ast = ast.to
  if (ast._tag !== "TypeLiteral") return undefined
  for (const property of ast.propertySignatures) {
    const item = property.type.annotations[StreamOfAnnotationId]
    if (item !== undefined && typeof property.name === "string") {
      return { name: property.name, item: item as Schema.Schema<unknown, unknown> }
    }
  }
  return undefined
}
