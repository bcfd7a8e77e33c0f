/**
 * The state of one node, shared by its pieces (routing, caller, receiver, liveness): its
 * identity and settings, its transport and discovery, the tables of calls in flight both ways,
 * and the few helpers every piece sends frames with. Each piece takes a `NodeState`; none of
 * them imports another piece's closure, so the modules stay acyclic.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Runtime from "effect/Runtime"
import type { DiscoveryShape, DiscoveryState } from "../../layers/Discovery.ts"
import type { TransportShape } from "../../layers/Transport.ts"
import {
  type Envelope as Frame,
  type InterruptFrame,
  ProtocolVersion,
  type RequestFrame
} from "../../schema/Envelope.ts"
import type { StreamError } from "../../schema/Errors.ts"
import { type Deadline, Deadlines } from "./deadlines.ts"
import type { EntityManager, Job } from "./entity.ts"
import type { Inbox, Outbox } from "./streams.ts"
import { type RateLimited, rateLimited } from "../../layers/internal/drops.ts"
import * as Subjects from "../../layers/internal/subjects.ts"

/** @internal */
export interface NodeConfig {
  readonly name: string
  readonly askTimeout: Duration.Duration
  readonly maxPendingAsks: number
  readonly shutdownTimeout: Duration.Duration
  readonly address: string | undefined
  /** `true`: trace every ask; `"auto"`: every ask under an installed tracer; `false`: asks inside a span */
  readonly tracing: boolean | "auto"
}

/**
 * One entry of the caller's pending table: a remote ask or a streamed reply being received.
 *
 * @internal
 */
export interface PendingCall {
  readonly requestId: number
  readonly kind: string
  readonly id: string
  /** Clock millis when the call started */
  readonly startedAt: number
  /** the node the call was sent to (an actor's owner); `undefined` for a service */
  readonly target: string | undefined
  /** a streamed reply (`PendingStream`) rather than one reply */
  readonly isStream: boolean
  /** the node producing a streamed reply, known from its first frame */
  readonly producer: string | undefined
  deadline: Deadline | undefined
  resume(exit: Exit.Exit<unknown, unknown>): void
}

/**
 * A streamed request this node sends: credit comes from the handler's node.
 *
 * @internal
 */
export interface OutgoingUpload {
  handler: string | undefined
  readonly outbox: Outbox
}

/**
 * A streamed request this node receives, by `source:requestId`.
 *
 * @internal
 */
export interface InboundUpload {
  readonly inbox: Inbox
  readonly source: string
  readonly broken: (reason: string) => StreamError
  readonly close: () => void
}

/**
 * A streamed reply this node produces, by `source:requestId` of its request.
 *
 * @internal
 */
export interface OutboundStream {
  readonly outbox: Outbox
  readonly consumer: string
  readonly manager: EntityManager
  readonly job: Job
}

/**
 * A request this node passed on, watched briefly for "no responders".
 *
 * @internal
 */
export interface ForwardedRequest {
  readonly frame: RequestFrame
  readonly target: string
  readonly deadline: Deadline
}

/** @internal */
export interface NodeState {
  readonly config: NodeConfig
  readonly transport: TransportShape
  readonly discovery: DiscoveryShape
  readonly nodeId: string
  readonly incarnation: string
  readonly clock: Clock.Clock
  readonly fork: <A, E>(effect: Effect.Effect<A, E>) => unknown
  /** the transport passes values as they are (in memory): no codecs, no pieces */
  readonly zeroCopy: boolean
  readonly askTimeoutMillis: number
  readonly deadlines: Deadlines
  /** the hosted kinds */
  readonly managers: Map<string, EntityManager>
  /** the caller's remote asks and streams, by request id */
  readonly pending: Map<number, PendingCall>
  /** requests this node is handling for others, by `source:requestId` */
  readonly inbound: Map<string, { readonly manager: EntityManager; readonly job: Job }>
  readonly uploads: Map<number, OutgoingUpload>
  readonly inboundUploads: Map<string, InboundUpload>
  readonly outbound: Map<string, OutboundStream>
  /** requests we passed on, by `source.requestId` */
  readonly forwarded: Map<string, ForwardedRequest>
  /** nodes found gone through "no responders" (until discovery removes them) */
  readonly provenUnreachable: Set<string>
  /** errors that mean "the request reached no one", with the node that did not answer */
  readonly noResponders: WeakMap<object, string>
  /** the serving nodes of each kind, valid for `routedState` */
  readonly servingByKind: Map<string, ReadonlyArray<string>>
  routedState: DiscoveryState | undefined
  nextRequestId: number
  /** `node.<nodeId>.nr.`: the reply slots of this node's calls */
  readonly noRespondersPrefix: string
  /** `node.<nodeId>.fwd.`: where "no responders" for a forwarded request comes back */
  readonly forwardPrefix: string
  /** failed tells are logged at most once a second (anyone on the broker can send tells) */
  readonly failedTell: RateLimited
  closed: boolean
}

