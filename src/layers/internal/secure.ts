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
 * This module is the wrapper: it routes what is published, dispatches what arrives, and takes
 * the node's id from the node's subscription to its direct subject (`SubscribeOptions.node`). The parts are
 * `secureIdentity`, `secureState`, `securePeer` (sessions, the queue, held frames),
 * `secureHandshake`, `secureSeal` (sealing, opening, replay windows) and `secureGroupKey`.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import type { Envelope, SealedFrame } from "../../schema/Envelope.ts"
import { TransportError } from "../../schema/Errors.ts"
import { type CodecShape, decodeFrame, Malformed } from "../Codec.ts"
import type { PeerSession, SecureStats } from "../Secure.ts"
import * as Subject from "../Subject.ts"
import type { PublishOptions, SubscribeOptions, TransportShape } from "../Transport.ts"
import { malformedFrames } from "./drops.ts"
import { publishOf } from "./publish.ts"
import { dueForRekey, onControl, rotateGroupKey } from "./secureGroupKey.ts"
import { initiate, onHandshake, onHelloUnanswered, onUnknownSession } from "./secureHandshake.ts"
import { enqueue, hold, peerSessions } from "./securePeer.ts"
import {
  directPeer,
  emit,
  makeCoalescer,
  nodeOfSubject,
  impersonates,
  openGroup,
  openPairwise,
  sendPairwise,
  sessionOf
} from "./secureSeal.ts"
import {
  BATCH,
  describe,
  GROUP,
  GROUP_SIGNED,
  makeState,
  PAIRWISE,
  peerOf,
  type PublishResult,
  reject,
  type SecureConfig,
  type SecureState,
  Windows
} from "./secureState.ts"
import * as Subjects from "./subjects.ts"

/** @internal */
export interface SecureHandle {
  readonly transport: TransportShape
  readonly publicKey: string
  readonly peers: () => ReadonlyArray<PeerSession>
  readonly stats: () => SecureStats
}

// ---- sending ---------------------------------------------------------------------------------

/** routes a frame: pairwise to a node's direct subject (queued while a handshake runs), else group-sealed */
const publish = (
  state: SecureState,
  subject: string,
  frame: Envelope,
  options?: PublishOptions
): PublishResult => {
  const self = state.self
  if (self === undefined) {
    return new TransportError({
      reason: "secure transport: the node id is not known yet (subscribe to node.<id> first)"
    })
  }
  const peerId = directPeer(subject)
  if (peerId !== undefined && peerId !== self) {
    const peer = peerOf(state, peerId)
    const session = peer.current
    if (session === undefined) return enqueue(state, peer, subject, frame, options)
    if (peer.initiating === undefined && dueForRekey(state, session.sent, session.establishedAt)) initiate(state, peer)
    return sendPairwise(state, peer, session, frame, options)
  }
  const fragmentTo = options?.fragmentTo
  if (fragmentTo !== undefined && fragmentTo !== subject && fragmentTo.startsWith("node.")) {
    // a frame for a shared subject (a service's queue group) whose caller named one member
    // goes to that member over their pairwise session. Sealed with the group key, a copy
    // replayed on the shared subject could reach another member, whose replay window never
    // saw its counter; a pairwise session has one receiver, which sees every counter
    return publish(state, fragmentTo, frame, options)
  }
  const encoded = state.codec.encode(frame)
  if (Either.isLeft(encoded)) return encoded.left
  if (dueForRekey(state, state.group.sent, state.group.createdAt)) rotateGroupKey(state)
  return emit(state, subject, state.group, encoded.right, options?.replyTo)
}

// ---- receiving -------------------------------------------------------------------------------

const onPairwise = (state: SecureState, frame: SealedFrame, subject: string, deliver: (frame: Envelope) => void) => {
  const peer = state.peers.get(frame.source)
  const session = sessionOf(peer, frame.key)
  if (peer === undefined || session === undefined) return onUnknownSession(state, frame.source)
  const frames = openPairwise(state, session, frame, subject)
  if (frames === undefined) return
  for (const bytes of frames) {
    // the drop path builds no error: garbage inside a valid seal costs what garbage costs
    const inner = decodeFrame(state.codec, bytes)
    if (inner instanceof Malformed) reject(state, "malformed", frame.source)
    else if (inner._tag === "Handshake") onControl(state, peer, inner)
    else if (inner._tag === "Sealed") reject(state, "malformed", frame.source)
    else if (impersonates(inner, frame.source)) {
      reject(state, "impersonation", frame.source, `a ${inner._tag} frame in the name of ${inner.source}`)
    } else deliver(inner)
  }
}

const onSealed = (
  state: SecureState,
  frame: SealedFrame,
  pattern: string,
  exact: boolean,
  windows: Windows,
  deliver: (frame: Envelope) => void
): void => {
  if (frame.mode === PAIRWISE || frame.mode === PAIRWISE + BATCH) {
    return exact
      ? onPairwise(state, frame, pattern, deliver)
      : reject(state, "malformed", frame.source, "pairwise frame on a shared subject")
  }
  if ((frame.mode & ~BATCH) === GROUP || (frame.mode & ~BATCH) === GROUP_SIGNED) {
    const holder = openGroup(state, frame, pattern, windows, deliver)
    if (holder !== undefined) hold(state, holder, { frame, pattern, windows, deliver })
    return
  }
  reject(state, "malformed", frame.source, `mode ${frame.mode}`)
}

