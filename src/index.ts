/**
 * Troupe: typed, cancellable, Effect-native actors, in memory or over NATS.
 *
 * @since 0.1.0
 */

/** Actors and services: definitions, hosting layers, clients. @since 0.1.0 */
export * as Actor from "./actors/Actor.ts"

/** Typed pub/sub by subject with wildcards and queue groups. @since 0.1.0 */
export * as Topic from "./actors/Topic.ts"

/** A clock module publishing `clock.tick`. @since 0.1.0 */
export * as Ticks from "./actors/Ticks.ts"

/** The contract between definitions and the hosting runtime. @since 0.1.0 */
export * as ActorSystem from "./actors/ActorSystem.ts"

/** Frames ⇄ bytes: JSON and MessagePack. @since 0.1.0 */
export * as Codec from "./layers/Codec.ts"

/** Membership: who hosts what, and who serves. @since 0.1.0 */
export * as Discovery from "./layers/Discovery.ts"

/** NATS subject matching and delivery semantics. @since 0.1.0 */
export * as Subject from "./layers/Subject.ts"

/** Durable state and reminders: a revisioned key-value store (in memory or JetStream KV). @since 0.5.0 */
export * as Persistence from "./layers/Persistence.ts"

/** Moves frames between nodes: in memory or over NATS. @since 0.1.0 */
export * as Transport from "./layers/Transport.ts"

/** The wire envelope. @since 0.1.0 */
export * as Envelope from "./schema/Envelope.ts"

/** The typed errors of the runtime. @since 0.1.0 */
export * as Errors from "./schema/Errors.ts"

/** The node: hosting, routing, lifecycle. @since 0.1.0 */
export * as Node from "./runtime/Node.ts"

/** Encrypted, authenticated sessions between nodes (wraps the Transport). @since 0.1.0 */
export * as Secure from "./layers/Secure.ts"

/** An HTTP gateway in front of the actors. @since 0.1.0 */
export * as Gateway from "./gateway/Gateway.ts"

/** The config file (`troupe.toml` or JSON), validated with Schema. @since 0.1.0 */
export * as Config from "./app/Config.ts"
