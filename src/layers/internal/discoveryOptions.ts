/**
 * The options of discovery: the address remap (`TROUPE_ADDRESS_REMAP` or an option) applied to
 * every announced address, and the heartbeat options validated once with their defaults.
 *
 * Option problems come back as a plain reason (a string); `Discovery.ts` turns it into a
 * `DiscoveryConfigError`, so this module needs nothing at runtime from the public one.
 *
 * @internal
 */
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { AddressRemap, HeartbeatOptions } from "../Discovery.ts"

/** @internal */
export const REMAP_ENV = "TROUPE_ADDRESS_REMAP"

const remapShape = `a JSON object {"<node name or kind>": "host:port"}`

const checkRemap = (remap: unknown, source: string): Either.Either<AddressRemap, string> => {
  if (typeof remap !== "object" || remap === null || Array.isArray(remap)) {
    return Either.left(`${source} must be ${remapShape}, got ${JSON.stringify(remap)}`)
  }
  for (const [key, value] of Object.entries(remap)) {
    if (typeof value !== "string" || value.length === 0) {
      return Either.left(
        `${source} must be ${remapShape}: the entry "${key}" is ${JSON.stringify(value)}, not a non-empty string`
      )
    }
  }
  return Either.right(remap as AddressRemap)
}

const parseRemap = (json: string): Either.Either<AddressRemap, string> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(json)
  } catch (error) {
    const problem = error instanceof Error ? error.message : String(error)
    return Either.left(`${REMAP_ENV} is not valid JSON (${problem}); expected ${remapShape}`)
  }
  return checkRemap(parsed, REMAP_ENV)
}

/** the remap from `TROUPE_ADDRESS_REMAP` (unset or blank: none), read through Effect's `ConfigProvider` */
const remapFromEnv: Effect.Effect<AddressRemap, string> = Config.option(Config.string(REMAP_ENV)).pipe(
  Effect.mapError((error) => `cannot read ${REMAP_ENV}: ${error}`),
  Effect.flatMap(Option.match({
    onNone: (): Either.Either<AddressRemap, string> => Either.right({}),
    onSome: (json) => json.trim() === "" ? Either.right({}) : parseRemap(json)
  }))
)

/** The member's address after the remap: by node name first, then by kind. @internal */
export const remapAddress = (
  remap: AddressRemap,
  name: string,
  kinds: ReadonlyArray<string>,
  address: string
): string => {
  if (Object.hasOwn(remap, name)) return remap[name]!
  for (const kind of kinds) if (Object.hasOwn(remap, kind)) return remap[kind]!
  return address
}

/** The heartbeat options, validated, with their defaults. @internal */
export interface ResolvedOptions {
  readonly period: Duration.Duration
  readonly periodMillis: number
  readonly suspectAfter: number
  readonly removeAfter: number
  readonly remap: AddressRemap
}

/** Validates the heartbeat options once; fails with the reason of the first problem. @internal */
export const resolveOptions = (options: HeartbeatOptions): Effect.Effect<ResolvedOptions, string> =>
  Effect.gen(function*() {
    const fail = (reason: string) => Effect.fail(reason)
    const period = Duration.decodeUnknown(options.heartbeat ?? Duration.seconds(1))
    if (Option.isNone(period) || !Duration.isFinite(period.value) || Duration.toMillis(period.value) <= 0) {
      return yield* fail(`heartbeat must be a positive, finite duration, got ${String(options.heartbeat)}`)
    }
    const suspectAfter = options.suspectAfter ?? 3
    const removeAfter = options.removeAfter ?? 5
    if (!Number.isFinite(suspectAfter) || suspectAfter <= 0) {
      return yield* fail(`suspectAfter must be a positive number of periods, got ${suspectAfter}`)
    }
    if (!Number.isFinite(removeAfter) || removeAfter < suspectAfter) {
      return yield* fail(
        `removeAfter must be a number of periods >= suspectAfter (${suspectAfter}), got ${removeAfter}`
      )
    }
    const remap = options.remap === undefined
      ? yield* remapFromEnv
      : yield* checkRemap(options.remap, "the remap option")
    return { period: period.value, periodMillis: Duration.toMillis(period.value), suspectAfter, removeAfter, remap }
  })
