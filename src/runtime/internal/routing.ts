/**
 * Routing: where an ask, stream or tell goes. A hosted kind on a zero-copy transport is served
 * here; an actor goes to its owner by rendezvous placement (`placement.ts`) over the kind's
 * serving nodes (cached per discovery state); a service goes to its queue group.
 *
 * @internal
 */
import type { KindDefinition } from "../../actors/ActorSystem.ts"
import { servingMembers } from "../../layers/Discovery.ts"
import { ActorNotFound, NoAvailableNode } from "../../schema/Errors.ts"
import type { EntityManager } from "./entity.ts"
import type { NodeState } from "./nodeState.ts"
import { owner } from "./placement.ts"
import * as Subjects from "../../layers/internal/subjects.ts"

/** @internal */
export type Route =
  | { readonly _tag: "Local"; readonly manager: EntityManager }
  | {
    readonly _tag: "Remote"
    readonly subject: string
    readonly target: string | undefined
    /** the direct subject of one receiver, for the pieces of a large request */
    readonly direct: string
  }
  | { readonly _tag: "Unavailable"; readonly error: ActorNotFound | NoAvailableNode }

/**
 * The ids of the nodes serving `kind`, computed once per discovery state.
 *
 * @internal
 */
export const servingNodes = (state: NodeState, kind: string): ReadonlyArray<string> => {
  const members = state.discovery.unsafeState()
  if (members !== state.routedState) {
    state.routedState = members
    state.servingByKind.clear()
  }
  let nodes = state.servingByKind.get(kind)
  if (nodes === undefined) {
    nodes = servingMembers(members, kind).map((m) => m.nodeId)
    state.servingByKind.set(kind, nodes)
  }
  return nodes
}

/**
 * The node that owns actor `id` of `kind` now, if any serves it.
 *
 * @internal
 */
export const ownerOf = (state: NodeState, kind: string, id: string): string | undefined =>
  owner(servingNodes(state, kind), id)

const unavailable = (state: NodeState, kind: string, id: string): Route => {
  const hosted = state.discovery.unsafeState().members.some((m) => m.kinds.includes(kind))
  return {
    _tag: "Unavailable",
    error: hosted ? new NoAvailableNode({ kind, id }) : new ActorNotFound({ kind, id })
  }
}

/**
 * Where a call to `(definition, id)` goes.
 *
 * @internal
 */
export const route = (state: NodeState, definition: KindDefinition, id: string): Route => {
  const local = state.managers.get(definition.kind)
  if (definition._tag === "Service") {
    if (local !== undefined && state.zeroCopy) return { _tag: "Local", manager: local }
    const nodes = servingNodes(state, definition.kind)
    return nodes.length > 0
      ? {
        _tag: "Remote",
        subject: Subjects.actor(definition.kind),
        target: undefined,
        direct: Subjects.node(nodes[(state.nextRequestId + 1) % nodes.length]!)
      }
      : unavailable(state, definition.kind, id)
  }
  const target = ownerOf(state, definition.kind, id)
  if (target === undefined) {
    return local !== undefined && state.zeroCopy
      ? { _tag: "Local", manager: local }
      : unavailable(state, definition.kind, id)
  }
  if (target === state.nodeId && local !== undefined && state.zeroCopy) return { _tag: "Local", manager: local }
  const direct = Subjects.node(target)
  return { _tag: "Remote", subject: direct, target, direct }
}
