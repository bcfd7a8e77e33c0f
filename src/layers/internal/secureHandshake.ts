/**
 * The handshake of `Secure` (Handshake frames on `node.<peer>`, bodies of length-prefixed parts):
 *   1  I → R  namespace, incarnation I, R, identity I, ephemeral I, session id
 *   2  R → I  namespace, incarnation R, session id, identity R, ephemeral R, R's signature
 *   3  I → R  session id, I's signature
 *   9  either way: session id, reason (a rejection)
 * Both signatures cover the transcript (namespace, both node ids, incarnations, identities,
 * ephemeral keys and the session id) with a role label; the session keys come from the X25519
 * secret through HKDF-SHA-256 salted with the transcript's SHA-256, one key per direction. A
 * handshake that fails or times out fails the asks queued for it.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type { Envelope } from "../../schema/Envelope.ts"
import { HandshakeError, Unauthorized } from "../../schema/Errors.ts"
import * as C from "./secureCrypto.ts"
import { sendGroupKey } from "./secureGroupKey.ts"
import { dropHeld, failQueue, flushQueue, register, retryHeld } from "./securePeer.ts"
import {
  boundedPeerOf,
  handshakeFrame,
  isTrusted,
  type Peer,
  peerOf,
  reject,
  type SecureState,
  Session,
  STEP_CONFIRM,
  STEP_HELLO,
  STEP_REJECT,
  STEP_REPLY,
  uint32
} from "./secureState.ts"
import * as Subjects from "./subjects.ts"

const MAX_RESPONDING = 1024

interface Transcript {
  readonly initiator: string
  readonly responder: string
  readonly initiatorIncarnation: string
  readonly responderIncarnation: string
  readonly initiatorKey: Uint8Array
  readonly responderKey: Uint8Array
  readonly initiatorEphemeral: Uint8Array
  readonly responderEphemeral: Uint8Array
  readonly sessionId: number
}

const transcriptOf = (state: SecureState, t: Transcript): Buffer =>
  C.concat([
    C.PROTOCOL_LABEL,
    state.config.namespace,
    t.initiator,
    t.responder,
    t.initiatorIncarnation,
    t.responderIncarnation,
    t.initiatorKey,
    t.responderKey,
    t.initiatorEphemeral,
    t.responderEphemeral,
    uint32(t.sessionId)
  ])

const roleSigned = (role: "initiator" | "responder", transcript: Buffer): Buffer =>
  Buffer.concat([Buffer.from(`${C.PROTOCOL_LABEL} ${role}\u0000`), transcript])

// ---- the initiator ---------------------------------------------------------------------------

/** @internal starts a handshake with `peer` (step 1), failing it if no answer comes in time */
export const initiate = (state: SecureState, peer: Peer): void => {
  if (state.self === undefined || state.closed) return
  const sessionId = C.randomId()
  const ephemeralKeys = C.ephemeral()
  const timeout = state.config.handshakeTimeoutMillis
  const timer = state.fork(
    Effect.sleep(timeout).pipe(
      Effect.zipRight(Effect.sync(() => {
        if (peer.initiating?.sessionId !== sessionId) return
        fail(state, peer, new HandshakeError({ peer: peer.nodeId, reason: `no answer within ${timeout} ms` }), false)
      }))
    )
  )
  peer.initiating = { sessionId, ephemeral: ephemeralKeys, timer }
  const error = state.inner.unsafePublish(
    Subjects.node(peer.nodeId),
    handshakeFrame(state, STEP_HELLO, [
      state.config.namespace,
      state.incarnation,
      peer.nodeId,
      state.own.raw,
      ephemeralKeys.publicKey,
      uint32(sessionId)
    ]),
    { replyTo: Subjects.handshakeSlot(state.self, peer.nodeId) }
  )
  if (error !== undefined) fail(state, peer, new HandshakeError({ peer: peer.nodeId, reason: error.message }), false)
}

/** @internal the handshake with `peer` failed: what waited on it fails too (or leaves on the old session) */
export const fail = (
  state: SecureState,
  peer: Peer,
  error: HandshakeError | Unauthorized,
  unreachable: boolean
): void => {
  const initiating = peer.initiating
  if (initiating !== undefined) {
    peer.initiating = undefined
    state.fork(Fiber.interrupt(initiating.timer))
  }
  state.handshakeFailures++
  peer.failedAt = state.now()
  state.fork(Effect.logWarning(`secure: ${error.message}`))
  // frames held for the peer's group key will not be opened
  dropHeld(state, peer, error)
  // a live session (this was a re-key) keeps serving
  if (peer.current !== undefined) flushQueue(state, peer)
  else failQueue(state, peer, error, unreachable)
}

