/**
 * The errors of the Troupe runtime. Every one is a `Schema.TaggedError`, so it is a typed value
 * at the caller and crosses the wire unchanged.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * No node hosts the requested kind, or a node received a request for a kind it does not host.
 *
 * @since 0.1.0
 * @category errors
 */
export class ActorNotFound extends Schema.TaggedError<ActorNotFound>()("ActorNotFound", {
  kind: Schema.String,
  id: Schema.String,
  node: Schema.optional(Schema.String)
}) {
  override get message(): string {
    return `no actor kind "${this.kind}" (id "${this.id}") is hosted${this.node ? ` on node ${this.node}` : ""}`
  }
}

/**
 * The kind is known but no serving node can take the request right now.
 *
 * @since 0.1.0
 * @category errors
 */
export class NoAvailableNode extends Schema.TaggedError<NoAvailableNode>()("NoAvailableNode", {
  kind: Schema.String,
  id: Schema.String
}) {
  override get message(): string {
    return `no serving node is available for kind "${this.kind}" (id "${this.id}")`
  }
}

/**
 * The target's bounded mailbox (or the node's bounded pending-request table) is full; the
 * message was not accepted.
 *
 * @since 0.1.0
 * @category errors
 */
export class MailboxFull extends Schema.TaggedError<MailboxFull>()("MailboxFull", {
  kind: Schema.String,
  id: Schema.String,
  capacity: Schema.Number,
  queue: Schema.Literal("mailbox", "pending-requests")
}) {
  override get message(): string {
    return `${
      this.queue === "mailbox" ? "mailbox" : "pending-request table"
    } of ${this.kind}/${this.id} is full (capacity ${this.capacity})`
  }
}

/**
 * An ask did not complete within its timeout; the handler was interrupted.
 *
 * @since 0.1.0
 * @category errors
 */
export class AskTimeout extends Schema.TaggedError<AskTimeout>()("AskTimeout", {
  kind: Schema.String,
  id: Schema.String,
  tag: Schema.String,
  elapsedMillis: Schema.Number
}) {
  override get message(): string {
    return `ask ${this.kind}/${this.id}.${this.tag} timed out after ${this.elapsedMillis} ms`
  }
}

/**
 * The actor is stopped (its supervision gave up, or its node is shutting down) and will not
 * process the message.
 *
 * @since 0.1.0
 * @category errors
 */
export class ActorStopped extends Schema.TaggedError<ActorStopped>()("ActorStopped", {
  kind: Schema.String,
  id: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `actor ${this.kind}/${this.id} is stopped: ${this.reason}`
  }
}

/**
 * A message is larger than the configured per-message limit (default 5 MiB).
 *
 * @since 0.1.0
 * @category errors
 */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  size: Schema.Number,
  limit: Schema.Number
}) {
  override get message(): string {
    return `payload of ${this.size} bytes exceeds the limit of ${this.limit} bytes`
  }
}

/**
 * A payload, reply or frame did not match its schema. `issue` is the formatted schema issue.
 *
 * @since 0.1.0
 * @category errors
 */
export class DecodeError extends Schema.TaggedError<DecodeError>()("DecodeError", {
  what: Schema.String,
  issue: Schema.String
}) {
  override get message(): string {
    return `cannot decode ${this.what}: ${this.issue}`
  }
}

/**
 * A value could not be encoded for the wire (it does not match its schema, or the codec cannot
 * represent it).
 *
 * @since 0.1.0
 * @category errors
 */
export class EncodeError extends Schema.TaggedError<EncodeError>()("EncodeError", {
  what: Schema.String,
  issue: Schema.String
}) {
  override get message(): string {
    return `cannot encode ${this.what}: ${this.issue}`
  }
}

/**
 * The transport failed to move a frame (connection lost, closed, refused).
 *
 * @since 0.1.0
 * @category errors
 */
export class TransportError extends Schema.TaggedError<TransportError>()("TransportError", {
  reason: Schema.String
}) {
  override get message(): string {
    return `transport error: ${this.reason}`
  }
}

/**
 * A stream between two actors broke: a frame went missing, came twice or out of order, its
 * producer failed or went silent, or its peer went away.
 *
 * @since 0.1.0
 * @category errors
 */
export class StreamError extends Schema.TaggedError<StreamError>()("StreamError", {
  kind: Schema.String,
  id: Schema.String,
  tag: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `stream of ${this.kind}/${this.id}.${this.tag} broke: ${this.reason}`
  }
}

