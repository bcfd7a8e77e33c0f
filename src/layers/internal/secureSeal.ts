/**
 * Sealing and opening for `Secure`: a frame (or a batch of frames) sealed with a pairwise
 * session (mode 0) or our group key (mode 1, and 2 when also signed), batched through the
 * `Coalescer`; and the checks a sealed frame passes when it arrives (its replay window, its
 * seal, the signature of a signed one) before its plaintext frames are handed on.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { type Envelope, ProtocolVersion, type SealedFrame } from "../../schema/Envelope.ts"
import { decodeFrame, Malformed } from "../Codec.ts"
import * as Subject from "../Subject.ts"
import type { PublishOptions } from "../Transport.ts"
import { Coalescer } from "./coalesce.ts"
import { decodeBatch, encodeBatch } from "./fragments.ts"
import * as C from "./secureCrypto.ts"
import {
  BATCH,
  boundedPeerOf,
  GROUP,
  GROUP_SIGNED,
  type GroupKey,
  isSignedSubject,
  PAIRWISE,
  type Peer,
  type PublishResult,
  reject,
  type SecureState,
  Session,
  type Windows
} from "./secureState.ts"

const MAX_BATCH_BYTES = 64 * 1024
const MAX_BATCH_FRAMES = 256
const MAX_TRACKED_BATCHES = 4096
const MAX_WINDOWS = 4096

const NODE_SUBJECT = /^node\.([^.*>]+)$/

/** @internal the node of a direct subject `node.<id>` */
export const nodeOfSubject = (subject: string): string | undefined => NODE_SUBJECT.exec(subject)?.[1]

/** the peer of a direct subject `node.<id>`, with the answers of recent subjects cached */
let directCache = new Map<string, string | null>()
/** @internal */
export const directPeer = (subject: string): string | undefined => {
  let peer = directCache.get(subject)
  if (peer === undefined) {
    peer = nodeOfSubject(subject) ?? null
    if (directCache.size >= 4096) directCache = new Map()
    directCache.set(subject, peer)
  }
  return peer ?? undefined
}

// ---- sealing ---------------------------------------------------------------------------------

/** what the inner transport is told: large frames to a node's direct subject travel in pieces */
const publishOptions = (subject: string, replyTo: string | undefined): PublishOptions => {
  const direct = directPeer(subject) !== undefined
  return replyTo === undefined
    ? (direct ? { fragmentTo: subject } : {})
    : (direct ? { replyTo, fragmentTo: subject } : { replyTo })
}

const sealWith = (
  state: SecureState,
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
  const source = state.self!
  if ((mode & ~BATCH) === PAIRWISE) return { _tag: "Sealed", v: ProtocolVersion, source, mode, key, counter, body }
  const frame: SealedFrame = { _tag: "Sealed", v: ProtocolVersion, source, mode, key, counter, subject, body }
  return (mode & ~BATCH) === GROUP_SIGNED
    ? { ...frame, sig: C.signBytes(state.own.privateKey, Buffer.concat([aad, body])) }
    : frame
}

/** additional-data prefixes of our current group epoch, by subject */
const groupPrefix = (state: SecureState, subject: string, mode: number): Buffer => {
  const cache = (mode & BATCH) === 0 ? state.groupPrefixes : state.groupBatchPrefixes
  let prefix = cache.get(subject)
  if (prefix === undefined) {
    if (cache.size >= 1024) cache.clear()
    prefix = C.additionalPrefix(state.self!, subject, mode, state.group.epoch)
    cache.set(subject, prefix)
  }
  return prefix
}

/** seals one frame or a batch with a session (pairwise) or our group key */
const sealOne = (
  state: SecureState,
  subject: string,
  sealer: Session | GroupKey,
  plaintext: Uint8Array,
  batch: boolean
): SealedFrame => {
  if (sealer instanceof Session) {
    const mode = PAIRWISE + (batch ? BATCH : 0)
    const prefix = batch
      ? C.additionalPrefix(state.self!, subject, mode, sealer.id)
      : (sealer.sendPrefix ??= C.additionalPrefix(state.self!, subject, mode, sealer.id))
    return sealWith(state, subject, mode, sealer.id, ++sealer.sent, sealer.sendKey, plaintext, prefix)
  }
  const mode = (isSignedSubject(subject) ? GROUP_SIGNED : GROUP) + (batch ? BATCH : 0)
  const prefix = groupPrefix(state, subject, mode)
  return sealWith(state, subject, mode, sealer.epoch, ++state.group.sent, sealer.key, plaintext, prefix)
}

