/**
 * Kinds known only by name (config-file routes, `troupe call`): every tag is an Rpc whose
 * payload, success and error are `Schema.Unknown`. A JSON value then travels as the encoded
 * payload, the hosting node decodes it with the real schema, and the reply comes back in its
 * encoded (JSON-able) form. This needs a serializing transport (NATS, or the in-memory one with
 * `serialize: true`): on a zero-copy transport nothing decodes the payload. A streamed Rpc must
 * be known as one (`stream`): its elements then arrive encoded too.
 *
 * @internal
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as Schema from "effect/Schema"
import * as Subject from "../../layers/Subject.ts"
import type { KindDefinition } from "../../actors/ActorSystem.ts"

/** a map of Rpcs that makes the untyped Rpc of any tag it is asked for */
class DynamicRpcs extends Map<string, Rpc.AnyWithProps> {
  constructor(readonly stream: boolean) {
    super()
  }
  override get(tag: string): Rpc.AnyWithProps {
    let rpc = super.get(tag)
    if (rpc === undefined) {
      rpc = Rpc.make(tag, {
        payload: Schema.Unknown,
        success: Schema.Unknown,
        error: Schema.Unknown,
        stream: this.stream
      }) as unknown as Rpc.AnyWithProps
      super.set(tag, rpc)
    }
    return rpc
  }
}

const cache = new Map<string, KindDefinition>()

/** @internal */
export const dynamicKind = (kind: string, service: boolean, stream = false): KindDefinition => {
  const key = `${service ? "S" : "A"}${stream ? "*" : ""}:${kind}`
  let definition = cache.get(key)
  if (definition === undefined) {
    if (!Subject.isToken(kind)) {
      throw new TypeError(`kind "${kind}" must match [A-Za-z0-9_-]{1,255} (it becomes a subject token)`)
    }
    definition = { _tag: service ? "Service" : "Actor", kind, rpcs: new DynamicRpcs(stream) }
    cache.set(key, definition)
  }
  return definition
}
