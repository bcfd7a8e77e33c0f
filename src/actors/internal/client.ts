/**
 * The client side of a kind: an ask as a value (`Actor.Ask`: running it sends the message and
 * waits, `Actor.tell` sends it without waiting) and the typed client built from a kind's Rpcs
 * (streaming Rpcs answer with a `Stream`).
 *
 * @internal
 */
import type * as Rpc from "@effect/rpc/Rpc"
import * as RpcSchema from "@effect/rpc/RpcSchema"
import type * as Effect from "effect/Effect"
import * as Effectable from "effect/Effectable"
import type * as Actor from "../Actor.ts"
import type { ActorSystemShape, Envelope, KindDefinition } from "../ActorSystem.ts"

/** @internal */
export const AskTypeId: typeof Actor.AskTypeId = Symbol.for("troupe/Actor/Ask") as typeof Actor.AskTypeId

/** An ask as a value of one stable shape: running it sends the message, `tell` reads it. */
class AskImpl extends Effectable.Class<unknown, unknown> implements Actor.Ask<unknown, unknown> {
  readonly [AskTypeId]: { readonly envelope: Envelope; readonly system: ActorSystemShape }
  constructor(envelope: Envelope, system: ActorSystemShape) {
    super()
    this[AskTypeId] = { envelope, system }
  }
  commit(): Effect.Effect<unknown, unknown> {
    const { envelope, system } = this[AskTypeId]
    return system.ask(envelope)
  }
}

const isStreamRpc = (rpc: Rpc.AnyWithProps): boolean => RpcSchema.isStreamSchema(rpc.successSchema)

/** The client of the instance `id` of a kind (`""` for a service). @internal */
export const makeClient = (system: ActorSystemShape, definition: KindDefinition, id: string) => {
  const client: Record<string, (payload: unknown, options?: Actor.AskOptions) => unknown> = {}
  for (const [tag, rpc] of definition.rpcs) {
    const envelopeOf = (payload: unknown, options: Actor.AskOptions | undefined): Envelope => ({
      definition,
      id,
      tag,
      payload,
      timeout: options?.timeout,
      headers: options?.headers
    })
    client[tag] = isStreamRpc(rpc)
      ? (payload, options) => system.stream(envelopeOf(payload, options))
      : (payload, options) => new AskImpl(envelopeOf(payload, options), system)
  }
  return client
}
