/**
 * The node: hosts kinds, routes asks and tells (local fast path, rendezvous placement of actors,
 * queue groups for services), keeps the bounded table of pending remote asks and the single
 * deadline timer, and speaks the wire protocol over the `Transport`.
 *
 * @internal
 */
import type * as Rpc from "@effect/rpc/Rpc"
import * as RpcSchema from "@effect/rpc/RpcSchema"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type * as Scope from "effect/Scope"
import { streamedField } from "../../actors/Actor.ts"
import type { ActorSystemShape, EntityDefinition, Envelope, KindDefinition } from "../../actors/ActorSystem.ts"
import type * as Topic from "../../actors/Topic.ts"
import { decodeWith, encodeWith } from "../../layers/Codec.ts"
import { type DiscoveryShape, type DiscoveryState, servingMembers } from "../../layers/Discovery.ts"
import * as Subject from "../../layers/Subject.ts"
import { malformedFrames, type TransportShape } from "../../layers/Transport.ts"
import {
  type AckFrame,
  type Envelope as Frame,
  type ExitFrame,
  type ItemsFrame,
  type InterruptFrame,
  ProtocolVersion,
  type RequestFrame,
  type WireExit
} from "../../schema/Envelope.ts"
import {
  ActorNotFound,
  AskTimeout,
  type DecodeError,
  EncodeError,
  MailboxFull,
  NoAvailableNode,
  type PayloadTooLarge,
  StreamError,
  type TellError,
  TransportError
} from "../../schema/Errors.ts"
import { type Deadline, Deadlines } from "./deadlines.ts"
import { EntityManager, type Job, type JobExit, makeJob } from "./entity.ts"
import * as Metrics from "./metrics.ts"
import { owner } from "./placement.ts"
import { Inbox, Outbox, pump, toStream, WINDOW } from "./streams.ts"
import * as Topics from "./topics.ts"

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

/** Schema encoders/decoders of one Rpc, compiled once. */
interface RpcCodec {
  readonly encodePayload: (value: unknown) => Either.Either<unknown, EncodeError>
  readonly decodePayload: (value: unknown) => Either.Either<unknown, DecodeError>
  readonly encodeSuccess: (value: unknown) => Either.Either<unknown, EncodeError>
  readonly decodeSuccess: (value: unknown) => Either.Either<unknown, DecodeError>
  readonly encodeError: (value: unknown) => Either.Either<unknown, EncodeError>
  readonly decodeError: (value: unknown) => Either.Either<unknown, DecodeError>
  /** a streamed reply: its elements' codecs (the `Exit` then carries the number of frames) */
  readonly items: ItemCodec | undefined
  /** a streamed request: the payload field that carries it, and its elements' codecs */
  readonly upload: (ItemCodec & { readonly field: string }) | undefined
}

interface ItemCodec {
  readonly encode: (items: ReadonlyArray<unknown>) => Either.Either<unknown, EncodeError>
  readonly decode: (items: ReadonlyArray<unknown>) => Either.Either<ReadonlyArray<unknown>, DecodeError>
}

const itemCodec = (item: Schema.Schema<unknown, unknown>, what: string): ItemCodec => {
  const schema = Schema.Array(item) as Schema.Schema<ReadonlyArray<unknown>, unknown>
  return {
    encode: encodeWith(schema, what),
    decode: decodeWith(schema, what) as ItemCodec["decode"]
  }
}

const identity = <A>(value: A) => Either.right(value)

const rpcCodecs = new WeakMap<Rpc.AnyWithProps, RpcCodec>()
const rpcCodec = (kind: string, rpc: Rpc.AnyWithProps): RpcCodec => {
  let codec = rpcCodecs.get(rpc)
  if (codec === undefined) {
    const payload = rpc.payloadSchema as Schema.Schema<unknown, unknown>
    const streamed = RpcSchema.getStreamSchemas(rpc.successSchema.ast)
    const success = rpc.successSchema as Schema.Schema<unknown, unknown>
    const error = (Option.isSome(streamed)
      ? Schema.Union(rpc.errorSchema, streamed.value.failure)
      : rpc.errorSchema) as Schema.Schema<unknown, unknown>
    const name = `${kind}.${rpc._tag}`
    const field = streamedField(rpc.payloadSchema)
    codec = {
      encodePayload: encodeWith(payload, `payload of ${name}`),
      decodePayload: decodeWith(payload, `payload of ${name}`),
      encodeSuccess: Option.isSome(streamed) ? identity : encodeWith(success, `reply of ${name}`),
      decodeSuccess: Option.isSome(streamed) ? identity : decodeWith(success, `reply of ${name}`),
      encodeError: encodeWith(error, `error of ${name}`),
      decodeError: decodeWith(error, `error of ${name}`),
      items: Option.isSome(streamed)
        ? itemCodec(streamed.value.success as Schema.Schema<unknown, unknown>, `stream element of ${name}`)
        : undefined,
      upload: field === undefined
        ? undefined
        : { field: field.name, ...itemCodec(field.item, `element of ${name}.${field.name}`) }
    }
    rpcCodecs.set(rpc, codec)
  }
  return codec
}

type Route =
  | { readonly _tag: "Local"; readonly manager: EntityManager }
  | {
    readonly _tag: "Remote"
    readonly subject: string
    readonly target: string | undefined
    /** the direct subject of one receiver, for the pieces of a large request */
    readonly direct: string
  }
  | { readonly _tag: "Unavailable"; readonly error: ActorNotFound | NoAvailableNode }

const jobExitToEffect = (exit: JobExit): Effect.Effect<unknown, unknown> =>
  exit._tag === "Success" ? Exit.succeed(exit.value) : Exit.fail(exit.error)

/**
 * The reply slots of a caller's remote asks and streams, `node.<caller>.nr.<requestId>`: "no
 * responders" arrives there, and a receiver names the call it dropped as too large by it.
 */
const replySlotsOf = (caller: string): string => `node.${caller}.nr.`
const REPLY_SLOT = /^node\.([A-Za-z0-9_-]{1,255})\.nr\.(\d{1,15})$/

/** an actor id or an Rpc tag off the wire, as it may appear in a log line (one line, bounded) */
const printable = (text: string): string =>
  text.length <= 200 && /^[\x20-\x7e]*$/.test(text) ? text : JSON.stringify(text.slice(0, 200))

/** names a node the sender found unreachable (NATS "no responders" on its direct subject) */
const UNREACHABLE_HEADER = "troupe-unreachable"

