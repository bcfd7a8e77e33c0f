/**
 * The state of one secure transport, shared by its parts (`securePeer`, `secureSeal`,
 * `secureGroupKey`, `secureHandshake`, and the wrapper in `secure.ts`): its configuration, the
 * frame modes and handshake steps, the records of peers and sessions, and the counters of what
 * it rejected. Each part takes this one explicit `SecureState`; the two calls that go up the
 * module order (publish a frame as a caller would, start a handshake) are hooks on it, so the
 * imports stay acyclic.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import type { KeyObject } from "node:crypto"
import { type Envelope, ProtocolVersion, type SealedFrame } from "../../schema/Envelope.ts"
import type { EncodeError, PayloadTooLarge, TransportError } from "../../schema/Errors.ts"
import type { CodecShape } from "../Codec.ts"
import type { PublishOptions, TransportShape } from "../Transport.ts"
import type { Coalescer } from "./coalesce.ts"
import * as C from "./secureCrypto.ts"
import { type Identity, type IdentityKeys, keysOf } from "./secureIdentity.ts"
import * as Subjects from "./subjects.ts"

/** @internal */
export interface SecureConfig {
  readonly identity: Identity
  /** normalised (base64url) trusted keys, or "any" */
  readonly trust: ReadonlySet<string> | "any"
  readonly namespace: string
  readonly handshakeTimeoutMillis: number
  readonly rekeyAfterMessages: number
  readonly rekeyAfterMillis: number
  readonly maxQueued: number
  /** seal the frames published to one subject in one event-loop turn together */
  readonly coalesce: boolean | undefined
}

/** @internal why a frame was rejected */
export type RejectReason =
  | "tampered"
  | "replay"
  | "old"
  | "untrusted"
  | "unknown-session"
  | "namespace"
  | "signature"
  | "unsigned"
  | "plaintext"
  | "malformed"
  | "no-key"
  | "impersonation"

/** @internal */
export const rejectedFrames = Metric.counter("troupe_secure_rejected", {
  description: "frames and handshakes rejected by the secure layer"
})

/** @internal */
export const handshakesMetric = Metric.counter("troupe_secure_handshakes", {
  description: "secure-session handshakes completed"
})

// ---- frame modes and handshake steps ---------------------------------------------------------

/** @internal sealed with the pairwise session of two nodes */
export const PAIRWISE = 0
/** @internal sealed with the sender's group key */
export const GROUP = 1
/** @internal sealed with the sender's group key and signed with its identity */
export const GROUP_SIGNED = 2
/** @internal added to the mode of a frame whose plaintext is several length-prefixed frames */
export const BATCH = 4

/** @internal */
export const STEP_HELLO = 1
/** @internal */
export const STEP_REPLY = 2
/** @internal */
export const STEP_CONFIRM = 3
/** @internal a group key (epoch, key), sealed inside a session */
export const STEP_GROUP_KEY = 4
/** @internal a request for the current group key, sealed inside a session */
export const STEP_GROUP_KEY_REQUEST = 5
/** @internal */
export const STEP_REJECT = 9

/** @internal */
export const MAX_PEERS = 4096

// ---- records ---------------------------------------------------------------------------------

/** @internal a pairwise session: one key per direction, a send counter and a replay window */
export class Session {
  sent = 0
  readonly window = new C.ReplayWindow()
  /** additional-data prefixes, computed once */
  sendPrefix: Buffer | undefined = undefined
  receivePrefix: Buffer | undefined = undefined
  receiveSubject = ""
  constructor(
    readonly id: number,
    readonly sendKey: Buffer,
    readonly receiveKey: Buffer,
    readonly establishedAt: number
  ) {}
}

/** @internal */
export interface GroupKey {
  readonly epoch: number
  readonly key: Buffer
}

/** @internal our own current group key */
export interface OwnGroupKey extends GroupKey {
  sent: number
  readonly createdAt: number
}

/**
 * @internal Replay windows of one subscription, by sender and epoch: several subscriptions of a
 * node may each receive the same group frame once.
 */
export class Windows extends Map<string, C.ReplayWindow> {
  // the last frame's header, so a run of frames from one sender skips rebuilding its data
  lastSubject = ""
  lastSource = ""
  lastKey = 0
  lastMode = 0
  lastPrefix: Buffer | undefined = undefined
  lastWindowKey = ""
}

/** @internal a frame waiting for a session with its peer */
export interface Queued {
  readonly subject: string
  readonly frame: Envelope
  readonly options: PublishOptions | undefined
}

/** @internal a received frame waiting for its sender's group key */
export interface Held {
  readonly frame: SealedFrame
  readonly pattern: string
  readonly windows: Windows
  readonly deliver: (frame: Envelope) => void
}

/** @internal a handshake this node started */
export interface Initiating {
  readonly sessionId: number
  readonly ephemeral: C.Ephemeral
  readonly timer: Fiber.RuntimeFiber<void>
}

/** @internal a handshake this node answered, waiting for its confirmation */
export interface Responding {
  readonly peer: string
  readonly session: Session
  readonly transcript: Buffer
  readonly peerKey: KeyObject
  readonly peerKeyText: string
  readonly incarnation: string
}

/** @internal what this node knows of another */
export class Peer {
  readonly subject: string
  sessions: Array<Session> = []
  current: Session | undefined = undefined
  initiating: Initiating | undefined = undefined
  queue: Array<Queued> = []
  held: Array<Held> = []
  group = new Map<number, GroupKey>()
  requestedEpochs = new Set<number>()
  publicKey: KeyObject | undefined = undefined
  publicKeyText = ""
  incarnation: string | undefined = undefined
  failedAt = Number.NEGATIVE_INFINITY
  unknownAt = Number.NEGATIVE_INFINITY
  constructor(readonly nodeId: string) {
    this.subject = Subjects.node(nodeId)
  }
}

