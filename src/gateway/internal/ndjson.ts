/**
 * A streamed reply as NDJSON: one JSON line per element, sent as the elements arrive, a failure
 * after the first element written as a last `{"_error": ...}` line.
 *
 * @internal
 */
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { CompiledRoute } from "./compile.ts"
import { failureOutcome, interrupted } from "./outcome.ts"

const encoder = new TextEncoder()

/**
 * One JSON line per element, the chunk as one piece of the body: each element in its schema's
 * encoded form, and binary left in it (a `Uint8ArrayFromSelf`, or any binary of a route by name)
 * as a base64 string.
 */
const ndjson = (compiled: CompiledRoute, items: Chunk.Chunk<unknown>): Effect.Effect<Uint8Array> => {
  const encoded = compiled.encodeElements(Chunk.toReadonlyArray(items))
  if (Either.isLeft(encoded)) return Effect.die(encoded.left)
  let text = ""
  for (const item of encoded.right) text += `${compiled.elementJson(item)}\n`
  return Effect.succeed(encoder.encode(text))
}

/**
 * A streamed reply as NDJSON. The first element is awaited here, so that a failure before it
 * still gets its status; the rest is pulled while the body is written. The pull lives in the
 * request's scope, which the server closes when the response ends or the client goes away (it
 * interrupts the request fiber), and closing it interrupts the producer.
 *
 * @internal
 */
export const streamResponse = (
  compiled: CompiledRoute,
  stream: Stream.Stream<unknown, unknown>
): Effect.Effect<HttpServerResponse.HttpServerResponse, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const pull = yield* Stream.toPull(stream)
    const next = Effect.catchAll(
      Effect.map(pull, Option.some),
      (error) => Option.isNone(error) ? Effect.succeed(Option.none<Chunk.Chunk<unknown>>()) : Effect.fail(error.value)
    )
    let first = Chunk.empty<unknown>()
    let ended = false
    while (Chunk.isEmpty(first)) {
      const chunk = yield* next
      if (Option.isNone(chunk)) {
        ended = true
        break
      }
      first = chunk.value
    }
    const head = Chunk.isEmpty(first) ? Stream.empty : Stream.fromEffect(ndjson(compiled, first))
    const rest = ended ?
      Stream.empty :
      Stream.mapChunksEffect(
        Stream.repeatEffectChunkOption(pull),
        (chunk) => Effect.map(ndjson(compiled, chunk), Chunk.of)
      )
    const body = Stream.concat(head, rest).pipe(
      // after the status is sent a failure can only end the body: as a last line (an
      // interruption, the client gone or the server closing, is left to the server)
      Stream.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause) ? Stream.fromEffect(interrupted(cause)) : Stream.fromEffect(
          Effect.map(
            failureOutcome(compiled, cause),
            (outcome) => encoder.encode(`${JSON.stringify({ _error: outcome.body })}\n`)
          )
        )
      )
    )
    return HttpServerResponse.stream(body, { contentType: "application/x-ndjson" })
  })
