/**
 * The node's calls as the `ActorSystem` makes them: ask (traced when asked to, routed, sent
 * once more after "no responders" proved its target gone), stream and tell, each routed to a
 * local manager or over the transport, waiting for a reconnect while it is down.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Envelope } from "../../actors/ActorSystem.ts"
import { EncodeError, type TellError } from "../../schema/Errors.ts"
import { afterReconnect, askLocal, askRemote, requestFrame } from "./caller.ts"
import { streamLocal, streamRemote } from "./callerStream.ts"
import { uploadPump } from "./callerUpload.ts"
import { type EntityManager, type JobExit, makeJob } from "./entity.ts"
import * as Metrics from "./metrics.ts"
import { type NodeState, UNREACHABLE_HEADER } from "./nodeState.ts"
import { rpcCodec } from "./rpcCodec.ts"
import { route } from "./routing.ts"

/** a remote ask, its streamed field (if any) sent alongside */
const askRemoteWithUpload = (
  state: NodeState,
  target: { readonly subject: string; readonly target: string | undefined; readonly direct: string },
  envelope: Envelope
): Effect.Effect<unknown, unknown> => {
  // only a serializing transport sends a streamed field apart from its request
  const codec = state.zeroCopy
    ? undefined
    : rpcCodec(envelope.definition.kind, envelope.definition.rpcs.get(envelope.tag)!)
  return codec?.upload !== undefined
    ? Effect.scoped(Effect.suspend(() => {
      const requestId = ++state.nextRequestId
      return Effect.zipRight(
        Effect.forkScoped(uploadPump(state, requestId, envelope, codec)),
        askRemote(state, target.subject, target.target, target.direct, envelope, requestId)
      )
    }))
    : askRemote(state, target.subject, target.target, target.direct, envelope)
}

/** how often an ask that reached no one ("no responders" from its owner) is sent to the next owner */
const MAX_RESENDS = 3

/** the `troupe-unreachable` header: the nodes proved gone, space-separated */
const withUnreachable = (previous: string | undefined, node: string): string =>
  previous === undefined || previous === "" ? node : `${previous} ${node}`

const askRouted = (state: NodeState, envelope: Envelope, attempt: number): Effect.Effect<unknown, unknown> => {
  const target = route(state, envelope.definition, envelope.id)
  switch (target._tag) {
    case "Local":
      return askLocal(state, target.manager, envelope)
    case "Remote": {
      if (state.transport.isConnected?.() === false) {
        return afterReconnect(state, envelope, (next) => askRouted(state, next, attempt))
      }
      const remote = askRemoteWithUpload(state, target, envelope)
      // "no responders" proves the request reached nobody: after the dead owner is
      // suspected, the actor has a new owner, and sending again cannot run it twice (a few
      // times over: each owner found gone is one more member that never answered)
      return attempt < MAX_RESENDS && target.target !== undefined
        ? Effect.catchIf(
          remote,
          (error) => state.noResponders.has(error as object),
          (error) =>
            Effect.suspend(() =>
              askRouted(state, {
                ...envelope,
                // the new owner may not have noticed yet: tell it every node we proved gone
                headers: {
                  ...envelope.headers,
                  [UNREACHABLE_HEADER]: withUnreachable(
                    envelope.headers?.[UNREACHABLE_HEADER],
                    state.noResponders.get(error as object)!
                  )
                }
              }, attempt + 1)
            )
        )
        : remote
    }
    case "Unavailable":
      Metrics.askRejected(envelope.definition.kind)
      return Effect.fail(target.error)
  }
}

/**
 * The node's `ask`: traced inside a span, and every ask when `tracing` says so (`traceparent`
 * then travels with the request).
 *
 * @internal
 */
export const makeAsk = (state: NodeState): (envelope: Envelope) => Effect.Effect<unknown, unknown> => {
  const askFirst = (envelope: Envelope): Effect.Effect<unknown, unknown> => askRouted(state, envelope, 0)
  const traceAll = state.config.tracing === true
  const traceUnderTracer = state.config.tracing === "auto"
  return (envelope) =>
    Effect.withFiberRuntime((fiber) =>
      traceAll || Metrics.hasParentSpan(fiber) || (traceUnderTracer && !Metrics.isBuiltInTracer(fiber.currentTracer))
        ? Metrics.tracedAsk(envelope, askFirst)
        : askFirst(envelope)
    )
}

const streamRouted = (
  state: NodeState,
  envelope: Envelope
): Effect.Effect<Stream.Stream<unknown, unknown>, unknown, Scope.Scope> =>
  Effect.suspend((): Effect.Effect<Stream.Stream<unknown, unknown>, unknown, Scope.Scope> => {
    const target = route(state, envelope.definition, envelope.id)
    switch (target._tag) {
      case "Local":
        return streamLocal(state, target.manager, envelope)
      case "Remote":
        return state.transport.isConnected?.() === false
          ? afterReconnect(state, envelope, (next) => streamRouted(state, next))
          : streamRemote(state, target.subject, target.target, target.direct, envelope)
      case "Unavailable":
        return Effect.fail(target.error)
    }
  })

/**
 * The node's `stream`: a streamed reply, routed when it is run.
 *
 * @internal
 */
export const stream = (state: NodeState, envelope: Envelope): Stream.Stream<unknown, unknown> =>
  Stream.unwrapScoped(streamRouted(state, envelope))

/** a tell to a manager hosted here: a rejection is reported synchronously by `deliver` */
const tellLocal = (state: NodeState, manager: EntityManager, envelope: Envelope): Effect.Effect<void, TellError> => {
  let delivering = true
  let rejected: TellError | undefined
  const job = makeJob(envelope.tag, envelope.payload, envelope.headers ?? {}, (exit: JobExit) => {
    if (
      delivering && exit._tag === "Error" &&
      (exit.error._tag === "MailboxFull" || exit.error._tag === "ActorStopped" ||
        exit.error._tag === "DecodeError")
    ) {
      rejected = exit.error
    } else if (exit._tag !== "Success") {
      // anything later is the handler's
      state.fork(
        Effect.logWarning(`tell ${envelope.definition.kind}/${envelope.id}.${envelope.tag} failed`, exit.error)
      )
    }
  })
  manager.deliver(envelope.id, job)
  delivering = false
  return rejected === undefined ? Effect.void : Effect.fail(rejected)
}

/**
 * The node's `tell`: one-way, no reply.
 *
 * @internal
 */
export const tell = (state: NodeState, envelope: Envelope): Effect.Effect<void, TellError> =>
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
    const target = route(state, envelope.definition, envelope.id)
    if (target._tag === "Unavailable") return Effect.fail(target.error)
    if (target._tag === "Remote") {
      const frame = requestFrame(state, envelope, ++state.nextRequestId, true)
      return Either.isLeft(frame)
        ? Effect.fail(frame.left)
        : state.transport.publish(target.subject, frame.right, { fragmentTo: target.direct })
    }
    return tellLocal(state, target.manager, envelope)
  })