/** @internal what the secure transport's own publish returns */
export type PublishResult = TransportError | EncodeError | PayloadTooLarge | undefined

/** @internal */
export interface SecureState {
  readonly inner: TransportShape
  readonly codec: CodecShape
  readonly config: SecureConfig
  readonly fork: <A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>
  readonly now: () => number
  readonly own: IdentityKeys
  /** this process's start: a peer that sees it change knows we restarted */
  readonly incarnation: string
  readonly peers: Map<string, Peer>
  readonly responding: Map<number, Responding>
  /** this node's id, and where frames to it go */
  self: string | undefined
  selfDeliver: ((frame: Envelope) => void) | undefined
  closed: boolean
  handshakes: number
  handshakeFailures: number
  readonly rejected: Record<string, number>
  /** our group key: one encryption per shared frame, handed to every peer we have a session with */
  group: OwnGroupKey
  readonly ownEpochs: Map<number, GroupKey>
  /** additional-data prefixes of our current group epoch, by subject */
  groupPrefixes: Map<string, Buffer>
  groupBatchPrefixes: Map<string, Buffer>
  readonly coalesce: boolean
  readonly coalescer: Coalescer<Session | GroupKey, NonNullable<PublishResult>>
  /** publishes as a caller of the secure transport would (routing, queueing, sealing) */
  readonly publish: (subject: string, frame: Envelope, options?: PublishOptions) => PublishResult
  /** starts a handshake with `peer` */
  readonly initiate: (peer: Peer) => void
}

/** @internal the parts of a `SecureState` given to `makeState` */
export interface StateInput {
  readonly inner: TransportShape
  readonly codec: CodecShape
  readonly config: SecureConfig
  readonly fork: SecureState["fork"]
  readonly now: () => number
  readonly coalescer: (state: SecureState) => SecureState["coalescer"]
  readonly publish: SecureState["publish"]
  readonly initiate: SecureState["initiate"]
}

/** @internal */
export const makeState = (input: StateInput): SecureState => {
  const group: OwnGroupKey = { epoch: C.randomId(), key: C.randomKey(), sent: 0, createdAt: input.now() }
  let coalescer: SecureState["coalescer"] | undefined
  const state: SecureState = {
    inner: input.inner,
    codec: input.codec,
    config: input.config,
    fork: input.fork,
    now: input.now,
    own: keysOf(input.config.identity),
    incarnation: C.encodeKey(C.randomKey()).slice(0, 16),
    peers: new Map(),
    responding: new Map(),
    self: undefined,
    selfDeliver: undefined,
    closed: false,
    handshakes: 0,
    handshakeFailures: 0,
    rejected: {},
    group,
    ownEpochs: new Map([[group.epoch, group]]),
    groupPrefixes: new Map(),
    groupBatchPrefixes: new Map(),
    coalesce: input.config.coalesce ?? input.inner.name.startsWith("nats"),
    get coalescer() {
      return coalescer ??= input.coalescer(state)
    },
    publish: input.publish,
    initiate: input.initiate
  }
  return state
}

/** @internal the record of `nodeId`, made if it is new */
export const peerOf = (state: SecureState, nodeId: string): Peer => {
  let peer = state.peers.get(nodeId)
  if (peer === undefined) {
    peer = new Peer(nodeId)
    state.peers.set(nodeId, peer)
  }
  return peer
}

/** @internal the record of `nodeId` if it is known or there is room for it (anyone can claim any source) */
export const boundedPeerOf = (state: SecureState, nodeId: string): Peer | undefined =>
  state.peers.get(nodeId) ?? (state.peers.size < MAX_PEERS ? peerOf(state, nodeId) : undefined)

/** @internal counts a rejected frame, and logs the first few of each reason, then one in a thousand */
export const reject = (state: SecureState, reason: RejectReason, source: string, detail = ""): void => {
  const count = (state.rejected[reason] ?? 0) + 1
  state.rejected[reason] = count
  rejectedFrames.pipe(Metric.tagged("reason", reason)).unsafeUpdate(1, [])
  if (count <= 10 || count % 1000 === 0) {
    state.fork(
      Effect.logWarning(
        `secure: rejected a frame from ${source} (${reason}${detail ? `: ${detail}` : ""}; ${count} so far)`
      )
    )
  }
}

/** @internal */
export const isTrusted = (state: SecureState, keyText: string): boolean =>
  state.config.trust === "any" || state.config.trust.has(keyText)

/** @internal whether frames to `subject` are signed as well as sealed (topic events, heartbeats) */
export const isSignedSubject = (subject: string): boolean => subject.startsWith("topic.") || subject === "discovery"

/** @internal */
export const uint32 = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(4)
  b.writeUInt32BE(n >>> 0)
  return b
}

/** @internal a handshake or control message from this node, its body of length-prefixed parts */
export const handshakeFrame = (
  state: SecureState,
  step: number,
  parts: ReadonlyArray<Uint8Array | string>
): Envelope => ({ _tag: "Handshake", v: ProtocolVersion, source: state.self!, step, body: C.concat(parts) })

/** @internal what a caught error says, without its value (which may hold anything) */
export const describe = (error: unknown): string => error instanceof Error ? error.message.slice(0, 200) : typeof error
