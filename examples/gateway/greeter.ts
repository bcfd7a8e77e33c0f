/**
 * The Greeter actor, as a module a config file can load (`modules = ["./greeter.ts"]`): it
 * exports its definition and, as `layer`, the Layer that hosts it.
 */
import { Rpc } from "@effect/rpc"
import { Effect, Ref, Schema } from "effect"
import { Actor } from "../../src/index.ts"

export class Shy extends Schema.TaggedError<Shy>()("Shy", { name: Schema.String }) {}

export const Greeter = Actor.make("Greeter", [
  Rpc.make("Hello", {
    payload: { name: Schema.String, greeting: Schema.optional(Schema.String) },
    success: Schema.Struct({ message: Schema.String, count: Schema.Number, node: Schema.String }),
    error: Shy
  })
])

export const layer = Actor.toLayer(
  Greeter,
  Effect.gen(function*() {
    const { id } = yield* Actor.CurrentAddress
    const count = yield* Ref.make(0) // per name: each name is its own actor
    const node = process.env["TROUPE_NODE_LABEL"] ?? "worker"
    return {
      Hello: ({ greeting, name }) =>
        name === "nobody"
          ? Effect.fail(new Shy({ name }))
          : Effect.map(Ref.updateAndGet(count, (n) => n + 1), (n) => ({
            message: `${greeting ?? "Hello"}, ${name}!`,
            count: n,
            node: `${node} (${id})`
          }))
    }
  })
)
