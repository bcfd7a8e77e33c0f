/**
 * Streamed request bodies: a payload field whose value is a `Stream` the handler pulls across the
 * wire with credit-based flow control. Re-exported by `Actor` (`Actor.streamOf`, `Actor.Upload`).
 *
 * @since 0.5.0
 */
import * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"
import type { StreamError } from "../schema/Errors.ts"
import * as internalStreamOf from "./internal/streamOf.ts"

/**
 * The annotation that marks a payload field as a streamed request body.
 *
 * @since 0.1.0
 * @category annotations
 */
export const StreamOfAnnotationId: unique symbol = internalStreamOf.StreamOfAnnotationId

/**
 * The schema of a payload field that carries a `Stream` (a streamed request, e.g. an upload).
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamOf<Item extends Schema.Schema.Any>
  extends Schema.Schema<Stream.Stream<Schema.Schema.Type<Item>, StreamError>>
{
  readonly item: Item
}

/**
 * A payload field that carries a stream of `item`s from the caller to the handler. The caller
 * passes any `Stream`; the handler receives a `Stream` that pulls the elements across the wire
 * with credit-based flow control (memory stays bounded whatever the length) and fails with
 * `StreamError` if the caller's stream fails or the caller goes away. One such field per
 * payload, at its top level.
 *
 * @example
 * ```ts
 * const Store = Actor.make("Store", [
 *   Rpc.make("Put", { payload: { name: Schema.String, data: Actor.Upload }, success: Schema.Number })
 * ])
 * yield* store("files").Put({ name: "a.bin", data: Stream.fromIterable(chunks) })
 * ```
 *
 * @since 0.1.0
 * @category schemas
 */
export const streamOf: <Item extends Schema.Schema.Any>(item: Item) => StreamOf<Item> = internalStreamOf.streamOf

/**
 * A payload field carrying a stream of bytes: `Actor.streamOf(Schema.Uint8ArrayFromSelf)`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Upload: StreamOf<typeof Schema.Uint8ArrayFromSelf> = streamOf(Schema.Uint8ArrayFromSelf)

/**
 * The streamed field of a payload schema, if it has one: its name and element schema.
 *
 * @since 0.1.0
 * @category annotations
 */
export const streamedField: (
  payload: Schema.Schema.All
) => { readonly name: string; readonly item: Schema.Schema<unknown, unknown> } | undefined =
  internalStreamOf.streamedField
