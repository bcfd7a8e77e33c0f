/**
 * The node, wired from its pieces: `nodeState.ts` (the shared state), `routing.ts` (where a
 * call goes), `calls.ts` with `caller.ts`, `callerStream.ts` and `callerUpload.ts` (the caller's
 * side), `receiver.ts` with `receiverUpload.ts` (the receiving side) and `liveness.ts` (nodes
 * found gone, lost work, rebalance). This module subscribes the node's subjects, dispatches the
 * frames that arrive, hosts kinds and announces the node.
 *
 * @internal
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { ActorSystemShape, EntityDefinition } from "../../actors/ActorSystem.ts"
import type * as Topic from "../../actors/Topic.ts"
import type { DiscoveryShape } from "../../layers/Discovery.ts"
import { Persistence } from "../../layers/Persistence.ts"
import * as Subject from "../../layers/Subject.ts"
import { malformedFrames, type TransportShape } from "../../layers/Transport.ts"
import type { AckFrame, Envelope as Frame, ItemsFrame } from "../../schema/Envelope.ts"
import type { PayloadTooLarge, TransportError } from "../../schema/Errors.ts"
import type { NodeShape } from "../Node.ts"
import * as Caller from "./caller.ts"
import { onUploadAck } from "./callerUpload.ts"
import * as Calls from "./calls.ts"
import { EntityManager } from "./entity.ts"
import * as Liveness from "./liveness.ts"
import * as NodeState from "./nodeState.ts"
import * as Receiver from "./receiver.ts"
import * as Reminders from "./reminderScheduler.ts"
import { onUploadItems } from "./receiverUpload.ts"
import * as Topics from "./topics.ts"
import * as Subjects from "../../layers/internal/subjects.ts"

/** @internal */
export type NodeConfig = NodeState.NodeConfig

/**
 * The node as `Node.layer` gets it: its `NodeShape`, and the services it provides beside it.
 *
 * @internal
 */
export interface NodeHandle extends NodeShape {
  readonly system: ActorSystemShape
  readonly topics: Topic.TopicBusShape
}

const onItems = (state: NodeState.NodeState, frame: ItemsFrame): void => {
  // the producer's id becomes the subject of our credit
  if (!Subject.isToken(frame.source)) return malformedFrames.unsafeUpdate(1, [])
  return frame.upload === true ? onUploadItems(state, frame) : Caller.onStreamItems(state, frame)
}

const onAck = (state: NodeState.NodeState, frame: AckFrame): void => {
  // the handler's id becomes the subject of our upload's frames
  if (!Subject.isToken(frame.source)) return malformedFrames.unsafeUpdate(1, [])
  return frame.upload === true ? onUploadAck(state, frame) : Receiver.onStreamAck(state, frame)
}

const frameHandler = (state: NodeState.NodeState) => (frame: Frame): void => {
  switch (frame._tag) {
    case "Request":
      return Receiver.onRequest(state, frame)
    case "Exit":
      return Caller.onExit(state, frame)
    case "Interrupt":
      return Receiver.onInterrupt(state, frame)
    case "Items":
      return onItems(state, frame)
    case "Ack":
      return onAck(state, frame)
    default:
      return
  }
}

/**
 * A frame that arrived too large for this node was dropped by the transport. A request's
 * caller, or the caller uploading to this node (reply slot `node.<caller>.nr.<requestId>`),
 * gets `PayloadTooLarge` at once rather than waiting for its timeout; a streamed reply too
 * large for us (our own reply slot) fails our stream at once.
 */
const tooLargeHandler = (state: NodeState.NodeState) => (error: PayloadTooLarge, replyTo: string): void => {
  const slot = Subjects.parseReplySlot(replyTo)
  if (slot === undefined) return
  const out = Receiver.exitFrame(state, slot.requestId, { _tag: "Error", error })
  if (slot.caller === state.nodeId) Caller.onExit(state, out)
  else NodeState.send(state, Subjects.node(slot.caller), out)
}