/**
 * The reply slots of a caller's remote asks and streams, `node.<caller>.nr.<requestId>`: "no
 * responders" arrives there, and a receiver names the call it dropped as too large by it.
 *
 * @internal
 */
export const replySlotsOf: (caller: string) => string = Subjects.replySlotsOf

/**
 * Names the nodes the sender found unreachable (NATS "no responders" on their direct subjects),
 * space-separated.
 *
 * @internal
 */
export const UNREACHABLE_HEADER = "troupe-unreachable"

const randomId = () => Math.random().toString(36).slice(2, 10)

/**
 * Where the 8 characters after a node's name come from: `Math.random` by default; the test kit
 * (`troupe/testing`) provides a seeded source, so node ids, and the placement that hashes them,
 * repeat from one run to the next.
 *
 * @internal
 */
export class NodeIdSuffix extends Context.Reference<NodeIdSuffix>()("troupe/NodeIdSuffix", {
  defaultValue: (): () => string => randomId
}) {}

/**
 * A fresh node's state, its deadline timer running in the scope.
 *
 * @internal
 */
export const make = (config: NodeConfig, transport: TransportShape, discovery: DiscoveryShape) =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const clock = yield* Effect.clock
    const nodeId = `${config.name}-${(yield* NodeIdSuffix)()}`
    const deadlines = new Deadlines(clock)
    yield* Effect.forkScoped(deadlines.run)
    const state: NodeState = {
      config,
      transport,
      discovery,
      nodeId,
      incarnation: `${nodeId}.${clock.unsafeCurrentTimeMillis().toString(36)}`,
      clock,
      fork: Runtime.runFork(runtime),
      zeroCopy: transport.zeroCopy,
      askTimeoutMillis: Duration.toMillis(config.askTimeout),
      deadlines,
      managers: new Map(),
      pending: new Map(),
      inbound: new Map(),
      uploads: new Map(),
      inboundUploads: new Map(),
      outbound: new Map(),
      forwarded: new Map(),
      provenUnreachable: new Set(),
      noResponders: new WeakMap(),
      servingByKind: new Map(),
      routedState: undefined,
      nextRequestId: 0,
      noRespondersPrefix: replySlotsOf(nodeId),
      forwardPrefix: Subjects.forwardsOf(nodeId),
      failedTell: rateLimited(clock),
      closed: false
    }
    return state
  })

/**
 * Publishes `frame`, logging a failure; frames to one node's direct subject may travel in pieces.
 *
 * @internal
 */
export const send = (state: NodeState, subject: string, frame: Frame): void => {
  const error = state.transport.unsafePublish(subject, frame, { fragmentTo: subject })
  if (error !== undefined) {
    state.fork(Effect.logWarning(`could not publish ${frame._tag} frame to ${subject}`, error))
  }
}

/**
 * Tells the handler of this node's request `requestId` (on whichever node) to stop.
 *
 * @internal
 */
export const sendInterrupt = (state: NodeState, kind: string, requestId: number): void => {
  const frame: InterruptFrame = { _tag: "Interrupt", v: ProtocolVersion, source: state.nodeId, requestId }
  send(state, Subjects.interrupt(kind), frame)
}