/** what a subscription to `pattern` hands to the inner transport: opens each frame and delivers its plaintext */
const receiver = (state: SecureState, pattern: string, deliver: (frame: Envelope) => void) => {
  const exact = !Subject.isPattern(pattern)
  const windows = new Windows()
  return (frame: Envelope): void => {
    try {
      // a peer's id becomes the subject of handshakes and pairwise frames
      if (!Subject.isToken(frame.source)) return reject(state, "malformed", "(an invalid source)", "source")
      switch (frame._tag) {
        case "Sealed":
          return onSealed(state, frame, pattern, exact, windows, deliver)
        case "Handshake":
          return exact && state.self !== undefined && pattern === Subjects.node(state.self)
            ? onHandshake(state, frame)
            : reject(state, "malformed", frame.source, "handshake on a shared subject")
        default:
          return reject(state, "plaintext", frame.source, `a plain ${frame._tag} frame`)
      }
    } catch (error) {
      // the last resort: a bad frame must never break the subscription (counted as
      // malformed too, like every frame a receiver could not use)
      malformedFrames.unsafeUpdate(1, [])
      const source = Subject.isToken(frame.source) ? frame.source : "(an invalid source)"
      reject(state, "malformed", source, describe(error))
    }
  }
}

// ---- the node's id ---------------------------------------------------------------------------

/**
 * Becomes the node `nodeId`, whose frames `deliver` receives (a failed ask's `Exit`), for the
 * life of the current scope: its handshake and batch reply slots are subscribed to, and the
 * peers whose frames waited for us to know who we are are greeted.
 */
const becomeNode = (
  state: SecureState,
  nodeId: string,
  deliver: (frame: Envelope) => void
): Effect.Effect<void, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    state.self = nodeId
    state.selfDeliver = deliver
    // "no responders" to a handshake hello: the peer is gone
    yield* state.inner.subscribe(`${Subjects.handshakeSlotsOf(nodeId)}*`, () => {}, {
      onNoResponders: (slot) => onHelloUnanswered(state, slot)
    })
    // "no responders" to a batch: to each frame in it
    yield* state.inner.subscribe(`${Subjects.sealedBatchSlotsOf(nodeId)}*`, () => {}, {
      onNoResponders: (slot) => state.coalescer.unanswered(slot)
    })
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        if (state.self === nodeId) {
          state.self = undefined
          state.selfDeliver = undefined
        }
      })
    )
  })

/**
 * The node this subscription makes us, if any: the node names itself when it subscribes to its
 * direct subject (`node`), whatever was taken before; a secure transport used without a node
 * takes the first direct subject subscribed as its own.
 */
const nodeIdOf = (state: SecureState, subject: string, options: SubscribeOptions | undefined): string | undefined => {
  const named = options?.node
  if (named !== undefined) return named === state.self ? undefined : named
  return state.self === undefined ? nodeOfSubject(subject) : undefined
}

const subscribe = (
  state: SecureState,
  subject: string,
  onFrame: (frame: Envelope) => void,
  options?: SubscribeOptions
): Effect.Effect<void, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const nodeId = nodeIdOf(state, subject, options)
    if (nodeId !== undefined) yield* becomeNode(state, nodeId, onFrame)
    const onNoResponders = options?.onNoResponders
    if (onNoResponders !== undefined) yield* state.coalescer.listenScoped(subject, onNoResponders)
    yield* state.inner.subscribe(subject, receiver(state, subject, onFrame), options)
    if (nodeId !== undefined) {
      for (const peer of state.peers.values()) {
        if (peer.held.length > 0 && peer.initiating === undefined && peer.current === undefined) initiate(state, peer)
      }
    }
  })

// ---- the transport ---------------------------------------------------------------------------

/** @internal wraps `inner` so that every frame is sealed */
export const make = (
  inner: TransportShape,
  codec: CodecShape,
  config: SecureConfig
): Effect.Effect<SecureHandle, never, Scope.Scope> =>
  Effect.gen(function*() {
    const fork = Runtime.runFork(yield* Effect.runtime<never>())
    const clock = yield* Effect.clock
    const state: SecureState = makeState({
      inner,
      codec,
      config,
      fork: (effect) => fork(effect),
      now: () => clock.unsafeCurrentTimeMillis(),
      coalescer: makeCoalescer,
      publish: (subject, frame, options) => publish(state, subject, frame, options),
      initiate: (peer) => initiate(state, peer)
    })
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        // the last frames (e.g. a leaving heartbeat) leave before the connection closes
        state.coalescer.flushAll()
        state.closed = true
        for (const peer of state.peers.values()) {
          if (peer.initiating !== undefined) fork(Fiber.interrupt(peer.initiating.timer))
          peer.initiating = undefined
        }
      })
    )
    const transport: TransportShape = {
      name: `secure+${inner.name}`,
      zeroCopy: false,
      publish: publishOf(state.publish),
      unsafePublish: state.publish,
      subscribe: (subject, onFrame, options) => subscribe(state, subject, onFrame, options),
      watch: inner.watch,
      isConnected: inner.isConnected,
      awaitConnected: inner.awaitConnected
    }
    return {
      transport,
      publicKey: config.identity.publicKey,
      peers: () => peerSessions(state),
      stats: () => ({
        handshakes: state.handshakes,
        handshakeFailures: state.handshakeFailures,
        rejected: { ...state.rejected }
      })
    }
  })
