/**
 * The contract between actor definitions (this folder) and the runtime that hosts them
 * (`src/runtime/Node.ts` implements it). Users rarely touch it directly: `Actor.toLayer`
 * registers through it and `Actor.client` asks through it.
 *
 * @since 0.1.0
 */
import type * as Rpc from "@effect/rpc/Rpc"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { Headers } from "../schema/Envelope.ts"
import type { TellError } from "../schema/Errors.ts"

/**
 * A declared kind as the runtime sees it.
 *
 * @since 0.1.0
 * @category models
 */
export interface KindDefinition {
  readonly _tag: "Actor" | "Service"
  readonly kind: string
  readonly rpcs: ReadonlyMap<string, Rpc.AnyWithProps>
}

/**
 * What a handler receives besides its payload.
 *
 * @since 0.1.0
 * @category models
 */
export interface HandlerContext {
  readonly headers: Headers
}

/**
 * @since 0.1.0
 * @category models
 */
export type AnyHandler = (payload: unknown, context: HandlerContext) => Effect.Effect<unknown, unknown, unknown>

/**
 * Options of a hosted kind, resolved (every default applied).
 *
 * @since 0.1.0
 * @category models
 */
export interface EntityOptions {
  readonly maxIdleTime: Duration.Duration
  readonly mailboxCapacity: number
  readonly concurrency: number
  readonly supervision: Schedule.Schedule<unknown, unknown>
}

/**
 * A kind plus how to build one instance of it.
 *
 * @since 0.1.0
 * @category models
 */
export interface EntityDefinition {
  readonly definition: KindDefinition
  /** builds the handlers of one instance; runs with `context` + `CurrentAddress` + `Scope` */
  readonly build: Effect.Effect<Readonly<Record<string, AnyHandler>>, unknown, unknown>
  readonly context: Context.Context<never>
  readonly options: EntityOptions
}

/**
 * One message to one actor or service.
 *
 * @since 0.1.0
 * @category models
 */
export interface Envelope {
  readonly definition: KindDefinition
  readonly id: string
  readonly tag: string
  readonly payload: unknown
  readonly timeout?: Duration.DurationInput | undefined
  readonly headers?: Headers | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ActorSystemShape {
  readonly nodeId: string
  /** Hosts a kind on this node until the scope closes (graceful drain on close). */
  readonly register: (entity: EntityDefinition) => Effect.Effect<void, never, Scope.Scope>
  /** Request/reply. Fails with the Rpc's error or an `AskError`. */
  readonly ask: (envelope: Envelope) => Effect.Effect<unknown, unknown>
  /** Request with a streamed reply: the remote producer runs while the stream is pulled. */
  readonly stream: (envelope: Envelope) => Stream.Stream<unknown, unknown>
  /** Fire-and-forget: fails only if the message is not accepted. */
  readonly tell: (envelope: Envelope) => Effect.Effect<void, TellError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class ActorSystem extends Context.Tag("troupe/ActorSystem")<ActorSystem, ActorSystemShape>() {}
