/**
 * The secure transport: wraps a `Transport` so that every frame leaves sealed.
 *
 * - Frames to `node.<peer>` are sealed with the pairwise session of the two nodes (mode 0).
 *   Without a session, they wait (bounded) while a handshake runs; if it fails, the asks among
 *   them fail with `HandshakeError` / `Unauthorized` (a synthetic `Exit` to the local node).
 * - Frames to shared subjects (`actor.*`, `interrupt.*`, `topic.*`, `discovery`) are sealed once
 *   with the sender's group key (mode 1), handed to peers over their pairwise sessions; topic
 *   events and heartbeats are also signed with the sender's Ed25519 key (mode 2).
 * - A receiver that lacks the key of a frame holds it (bounded) and opens a session with its
 *   sender, which then hands over its group key.
 * - With `coalesce` (the default over NATS), the frames published to one subject before the next
 *   microtask are sealed together as one batch (mode + 4): one AES-GCM operation and one message.
 *
 * Handshake (Handshake frames on `node.<peer>`, bodies of length-prefixed parts):
 *   1  I → R  namespace, incarnation I, R, identity I, ephemeral I, session id
 *   2  R → I  namespace, incarnation R, session id, identity R, ephemeral R, R's signature
 *   3  I → R  session id, I's signature
 *   9  either way: session id, reason (a rejection)
 * and, sealed inside a session: 4 a group key (epoch, key), 5 a request for the current one.
 * Both signatures cover the transcript (namespace, both node ids, incarnations, identities,
 * ephemeral keys and the session id) with a role label; the session keys come from the X25519
 * secret through HKDF-SHA-256 salted with the transcript's SHA-256, one key per direction.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import type { KeyObject } from "node:crypto"
import { inspect } from "node:util"
import { type Envelope, ProtocolVersion, type SealedFrame } from "../../schema/Envelope.ts"
import {
  type EncodeError,
  HandshakeError,
  type PayloadTooLarge,
  TransportError,
  Unauthorized
} from "../../schema/Errors.ts"
import { type CodecShape, decodeFrame, Malformed } from "../Codec.ts"
import type { PeerSession, SecureStats } from "../Secure.ts"
import * as Subject from "../Subject.ts"
import { type PublishOptions, type SubscribeOptions, type TransportShape } from "../Transport.ts"
import { Coalescer } from "./coalesce.ts"
import { malformedFrames } from "./drops.ts"
import { decodeBatch, encodeBatch } from "./fragments.ts"
import * as C from "./secureCrypto.ts"

/** what a caught error says, without its value (which may hold anything) */
const describe = (error: unknown): string => (error instanceof Error ? error.message.slice(0, 200) : typeof error)

// ---- identity --------------------------------------------------------------------------------

/** @internal */
export const IdentityTypeId: unique symbol = Symbol.for("troupe/Secure/Identity")

interface IdentityKeys {
  readonly privateKey: KeyObject
  readonly publicKey: KeyObject
  readonly raw: Buffer
}

const identityKeys = new WeakMap<object, IdentityKeys>()

/** @internal An Ed25519 identity; its private key is reachable only through `keysOf`. */
export class Identity {
  readonly [IdentityTypeId]: typeof IdentityTypeId = IdentityTypeId
  readonly publicKey: string
  constructor(seed: Uint8Array) {
    const pair = C.ed25519FromSeed(seed)
    const raw = C.rawPublicKey(pair.publicKey)
    this.publicKey = C.encodeKey(raw)
    identityKeys.set(this, { privateKey: pair.privateKey, publicKey: pair.publicKey, raw })
  }
  toJSON(): unknown {
    return { _id: "Identity", publicKey: this.publicKey }
  }
  toString(): string {
    return `Identity(${this.publicKey})`
  }
  [inspect.custom](): string {
    return this.toString()
  }
}

const keysOf = (identity: Identity): IdentityKeys => identityKeys.get(identity)!

// ---- configuration ---------------------------------------------------------------------------

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

/** @internal */
export const rejectedFrames = Metric.counter("troupe_secure_rejected", {
  description: "frames and handshakes rejected by the secure layer"
})

/** @internal */
export const handshakesMetric = Metric.counter("troupe_secure_handshakes", {
  description: "secure-session handshakes completed"
})

/** @internal */
export interface SecureHandle {
  readonly transport: TransportShape
  readonly publicKey: string
  readonly peers: () => ReadonlyArray<PeerSession>
  readonly stats: () => SecureStats
}

// ---- state -----------------------------------------------------------------------------------

const PAIRWISE = 0
const GROUP = 1
const GROUP_SIGNED = 2

/** added to the mode of a frame whose plaintext is several length-prefixed frames */
const BATCH = 4
const MAX_BATCH_BYTES = 64 * 1024
const MAX_BATCH_FRAMES = 256
const MAX_TRACKED_BATCHES = 4096

const STEP_HELLO = 1
const STEP_REPLY = 2
const STEP_CONFIRM = 3
const STEP_GROUP_KEY = 4
const STEP_GROUP_KEY_REQUEST = 5
const STEP_REJECT = 9

const MAX_SESSIONS_PER_PEER = 3
const MAX_GROUP_EPOCHS = 3
const MAX_HELD_PER_SENDER = 256
const MAX_RESPONDING = 1024
const MAX_PEERS = 4096