/** @internal "no responders" to a handshake hello at its reply slot: the peer is gone */
export const onHelloUnanswered = (state: SecureState, slot: string): void => {
  if (state.self === undefined) return
  const peer = state.peers.get(slot.slice(Subjects.handshakeSlotsOf(state.self).length))
  if (peer?.initiating !== undefined) {
    fail(state, peer, new HandshakeError({ peer: peer.nodeId, reason: "no node answers on its subject" }), true)
  }
}

/** @internal a pairwise frame of a session we do not have: the sender has one we lost (we restarted) */
export const onUnknownSession = (state: SecureState, source: string): void => {
  reject(state, "unknown-session", source)
  // open a new one (once per timeout)
  const peer = boundedPeerOf(state, source)
  if (peer === undefined) return
  const now = state.now()
  const timeout = state.config.handshakeTimeoutMillis
  if (peer.initiating === undefined && now - peer.failedAt >= timeout && now - peer.unknownAt >= timeout) {
    peer.unknownAt = now
    initiate(state, peer)
  }
}

const activate = (state: SecureState, peer: Peer): void => {
  sendGroupKey(state, peer)
  flushQueue(state, peer)
  retryHeld(state, peer)
}

const sendReject = (state: SecureState, to: string, sessionId: number, reason: string): void => {
  if (state.self === undefined) return
  state.inner.unsafePublish(Subjects.node(to), handshakeFrame(state, STEP_REJECT, [uint32(sessionId), reason]))
}

type SixParts = readonly [Buffer, Buffer, Buffer, Buffer, Buffer, Buffer]

/** the six parts of a hello or a reply, those of a fixed size (`sizes`, by index) checked */
const sixParts = (
  state: SecureState,
  source: string,
  body: Uint8Array,
  sizes: Readonly<Record<number, number>>,
  what: string
): SixParts | undefined => {
  const parts = C.split(body, 6)
  if (parts === undefined || Object.entries(sizes).some(([index, size]) => parts[Number(index)]!.length !== size)) {
    reject(state, "malformed", source, what)
    return undefined
  }
  return parts as unknown as SixParts
}

// ---- the responder ---------------------------------------------------------------------------

const onHello = (state: SecureState, source: string, body: Uint8Array): void => {
  const parts = sixParts(state, source, body, { 3: 32, 4: 32, 5: 4 }, "handshake hello")
  if (parts === undefined) return
  const [namespace, peerIncarnation, target, peerRaw, peerEphemeral, sessionBytes] = parts
  const sessionId = sessionBytes.readUInt32BE()
  if (target.toString() !== state.self) return reject(state, "malformed", source, "handshake for another node")
  if (namespace.toString() !== state.config.namespace) {
    reject(state, "namespace", source, `namespace "${namespace.toString()}"`)
    return sendReject(state, source, sessionId, "namespace mismatch")
  }
  const peerKeyText = C.encodeKey(peerRaw)
  if (!isTrusted(state, peerKeyText)) {
    reject(state, "untrusted", source, `key ${peerKeyText}`)
    return sendReject(state, source, sessionId, "not trusted")
  }
  const ephemeralKeys = C.ephemeral()
  const secret = C.sharedSecret(ephemeralKeys.privateKey, peerEphemeral)
  if (secret === undefined) return reject(state, "malformed", source, "ephemeral key")
  const transcript = transcriptOf(state, {
    initiator: source,
    responder: state.self!,
    initiatorIncarnation: peerIncarnation.toString(),
    responderIncarnation: state.incarnation,
    initiatorKey: peerRaw,
    responderKey: state.own.raw,
    initiatorEphemeral: peerEphemeral,
    responderEphemeral: ephemeralKeys.publicKey,
    sessionId
  })
  const keys = C.deriveKeys(secret, transcript)
  if (state.responding.size >= MAX_RESPONDING) state.responding.delete(state.responding.keys().next().value!)
  state.responding.set(sessionId, {
    peer: source,
    session: new Session(sessionId, keys.responder, keys.initiator, state.now()),
    transcript,
    peerKey: C.ed25519PublicKey(peerRaw),
    peerKeyText,
    incarnation: peerIncarnation.toString()
  })
  state.inner.unsafePublish(
    Subjects.node(source),
    handshakeFrame(state, STEP_REPLY, [
      state.config.namespace,
      state.incarnation,
      uint32(sessionId),
      state.own.raw,
      ephemeralKeys.publicKey,
      C.signBytes(state.own.privateKey, roleSigned("responder", transcript))
    ])
  )
}