/**
 * @internal One sealing (and one NATS message) for the frames of one subject in one event-loop
 * turn; each batch is flushed in the order it was opened. A batch is sealed with one key: its
 * `key` is the sealer.
 */
export const makeCoalescer = (state: SecureState): SecureState["coalescer"] =>
  new Coalescer({
    single: false,
    headerBytes: 0,
    // the plaintext of a batch, its frames' length prefixes included but for the last one's
    maxBytes: MAX_BATCH_BYTES + 4,
    maxFrames: MAX_BATCH_FRAMES,
    maxTracked: MAX_TRACKED_BATCHES,
    sendOne: (subject, sealer, frame, replyTo) =>
      state.inner.unsafePublish(
        subject,
        sealOne(state, subject, sealer, frame, false),
        publishOptions(subject, replyTo)
      ),
    sendBatch: (subject, sealer, frames, replyTo) =>
      state.inner.unsafePublish(
        subject,
        sealOne(state, subject, sealer, encodeBatch(frames), true),
        publishOptions(subject, replyTo)
      ),
    replySlot: (id) => `node.${state.self}.hb.${id}`,
    onUnsent: (count, subject, error) =>
      state.fork(Effect.logWarning(`secure: ${count} frame(s) to ${subject} were not sent`, error))
  })

/** @internal seals `plaintext` for `subject`, alone or into the open batch */
export const emit = (
  state: SecureState,
  subject: string,
  sealer: Session | GroupKey,
  plaintext: Uint8Array,
  replyTo: string | undefined
): PublishResult => {
  if (!state.coalesce || plaintext.byteLength > MAX_BATCH_BYTES) {
    state.coalescer.closeFor(subject)
    return state.inner.unsafePublish(
      subject,
      sealOne(state, subject, sealer, plaintext, false),
      publishOptions(subject, replyTo)
    )
  }
  state.coalescer.add(subject, sealer, plaintext, replyTo)
  return undefined
}

/** @internal sends `frame` to `peer` sealed with `session` */
export const sendPairwise = (
  state: SecureState,
  peer: Peer,
  session: Session,
  frame: Envelope,
  options: PublishOptions | undefined
): PublishResult => {
  const encoded = state.codec.encode(frame)
  if (Either.isLeft(encoded)) return encoded.left
  return emit(state, peer.subject, session, encoded.right, options?.replyTo)
}

// ---- opening ---------------------------------------------------------------------------------

/** @internal the frames of a batch's plaintext (none if it is malformed) */
const unbatch = (state: SecureState, plaintext: Uint8Array, source: string): ReadonlyArray<Uint8Array> => {
  const frames = decodeBatch(plaintext)
  if (frames !== undefined) return frames
  reject(state, "malformed", source, "batch")
  return []
}

/** @internal the session of `peer` with id `key` */
export const sessionOf = (peer: Peer | undefined, key: number): Session | undefined => {
  if (peer === undefined) return undefined
  let session: Session | undefined
  for (const s of peer.sessions) if (s.id === key) session = s
  return session
}

/** @internal the plaintext frames of a pairwise frame sealed with `session`, or `undefined` if it is rejected */
export const openPairwise = (
  state: SecureState,
  session: Session,
  frame: SealedFrame,
  subject: string
): ReadonlyArray<Uint8Array> | undefined => {
  const verdict = session.window.check(frame.counter)
  if (verdict !== "ok") return void reject(state, verdict, frame.source)
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
  if (plaintext === undefined) return void reject(state, "tampered", frame.source)
  session.window.record(frame.counter)
  return frame.mode === PAIRWISE ? [plaintext] : unbatch(state, plaintext, frame.source)
}

/** whether a group frame's subject is one the subscription `pattern` receives (its header checked once per run) */
const sameHeaderOf = (frame: SealedFrame, subject: string, windows: Windows): boolean =>
  subject === windows.lastSubject && frame.source === windows.lastSource &&
  frame.key === windows.lastKey && frame.mode === windows.lastMode

/** the replay window of `windowKey`, made (and the oldest dropped past the bound) if it is new */
const windowOf = (windows: Windows, windowKey: string): C.ReplayWindow => {
  let window = windows.get(windowKey)
  if (window === undefined) {
    if (windows.size >= MAX_WINDOWS) windows.delete(windows.keys().next().value!)
    window = new C.ReplayWindow()
    windows.set(windowKey, window)
  }
  return window
}