class Session {
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

interface GroupKey {
  readonly epoch: number
  readonly key: Buffer
}

/**
 * Replay windows of one subscription, by sender and epoch: several subscriptions of a node
 * may each receive the same group frame once.
 */
class Windows extends Map<string, C.ReplayWindow> {
  // the last frame's header, so a run of frames from one sender skips rebuilding its data
  lastSubject = ""
  lastSource = ""
  lastKey = 0
  lastMode = 0
  lastPrefix: Buffer | undefined = undefined
  lastWindowKey = ""
}
const MAX_WINDOWS = 4096

interface Queued {
  readonly subject: string
  readonly frame: Envelope
  readonly options: PublishOptions | undefined
}

interface Held {
  readonly frame: SealedFrame
  readonly pattern: string
  readonly windows: Windows
  readonly deliver: (frame: Envelope) => void
}

interface Initiating {
  readonly sessionId: number
  readonly ephemeral: C.Ephemeral
  readonly timer: Fiber.RuntimeFiber<void>
}

interface Responding {
  readonly peer: string
  readonly session: Session
  readonly transcript: Buffer
  readonly peerKey: KeyObject
  readonly peerKeyText: string
  readonly incarnation: string
}

class Peer {
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
    this.subject = `node.${nodeId}`
  }
}

const isSignedSubject = (subject: string): boolean => subject.startsWith("topic.") || subject === "discovery"

const uint32 = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(4)
  b.writeUInt32BE(n >>> 0)
  return b
}

const NODE_SUBJECT = /^node\.([^.*>]+)$/

/** the peer of a direct subject `node.<id>`, with the answers of recent subjects cached */
let directCache = new Map<string, string | null>()
const directPeer = (subject: string): string | undefined => {
  let peer = directCache.get(subject)
  if (peer === undefined) {
    peer = NODE_SUBJECT.exec(subject)?.[1] ?? null
    if (directCache.size >= 4096) directCache = new Map()
    directCache.set(subject, peer)
  }
  return peer ?? undefined
}