/**
 * A secure-session handshake with a peer failed.
 *
 * @since 0.1.0
 * @category errors
 */
export class HandshakeError extends Schema.TaggedError<HandshakeError>()("HandshakeError", {
  peer: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `handshake with ${this.peer} failed: ${this.reason}`
  }
}

/**
 * A peer is not in the trust list.
 *
 * @since 0.1.0
 * @category errors
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  peer: Schema.String,
  /** the public key the peer presented */
  publicKey: Schema.optional(Schema.String)
}) {
  override get message(): string {
    return `peer ${this.peer}${this.publicKey ? ` (key ${this.publicKey})` : ""} is not trusted`
  }
}

/**
 * The handler died (a defect, not a declared error). Carries the remote message and stack.
 *
 * @since 0.1.0
 * @category errors
 */
export class RemoteDefect extends Schema.TaggedError<RemoteDefect>()("RemoteDefect", {
  kind: Schema.String,
  id: Schema.String,
  tag: Schema.String,
  node: Schema.String,
  defect: Schema.String,
  stack: Schema.optional(Schema.String)
}) {
  override get message(): string {
    return `${this.kind}/${this.id}.${this.tag} died on node ${this.node}: ${this.defect}`
  }
}

/**
 * A durable actor's save lost a compare-and-set: another activation of the same id wrote the
 * state first (the brief double activation while membership changes). The message that lost
 * changed nothing; the losing activation is passivated, and the next message activates again
 * from the stored value.
 *
 * @since 0.5.0
 * @category errors
 */
export class StateConflict extends Schema.TaggedError<StateConflict>()("StateConflict", {
  kind: Schema.String,
  id: Schema.String,
  /** the revision this activation loaded or last wrote (0: none) */
  expected: Schema.Number
}) {
  override get message(): string {
    return `the state of ${this.kind}/${this.id} was written by another activation (expected revision ${this.expected})`
  }
}

/**
 * A durable actor's stored state no longer decodes with its schema. The activation fails and
 * the stored value is left as it is (migrate with a `Schema.Union` of the versions).
 *
 * @since 0.5.0
 * @category errors
 */
export class StateDecodeError extends Schema.TaggedError<StateDecodeError>()("StateDecodeError", {
  kind: Schema.String,
  id: Schema.String,
  /** the formatted schema issue */
  issue: Schema.String
}) {
  override get message(): string {
    return `the stored state of ${this.kind}/${this.id} does not decode: ${this.issue}`
  }
}

/**
 * The persistence store failed or could not be reached (`operation` is what was attempted).
 *
 * @since 0.5.0
 * @category errors
 */
export class PersistenceError extends Schema.TaggedError<PersistenceError>()("PersistenceError", {
  operation: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `persistence ${this.operation} failed: ${this.reason}`
  }
}

/**
 * Every runtime error of Troupe, as one schema (used to carry them over the wire).
 *
 * @since 0.1.0
 * @category schemas
 */
export const TroupeError = Schema.Union(
  ActorNotFound,
  NoAvailableNode,
  MailboxFull,
  AskTimeout,
  ActorStopped,
  PayloadTooLarge,
  DecodeError,
  EncodeError,
  TransportError,
  StreamError,
  HandshakeError,
  Unauthorized,
  RemoteDefect,
  StateConflict,
  StateDecodeError,
  PersistenceError
)

/**
 * @since 0.1.0
 * @category models
 */
export type TroupeError = typeof TroupeError.Type

/**
 * The errors an ask can fail with besides the Rpc's declared error.
 *
 * @since 0.1.0
 * @category models
 */
export type AskError =
  | ActorNotFound
  | NoAvailableNode
  | MailboxFull
  | AskTimeout
  | ActorStopped
  | PayloadTooLarge
  | DecodeError
  | EncodeError
  | TransportError
  | StreamError
  | HandshakeError
  | Unauthorized
  | RemoteDefect
  | StateConflict
  | StateDecodeError
  | PersistenceError

/**
 * The errors a tell can fail with when the message is not accepted.
 *
 * @since 0.1.0
 * @category models
 */
export type TellError =
  | ActorNotFound
  | DecodeError
  | NoAvailableNode
  | MailboxFull
  | ActorStopped
  | PayloadTooLarge
  | EncodeError
  | TransportError
