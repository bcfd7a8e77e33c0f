/**
 * Group keys for `Secure`: frames to shared subjects are sealed once with the sender's group
 * key, which it hands to each peer over their pairwise session (and again on request); it is
 * renewed after `rekeyAfterMessages` frames or `rekeyAfter`, the last few epochs kept for frames
 * still in flight.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { Envelope } from "../../schema/Envelope.ts"
import * as C from "./secureCrypto.ts"
import { retryHeld } from "./securePeer.ts"
import { sendPairwise } from "./secureSeal.ts"
import {
  handshakeFrame,
  type Peer,
  reject,
  type SecureState,
  STEP_GROUP_KEY,
  STEP_GROUP_KEY_REQUEST,
  uint32
} from "./secureState.ts"

const MAX_GROUP_EPOCHS = 3

/** @internal hands our current group key to `peer`, if we have a session with it */
export const sendGroupKey = (state: SecureState, peer: Peer): void => {
  const session = peer.current
  if (session === undefined) return
  const frame = handshakeFrame(state, STEP_GROUP_KEY, [uint32(state.group.epoch), state.group.key])
  const error = sendPairwise(state, peer, session, frame, undefined)
  if (error !== undefined) {
    state.fork(Effect.logWarning(`secure: could not hand the group key to ${peer.nodeId}`, error))
  }
}

/** @internal whether a key that sealed `sent` frames since `since` is due for renewal */
export const dueForRekey = (state: SecureState, sent: number, since: number): boolean =>
  sent >= state.config.rekeyAfterMessages || state.now() - since >= state.config.rekeyAfterMillis

/** @internal a new group key, handed to every peer before its first use */
export const rotateGroupKey = (state: SecureState): void => {
  // what was sealed with the old key leaves first
  state.coalescer.flushAll()
  state.groupPrefixes = new Map()
  state.groupBatchPrefixes = new Map()
  state.group = { epoch: C.randomId(), key: C.randomKey(), sent: 0, createdAt: state.now() }
  state.ownEpochs.set(state.group.epoch, state.group)
  while (state.ownEpochs.size > MAX_GROUP_EPOCHS) state.ownEpochs.delete(state.ownEpochs.keys().next().value!)
  // handed over before its first use: on one connection, frames keep their order
  for (const peer of state.peers.values()) sendGroupKey(state, peer)
}

/** @internal control messages inside a pairwise session: a peer's group key, or a request for ours */
export const onControl = (state: SecureState, peer: Peer, frame: Envelope & { readonly _tag: "Handshake" }): void => {
  if (frame.step === STEP_GROUP_KEY) {
    const parts = C.split(frame.body, 2)
    if (parts === undefined || parts[0]!.length !== 4 || parts[1]!.length !== 32) {
      return reject(state, "malformed", peer.nodeId, "group key")
    }
    const epoch = parts[0]!.readUInt32BE()
    if (!peer.group.has(epoch)) {
      peer.group.set(epoch, { epoch, key: Buffer.from(parts[1]!) })
      while (peer.group.size > MAX_GROUP_EPOCHS) peer.group.delete(peer.group.keys().next().value!)
    }
    peer.requestedEpochs.delete(epoch)
    retryHeld(state, peer)
  } else if (frame.step === STEP_GROUP_KEY_REQUEST) {
    sendGroupKey(state, peer)
  }
}
