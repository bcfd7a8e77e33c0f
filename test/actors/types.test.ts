/**
 * Type-level checks (enforced by `tsc --noEmit` in CI) plus the runtime facts they rest on.
 */
import { Rpc } from "@effect/rpc"
import { describe, expect, expectTypeOf, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Actor from "../../src/actors/Actor.ts"
import type { AskError } from "../../src/schema/Errors.ts"
import * as Node from "../../src/runtime/Node.ts"

class Nope extends Schema.TaggedError<Nope>()("Nope", {}) {}
const Echo = Actor.service("Echo", [
  Rpc.make("Inc", { payload: { n: Schema.Number }, success: Schema.Number }),
  Rpc.make("Get", { success: Schema.Number, error: Nope })
])

describe("types", () => {
  it.scoped("plain-object handlers are typed from the Rpcs, and so is the client", () =>
    Effect.gen(function*() {
      const EchoLive = Actor.toLayer(Echo, {
        Inc: ({ n }) => {
          expectTypeOf(n).toEqualTypeOf<number>()
          return Effect.succeed(n + 1)
        },
        Get: () => Effect.fail(new Nope())
      })
      // @ts-expect-error a handler's success must match its Rpc
      Actor.toLayer(Echo, { Inc: ({ n }) => Effect.succeed(`${n}`), Get: () => Effect.succeed(1) })
      // @ts-expect-error every Rpc needs a handler
      Actor.toLayer(Echo, { Inc: ({ n }) => Effect.succeed(n) })
      const context = yield* Layer.build(EchoLive.pipe(Layer.provideMerge(Node.inMemory)))
      const echo = yield* Effect.provide(Actor.client(Echo), context)
      const ask = echo.Inc({ n: 1 })
      expectTypeOf(ask).toMatchTypeOf<Effect.Effect<number, AskError>>()
      expect(yield* ask).toBe(2)
      expectTypeOf(echo.Get(undefined)).toMatchTypeOf<Effect.Effect<number, Nope | AskError>>()
      // @ts-expect-error payloads are typed
      echo.Inc({ n: "one" })
      expect(Actor.isKind(Echo)).toBe(true)
    }))
})