const remember = (windows: Windows, frame: SealedFrame, subject: string, prefix: Buffer, windowKey: string) => {
  windows.lastSubject = subject
  windows.lastSource = frame.source
  windows.lastKey = frame.key
  windows.lastMode = frame.mode
  windows.lastPrefix = prefix
  windows.lastWindowKey = windowKey
}

/**
 * @internal Opens a frame sealed with a group key and delivers the frames in it. Returns the
 * peer to hold it for when we lack the sender's key.
 */
export const openGroup = (
  state: SecureState,
  frame: SealedFrame,
  pattern: string,
  windows: Windows,
  deliver: (frame: Envelope) => void
): Peer | undefined => {
  const subject = frame.subject
  if (subject === undefined) return void reject(state, "malformed", frame.source, "subject")
  const sameHeader = sameHeaderOf(frame, subject, windows)
  if (!sameHeader && subject !== windows.lastSubject && !Subject.matches(pattern, subject)) {
    return void reject(state, "malformed", frame.source, "subject")
  }
  const signed = (frame.mode & ~BATCH) === GROUP_SIGNED
  if (isSignedSubject(subject) && !signed) return void reject(state, "unsigned", frame.source)
  const fromSelf = frame.source === state.self
  const peer = fromSelf ? undefined : boundedPeerOf(state, frame.source)
  if (!fromSelf && peer === undefined) return void reject(state, "no-key", frame.source, "too many peers")
  const key = fromSelf ? state.ownEpochs.get(frame.key) : peer!.group.get(frame.key)
  if (key === undefined) return peer ?? void reject(state, "no-key", frame.source)
  const windowKey = sameHeader ? windows.lastWindowKey : `${frame.source}:${frame.key}`
  const known = windows.get(windowKey)
  const verdict = known === undefined ? "ok" : known.check(frame.counter)
  if (verdict !== "ok") return void reject(state, verdict, frame.source)
  const prefix = sameHeader && windows.lastPrefix !== undefined
    ? windows.lastPrefix
    : C.additionalPrefix(frame.source, subject, frame.mode, frame.key)
  const aad = C.additionalData(prefix, frame.counter)
  if (signed) {
    const signer = fromSelf ? state.own.publicKey : peer!.publicKey
    if (
      signer === undefined || frame.sig === undefined ||
      !C.verifyBytes(signer, Buffer.concat([aad, frame.body]), frame.sig)
    ) return void reject(state, "signature", frame.source)
  }
  const plaintext = C.open(key.key, frame.counter, aad, frame.body)
  if (plaintext === undefined) return void reject(state, "tampered", frame.source)
  windowOf(windows, windowKey).record(frame.counter)
  remember(windows, frame, subject, prefix, windowKey)
  const frames = (frame.mode & BATCH) === 0 ? [plaintext] : unbatch(state, plaintext, frame.source)
  deliverGroup(state, frames, frame.source, signed, deliver)
  return undefined
}

/**
 * @internal
 * Whether a frame opened from `sealer`'s session speaks in another node's name where only the
 * node itself may: a heartbeat (membership: a trusted node must not announce, or remove, another
 * node) and an interrupt (a trusted node must not cancel another caller's asks). Requests keep
 * their caller as source when a node forwards them to the actor's owner, and replies, events and
 * stream frames name the node they concern, so only these two are bound to the session.
 */
export const impersonates = (frame: Envelope, sealer: string): boolean =>
  (frame._tag === "Heartbeat" || frame._tag === "Interrupt") && frame.source !== sealer

const deliverGroup = (
  state: SecureState,
  frames: ReadonlyArray<Uint8Array>,
  source: string,
  signed: boolean,
  deliver: (frame: Envelope) => void
): void => {
  for (const bytes of frames) {
    const decoded = decodeFrame(state.codec, bytes)
    if (decoded instanceof Malformed || decoded._tag === "Handshake" || decoded._tag === "Sealed") {
      reject(state, "malformed", source)
      continue
    }
    // a signature vouches for its signer only: a trusted node must not sign events or
    // heartbeats in another node's name
    if (signed && decoded.source !== source) {
      reject(state, "signature", source, `signed by it, the frame names ${decoded.source} as its source`)
      continue
    }
    if (impersonates(decoded, source)) {
      reject(state, "impersonation", source, `a ${decoded._tag} frame in the name of ${decoded.source}`)
      continue
    }
    deliver(decoded)
  }
}
