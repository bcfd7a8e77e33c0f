/**
 * The making of a kind (`Actor.make`, `Actor.service`): its name checked as a subject token and
 * its Rpcs indexed by tag, each declared once.
 *
 * @internal
 */
import type * as Rpc from "@effect/rpc/Rpc"
import * as Subject from "../../layers/Subject.ts"
import type * as Actor from "../Actor.ts"

/** @internal */
export const TypeId: Actor.TypeId = Symbol.for("troupe/Actor") as Actor.TypeId

/** @internal */
export const makeKind = <Tag extends "Actor" | "Service">(
  _tag: Tag,
  kind: string,
  rpcs: ReadonlyArray<Rpc.Any>
): Actor.Kind<Tag, string, Rpc.Any> => {
  if (!Subject.isToken(kind)) {
    throw new TypeError(`kind "${kind}" must match [A-Za-z0-9_-]{1,255} (it becomes a subject token)`)
  }
  const map = new Map<string, Rpc.AnyWithProps>()
  for (const rpc of rpcs as ReadonlyArray<Rpc.Any> as ReadonlyArray<unknown> as ReadonlyArray<Rpc.AnyWithProps>) {
    if (map.has(rpc._tag)) throw new TypeError(`kind "${kind}" declares "${rpc._tag}" twice`)
    map.set(rpc._tag, rpc)
  }
  return { [TypeId]: { _Rpcs: (_: never) => _ }, _tag, kind, rpcs: map }
}
