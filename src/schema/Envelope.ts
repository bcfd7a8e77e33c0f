/**
 * The wire protocol's frames: one schema for every frame Troupe moves between nodes (`Frame`),
 * grouped by who sends it (`FromCaller`, `FromHandler`, `PeerToPeer`).
 *
 * A frame carries the protocol version, the source node, its target (an actor address or a
 * subject), a request id, headers (trace context) and a body. The body of a request or a reply
 * is the Schema-*encoded* payload (a plain value), and the `Codec` turns the whole frame into
 * bytes once; on the zero-copy in-memory transport the body is the payload value itself.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { TroupeError } from "./Errors.ts"

/**
 * The version of the wire protocol carried in every frame.
 *
 * @since 0.1.0
 * @category constants
 */
export const ProtocolVersion = 1 as const

/**
 * Headers carried with a frame (W3C trace context, user headers).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Headers = Schema.Record({ key: Schema.String, value: Schema.String })

/**
 * @since 0.1.0
 * @category models
 */
export type Headers = typeof Headers.Type

/**
 * The address of one actor: its kind and its id (services use the id `""`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const ActorAddress = Schema.Struct({ kind: Schema.String, id: Schema.String })

/**
 * @since 0.1.0
 * @category models
 */
export type ActorAddress = typeof ActorAddress.Type

const common = {
  v: Schema.Literal(ProtocolVersion),
  source: Schema.String
}

/**
 * A request to an actor or service. `oneWay` requests (tells) get no reply.
 *
 * @since 0.1.0
 * @category frames
 */
export const Request = Schema.TaggedStruct("Request", {
  ...common,
  requestId: Schema.Number,
  kind: Schema.String,
  id: Schema.String,
  tag: Schema.String,
  headers: Headers,
  body: Schema.Unknown,
  oneWay: Schema.optional(Schema.Boolean),
  /** the caller expects a streamed reply (a handler of the other kind refuses the request) */
  stream: Schema.optional(Schema.Boolean),
  /** how many times the request was forwarded to the actor's owner */
  hops: Schema.optional(Schema.Number)
})

/**
 * How a request ended, as carried in an `Exit` frame.
 *
 * @since 0.1.0
 * @category schemas
 */
export const WireExit = Schema.Union(
  Schema.TaggedStruct("Success", { value: Schema.Unknown }),
  /** the Rpc's declared error, encoded with its schema */
  Schema.TaggedStruct("Failure", { error: Schema.Unknown }),
  /** a runtime error of Troupe (including `RemoteDefect`) */
  Schema.TaggedStruct("Error", { error: TroupeError })
)

/**
 * @since 0.1.0
 * @category models
 */
export type WireExit = typeof WireExit.Type

/**
 * The reply to a request.
 *
 * @since 0.1.0
 * @category frames
 */
export const Exit = Schema.TaggedStruct("Exit", {
  ...common,
  requestId: Schema.Number,
  exit: WireExit
})

/**
 * The caller gave up on a request (interrupt or timeout): interrupt its handler.
 *
 * @since 0.1.0
 * @category frames
 */
export const Interrupt = Schema.TaggedStruct("Interrupt", {
  ...common,
  requestId: Schema.Number
})

/**
 * One piece of a frame too large for one wire message: the encoded frame is cut into pieces of
 * at most the transport's chunk size (16 KiB by default), numbered by `seq` from 0 under a
 * per-sender message id (`requestId`), and joined again on arrival.
 *
 * @since 0.1.0
 * @category frames
 */
export const Chunk = Schema.TaggedStruct("Chunk", {
  ...common,
  requestId: Schema.Number,
  seq: Schema.Number,
  body: Schema.Uint8ArrayFromSelf,
  last: Schema.Boolean
})

/**
 * Flow-control credit for a chunked stream.
 *
 * @since 0.1.0
 * @category frames
 */
export const Ack = Schema.TaggedStruct("Ack", {
  ...common,
  requestId: Schema.Number,
  credit: Schema.Number,
  /** credit for the stream of a request (an upload) rather than of a reply */
  upload: Schema.optional(Schema.Boolean)
})

/**
 * A batch of elements of a streamed reply (handler → caller) or of a streamed request
 * (`upload`, caller → handler). Each frame spends one credit of the receiver's window; `seq`
 * counts frames from 0 so a missing, repeated or reordered frame is detected.
 *
 * @since 0.1.0
 * @category frames
 */
export const Items = Schema.TaggedStruct("Items", {
  ...common,
  requestId: Schema.Number,
  seq: Schema.Number,
  /** the elements, each encoded with the stream's element schema */
  items: Schema.Array(Schema.Unknown),
  upload: Schema.optional(Schema.Boolean),
  /** the producer of an upload finished (replies end with their `Exit` frame) */
  end: Schema.optional(Schema.Boolean),
  /** the producer of an upload failed, and why */
  failure: Schema.optional(Schema.String)
})

/**
 * A published topic event.
 *
 * @since 0.1.0
 * @category frames
 */