/** @internal wraps `inner` so that every frame is sealed */
export const make = (
  inner: TransportShape,
  codec: CodecShape,
  config: SecureConfig
): Effect.Effect<SecureHandle, never, Scope.Scope> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const fork = Runtime.runFork(runtime)
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    const own = keysOf(config.identity)
    const incarnation = C.encodeKey(C.randomKey()).slice(0, 16)
    const peers = new Map<string, Peer>()
    const responding = new Map<number, Responding>()
    let self: string | undefined
    let selfDeliver: ((frame: Envelope) => void) | undefined
    let closed = false
    let handshakes = 0
    let handshakeFailures = 0
    const rejected: Record<string, number> = {}

    // our group key: one encryption per shared frame, handed to every peer we have a session with
    let groupKey: GroupKey & { sent: number; readonly createdAt: number } = {
      epoch: C.randomId(),
      key: C.randomKey(),
      sent: 0,
      createdAt: now()
    }
    const ownEpochs = new Map<number, GroupKey>([[groupKey.epoch, groupKey]])

    const peerOf = (nodeId: string): Peer => {
      let peer = peers.get(nodeId)
      if (peer === undefined) {
        peer = new Peer(nodeId)
        peers.set(nodeId, peer)
      }
      return peer
    }

    const reject = (reason: RejectReason, source: string, detail = ""): void => {
      const count = (rejected[reason] ?? 0) + 1
      rejected[reason] = count
      rejectedFrames.pipe(Metric.tagged("reason", reason)).unsafeUpdate(1, [])
      // bounded logging: the first few of each reason, then one in a thousand
      if (count <= 10 || count % 1000 === 0) {
        fork(
          Effect.logWarning(
            `secure: rejected a frame from ${source} (${reason}${detail ? `: ${detail}` : ""}; ${count} so far)`
          )
        )
      }
    }

    const isTrusted = (keyText: string): boolean => config.trust === "any" || config.trust.has(keyText)

    // ---- sending -------------------------------------------------------------------------

    const sealWith = (
      subject: string,
      mode: number,
      key: number,
      counter: number,
      secret: Buffer,
      plaintext: Uint8Array,
      prefix: Buffer
    ): SealedFrame => {
      const aad = C.additionalData(prefix, counter)
      const body = C.seal(secret, counter, aad, plaintext)
      if ((mode & ~BATCH) === PAIRWISE) {
        return { _tag: "Sealed", v: ProtocolVersion, source: self!, mode, key, counter, body }
      }
      const frame: SealedFrame = {
        _tag: "Sealed",
        v: ProtocolVersion,
        source: self!,
        mode,
        key,
        counter,
        subject,
        body
      }
      return (mode & ~BATCH) === GROUP_SIGNED
        ? { ...frame, sig: C.signBytes(own.privateKey, Buffer.concat([aad, body])) }
        : frame
    }

    const sendPairwise = (
      peer: Peer,
      session: Session,
      frame: Envelope,
      options: PublishOptions | undefined
    ): TransportError | EncodeError | PayloadTooLarge | undefined => {
      const encoded = codec.encode(frame)
      if (Either.isLeft(encoded)) {
        return encoded.left
      }
      return emit(peer.subject, session, encoded.right, options?.replyTo)
    }

    /** what the inner transport is told: large frames to a node's direct subject travel in pieces */
    const publishOptions = (subject: string, replyTo: string | undefined): PublishOptions => {
      const direct = directPeer(subject) !== undefined
      return replyTo === undefined
        ? (direct ? { fragmentTo: subject } : {})
        : (direct ? { replyTo, fragmentTo: subject } : { replyTo })
    }

    /** seals one frame or a batch with a session (pairwise) or our group key */
    const sealOne = (
      subject: string,
      sealer: Session | GroupKey,
      plaintext: Uint8Array,
      batch: boolean
    ): SealedFrame => {
      if (sealer instanceof Session) {
        const prefix = batch
          ? C.additionalPrefix(self!, subject, PAIRWISE + BATCH, sealer.id)
          : (sealer.sendPrefix ??= C.additionalPrefix(self!, subject, PAIRWISE, sealer.id))
        return sealWith(
          subject,
          PAIRWISE + (batch ? BATCH : 0),
          sealer.id,
          ++sealer.sent,
          sealer.sendKey,
          plaintext,
          prefix
        )
      }
      const mode = (isSignedSubject(subject) ? GROUP_SIGNED : GROUP) + (batch ? BATCH : 0)
      return sealWith(subject, mode, sealer.epoch, ++groupKey.sent, sealer.key, plaintext, groupPrefix(subject, mode))
    }

    // ---- coalescing: one sealing (and one NATS message) for the frames of one subject in one
    // event-loop turn; each batch is flushed in the order it was opened. A batch is sealed with
    // one key: its `key` is the sealer
    const coalesce = config.coalesce ?? inner.name.startsWith("nats")
    const coalescer = new Coalescer<Session | GroupKey, TransportError | EncodeError | PayloadTooLarge>({
      single: false,
      headerBytes: 0,
      // the plaintext of a batch, its frames' length prefixes included, but for the last one's
      maxBytes: MAX_BATCH_BYTES + 4,
      maxFrames: MAX_BATCH_FRAMES,
      maxTracked: MAX_TRACKED_BATCHES,
      sendOne: (subject, sealer, frame, replyTo) =>
        inner.unsafePublish(subject, sealOne(subject, sealer, frame, false), publishOptions(subject, replyTo)),
      sendBatch: (subject, sealer, frames, replyTo) =>
        inner.unsafePublish(
          subject,
          sealOne(subject, sealer, encodeBatch(frames), true),
          publishOptions(subject, replyTo)
        ),
      replySlot: (id) => `node.${self}.hb.${id}`,
      onUnsent: (count, subject, error) =>
        fork(Effect.logWarning(`secure: ${count} frame(s) to ${subject} were not sent`, error))
    })

    const emit = (
      subject: string,
      sealer: Session | GroupKey,
      plaintext: Uint8Array,
      replyTo: string | undefined
    ): TransportError | EncodeError | PayloadTooLarge | undefined => {
      if (!coalesce || plaintext.byteLength > MAX_BATCH_BYTES) {
        coalescer.closeFor(subject)
        return inner.unsafePublish(
          subject,
          sealOne(subject, sealer, plaintext, false),
          publishOptions(subject, replyTo)
        )
      }
      coalescer.add(subject, sealer, plaintext, replyTo)
      return undefined
    }

    const handshakeFrame = (step: number, parts: ReadonlyArray<Uint8Array | string>): Envelope => ({
      _tag: "Handshake",
      v: ProtocolVersion,
      source: self!,
      step,
      body: C.concat(parts)
    })

    const sendGroupKey = (peer: Peer): void => {
      const session = peer.current
      if (session === undefined) return
      const error = sendPairwise(
        peer,
        session,
        handshakeFrame(STEP_GROUP_KEY, [uint32(groupKey.epoch), groupKey.key]),
        undefined
      )
      if (error !== undefined) fork(Effect.logWarning(`secure: could not hand the group key to ${peer.nodeId}`, error))
    }

    /** additional-data prefixes of our current group epoch, by subject */
    let groupPrefixes = new Map<string, Buffer>()
    let groupBatchPrefixes = new Map<string, Buffer>()
    const groupPrefix = (subject: string, mode: number): Buffer => {
      const cache = (mode & BATCH) === 0 ? groupPrefixes : groupBatchPrefixes
      let prefix = cache.get(subject)
      if (prefix === undefined) {
        if (cache.size >= 1024) cache.clear()
        prefix = C.additionalPrefix(self!, subject, mode, groupKey.epoch)
        cache.set(subject, prefix)
      }
      return prefix
    }

    const rotateGroupKey = (): void => {
      // what was sealed with the old key leaves first
      coalescer.flushAll()
      groupPrefixes = new Map()
      groupBatchPrefixes = new Map()
      groupKey = { epoch: C.randomId(), key: C.randomKey(), sent: 0, createdAt: now() }
      ownEpochs.set(groupKey.epoch, groupKey)
      while (ownEpochs.size > MAX_GROUP_EPOCHS) ownEpochs.delete(ownEpochs.keys().next().value!)
      // handed over before its first use: on one connection, frames keep their order
      for (const peer of peers.values()) sendGroupKey(peer)
    }

    const dueForRekey = (sent: number, since: number): boolean =>
      sent >= config.rekeyAfterMessages || now() - since >= config.rekeyAfterMillis

    const unsafePublish = (
      subject: string,
      frame: Envelope,
      options?: PublishOptions
    ): TransportError | EncodeError | PayloadTooLarge | undefined => {
      if (self === undefined) {
        return new TransportError({
          reason: "secure transport: the node id is not known yet (subscribe to node.<id> first)"
        })
      }
      const peerId = directPeer(subject)
      if (peerId !== undefined && peerId !== self) {
        const peer = peerOf(peerId)
        const session = peer.current
        if (session === undefined) return enqueue(peer, subject, frame, options)
        if (peer.initiating === undefined && dueForRekey(session.sent, session.establishedAt)) initiate(peer)
        return sendPairwise(peer, session, frame, options)
      }
      const fragmentTo = options?.fragmentTo
      if (fragmentTo !== undefined && fragmentTo !== subject && fragmentTo.startsWith("node.")) {
        // a frame for a shared subject (a service's queue group) whose caller named one member
        // goes to that member over their pairwise session. Sealed with the group key, a copy
        // replayed on the shared subject could reach another member, whose replay window never
        // saw its counter; a pairwise session has one receiver, which sees every counter
        return unsafePublish(fragmentTo, frame, options)
      }
      const encoded = codec.encode(frame)
      if (Either.isLeft(encoded)) return encoded.left
      if (dueForRekey(groupKey.sent, groupKey.createdAt)) rotateGroupKey()
      return emit(subject, groupKey, encoded.right, options?.replyTo)
    }

    const enqueue = (
      peer: Peer,
      subject: string,
      frame: Envelope,
      options: PublishOptions | undefined
    ): TransportError | undefined => {
      if (peer.queue.length >= config.maxQueued) {
        return new TransportError({ reason: `secure: too many frames waiting for the handshake with ${peer.nodeId}` })
      }
      peer.queue.push({ subject, frame, options })
      if (peer.initiating === undefined) initiate(peer)
      return undefined
    }

    const flush = (peer: Peer): void => {
      const queue = peer.queue
      peer.queue = []
      for (const item of queue) {
        const error = unsafePublish(item.subject, item.frame, item.options)
        if (error !== undefined) {
          fork(Effect.logWarning(`secure: a queued ${item.frame._tag} frame to ${peer.nodeId} was not sent`, error))
        }
      }
    }

    /** the asks among the waiting frames fail with `error`; the rest are dropped */
    const failQueue = (peer: Peer, error: HandshakeError | Unauthorized, unreachable: boolean): void => {
      const queue = peer.queue
      peer.queue = []
      for (const item of queue) {
        const replyTo = item.options?.replyTo
        if (unreachable && replyTo !== undefined) {
          coalescer.noRespondersTo(replyTo)
          continue
        }
        const frame = item.frame
        if (frame._tag === "Request" && frame.oneWay !== true && frame.source === self && selfDeliver !== undefined) {
          selfDeliver({
            _tag: "Exit",
            v: ProtocolVersion,
            source: peer.nodeId,
            requestId: frame.requestId,
            exit: { _tag: "Error", error }
          })
        }
      }
    }

    // ---- the handshake -------------------------------------------------------------------

    const transcriptOf = (
      initiator: string,
      responder: string,
      initiatorIncarnation: string,
      responderIncarnation: string,
      initiatorKey: Uint8Array,
      responderKey: Uint8Array,
      initiatorEphemeral: Uint8Array,
      responderEphemeral: Uint8Array,
      sessionId: number
    ): Buffer =>
      C.concat([
        C.PROTOCOL_LABEL,
        config.namespace,
        initiator,
        responder,
        initiatorIncarnation,
        responderIncarnation,
        initiatorKey,
        responderKey,
        initiatorEphemeral,
        responderEphemeral,
        uint32(sessionId)
      ])

    const roleSigned = (role: "initiator" | "responder", transcript: Buffer): Buffer =>
      Buffer.concat([Buffer.from(`${C.PROTOCOL_LABEL} ${role}\u0000`), transcript])

    const initiate = (peer: Peer): void => {
      if (self === undefined || closed) return
      const sessionId = C.randomId()
      const ephemeralKeys = C.ephemeral()
      const timer = fork(
        Effect.sleep(config.handshakeTimeoutMillis).pipe(
          Effect.zipRight(Effect.sync(() => {
            if (peer.initiating?.sessionId !== sessionId) return
            fail(
              peer,
              new HandshakeError({ peer: peer.nodeId, reason: `no answer within ${config.handshakeTimeoutMillis} ms` }),
              false
            )
          }))
        )
      )
      peer.initiating = { sessionId, ephemeral: ephemeralKeys, timer }
      const error = inner.unsafePublish(
        `node.${peer.nodeId}`,
        handshakeFrame(STEP_HELLO, [
          config.namespace,
          incarnation,
          peer.nodeId,
          own.raw,
          ephemeralKeys.publicKey,
          uint32(sessionId)
        ]),
        { replyTo: `node.${self}.hs.${peer.nodeId}` }
      )
      if (error !== undefined) fail(peer, new HandshakeError({ peer: peer.nodeId, reason: error.message }), false)
    }

    const fail = (peer: Peer, error: HandshakeError | Unauthorized, unreachable: boolean): void => {
      const initiating = peer.initiating
      if (initiating !== undefined) {
        peer.initiating = undefined
        fork(Fiber.interrupt(initiating.timer))
      }
      handshakeFailures++
      peer.failedAt = now()
      fork(Effect.logWarning(`secure: ${error.message}`))
      // frames held for the peer's group key will not be opened
      for (const _ of peer.held) reject(error._tag === "Unauthorized" ? "untrusted" : "no-key", peer.nodeId)
      peer.held = []
      // a live session (this was a re-key) keeps serving
      if (peer.current !== undefined) flush(peer)
      else failQueue(peer, error, unreachable)
    }

    /** adds an established session; `activate` then starts using it */
    const register = (
      peer: Peer,
      session: Session,
      peerKey: KeyObject,
      peerKeyText: string,
      peerIncarnation: string
    ): void => {
      if (peer.incarnation !== undefined && peer.incarnation !== peerIncarnation) {
        // the peer restarted: what it held is gone
        peer.sessions = []
        peer.group.clear()
        peer.requestedEpochs.clear()
      }
      peer.incarnation = peerIncarnation
      peer.publicKey = peerKey
      peer.publicKeyText = peerKeyText
      peer.sessions.push(session)
      while (peer.sessions.length > MAX_SESSIONS_PER_PEER) peer.sessions.shift()
      peer.current = session
      handshakes++
      handshakesMetric.unsafeUpdate(1, [])
    }

    const activate = (peer: Peer): void => {
      sendGroupKey(peer)
      flush(peer)
      retryHeld(peer)
    }

    const sendReject = (to: string, sessionId: number, reason: string): void => {
      if (self === undefined) return
      inner.unsafePublish(`node.${to}`, handshakeFrame(STEP_REJECT, [uint32(sessionId), reason]))
    }

    const onHello = (source: string, body: Uint8Array): void => {
      const parts = C.split(body, 6)
      if (parts === undefined || parts[3]!.length !== 32 || parts[4]!.length !== 32 || parts[5]!.length !== 4) {
        return reject("malformed", source, "handshake hello")
      }
      const [namespace, peerIncarnation, target, peerRaw, peerEphemeral, sessionBytes] = parts as [
        Buffer,
        Buffer,
        Buffer,
        Buffer,
        Buffer,
        Buffer
      ]
      const sessionId = sessionBytes.readUInt32BE()
      if (target.toString() !== self) return reject("malformed", source, "handshake for another node")
      if (namespace.toString() !== config.namespace) {
        reject("namespace", source, `namespace "${namespace.toString()}"`)
        return sendReject(source, sessionId, "namespace mismatch")
      }
      const peerKeyText = C.encodeKey(peerRaw)
      if (!isTrusted(peerKeyText)) {
        reject("untrusted", source, `key ${peerKeyText}`)
        return sendReject(source, sessionId, "not trusted")
      }
      const ephemeralKeys = C.ephemeral()
      const secret = C.sharedSecret(ephemeralKeys.privateKey, peerEphemeral)
      if (secret === undefined) return reject("malformed", source, "ephemeral key")
      const transcript = transcriptOf(
        source,
        self!,
        peerIncarnation.toString(),
        incarnation,
        peerRaw,
        own.raw,
        peerEphemeral,
        ephemeralKeys.publicKey,
        sessionId
      )
      const keys = C.deriveKeys(secret, transcript)
      if (responding.size >= MAX_RESPONDING) responding.delete(responding.keys().next().value!)
      responding.set(sessionId, {
        peer: source,
        session: new Session(sessionId, keys.responder, keys.initiator, now()),
        transcript,
        peerKey: C.ed25519PublicKey(peerRaw),
        peerKeyText,
        incarnation: peerIncarnation.toString()
      })
      inner.unsafePublish(
        `node.${source}`,
        handshakeFrame(STEP_REPLY, [
          config.namespace,
          incarnation,
          uint32(sessionId),
          own.raw,
          ephemeralKeys.publicKey,
          C.signBytes(own.privateKey, roleSigned("responder", transcript))
        ])
      )
    }

    const onReply = (source: string, body: Uint8Array): void => {
      const parts = C.split(body, 6)
      if (parts === undefined || parts[2]!.length !== 4 || parts[3]!.length !== 32 || parts[4]!.length !== 32) {
        return reject("malformed", source, "handshake reply")
      }
      const [namespace, peerIncarnation, sessionBytes, peerRaw, peerEphemeral, signature] = parts as [
        Buffer,
        Buffer,
        Buffer,
        Buffer,
        Buffer,
        Buffer
      ]
      const peer = peers.get(source)
      const initiating = peer?.initiating
      if (peer === undefined || initiating === undefined || initiating.sessionId !== sessionBytes.readUInt32BE()) {
        return reject("unknown-session", source, "handshake reply")
      }
      if (namespace.toString() !== config.namespace) {
        reject("namespace", source)
        return fail(
          peer,
          new HandshakeError({
            peer: source,
            reason: `namespace "${namespace.toString()}" is not "${config.namespace}"`
          }),
          false
        )
      }
      const peerKeyText = C.encodeKey(peerRaw)
      if (!isTrusted(peerKeyText)) {
        reject("untrusted", source, `key ${peerKeyText}`)
        sendReject(source, initiating.sessionId, "not trusted")
        return fail(peer, new Unauthorized({ peer: source, publicKey: peerKeyText }), false)
      }
      const secret = C.sharedSecret(initiating.ephemeral.privateKey, peerEphemeral)
      const transcript = transcriptOf(
        self!,
        source,
        incarnation,
        peerIncarnation.toString(),
        own.raw,
        peerRaw,
        initiating.ephemeral.publicKey,
        peerEphemeral,
        initiating.sessionId
      )
      const peerKey = C.ed25519PublicKey(peerRaw)
      if (secret === undefined || !C.verifyBytes(peerKey, roleSigned("responder", transcript), signature)) {
        reject("signature", source, "handshake reply")
        return fail(
          peer,
          new HandshakeError({ peer: source, reason: "the peer's handshake signature does not verify" }),
          false
        )
      }
      const keys = C.deriveKeys(secret, transcript)
      peer.initiating = undefined
      fork(Fiber.interrupt(initiating.timer))
      // registered before the confirmation (an in-memory peer answers within the publish), and
      // confirmed before our first frame sealed with it
      register(
        peer,
        new Session(initiating.sessionId, keys.initiator, keys.responder, now()),
        peerKey,
        peerKeyText,
        peerIncarnation.toString()
      )
      inner.unsafePublish(
        `node.${source}`,
        handshakeFrame(STEP_CONFIRM, [
          uint32(initiating.sessionId),
          C.signBytes(own.privateKey, roleSigned("initiator", transcript))
        ])
      )
      activate(peer)
    }

    const onConfirm = (source: string, body: Uint8Array): void => {
      const parts = C.split(body, 2)
      if (parts === undefined || parts[0]!.length !== 4) return reject("malformed", source, "handshake confirm")
      const sessionId = parts[0]!.readUInt32BE()
      const pending = responding.get(sessionId)
      if (pending === undefined || pending.peer !== source) {
        return reject(
          "unknown-session",
          source,
          "handshake confirm"
        )
      }
      responding.delete(sessionId)
      if (!C.verifyBytes(pending.peerKey, roleSigned("initiator", pending.transcript), parts[1]!)) {
        return reject("signature", source, "handshake confirm")
      }
      const peer = peerOf(source)
      register(peer, pending.session, pending.peerKey, pending.peerKeyText, pending.incarnation)
      activate(peer)
    }

    const onReject = (source: string, body: Uint8Array): void => {
      const parts = C.split(body, 2)
      const peer = peers.get(source)
      if (
        parts === undefined || parts[0]!.length !== 4 || peer?.initiating?.sessionId !== parts[0]!.readUInt32BE()
      ) return
      const reason = parts[1]!.toString().slice(0, 100)
      fail(peer, new HandshakeError({ peer: source, reason: `rejected by the peer: ${reason}` }), false)
    }

    const onHandshake = (frame: Envelope & { readonly _tag: "Handshake" }): void => {
      if (self === undefined) return
      switch (frame.step) {
        case STEP_HELLO:
          return onHello(frame.source, frame.body)
        case STEP_REPLY:
          return onReply(frame.source, frame.body)
        case STEP_CONFIRM:
          return onConfirm(frame.source, frame.body)
        case STEP_REJECT:
          return onReject(frame.source, frame.body)
        default:
          return reject("malformed", frame.source, `handshake step ${frame.step}`)
      }
    }

    /** control messages inside a pairwise session */
    const onControl = (peer: Peer, frame: Envelope & { readonly _tag: "Handshake" }): void => {
      if (frame.step === STEP_GROUP_KEY) {
        const parts = C.split(frame.body, 2)
        if (parts === undefined || parts[0]!.length !== 4 || parts[1]!.length !== 32) {
          return reject("malformed", peer.nodeId, "group key")
        }
        const epoch = parts[0]!.readUInt32BE()
        if (!peer.group.has(epoch)) {
          peer.group.set(epoch, { epoch, key: Buffer.from(parts[1]!) })
          while (peer.group.size > MAX_GROUP_EPOCHS) peer.group.delete(peer.group.keys().next().value!)
        }
        peer.requestedEpochs.delete(epoch)
        retryHeld(peer)
      } else if (frame.step === STEP_GROUP_KEY_REQUEST) {
        sendGroupKey(peer)
      }
    }

    // ---- receiving -----------------------------------------------------------------------

    const openPairwise = (frame: SealedFrame, subject: string, deliver: (frame: Envelope) => void): void => {
      const peer = peers.get(frame.source)
      let session: Session | undefined
      if (peer !== undefined) { for (const s of peer.sessions) if (s.id === frame.key) session = s }
      if (peer === undefined || session === undefined) {
        reject("unknown-session", frame.source)
        // the sender has a session we lost (we restarted): open a new one (once per timeout)
        const p = peers.get(frame.source) ?? (peers.size < MAX_PEERS ? peerOf(frame.source) : undefined)
        if (p === undefined) return
        if (
          p.initiating === undefined && now() - p.failedAt >= config.handshakeTimeoutMillis &&
          now() - p.unknownAt >= config.handshakeTimeoutMillis
        ) {
          p.unknownAt = now()
          initiate(p)
        }
        return
      }
      const verdict = session.window.check(frame.counter)
      if (verdict !== "ok") return reject(verdict, frame.source)
      let prefix: Buffer
      if (frame.mode === PAIRWISE) {
        if (session.receivePrefix === undefined || session.receiveSubject !== subject) {
          session.receivePrefix = C.additionalPrefix(frame.source, subject, PAIRWISE, frame.key)
          session.receiveSubject = subject
        }
        prefix = session.receivePrefix
      } else {
        prefix = C.additionalPrefix(frame.source, subject, frame.mode, frame.key)
      }
      const plaintext = C.open(session.receiveKey, frame.counter, C.additionalData(prefix, frame.counter), frame.body)
      if (plaintext === undefined) return reject("tampered", frame.source)
      session.window.record(frame.counter)
      const open = (bytes: Uint8Array): void => {
        // the drop path builds no error: garbage inside a valid seal costs what garbage costs
        const innerFrame = decodeFrame(codec, bytes)
        if (innerFrame instanceof Malformed) return reject("malformed", frame.source)
        if (innerFrame._tag === "Handshake") return onControl(peer, innerFrame)
        if (innerFrame._tag === "Sealed") return reject("malformed", frame.source)
        deliver(innerFrame)
      }
      if (frame.mode === PAIRWISE) return open(plaintext)
      for (const bytes of unbatch(plaintext, frame.source)) open(bytes)
    }

    /** the frames of a batch's plaintext (none if it is malformed) */
    const unbatch = (plaintext: Uint8Array, source: string): ReadonlyArray<Uint8Array> => {
      const frames = decodeBatch(plaintext)
      if (frames !== undefined) return frames
      reject("malformed", source, "batch")
      return []
    }

    const hold = (peer: Peer, held: Held): void => {
      if (peer.held.length >= MAX_HELD_PER_SENDER) {
        peer.held.shift()
        reject("no-key", peer.nodeId, "too many frames waiting for its group key")
      }
      peer.held.push(held)
      if (peer.current === undefined) {
        if (peer.initiating === undefined && now() - peer.failedAt >= config.handshakeTimeoutMillis) initiate(peer)
      } else if (!peer.requestedEpochs.has(held.frame.key)) {
        peer.requestedEpochs.add(held.frame.key)
        sendPairwise(peer, peer.current, handshakeFrame(STEP_GROUP_KEY_REQUEST, []), undefined)
      }
    }

    const retryHeld = (peer: Peer): void => {
      if (peer.held.length === 0) return
      const held = peer.held
      peer.held = []
      for (const item of held) {
        if (peer.group.has(item.frame.key)) openGroup(item.frame, item.pattern, item.windows, item.deliver)
        else peer.held.push(item)
      }
    }

    const openGroup = (
      frame: SealedFrame,
      pattern: string,
      windows: Windows,
      deliver: (frame: Envelope) => void
    ): void => {
      const subject = frame.subject
      if (subject === undefined) return reject("malformed", frame.source, "subject")
      const sameHeader = subject === windows.lastSubject && frame.source === windows.lastSource &&
        frame.key === windows.lastKey && frame.mode === windows.lastMode
      if (!sameHeader && subject !== windows.lastSubject && !Subject.matches(pattern, subject)) {
        return reject("malformed", frame.source, "subject")
      }
      const signed = (frame.mode & ~BATCH) === GROUP_SIGNED
      if (isSignedSubject(subject) && !signed) return reject("unsigned", frame.source)
      const fromSelf = frame.source === self
      // anyone on the broker can claim any source: strangers are bounded
      const peer = fromSelf
        ? undefined
        : peers.get(frame.source) ?? (peers.size < MAX_PEERS ? peerOf(frame.source) : undefined)
      if (!fromSelf && peer === undefined) return reject("no-key", frame.source, "too many peers")
      const key = fromSelf ? ownEpochs.get(frame.key) : peer!.group.get(frame.key)
      if (key === undefined) {
        if (peer === undefined) return reject("no-key", frame.source)
        return hold(peer, { frame, pattern, windows, deliver })
      }
      const windowKey = sameHeader ? windows.lastWindowKey : `${frame.source}:${frame.key}`
      let window = windows.get(windowKey)
      const verdict = window === undefined ? "ok" : window.check(frame.counter)
      if (verdict !== "ok") return reject(verdict, frame.source)
      const prefix = sameHeader && windows.lastPrefix !== undefined
        ? windows.lastPrefix
        : C.additionalPrefix(frame.source, subject, frame.mode, frame.key)
      const aad = C.additionalData(prefix, frame.counter)
      if (signed) {
        const signer = fromSelf ? own.publicKey : peer!.publicKey
        if (
          signer === undefined || frame.sig === undefined ||
          !C.verifyBytes(signer, Buffer.concat([aad, frame.body]), frame.sig)
        ) return reject("signature", frame.source)
      }
      const plaintext = C.open(key.key, frame.counter, aad, frame.body)
      if (plaintext === undefined) return reject("tampered", frame.source)
      if (window === undefined) {
        if (windows.size >= MAX_WINDOWS) windows.delete(windows.keys().next().value!)
        window = new C.ReplayWindow()
        windows.set(windowKey, window)
      }
      window.record(frame.counter)
      windows.lastSubject = subject
      windows.lastSource = frame.source
      windows.lastKey = frame.key
      windows.lastMode = frame.mode
      windows.lastPrefix = prefix
      windows.lastWindowKey = windowKey
      for (const bytes of (frame.mode & BATCH) === 0 ? [plaintext] : unbatch(plaintext, frame.source)) {
        const decoded = decodeFrame(codec, bytes)
        if (decoded instanceof Malformed || decoded._tag === "Handshake" || decoded._tag === "Sealed") {
          reject("malformed", frame.source)
          continue
        }
        // a signature vouches for its signer only: a trusted node must not sign events or
        // heartbeats in another node's name
        if (signed && decoded.source !== frame.source) {
          reject("signature", frame.source, `signed by it, the frame names ${decoded.source} as its source`)
          continue
        }
        deliver(decoded)
      }
    }

    const receiver = (pattern: string, exact: boolean, deliver: (frame: Envelope) => void) => {
      const windows = new Windows()
      return (frame: Envelope): void => {
        try {
          // a peer's id becomes the subject of handshakes and pairwise frames
          if (!Subject.isToken(frame.source)) return reject("malformed", "(an invalid source)", "source")
          switch (frame._tag) {
            case "Sealed":
              if (frame.mode === PAIRWISE || frame.mode === PAIRWISE + BATCH) {
                return exact
                  ? openPairwise(frame, pattern, deliver)
                  : reject("malformed", frame.source, "pairwise frame on a shared subject")
              }
              if ((frame.mode & ~BATCH) === GROUP || (frame.mode & ~BATCH) === GROUP_SIGNED) {
                return openGroup(frame, pattern, windows, deliver)
              }
              return reject("malformed", frame.source, `mode ${frame.mode}`)
            case "Handshake":
              return exact && pattern === `node.${self}`
                ? onHandshake(frame)
                : reject("malformed", frame.source, "handshake on a shared subject")
            default:
              return reject("plaintext", frame.source, `a plain ${frame._tag} frame`)
          }
        } catch (error) {
          // the last resort: a bad frame must never break the subscription (counted as
          // malformed too, like every frame a receiver could not use)
          malformedFrames.unsafeUpdate(1, [])
          reject("malformed", Subject.isToken(frame.source) ? frame.source : "(an invalid source)", describe(error))
        }
      }
    }

    const subscribe = (
      subject: string,
      onFrame: (frame: Envelope) => void,
      options?: SubscribeOptions
    ): Effect.Effect<void, TransportError, Scope.Scope> =>
      Effect.gen(function*() {
        const direct = NODE_SUBJECT.exec(subject)
        const becomesSelf = direct !== null && self === undefined
        if (becomesSelf) {
          self = direct[1]!
          selfDeliver = onFrame
          // "no responders" to a handshake hello: the peer is gone
          yield* inner.subscribe(`node.${self}.hs.*`, () => {}, {
            onNoResponders: (slot) => {
              const peer = peers.get(slot.slice(`node.${self}.hs.`.length))
              if (peer?.initiating !== undefined) {
                fail(peer, new HandshakeError({ peer: peer.nodeId, reason: "no node answers on its subject" }), true)
              }
            }
          })
          // "no responders" to a batch: to each frame in it
          yield* inner.subscribe(`node.${self}.hb.*`, () => {}, {
            onNoResponders: (slot) => coalescer.unanswered(slot)
          })
          yield* Effect.addFinalizer(() =>
            Effect.sync(() => {
              if (self === direct[1]) {
                self = undefined
                selfDeliver = undefined
              }
            })
          )
        }
        const onNoResponders = options?.onNoResponders
        if (onNoResponders !== undefined) yield* coalescer.listenScoped(subject, onNoResponders)
        yield* inner.subscribe(subject, receiver(subject, !Subject.isPattern(subject), onFrame), options)
        // frames that waited for us to know who we are
        if (becomesSelf) {
          for (const peer of peers.values()) {
            if (peer.held.length > 0 && peer.initiating === undefined && peer.current === undefined) initiate(peer)
          }
        }
      })

    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        // the last frames (e.g. a leaving heartbeat) leave before the connection closes
        coalescer.flushAll()
        closed = true
        for (const peer of peers.values()) {
          if (peer.initiating !== undefined) fork(Fiber.interrupt(peer.initiating.timer))
          peer.initiating = undefined
        }
      })
    )

    const transport: TransportShape = {
      name: `secure+${inner.name}`,
      zeroCopy: false,
      publish: (subject, frame, options) =>
        Effect.suspend(() => {
          const error = unsafePublish(subject, frame, options)
          return error === undefined ? Effect.void : Effect.fail(error)
        }),
      unsafePublish,
      subscribe,
      watch: inner.watch,
      isConnected: inner.isConnected,
      awaitConnected: inner.awaitConnected
    }

    return {
      transport,
      publicKey: config.identity.publicKey,
      peers: () => {
        const out: Array<PeerSession> = []
        for (const peer of peers.values()) {
          const s = peer.current
          if (s !== undefined) {
            out.push({
              nodeId: peer.nodeId,
              publicKey: peer.publicKeyText,
              sessionId: s.id,
              sent: s.sent,
              establishedAt: s.establishedAt
            })
          }
        }
        return out
      },
      stats: () => ({ handshakes, handshakeFailures, rejected: { ...rejected } })
    }
  })
