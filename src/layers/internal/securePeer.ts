/**
 * What `Secure` keeps per peer: its sessions (the newest in use, a few older ones still
 * opened), the frames queued for it while a handshake runs, and the frames from it held until
 * its group key arrives.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { Envelope } from "../../schema/Envelope.ts"
import { ProtocolVersion } from "../../schema/Envelope.ts"
import { type HandshakeError, TransportError, type Unauthorized } from "../../schema/Errors.ts"
import type { PeerSession } from "../Secure.ts"
import type { PublishOptions } from "../Transport.ts"
import { openGroup, sendPairwise } from "./secureSeal.ts"
import {
  handshakeFrame,
  handshakesMetric,
  type Held,
  type Peer,
  reject,
  type SecureState,
  type Session,
  STEP_GROUP_KEY_REQUEST
} from "./secureState.ts"

const MAX_SESSIONS_PER_PEER = 3
const MAX_HELD_PER_SENDER = 256

// ---- sessions --------------------------------------------------------------------------------

/** @internal adds an established session and starts using it for what we send */
export const register = (
  state: SecureState,
  peer: Peer,
  session: Session,
  peerKey: NonNullable<Peer["publicKey"]>,
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
  state.handshakes++
  handshakesMetric.unsafeUpdate(1, [])
}

/** @internal the peers with an established session */
export const peerSessions = (state: SecureState): ReadonlyArray<PeerSession> => {
  const out: Array<PeerSession> = []
  for (const peer of state.peers.values()) {
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
}

// ---- the queue: frames waiting for a session ----------------------------------------------

/** @internal queues `frame` until a session with `peer` is established (starting a handshake) */
export const enqueue = (
  state: SecureState,
  peer: Peer,
  subject: string,
  frame: Envelope,
  options: PublishOptions | undefined
): TransportError | undefined => {
  if (peer.queue.length >= state.config.maxQueued) {
    return new TransportError({ reason: `secure: too many frames waiting for the handshake with ${peer.nodeId}` })
  }
  peer.queue.push({ subject, frame, options })
  if (peer.initiating === undefined) state.initiate(peer)
  return undefined
}

/** @internal sends the queued frames (a session is established, or a re-key failed but the old one serves) */
export const flushQueue = (state: SecureState, peer: Peer): void => {
  const queue = peer.queue
  peer.queue = []
  for (const item of queue) {
    const error = state.publish(item.subject, item.frame, item.options)
    if (error !== undefined) {
      state.fork(Effect.logWarning(`secure: a queued ${item.frame._tag} frame to ${peer.nodeId} was not sent`, error))
    }
  }
}

/** @internal the asks among the waiting frames fail with `error`; the rest are dropped */
export const failQueue = (
  state: SecureState,
  peer: Peer,
  error: HandshakeError | Unauthorized,
  unreachable: boolean
): void => {
  const queue = peer.queue
  peer.queue = []
  for (const item of queue) {
    const replyTo = item.options?.replyTo
    if (unreachable && replyTo !== undefined) {
      state.coalescer.noRespondersTo(replyTo)
      continue
    }
    const frame = item.frame
    if (
      frame._tag === "Request" && frame.oneWay !== true && frame.source === state.self &&
      state.selfDeliver !== undefined
    ) {
      state.selfDeliver({
        _tag: "Exit",
        v: ProtocolVersion,
        source: peer.nodeId,
        requestId: frame.requestId,
        exit: { _tag: "Error", error }
      })
    }
  }
}

// ---- held: frames from the peer waiting for its group key --------------------------------

/** @internal holds a frame from `peer` until its group key arrives, asking for it */
export const hold = (state: SecureState, peer: Peer, held: Held): void => {
  if (peer.held.length >= MAX_HELD_PER_SENDER) {
    peer.held.shift()
    reject(state, "no-key", peer.nodeId, "too many frames waiting for its group key")
  }
  peer.held.push(held)
  if (peer.current === undefined) {
    if (peer.initiating === undefined && state.now() - peer.failedAt >= state.config.handshakeTimeoutMillis) {
      state.initiate(peer)
    }
  } else if (!peer.requestedEpochs.has(held.frame.key)) {
    peer.requestedEpochs.add(held.frame.key)
    sendPairwise(state, peer, peer.current, handshakeFrame(state, STEP_GROUP_KEY_REQUEST, []), undefined)
  }
}

/** @internal opens the held frames whose key has arrived */
export const retryHeld = (state: SecureState, peer: Peer): void => {
  if (peer.held.length === 0) return
  const held = peer.held
  peer.held = []
  for (const item of held) {
    if (peer.group.has(item.frame.key)) openGroup(state, item.frame, item.pattern, item.windows, item.deliver)
    else peer.held.push(item)
  }
}

/** @internal the held frames will not be opened: each is counted as rejected */
export const dropHeld = (state: SecureState, peer: Peer, error: HandshakeError | Unauthorized): void => {
  for (const _ of peer.held) reject(state, error._tag === "Unauthorized" ? "untrusted" : "no-key", peer.nodeId)
  peer.held = []
}