/** how long a forwarded request is watched for "no responders" (which NATS sends at once) */
const FORWARD_WATCH_MILLIS = 2_000
/** how long after "no responders" proved a node gone its other pending asks may still get theirs */
const UNREACHABLE_GRACE_MILLIS = 250
const MAX_TRACKED_FORWARDS = 10_000

/** how often a request may be passed on to the owner of its actor */
const MAX_FORWARDS = 2

const randomId = () => Math.random().toString(36).slice(2, 10)

/** @internal */
export interface NodeHandle {
  readonly nodeId: string
  readonly name: string
  readonly incarnation: string
  readonly system: ActorSystemShape
  readonly topics: Topic.TopicBusShape
  readonly kinds: () => ReadonlyArray<string>
  readonly activeInstances: (kind: string) => number
  readonly isActive: (kind: string, id: string) => boolean
  readonly pendingAsks: () => number
  readonly openStreams: () => number
  readonly setServing: (serving: boolean) => Effect.Effect<void>
}

/** @internal */
export const make = (
  config: NodeConfig,
  transport: TransportShape,
  discovery: DiscoveryShape,
  routes: ReadonlyArray<Topic.Route> = []
): Effect.Effect<NodeHandle, TransportError, Scope.Scope> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const clock = yield* Effect.clock
    const fork = Runtime.runFork(runtime)
    const nodeId = `${config.name}-${randomId()}`
    const incarnation = `${nodeId}.${clock.unsafeCurrentTimeMillis().toString(36)}`
    const zeroCopy = transport.zeroCopy
    const askTimeoutMillis = Duration.toMillis(config.askTimeout)
    const deadlines = new Deadlines(clock)
    const managers = new Map<string, EntityManager>()
    const pending = new Map<number, PendingAsk | PendingStream>()
    const inbound = new Map<string, { readonly manager: EntityManager; readonly job: Job }>()
    let nextRequestId = 0
    const forwardPrefix = `node.${nodeId}.fwd.`
    /** requests we passed on, watched briefly for "no responders" */
    const forwarded = new Map<
      string,
      { readonly frame: RequestFrame; readonly target: string; readonly deadline: Deadline }
    >()
    const noRespondersPrefix = replySlotsOf(nodeId)
    let closed = false

    yield* Effect.forkScoped(deadlines.run)

    /** frames to one node's direct subject may travel in pieces */
    const send = (subject: string, frame: Frame): void => {
      const error = transport.unsafePublish(subject, frame, { fragmentTo: subject })
      if (error !== undefined) fork(Effect.logWarning(`could not publish ${frame._tag} frame to ${subject}`, error))
    }

    /** nodes found gone through "no responders" (until discovery removes them) */
    const provenUnreachable = new Set<string>()
    const proveUnreachable = (target: string): void => {
      discovery.reportUnreachable?.(target)
      if (provenUnreachable.has(target)) return
      provenUnreachable.add(target)
      // requests sent before the proof that get no "no responders" of their own within a moment
      // reached the node before it died (or were lost with it): their outcome is unknown
      const provenAt = deadlines.now()
      deadlines.add(UNREACHABLE_GRACE_MILLIS, () => {
        for (const [requestId, entry] of pending) {
          if (entry.target === target && entry.startedAt <= provenAt) {
            failPending(
              new TransportError({ reason: `node ${target} went away while the ask was pending` }),
              requestId
            )
          }
        }
      })
    }
    /** errors that mean "the request reached no one", with the node that did not answer */
    const noResponders = new WeakMap<object, string>()

    const failPending = (error: TransportError | NoAvailableNode, only?: number): void => {
      const ids = only === undefined ? [...pending.keys()] : [only]
      for (const requestId of ids) {
        const entry = pending.get(requestId)
        if (entry === undefined) continue
        pending.delete(requestId)
        if (entry.deadline !== undefined) deadlines.remove(entry.deadline)
        // a producer waits for this caller's credit, an upload's handler for its elements: if
        // their node is alive after all, they must not wait forever (nor an actor's mailbox)
        if (!closed && (entry instanceof PendingStream || uploads.has(requestId))) sendInterrupt(entry.kind, requestId)
        entry.resume(Exit.fail(error))
      }
    }

    // ---- routing -----------------------------------------------------------------------------

    let routedState: DiscoveryState | undefined
    const servingByKind = new Map<string, ReadonlyArray<string>>()
    const servingNodes = (kind: string): ReadonlyArray<string> => {
      const state = discovery.unsafeState()
      if (state !== routedState) {
        routedState = state
        servingByKind.clear()
      }
      let nodes = servingByKind.get(kind)
      if (nodes === undefined) {
        nodes = servingMembers(state, kind).map((m) => m.nodeId)
        servingByKind.set(kind, nodes)
      }
      return nodes
    }

    const unavailable = (kind: string, id: string): Route => {
      const hosted = discovery.unsafeState().members.some((m) => m.kinds.includes(kind))
      return {
        _tag: "Unavailable",
        error: hosted ? new NoAvailableNode({ kind, id }) : new ActorNotFound({ kind, id })
      }
    }

    const route = (definition: KindDefinition, id: string): Route => {
      const local = managers.get(definition.kind)
      if (definition._tag === "Service") {
        if (local !== undefined && zeroCopy) return { _tag: "Local", manager: local }
        const nodes = servingNodes(definition.kind)
        return nodes.length > 0
          ? {
            _tag: "Remote",
            subject: `actor.${definition.kind}`,
            target: undefined,
            direct: `node.${nodes[(nextRequestId + 1) % nodes.length]}`
          }
          : unavailable(definition.kind, id)
      }
      const target = owner(servingNodes(definition.kind), id)
      if (target === undefined) {
        return local !== undefined && zeroCopy ? { _tag: "Local", manager: local } : unavailable(definition.kind, id)
      }
      if (target === nodeId && local !== undefined && zeroCopy) return { _tag: "Local", manager: local }
      return { _tag: "Remote", subject: `node.${target}`, target, direct: `node.${target}` }
    }

    // ---- the caller side ---------------------------------------------------------------------

    /** the timeout of an ask started at `startedAt` (Clock millis) */
    const timedOut = (envelope: Envelope, startedAt: number): AskTimeout =>
      new AskTimeout({
        kind: envelope.definition.kind,
        id: envelope.id,
        tag: envelope.tag,
        elapsedMillis: deadlines.now() - startedAt
      })

    const timeoutOf = (envelope: Envelope): number =>
      envelope.timeout === undefined ? askTimeoutMillis : Duration.toMillis(envelope.timeout)

    const askLocal = (manager: EntityManager, envelope: Envelope): Effect.Effect<unknown, unknown> =>
      Effect.async<unknown, unknown>((callback) => {
        const resume = Metrics.observeAsk(envelope.definition.kind, callback)
        const startedAt = deadlines.now()
        const timeoutMillis = timeoutOf(envelope)
        let deadline: Deadline | undefined
        const job = makeJob(envelope.tag, envelope.payload, envelope.headers ?? {}, (exit) => {
          if (deadline !== undefined) deadlines.remove(deadline)
          resume(jobExitToEffect(exit))
        })
        if (Number.isFinite(timeoutMillis)) {
          deadline = deadlines.add(timeoutMillis, () => {
            deadline = undefined
            manager.unsafeCancel(job, () => resume(Exit.fail(timedOut(envelope, startedAt))))
          })
        }
        manager.deliver(envelope.id, job)
        return Effect.suspend(() => {
          if (deadline !== undefined) deadlines.remove(deadline)
          return manager.cancel(job)
        })
      })

    const sendInterrupt = (kind: string, requestId: number): void => {
      const frame: InterruptFrame = { _tag: "Interrupt", v: ProtocolVersion, source: nodeId, requestId }
      send(`interrupt.${kind}`, frame)
    }

    const requestFrame = (
      envelope: Envelope,
      requestId: number,
      oneWay: boolean,
      stream = false
    ): Either.Either<RequestFrame, EncodeError> => {
      const rpc = envelope.definition.rpcs.get(envelope.tag)!
      let body = envelope.payload
      if (!zeroCopy) {
        const codec = rpcCodec(envelope.definition.kind, rpc)
        const encoded = codec.encodePayload(envelope.payload)
        if (Either.isLeft(encoded)) return Either.left(encoded.left)
        body = encoded.right
        // a streamed field travels in `Items` frames after the request
        if (codec.upload !== undefined) body = { ...(body as object), [codec.upload.field]: null }
      }
      return Either.right({
        _tag: "Request",
        v: ProtocolVersion,
        source: nodeId,
        requestId,
        kind: envelope.definition.kind,
        id: envelope.id,
        tag: envelope.tag,
        headers: envelope.headers ?? {},
        body,
        ...(oneWay ? { oneWay } : {}),
        ...(stream ? { stream } : {})
      })
    }

    const forget = (entry: PendingAsk | PendingStream): boolean => {
      if (entry.deadline !== undefined) deadlines.remove(entry.deadline)
      return pending.delete(entry.requestId)
    }

    /** one remote ask waiting for its reply; methods, not per-call closures, on the hot path */
    class PendingAsk {
      deadline: Deadline | undefined = undefined
      readonly kind: string
      readonly id: string
      constructor(
        readonly requestId: number,
        readonly envelope: Envelope,
        readonly rpc: Rpc.AnyWithProps,
        readonly startedAt: number,
        readonly resume: (exit: Exit.Exit<unknown, unknown>) => void,
        readonly target: string | undefined
      ) {
        this.kind = envelope.definition.kind
        this.id = envelope.id
      }
      onDeadline(): void {
        this.deadline = undefined
        if (!pending.delete(this.requestId)) return
        sendInterrupt(this.kind, this.requestId)
        this.resume(Exit.fail(timedOut(this.envelope, this.startedAt)))
      }
      get cancel(): Effect.Effect<void> {
        return Effect.sync(() => {
          if (forget(this)) sendInterrupt(this.kind, this.requestId)
        })
      }
    }

    const askRemote = (
      subject: string,
      target: string | undefined,
      direct: string,
      envelope: Envelope,
      presetRequestId?: number
    ): Effect.Effect<unknown, unknown> =>
      Effect.async<unknown, unknown>((callback) => {
        const kind = envelope.definition.kind
        const resume = Metrics.observeAsk(kind, callback)
        if (pending.size >= config.maxPendingAsks) {
          return resume(Exit.fail(
            new MailboxFull({ kind, id: envelope.id, capacity: config.maxPendingAsks, queue: "pending-requests" })
          ))
        }
        const requestId = presetRequestId ?? ++nextRequestId
        const frame = requestFrame(envelope, requestId, false)
        if (Either.isLeft(frame)) return resume(Exit.fail(frame.left))
        const entry = new PendingAsk(
          requestId,
          envelope,
          envelope.definition.rpcs.get(envelope.tag)!,
          deadlines.now(),
          resume,
          target
        )
        // the reply slot exists before the request leaves
        pending.set(requestId, entry)
        const timeoutMillis = timeoutOf(envelope)
        if (Number.isFinite(timeoutMillis)) entry.deadline = deadlines.add(timeoutMillis, entry)
        const error = transport.unsafePublish(subject, frame.right, {
          replyTo: noRespondersPrefix + requestId,
          fragmentTo: direct
        })
        if (error !== undefined) {
          forget(entry)
          return resume(Exit.fail(error))
        }
        return entry.cancel
      })

    // ---- streams -----------------------------------------------------------------------------

    const brokenStream = (envelope: Envelope) => (reason: string) =>
      new StreamError({ kind: envelope.definition.kind, id: envelope.id, tag: envelope.tag, reason })

    /**
     * Calls `onIdle` once the other side of `inbox` has sent nothing for `timeoutMillis` while
     * the inbox is empty (a slow consumer is not an idle producer). Returns the cancel.
     */
    const watchIdle = (inbox: Inbox, timeoutMillis: number, onIdle: (idleMillis: number) => void): () => void => {
      if (!Number.isFinite(timeoutMillis)) return () => {}
      let deadline: Deadline | undefined
      const watch = {
        onDeadline: () => {
          deadline = undefined
          if (inbox.isDone) return
          const idle = deadlines.now() - inbox.touched
          if (inbox.buffered > 0 || idle < timeoutMillis) {
            deadline = deadlines.add(Math.max(1, timeoutMillis - idle), watch)
            return
          }
          onIdle(idle)
        }
      }
      deadline = deadlines.add(timeoutMillis, watch)
      return () => {
        if (deadline !== undefined) deadlines.remove(deadline)
      }
    }

    /** a streamed reply being received: idle (not slow) producers time out */
    class PendingStream {
      deadline: Deadline | undefined = undefined
      readonly kind: string
      readonly id: string
      /** the node producing the stream, known from its first frame */
      producer: string | undefined = undefined
      constructor(
        readonly requestId: number,
        readonly envelope: Envelope,
        readonly rpc: Rpc.AnyWithProps,
        readonly startedAt: number,
        readonly inbox: Inbox,
        readonly target: string | undefined,
        readonly timeoutMillis: number
      ) {
        this.kind = envelope.definition.kind
        this.id = envelope.id
      }
      resume(exit: Exit.Exit<unknown, unknown>): void {
        if (Exit.isFailure(exit)) {
          this.inbox.fail(Option.getOrElse(Cause.failureOption(exit.cause), () => Cause.squash(exit.cause)))
        } else this.inbox.end()
      }
      onExit(exit: WireExit): void {
        if (exit._tag === "Success") return this.inbox.end(exit.value as number)
        // the producer's own end: the elements it sent before it come first
        if (exit._tag === "Error" || zeroCopy) return this.inbox.fail(exit.error, true)
        const decoded = rpcCodec(this.kind, this.rpc).decodeError(exit.error)
        this.inbox.fail(Either.isLeft(decoded) ? decoded.left : decoded.right, true)
      }
      onDeadline(): void {
        this.deadline = undefined
        if (!pending.has(this.requestId)) return
        const idle = deadlines.now() - this.inbox.touched
        if (this.inbox.buffered > 0 || idle < this.timeoutMillis) {
          // the consumer is slow, or the producer spoke lately: not a timeout
          this.deadline = deadlines.add(Math.max(1, this.timeoutMillis - idle), this)
          return
        }
        pending.delete(this.requestId)
        sendInterrupt(this.kind, this.requestId)
        this.inbox.fail(timedOut(this.envelope, this.startedAt))
      }
    }

    const streamLocal = (manager: EntityManager, envelope: Envelope) =>
      Effect.gen(function*() {
        const timeoutMillis = timeoutOf(envelope)
        const startedAt = deadlines.now()
        const inbox: Inbox = new Inbox(
          WINDOW,
          (credit) => outbox.grant(credit),
          Either.right,
          brokenStream(envelope),
          () => deadlines.now()
        )
        const outbox = new Outbox(WINDOW, (seq, items) => inbox.offer(seq, items))
        const job = makeJob(envelope.tag, envelope.payload, envelope.headers ?? {}, (exit) => {
          stopWatching()
          if (exit._tag === "Success") inbox.end(exit.value as number)
          else inbox.fail(exit.error, true)
        })
        job.consume = (result) => pump(toStream(result), outbox)
        const stopWatching = watchIdle(inbox, timeoutMillis, () =>
          manager.unsafeCancel(job, () => inbox.fail(timedOut(envelope, startedAt))))
        manager.deliver(envelope.id, job)
        yield* Effect.addFinalizer(() =>
          Effect.suspend(() => {
            stopWatching()
            return job.state === "done" ? Effect.void : manager.cancel(job)
          })
        )
        return inbox.stream
      })

    const streamRemote = (subject: string, target: string | undefined, direct: string, envelope: Envelope) =>
      Effect.gen(function*() {
        const kind = envelope.definition.kind
        if (pending.size >= config.maxPendingAsks) {
          return yield* new MailboxFull({
            kind,
            id: envelope.id,
            capacity: config.maxPendingAsks,
            queue: "pending-requests"
          })
        }
        const requestId = ++nextRequestId
        const frame = requestFrame(envelope, requestId, false, true)
        if (Either.isLeft(frame)) return yield* frame.left
        const rpc = envelope.definition.rpcs.get(envelope.tag)!
        const codec = rpcCodec(kind, rpc)
        const inbox = new Inbox(
          WINDOW,
          (credit) => {
            if (entry.producer === undefined) return
            const ack: AckFrame = { _tag: "Ack", v: ProtocolVersion, source: nodeId, requestId, credit }
            send(`node.${entry.producer}`, ack)
          },
          zeroCopy ? Either.right : codec.items!.decode,
          brokenStream(envelope),
          () => deadlines.now()
        )
        const timeoutMillis = timeoutOf(envelope)
        const entry = new PendingStream(requestId, envelope, rpc, deadlines.now(), inbox, target, timeoutMillis)
        pending.set(requestId, entry)
        if (Number.isFinite(timeoutMillis)) entry.deadline = deadlines.add(timeoutMillis, entry)
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            if (forget(entry)) sendInterrupt(kind, requestId)
          })
        )
        if (codec.upload !== undefined && !zeroCopy) yield* Effect.forkScoped(uploadPump(requestId, envelope, codec))
        const error = transport.unsafePublish(subject, frame.right, {
          replyTo: noRespondersPrefix + requestId,
          fragmentTo: direct
        })
        if (error !== undefined) return yield* error
        return inbox.stream
      })

    const stream = (envelope: Envelope): Stream.Stream<unknown, unknown> => Stream.unwrapScoped(streamRouted(envelope))

    const streamRouted = (envelope: Envelope): Effect.Effect<Stream.Stream<unknown, unknown>, unknown, Scope.Scope> =>
      Effect.suspend((): Effect.Effect<Stream.Stream<unknown, unknown>, unknown, Scope.Scope> => {
        const target = route(envelope.definition, envelope.id)
        switch (target._tag) {
          case "Local":
            return streamLocal(target.manager, envelope)
          case "Remote":
            return transport.isConnected?.() === false
              ? afterReconnect(envelope, streamRouted)
              : streamRemote(target.subject, target.target, target.direct, envelope)
          case "Unavailable":
            return Effect.fail(target.error)
        }
      })

    /** streamed requests this node sends, by request id: credit comes from the handler's node */
    const uploads = new Map<number, { handler: string | undefined; readonly outbox: Outbox }>()

    /** sends the streamed field of a request as `Items` frames, as the handler grants credit */
    const uploadPump = (requestId: number, envelope: Envelope, codec: RpcCodec): Effect.Effect<void> => {
      const upload = codec.upload!
      const source = (envelope.payload as Record<string, unknown>)[upload.field] as Stream.Stream<unknown, unknown>
      const itemsFrame = (seq: number, items: ReadonlyArray<unknown>, end?: { failure?: string }): ItemsFrame => ({
        _tag: "Items",
        v: ProtocolVersion,
        source: nodeId,
        requestId,
        seq,
        items,
        upload: true,
        ...(end === undefined ? {} : { end: true }),
        ...(end?.failure === undefined ? {} : { failure: end.failure })
      })
      const state: { handler: string | undefined; readonly outbox: Outbox } = {
        handler: undefined,
        outbox: new Outbox(0, (seq, items) => {
          const encoded = upload.encode(items)
          if (Either.isLeft(encoded)) return encoded.left
          const subject = `node.${state.handler}`
          // our reply slot: a frame too large for the handler's node fails this call there
          return transport.unsafePublish(subject, itemsFrame(seq, encoded.right as ReadonlyArray<unknown>), {
            fragmentTo: subject,
            replyTo: noRespondersPrefix + requestId
          })
        })
      }
      uploads.set(requestId, state)
      return pump(source, state.outbox).pipe(
        Effect.matchCauseEffect({
          onSuccess: (frames) => Effect.sync(() => send(`node.${state.handler}`, itemsFrame(frames, [], {}))),
          onFailure: (cause) =>
            Cause.isInterruptedOnly(cause) || state.handler === undefined
              ? Effect.void
              : Effect.sync(() => {
                const error = Cause.squash(cause)
                const failure = error instanceof Error ? error.message : String(error)
                send(`node.${state.handler}`, itemsFrame(state.outbox.sent, [], { failure }))
              })
        }),
        Effect.ensuring(Effect.sync(() => uploads.delete(requestId)))
      )
    }

    /**
     * While the transport is down, nothing published would leave: a new remote call waits for
     * the reconnect (bounded by the transport's `reconnectWait` and the call's own timeout) and
     * is routed again, or fails with `TransportError` "disconnected". Never a silent timeout.
     */
    const afterReconnect = <A, E, R>(
      envelope: Envelope,
      then: (envelope: Envelope) => Effect.Effect<A, E, R>
    ): Effect.Effect<A, E | TransportError, R> => {
      const timeoutMillis = timeoutOf(envelope)
      const startedAt = deadlines.now()
      const waited = transport.awaitConnected === undefined
        ? Effect.fail(new TransportError({ reason: "disconnected" }))
        : transport.awaitConnected(timeoutMillis)
      return Effect.matchEffect(waited, {
        onFailure: (error) => {
          Metrics.askRejected(envelope.definition.kind)
          return Effect.fail(error)
        },
        onSuccess: () => {
          if (!Number.isFinite(timeoutMillis)) return then(envelope)
          const left = Math.max(1, timeoutMillis - (deadlines.now() - startedAt))
          return then({ ...envelope, timeout: Duration.millis(left) })
        }
      })
    }

    const askOnce = (envelope: Envelope, attempt: number): Effect.Effect<unknown, unknown> =>
      Effect.suspend(() => askRouted(envelope, attempt))

    const askRouted = (envelope: Envelope, attempt: number): Effect.Effect<unknown, unknown> => {
      const target = route(envelope.definition, envelope.id)
      switch (target._tag) {
        case "Local":
          return askLocal(target.manager, envelope)
        case "Remote": {
          if (transport.isConnected?.() === false) {
            return afterReconnect(envelope, (next) => askRouted(next, attempt))
          }
          // only a serializing transport sends a streamed field apart from its request
          const codec = zeroCopy
            ? undefined
            : rpcCodec(envelope.definition.kind, envelope.definition.rpcs.get(envelope.tag)!)
          const remote = codec?.upload !== undefined
            ? Effect.scoped(Effect.suspend(() => {
              const requestId = ++nextRequestId
              return Effect.zipRight(
                Effect.forkScoped(uploadPump(requestId, envelope, codec)),
                askRemote(target.subject, target.target, target.direct, envelope, requestId)
              )
            }))
            : askRemote(target.subject, target.target, target.direct, envelope)
          // "no responders" proves the request reached nobody: after the dead owner is
          // suspected, the actor has a new owner, and sending again cannot run it twice
          return attempt === 0 && target.target !== undefined
            ? Effect.catchIf(remote, (error) => noResponders.has(error as object), (error) =>
              askOnce({
                ...envelope,
                // the new owner may not have noticed yet: tell it what we proved
                headers: { ...envelope.headers, [UNREACHABLE_HEADER]: noResponders.get(error as object)! }
              }, 1))
            : remote
        }
        case "Unavailable":
          Metrics.askRejected(envelope.definition.kind)
          return Effect.fail(target.error)
      }
    }

    const askFirst = (envelope: Envelope): Effect.Effect<unknown, unknown> => askRouted(envelope, 0)
    // traced inside a span, and every ask when `tracing` says so: `traceparent` travels with the request
    const traceAll = config.tracing === true
    const traceUnderTracer = config.tracing === "auto"
    const ask = (envelope: Envelope): Effect.Effect<unknown, unknown> =>
      Effect.withFiberRuntime((fiber) =>
        traceAll || Metrics.hasParentSpan(fiber) || (traceUnderTracer && !Metrics.isBuiltInTracer(fiber.currentTracer))
          ? Metrics.tracedAsk(envelope, askFirst)
          : askFirst(envelope)
      )

    const logTellOutcome = (envelope: Envelope) => (exit: JobExit) => {
      if (exit._tag !== "Success") {
        fork(Effect.logWarning(`tell ${envelope.definition.kind}/${envelope.id}.${envelope.tag} failed`, exit.error))
      }
    }

    const tell = (envelope: Envelope): Effect.Effect<void, TellError> =>
      Effect.suspend((): Effect.Effect<void, TellError> => {
        const codec = rpcCodec(envelope.definition.kind, envelope.definition.rpcs.get(envelope.tag)!)
        if (codec.upload !== undefined) {
          return Effect.fail(
            new EncodeError({
              what: `${envelope.definition.kind}.${envelope.tag}`,
              issue: "a request with a streamed field needs an ask (its stream flows while the handler runs)"
            })
          )
        }
        const target = route(envelope.definition, envelope.id)
        if (target._tag === "Unavailable") return Effect.fail(target.error)
        if (target._tag === "Remote") {
          const frame = requestFrame(envelope, ++nextRequestId, true)
          return Either.isLeft(frame)
            ? Effect.fail(frame.left)
            : transport.publish(target.subject, frame.right, { fragmentTo: target.direct })
        }
        // a rejection is reported synchronously by `deliver`; anything later is the handler's
        let delivering = true
        let rejected: TellError | undefined
        const log = logTellOutcome(envelope)
        const job = makeJob(envelope.tag, envelope.payload, envelope.headers ?? {}, (exit) => {
          if (
            delivering && exit._tag === "Error" &&
            (exit.error._tag === "MailboxFull" || exit.error._tag === "ActorStopped" ||
              exit.error._tag === "DecodeError")
          ) {
            rejected = exit.error
          } else {
            log(exit)
          }
        })
        target.manager.deliver(envelope.id, job)
        delivering = false
        return rejected === undefined ? Effect.void : Effect.fail(rejected)
      })

    // ---- the receiving side ------------------------------------------------------------------

    const encodeExit = (manager: EntityManager, tag: string, exit: JobExit): WireExit => {
      if (zeroCopy || exit._tag === "Error") return exit
      const codec = rpcCodec(manager.kind, manager.entity.definition.rpcs.get(tag)!)
      const encoded = exit._tag === "Success" ? codec.encodeSuccess(exit.value) : codec.encodeError(exit.error)
      if (Either.isLeft(encoded)) return { _tag: "Error", error: encoded.left }
      return exit._tag === "Success"
        ? { _tag: "Success", value: encoded.right }
        : { _tag: "Failure", error: encoded.right }
    }

    const exitFrame = (requestId: number, exit: WireExit): ExitFrame => ({
      _tag: "Exit",
      v: ProtocolVersion,
      source: nodeId,
      requestId,
      exit
    })

    // failed tells are logged at most once a second (anyone on the broker can send tells)
    let failedTells = 0
    let failedTellLoggedAt = -Infinity
    function replyTo(frame: RequestFrame, exit: WireExit): void {
      if (frame.oneWay === true) {
        if (exit._tag === "Success") return
        failedTells++
        const now = clock.unsafeCurrentTimeMillis()
        if (now - failedTellLoggedAt < 1000) return
        const more = failedTells - 1
        failedTells = 0
        failedTellLoggedAt = now
        fork(Effect.logWarning(
          `tell ${frame.kind}/${printable(frame.id)}.${printable(frame.tag)} from ${printable(frame.source)} failed${
            more > 0 ? ` (and ${more} more since the last report)` : ""
          }`,
          exit
        ))
        return
      }
      // the codec let only a subject token through; this guards the subject we build from it
      if (!Subject.isToken(frame.source)) return malformedFrames.unsafeUpdate(1, [])
      const subject = `node.${frame.source}`
      const out = exitFrame(frame.requestId, exit)
      const error = transport.unsafePublish(subject, out, { fragmentTo: subject })
      if (error === undefined) return
      // the reply cannot leave (over the size limit, not encodable): the caller gets that error,
      // in a frame that fits, instead of waiting for its timeout
      const told = (exit._tag !== "Error" || exit.error !== error) &&
        transport.unsafePublish(subject, { ...out, exit: { _tag: "Error", error } }, { fragmentTo: subject }) ===
          undefined
      fork(Effect.logWarning(
        told
          ? `the reply of ${frame.kind}/${printable(frame.id)}.${
            printable(frame.tag)
          } to ${frame.source} could not be sent; the caller was told why`
          : `could not publish Exit frame to ${subject}`,
        error
      ))
    }

    const onRequest = (frame: RequestFrame): void => {
      // the codec let only subject tokens through; these become subjects below
      if (!Subject.isToken(frame.source) || !Subject.isToken(frame.kind)) return malformedFrames.unsafeUpdate(1, [])
      const unreachable = frame.headers[UNREACHABLE_HEADER]
      // a claim about a node we know of, never a name that would grow our tables
      if (
        unreachable !== undefined && unreachable !== nodeId && Subject.isToken(unreachable) &&
        discovery.unsafeState().members.some((m) => m.nodeId === unreachable)
      ) proveUnreachable(unreachable)
      const manager = managers.get(frame.kind)
      if (manager === undefined || closed) {
        return replyTo(frame, {
          _tag: "Error",
          error: new ActorNotFound({ kind: frame.kind, id: frame.id, node: nodeId })
        })
      }
      if (manager.isActor) {
        // placement: the owner may have changed since the sender looked; pass it on (bounded)
        const target = owner(servingNodes(frame.kind), frame.id)
        const hops = frame.hops ?? 0
        if (target !== undefined && target !== nodeId && hops < MAX_FORWARDS) {
          const forwardedFrame: RequestFrame = { ...frame, hops: hops + 1 }
          let watch: string | undefined
          if (frame.oneWay !== true && forwarded.size < MAX_TRACKED_FORWARDS) {
            // "no responders" comes back to us, the publisher: then we handle it ourselves
            const key = `${frame.source}.${frame.requestId}`
            const deadline = deadlines.add(FORWARD_WATCH_MILLIS, () => forwarded.delete(key))
            forwarded.set(key, { frame: forwardedFrame, target, deadline })
            watch = `${forwardPrefix}${key}`
          }
          const error = transport.unsafePublish(
            `node.${target}`,
            forwardedFrame,
            watch ? { replyTo: watch } : undefined
          )
          return error === undefined ? undefined : replyTo(frame, { _tag: "Error", error })
        }
      }
      const key = `${frame.source}:${frame.requestId}`
      const rpc = manager.entity.definition.rpcs.get(frame.tag)
      const codec = rpc === undefined ? undefined : rpcCodec(frame.kind, rpc)
      // a caller that knows the Rpc only by name (the CLI, a gateway route by name) may expect
      // the wrong kind of reply: it gets a StreamError saying so, not a frame count or a stream
      // that breaks on its first frame
      // a one-way message to a streaming Rpc is refused the same way (nothing would read the
      // stream; a typed client cannot send one)
      if (codec !== undefined && (frame.stream === true) !== (codec.items !== undefined)) {
        return replyTo(frame, {
          _tag: "Error",
          error: new StreamError({
            kind: frame.kind,
            id: frame.id,
            tag: frame.tag,
            reason: codec.items !== undefined
              ? "this Rpc replies with a stream: call it as a stream"
              : "this Rpc replies once: call it with ask, not as a stream"
          })
        })
      }
      let payload = frame.body
      let upload: InboundUpload | undefined
      if (!zeroCopy && codec !== undefined) {
        let body = frame.body
        if (codec.upload !== undefined && frame.oneWay !== true) {
          upload = receiveUpload(frame, key, codec.upload.decode)
          body = { ...(body as object), [codec.upload.field]: upload.inbox.stream }
        }
        const decoded = codec.decodePayload(body)
        if (Either.isLeft(decoded)) {
          upload?.close()
          return replyTo(frame, { _tag: "Error", error: decoded.left })
        }
        payload = decoded.right
      }
      let outbox: Outbox | undefined
      /** what this request holds, released once its job is done or cancelled */
      const release = () => {
        inbound.delete(key)
        upload?.close()
        if (outbox !== undefined) outbound.delete(key)
      }
      const job = makeJob(frame.tag, payload, frame.headers, (exit) => {
        release()
        // the stream could not be sent: that is the transport's error, not the handler's
        if (
          outbox !== undefined && exit._tag === "Failure" && outbox.error !== undefined && exit.error === outbox.error
        ) {
          return replyTo(frame, { _tag: "Error", error: outbox.error as TransportError })
        }
        replyTo(frame, encodeExit(manager, frame.tag, exit))
      }, !zeroCopy)
      // the caller gave up (an Interrupt, or its node went away): no reply, but the same release
      job.onCancelled = release
      if (codec?.items !== undefined && frame.oneWay !== true) {
        const itemsCodec = codec.items
        const subject = `node.${frame.source}`
        // the consumer's reply slot: a frame too large for the consumer fails its stream there
        const itemsOptions = { fragmentTo: subject, replyTo: replySlotsOf(frame.source) + frame.requestId }
        const producer = new Outbox(WINDOW, (seq, items) => {
          let body: unknown = items
          if (!zeroCopy) {
            const encoded = itemsCodec.encode(items)
            if (Either.isLeft(encoded)) return encoded.left
            body = encoded.right
          }
          const out: ItemsFrame = {
            _tag: "Items",
            v: ProtocolVersion,
            source: nodeId,
            requestId: frame.requestId,
            seq,
            items: body as ReadonlyArray<unknown>
          }
          return transport.unsafePublish(subject, out, itemsOptions)
        })
        outbox = producer
        outbound.set(key, { outbox: producer, consumer: frame.source, manager, job })
        job.consume = (result) => pump(toStream(result), producer)
      }
      if (frame.oneWay !== true) inbound.set(key, { manager, job })
      manager.deliver(frame.id, job)
    }

    /** streamed replies this node produces, by `source:requestId` of their request */
    const outbound = new Map<
      string,
      { readonly outbox: Outbox; readonly consumer: string; readonly manager: EntityManager; readonly job: Job }
    >()
    /** streamed requests this node receives, by `source:requestId` */
    const inboundUploads = new Map<string, InboundUpload>()

    interface InboundUpload {
      readonly inbox: Inbox
      readonly source: string
      readonly broken: (reason: string) => StreamError
      readonly close: () => void
    }

    /** the handler's side of a streamed request: grants the caller credit as the handler pulls */
    const receiveUpload = (
      frame: RequestFrame,
      key: string,
      decode: (items: ReadonlyArray<unknown>) => Either.Either<ReadonlyArray<unknown>, DecodeError>
    ): InboundUpload => {
      const broken = (reason: string) => new StreamError({ kind: frame.kind, id: frame.id, tag: frame.tag, reason })
      const grant = (credit: number) => {
        const ack: AckFrame = {
          _tag: "Ack",
          v: ProtocolVersion,
          source: nodeId,
          requestId: frame.requestId,
          credit,
          upload: true
        }
        send(`node.${frame.source}`, ack)
      }
      const inbox = new Inbox(WINDOW, grant, decode, broken, () => deadlines.now())
      // a caller that goes silent (it died, or lost its connection) fails the handler's stream
      const stopWatching = watchIdle(
        inbox,
        askTimeoutMillis,
        (idle) => inbox.fail(broken(`the caller ${frame.source} sent nothing for ${idle} ms`))
      )
      const upload: InboundUpload = {
        inbox,
        source: frame.source,
        broken,
        close: () => {
          stopWatching()
          if (inboundUploads.get(key) === upload) inboundUploads.delete(key)
          inbox.fail(broken("the handler finished"))
        }
      }
      inboundUploads.set(key, upload)
      grant(WINDOW)
      return upload
    }

    const onItems = (frame: ItemsFrame): void => {
      // the producer's id becomes the subject of our credit
      if (!Subject.isToken(frame.source)) return malformedFrames.unsafeUpdate(1, [])
      if (frame.upload === true) {
        const upload = inboundUploads.get(`${frame.source}:${frame.requestId}`)
        if (upload === undefined) return
        if (frame.failure !== undefined) {
          return upload.inbox.fail(upload.broken(`the caller's stream failed: ${frame.failure}`))
        }
        return frame.end === true ? upload.inbox.end(frame.seq) : upload.inbox.offer(frame.seq, frame.items)
      }
      const entry = pending.get(frame.requestId)
      if (!(entry instanceof PendingStream)) return
      entry.producer ??= frame.source
      if (entry.producer === frame.source) entry.inbox.offer(frame.seq, frame.items)
    }

    const onAck = (frame: AckFrame): void => {
      // the handler's id becomes the subject of our upload's frames
      if (!Subject.isToken(frame.source)) return malformedFrames.unsafeUpdate(1, [])
      if (frame.upload === true) {
        const upload = uploads.get(frame.requestId)
        if (upload === undefined) return
        upload.handler ??= frame.source
        if (upload.handler === frame.source) upload.outbox.grant(frame.credit)
        return
      }
      outbound.get(`${frame.source}:${frame.requestId}`)?.outbox.grant(frame.credit)
    }

    const onExit = (frame: ExitFrame): void => {
      const entry = pending.get(frame.requestId)
      if (entry === undefined) return // timed out or interrupted meanwhile
      pending.delete(frame.requestId)
      if (entry.deadline !== undefined) deadlines.remove(entry.deadline)
      if (entry instanceof PendingStream) return entry.onExit(frame.exit)
      const exit = frame.exit
      let result: Exit.Exit<unknown, unknown>
      if (exit._tag === "Error") {
        result = Exit.fail(exit.error)
      } else if (zeroCopy) {
        result = exit._tag === "Success" ? Exit.succeed(exit.value) : Exit.fail(exit.error)
      } else {
        const codec = rpcCodec(entry.kind, entry.rpc)
        const decoded = exit._tag === "Success" ? codec.decodeSuccess(exit.value) : codec.decodeError(exit.error)
        result = Either.isLeft(decoded)
          ? Exit.fail(decoded.left)
          : exit._tag === "Success"
          ? Exit.succeed(decoded.right)
          : Exit.fail(decoded.right)
      }
      entry.resume(result)
    }

    const onInterrupt = (frame: InterruptFrame): void => {
      const key = `${frame.source}:${frame.requestId}`
      const entry = inbound.get(key)
      if (entry === undefined) return
      inbound.delete(key)
      fork(entry.manager.cancel(entry.job))
    }

    const onFrame = (frame: Frame): void => {
      switch (frame._tag) {
        case "Request":
          return onRequest(frame)
        case "Exit":
          return onExit(frame)
        case "Interrupt":
          return onInterrupt(frame)
        case "Items":
          return onItems(frame)
        case "Ack":
          return onAck(frame)
        default:
          return
      }
    }

    // ---- membership and lifecycle ------------------------------------------------------------

    /**
     * A frame that arrived too large for this node was dropped by the transport. A request's
     * caller, or the caller uploading to this node (reply slot `node.<caller>.nr.<requestId>`),
     * gets `PayloadTooLarge` at once rather than waiting for its timeout; a streamed reply too
     * large for us (our own reply slot) fails our stream at once.
     */
    const onTooLarge = (error: PayloadTooLarge, replyTo: string): void => {
      const slot = REPLY_SLOT.exec(replyTo)
      if (slot === null) return
      const out = exitFrame(Number(slot[2]), { _tag: "Error", error })
      if (slot[1] === nodeId) onExit(out)
      else send(`node.${slot[1]}`, out)
    }

    yield* transport.subscribe(`node.${nodeId}`, onFrame, { onTooLarge, node: nodeId })
    // "no responders" for a request arrives on its reply slot, at once
    yield* transport.subscribe(`${noRespondersPrefix}*`, () => {}, {
      onNoResponders: (subject) => {
        const requestId = Number(subject.slice(noRespondersPrefix.length))
        const entry = pending.get(requestId)
        if (entry === undefined) return
        const unreachable = entry.target
        if (unreachable !== undefined) proveUnreachable(unreachable)
        const error = new NoAvailableNode({ kind: entry.kind, id: entry.id })
        if (unreachable !== undefined) noResponders.set(error, unreachable)
        failPending(error, requestId)
      }
    })
    yield* transport.subscribe(`${forwardPrefix}>`, () => {}, {
      onNoResponders: (subject) => {
        const key = subject.slice(forwardPrefix.length)
        const entry = forwarded.get(key)
        if (entry === undefined) return
        forwarded.delete(key)
        deadlines.remove(entry.deadline)
        proveUnreachable(entry.target)
        onRequest(entry.frame) // routed again, without the node that is gone
      }
    })
    yield* transport.watch((event) => {
      if (event === "disconnected") {
        failPending(new TransportError({ reason: `node ${nodeId} lost its connection while the ask was pending` }))
      }
    })
    const startedAt = clock.unsafeCurrentTimeMillis()
    yield* discovery.announce({
      nodeId,
      name: config.name,
      incarnation,
      address: config.address ?? `${transport.name}://${nodeId}`,
      kinds: [],
      isServing: true,
      startedAt
    })
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
        failPending(new TransportError({ reason: `node ${nodeId} shut down while the ask was pending` }))
      })
    )

    // when membership changes, actors this node no longer owns move (passivate here, activate
    // on their new owner at their next message)
    const rebalance = () => {
      for (const manager of managers.values()) {
        if (!manager.isActor) continue
        const nodes = servingNodes(manager.kind)
        manager.evict((id) => {
          const target = owner(nodes, id)
          return target !== undefined && target !== nodeId
        })
      }
    }
    // asks waiting on a node that is no longer alive would only time out: fail them now
    // (a node found gone by "no responders" is left to that mechanism: each request that reached
    // no one gets its own "no responders", and may be sent again; a request it may have received
    // fails once the node is removed)
    const abandonLost = () => {
      const members = discovery.unsafeState().members
      const alive = new Set(members.filter((m) => m.status === "alive").map((m) => m.nodeId))
      const present = new Set(members.map((m) => m.nodeId))
      for (const unreachable of provenUnreachable) if (!present.has(unreachable)) provenUnreachable.delete(unreachable)
      for (const upload of inboundUploads.values()) {
        // an absent caller may just use another registry: its silence is judged by the idle deadline
        if (present.has(upload.source) && !alive.has(upload.source)) {
          upload.inbox.fail(
            upload.broken(`the caller ${upload.source} went away`)
          )
        }
      }
      // a producer waiting for credit from a consumer that is gone would wait forever
      for (const stream of outbound.values()) {
        if (present.has(stream.consumer) && !alive.has(stream.consumer)) fork(stream.manager.cancel(stream.job))
      }
      for (const [requestId, entry] of pending) {
        // a service's request may go to any instance: its node is known once it answers (the
        // producer of a streamed reply, the handler granting credit for an upload), and judged
        // only if listed (an absent one may just use another registry)
        const answering = entry instanceof PendingStream ? entry.producer : uploads.get(requestId)?.handler
        const target = entry.target ?? (answering !== undefined && present.has(answering) ? answering : undefined)
        if (target !== undefined && !alive.has(target) && !(present.has(target) && provenUnreachable.has(target))) {
          failPending(
            new TransportError({ reason: `node ${target} stopped answering while the ask was pending` }),
            requestId
          )
        }
      }
    }
    yield* Effect.forkScoped(Stream.runForEach(discovery.changes, () =>
      Effect.sync(() => {
        rebalance()
        abandonLost()
      })))

    const register = (entity: EntityDefinition): Effect.Effect<void, never, Scope.Scope> =>
      Effect.gen(function*() {
        const kind = entity.definition.kind
        if (managers.has(kind)) return yield* Effect.dieMessage(`kind "${kind}" is already hosted on node ${nodeId}`)
        const manager = new EntityManager(entity, { nodeId, runtime: yield* Effect.runtime<never>(), clock })
        managers.set(kind, manager)
        yield* Effect.orDie(transport.subscribe(`actor.${kind}`, onFrame, { queue: kind, onTooLarge }))
        yield* Effect.orDie(transport.subscribe(`interrupt.${kind}`, onFrame))
        yield* discovery.update(nodeId, { kinds: [...managers.keys()] })
        yield* Effect.addFinalizer(() =>
          Effect.gen(function*() {
            // stop being routed to first, then drain what was accepted
            yield* discovery.update(nodeId, { kinds: [...managers.keys()].filter((k) => k !== kind) })
            yield* manager.shutdown(config.shutdownTimeout)
            managers.delete(kind)
          })
        )
      })

    const system: ActorSystemShape = { nodeId, register, ask, stream, tell }
    const topicBus = yield* Topics.make(nodeId, transport, routes)

    return {
      nodeId,
      name: config.name,
      incarnation,
      system,
      topics: topicBus,
      kinds: () => [...managers.keys()],
      activeInstances: (kind) => managers.get(kind)?.size ?? 0,
      isActive: (kind, id) => managers.get(kind)?.isActive(id) ?? false,
      pendingAsks: () => pending.size,
      openStreams: () => outbound.size + inboundUploads.size + uploads.size,
      setServing: (serving) => discovery.update(nodeId, { isServing: serving })
    }
  })