export const Event = Schema.TaggedStruct("Event", {
  ...common,
  subject: Schema.String,
  headers: Headers,
  body: Schema.Unknown
})

/**
 * A discovery announcement / heartbeat of one node.
 *
 * @since 0.1.0
 * @category frames
 */
export const Heartbeat = Schema.TaggedStruct("Heartbeat", {
  ...common,
  name: Schema.String,
  incarnation: Schema.String,
  address: Schema.String,
  kinds: Schema.Array(Schema.String),
  isServing: Schema.Boolean,
  startedAt: Schema.Number,
  /** the node's heartbeat period, so peers judge its silence by its own clock */
  periodMillis: Schema.Number,
  /** sent once when the node leaves gracefully */
  leaving: Schema.optional(Schema.Boolean)
})

/**
 * A secure-session handshake message.
 *
 * @since 0.1.0
 * @category frames
 */
export const Handshake = Schema.TaggedStruct("Handshake", {
  ...common,
  step: Schema.Number,
  body: Schema.Uint8ArrayFromSelf
})

/**
 * A frame sealed by the `Secure` layer: the AES-256-GCM ciphertext (with its 16-byte tag) of an
 * encoded frame. `mode` 0 is a pairwise session with the receiver (`key` its session id), 1 the
 * sender's group key (`key` its epoch), 2 the group key plus an Ed25519 signature `sig`; plus 4
 * when the plaintext is several length-prefixed encoded frames (a batch). The
 * `source`, `mode`, `key`, `counter` and `subject` are authenticated (additional data); the
 * counter is the nonce.
 *
 * @since 0.1.0
 * @category frames
 */
export const Sealed = Schema.TaggedStruct("Sealed", {
  ...common,
  mode: Schema.Number,
  key: Schema.Number,
  counter: Schema.Number,
  /** the subject it was published to (group frames only) */
  subject: Schema.optional(Schema.String),
  body: Schema.Uint8ArrayFromSelf,
  sig: Schema.optional(Schema.Uint8ArrayFromSelf)
})

/**
 * The frames a caller sends to the handler of its request: the request, its interrupt, and for
 * streams the credit for the reply (`Ack`) and the elements of an upload (`Items`, `upload`).
 *
 * @since 0.5.0
 * @category schemas
 */
export const FromCaller = Schema.Union(Request, Interrupt, Ack, Items)

/**
 * @since 0.5.0
 * @category models
 */
export type FromCaller = typeof FromCaller.Type

/**
 * The frames a handler sends back to the caller: how the request ended, and for streams the
 * elements of the reply (`Items`) and the credit for an upload (`Ack`, `upload`).
 *
 * @since 0.5.0
 * @category schemas
 */
export const FromHandler = Schema.Union(Exit, Ack, Items)

/**
 * @since 0.5.0
 * @category models
 */
export type FromHandler = typeof FromHandler.Type

/**
 * The frames between nodes that belong to no request: topic events, discovery heartbeats,
 * secure handshakes and sealed frames, and the pieces of a frame too large for one message.
 *
 * @since 0.5.0
 * @category schemas
 */
export const PeerToPeer = Schema.Union(Event, Heartbeat, Handshake, Sealed, Chunk)

/**
 * @since 0.5.0
 * @category models
 */
export type PeerToPeer = typeof PeerToPeer.Type

/**
 * Every frame of the wire protocol: `FromCaller`, `FromHandler` and `PeerToPeer`.
 *
 * @since 0.5.0
 * @category schemas
 */
export const Frame = Schema.Union(Request, Exit, Interrupt, Chunk, Ack, Items, Event, Heartbeat, Handshake, Sealed)

/**
 * @since 0.5.0
 * @category models
 */
export type Frame = typeof Frame.Type

/**
 * Every frame of the wire protocol.
 *
 * @deprecated since 0.5.0: use `Frame` (`Envelope` is also the name of `ActorSystem.Envelope`,
 * a message addressed to an actor)
 * @since 0.1.0
 * @category schemas
 */
export const Envelope = Frame

/**
 * @deprecated since 0.5.0: use `Frame`
 * @since 0.1.0
 * @category models
 */
export type Envelope = Frame

/**
 * @since 0.1.0
 * @category models
 */
export type RequestFrame = typeof Request.Type

/**
 * @since 0.1.0
 * @category models
 */
export type ExitFrame = typeof Exit.Type

/**
 * @since 0.1.0
 * @category models
 */
export type InterruptFrame = typeof Interrupt.Type

/**
 * @since 0.1.0
 * @category models
 */
export type HeartbeatFrame = typeof Heartbeat.Type

/**
 * @since 0.1.0
 * @category models
 */
export type ChunkFrame = typeof Chunk.Type

/**
 * @since 0.1.0
 * @category models
 */
export type AckFrame = typeof Ack.Type

/**
 * @since 0.1.0
 * @category models
 */
export type ItemsFrame = typeof Items.Type

/**
 * @since 0.1.0
 * @category models
 */
export type SealedFrame = typeof Sealed.Type