type Handlers = {
  readonly onFrame: (frame: Frame) => void
  readonly onTooLarge: (error: PayloadTooLarge, replyTo: string) => void
}

/** hosts a kind: its manager, its queue group and interrupt subjects, and its place in discovery */
const register = (state: NodeState.NodeState, handlers: Handlers) =>
(
  entity: EntityDefinition
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { discovery, managers, nodeId, transport } = state
    const kind = entity.definition.kind
    if (managers.has(kind)) return yield* Effect.dieMessage(`kind "${kind}" is already hosted on node ${nodeId}`)
    const manager = new EntityManager(entity, {
      nodeId,
      runtime: yield* Effect.runtime<never>(),
      clock: state.clock,
      deadlines: state.deadlines
    })
    managers.set(kind, manager)
    yield* Effect.orDie(
      transport.subscribe(Subjects.actor(kind), handlers.onFrame, { queue: kind, onTooLarge: handlers.onTooLarge })
    )
    yield* Effect.orDie(transport.subscribe(Subjects.interrupt(kind), handlers.onFrame))
    yield* discovery.update(nodeId, { kinds: [...managers.keys()] })
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        // stop being routed to first, then drain what was accepted
        yield* discovery.update(nodeId, { kinds: [...managers.keys()].filter((k) => k !== kind) })
        yield* manager.shutdown(state.config.shutdownTimeout)
        managers.delete(kind)
      })
    )
    // an actor kind with a store may have reminders: this node fires those of the ids it owns
    const store = Context.getOption(entity.context, Persistence)
    if (manager.isActor && Option.isSome(store)) yield* Reminders.schedule(state, manager, store.value)
  })

/** @internal */
export const make = (
  config: NodeConfig,
  transport: TransportShape,
  discovery: DiscoveryShape,
  routes: ReadonlyArray<Topic.Route> = []
): Effect.Effect<NodeHandle, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const state = yield* NodeState.make(config, transport, discovery)
    const { nodeId } = state
    const onFrame = frameHandler(state)
    const onTooLarge = tooLargeHandler(state)
    yield* transport.subscribe(Subjects.node(nodeId), onFrame, { onTooLarge, node: nodeId })
    // "no responders" for a request arrives on its reply slot, at once
    yield* transport.subscribe(`${state.noRespondersPrefix}*`, () => {}, {
      onNoResponders: (subject) => Liveness.onNoResponders(state, subject)
    })
    yield* transport.subscribe(`${state.forwardPrefix}>`, () => {}, {
      onNoResponders: (subject) => Receiver.onForwardUnanswered(state, subject)
    })
    yield* Liveness.watchConnection(state)
    yield* discovery.announce({
      nodeId,
      name: config.name,
      incarnation: state.incarnation,
      address: config.address ?? `${transport.name}://${nodeId}`,
      kinds: [],
      isServing: true,
      startedAt: state.clock.unsafeCurrentTimeMillis()
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => Liveness.close(state)))
    yield* Liveness.watchMembership(state)
    const system: ActorSystemShape = {
      nodeId,
      register: register(state, { onFrame, onTooLarge }),
      ask: Calls.makeAsk(state),
      stream: (envelope) => Calls.stream(state, envelope),
      tell: (envelope) => Calls.tell(state, envelope)
    }
    const { inboundUploads, managers, outbound, pending, uploads } = state
    return {
      nodeId,
      name: config.name,
      incarnation: state.incarnation,
      system,
      topics: yield* Topics.make(nodeId, transport, routes),
      kinds: () => [...managers.keys()],
      activeInstances: (kind) => managers.get(kind)?.size ?? 0,
      isActive: (kind, id) => managers.get(kind)?.isActive(id) ?? false,
      pendingAsks: () => pending.size,
      openStreams: () => outbound.size + inboundUploads.size + uploads.size,
      setServing: (serving) => discovery.update(nodeId, { isServing: serving })
    }
  })