const onConfirm = (state: SecureState, source: string, body: Uint8Array): void => {
  const parts = C.split(body, 2)
  if (parts === undefined || parts[0]!.length !== 4) return reject(state, "malformed", source, "handshake confirm")
  const sessionId = parts[0]!.readUInt32BE()
  const pending = state.responding.get(sessionId)
  if (pending === undefined || pending.peer !== source) {
    return reject(state, "unknown-session", source, "handshake confirm")
  }
  state.responding.delete(sessionId)
  if (!C.verifyBytes(pending.peerKey, roleSigned("initiator", pending.transcript), parts[1]!)) {
    return reject(state, "signature", source, "handshake confirm")
  }
  const peer = peerOf(state, source)
  register(state, peer, pending.session, pending.peerKey, pending.peerKeyText, pending.incarnation)
  activate(state, peer)
}

// ---- the initiator, answered -----------------------------------------------------------------

const onReply = (state: SecureState, source: string, body: Uint8Array): void => {
  const parts = sixParts(state, source, body, { 2: 4, 3: 32, 4: 32 }, "handshake reply")
  if (parts === undefined) return
  const [namespace, peerIncarnation, sessionBytes, peerRaw, peerEphemeral, signature] = parts
  const peer = state.peers.get(source)
  const initiating = peer?.initiating
  if (peer === undefined || initiating === undefined || initiating.sessionId !== sessionBytes.readUInt32BE()) {
    return reject(state, "unknown-session", source, "handshake reply")
  }
  if (namespace.toString() !== state.config.namespace) {
    reject(state, "namespace", source)
    const reason = `namespace "${namespace.toString()}" is not "${state.config.namespace}"`
    return fail(state, peer, new HandshakeError({ peer: source, reason }), false)
  }
  const peerKeyText = C.encodeKey(peerRaw)
  if (!isTrusted(state, peerKeyText)) {
    reject(state, "untrusted", source, `key ${peerKeyText}`)
    sendReject(state, source, initiating.sessionId, "not trusted")
    return fail(state, peer, new Unauthorized({ peer: source, publicKey: peerKeyText }), false)
  }
  const secret = C.sharedSecret(initiating.ephemeral.privateKey, peerEphemeral)
  const transcript = transcriptOf(state, {
    initiator: state.self!,
    responder: source,
    initiatorIncarnation: state.incarnation,
    responderIncarnation: peerIncarnation.toString(),
    initiatorKey: state.own.raw,
    responderKey: peerRaw,
    initiatorEphemeral: initiating.ephemeral.publicKey,
    responderEphemeral: peerEphemeral,
    sessionId: initiating.sessionId
  })
  const peerKey = C.ed25519PublicKey(peerRaw)
  if (secret === undefined || !C.verifyBytes(peerKey, roleSigned("responder", transcript), signature)) {
    reject(state, "signature", source, "handshake reply")
    const reason = "the peer's handshake signature does not verify"
    return fail(state, peer, new HandshakeError({ peer: source, reason }), false)
  }
  const keys = C.deriveKeys(secret, transcript)
  peer.initiating = undefined
  state.fork(Fiber.interrupt(initiating.timer))
  // registered before the confirmation (an in-memory peer answers within the publish), and
  // confirmed before our first frame sealed with it
  const session = new Session(initiating.sessionId, keys.initiator, keys.responder, state.now())
  register(state, peer, session, peerKey, peerKeyText, peerIncarnation.toString())
  state.inner.unsafePublish(
    Subjects.node(source),
    handshakeFrame(state, STEP_CONFIRM, [
      uint32(initiating.sessionId),
      C.signBytes(state.own.privateKey, roleSigned("initiator", transcript))
    ])
  )
  activate(state, peer)
}

const onReject = (state: SecureState, source: string, body: Uint8Array): void => {
  const parts = C.split(body, 2)
  const peer = state.peers.get(source)
  if (
    parts === undefined || parts[0]!.length !== 4 || peer?.initiating?.sessionId !== parts[0]!.readUInt32BE()
  ) return
  const reason = parts[1]!.toString().slice(0, 100)
  fail(state, peer, new HandshakeError({ peer: source, reason: `rejected by the peer: ${reason}` }), false)
}

/** @internal a handshake frame on our direct subject */
export const onHandshake = (state: SecureState, frame: Envelope & { readonly _tag: "Handshake" }): void => {
  if (state.self === undefined) return
  switch (frame.step) {
    case STEP_HELLO:
      return onHello(state, frame.source, frame.body)
    case STEP_REPLY:
      return onReply(state, frame.source, frame.body)
    case STEP_CONFIRM:
      return onConfirm(state, frame.source, frame.body)
    case STEP_REJECT:
      return onReject(state, frame.source, frame.body)
    default:
      return reject(state, "malformed", frame.source, `handshake step ${frame.step}`)
  }
}
