/**
 * Opening the JetStream key-value store: the options checked, the NATS connection (the caller's,
 * or one of its own in the layer's scope), JetStream found, and the bucket created if missing or
 * checked against the settings asked for when it exists.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { connect, type JetStreamManager, type KV, type NatsConnection, StorageType } from "nats"
import { PersistenceError } from "../../schema/Errors.ts"
import type { NatsKvOptions } from "../Persistence.ts"
import { describe, persistenceError } from "./persistenceKvErrors.ts"

/** @internal the bucket's name when none is given */
export const DEFAULT_BUCKET = "troupe"

/** @internal the time each operation may take when none is given */
export const DEFAULT_TIMEOUT = "5 seconds"

/**
 * @internal
 * Room kept for the headers JetStream adds to a value (the expected-revision header of a
 * compare-and-set is about 60 bytes): the bucket's max message size is `maxValueBytes` plus this,
 * and the default `maxValueBytes` is the server's max payload less this.
 */
export const HEADER_ROOM = 256

/** @internal an open bucket and what its operations need */
export interface OpenBucket {
  readonly kv: KV
  readonly jsm: JetStreamManager
  readonly bucket: string
  /** the stream holding the bucket */
  readonly stream: string
  readonly maxValueBytes: number
  readonly timeoutMs: number
}

const BUCKET = /^[-\w]+$/

/** the first nats-server whose replicated streams check an expected revision against writes in flight */
const SERIALIZED_CAS = "2.9.21"

const olderThan = (version: string, than: string): boolean => {
  const parse = (text: string) => text.split("-")[0]!.split(".").map((part) => Number(part) || 0)
  const [a, b] = [parse(version), parse(than)]
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) < (b[i] ?? 0)
  return false
}

const invalid = (reason: string) => new PersistenceError({ operation: "open", reason })

const settingsOf = (options: NatsKvOptions) =>
  Effect.gen(function*() {
    const bucket = options.bucket ?? DEFAULT_BUCKET
    if (!BUCKET.test(bucket)) {
      return yield* Effect.fail(invalid(`bucket "${bucket}" must match [A-Za-z0-9_-]+`))
    }
    const replicas = options.replicas
    if (replicas !== undefined && !(Number.isInteger(replicas) && replicas >= 1 && replicas <= 5)) {
      return yield* Effect.fail(invalid(`replicas must be a whole number from 1 to 5, got ${replicas}`))
    }
    const maxValueBytes = options.maxValueBytes
    if (maxValueBytes !== undefined && !(Number.isInteger(maxValueBytes) && maxValueBytes >= 1)) {
      return yield* Effect.fail(invalid(`maxValueBytes must be a whole number >= 1, got ${maxValueBytes}`))
    }
    const timeout = Duration.decodeUnknown(options.timeout ?? DEFAULT_TIMEOUT)
    if (Option.isNone(timeout) || !Duration.isFinite(timeout.value) || Duration.toMillis(timeout.value) <= 0) {
      return yield* Effect.fail(invalid(`timeout must be a finite positive duration, got ${String(options.timeout)}`))
    }
    return { bucket, replicas, maxValueBytes, timeoutMs: Duration.toMillis(timeout.value) }
  })

/** the caller's connection, or a new one closed with the scope */
const connectionOf = (
  options: NatsKvOptions,
  timeoutMs: number
): Effect.Effect<NatsConnection, PersistenceError, Scope.Scope> => {
  if (options.connection !== undefined) return Effect.succeed(options.connection)
  const servers = typeof options.servers === "string" ? [options.servers] : [...(options.servers ?? [])]
  if (servers.length === 0) return Effect.fail(invalid("give servers or a connection"))
  return Effect.acquireRelease(
    Effect.tryPromise({
      try: () =>
        connect({
          servers,
          name: options.name ?? "troupe-persistence",
          reconnect: true,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 250,
          timeout: timeoutMs,
          // every store operation is a request; an async trace is an `Error` (a stack) built per
          // request, 12% of the CPU of a durable ask here, and the errors are mapped to ours anyway
          noAsyncTraces: true
        }),
      catch: (error) =>
        new PersistenceError({
          operation: "connect",
          reason: `cannot connect to ${servers.join(", ")}: ${describe(error)}`
        })
    }),
    (nc) =>
      Effect.promise(() => nc.close().catch(() => undefined)).pipe(
        Effect.timeoutOption("5 seconds")
      )
  )
}

/**
 * @internal
 * Connects (unless given a connection), finds JetStream, and opens the bucket: created with the
 * settings asked for when missing; when it exists, a setting asked for that differs from the
 * bucket's fails with a `PersistenceError` naming both.
 */
export const open = (options: NatsKvOptions): Effect.Effect<OpenBucket, PersistenceError, Scope.Scope> =>
  Effect.gen(function*() {
    const settings = yield* settingsOf(options)
    const { bucket, timeoutMs } = settings
    const nc = yield* connectionOf(options, timeoutMs)
    const maxPayload = nc.info?.max_payload ?? 1024 * 1024
    const largest = maxPayload - HEADER_ROOM
    if (settings.maxValueBytes !== undefined && settings.maxValueBytes > largest) {
      return yield* Effect.fail(
        invalid(
          `maxValueBytes ${settings.maxValueBytes} is over what the server carries: its max_payload ${maxPayload} less ${HEADER_ROOM} bytes of headers (${largest})`
        )
      )
    }
    const opened = yield* Effect.tryPromise({
      try: async () => {
        const jsm = await nc.jetstreamManager({ timeout: timeoutMs })
        const js = jsm.jetstream()
        const kv = await js.views.kv(bucket, {
          history: 1,
          replicas: settings.replicas ?? 1,
          maxValueSize: (settings.maxValueBytes ?? largest) + HEADER_ROOM,
          storage: StorageType.File,
          // reads through the stream's leader: a read after an acknowledged write sees it
          allow_direct: false,
          timeout: timeoutMs
        })
        const status = await kv.status()
        return { jsm, kv, status }
      },
      catch: (error) =>
        error instanceof Error && /jetstream not enabled/i.test(error.message)
          ? new PersistenceError({
            operation: `open bucket ${bucket}`,
            reason: "JetStream is not enabled on the NATS server (start nats-server with -js)"
          })
          : persistenceError(`open bucket ${bucket}`, error, timeoutMs)
    }).pipe(
      Effect.timeoutFail({
        duration: Duration.millis(timeoutMs * 2),
        onTimeout: () =>
          new PersistenceError({
            operation: `open bucket ${bucket}`,
            reason: `JetStream did not answer within ${timeoutMs * 2} ms`
          })
      })
    )
    const { jsm, kv, status } = opened
    const differ = (setting: string, asked: number, has: number) =>
      invalid(
        `bucket "${bucket}" exists with ${setting} ${has}, not ${asked}: use another bucket, or change it with the nats CLI`
      )
    if (settings.replicas !== undefined && status.replicas !== settings.replicas) {
      return yield* Effect.fail(differ("replicas", settings.replicas, status.replicas))
    }
    const bucketLimit = status.maxValueSize > 0 ? status.maxValueSize - HEADER_ROOM : largest
    if (settings.maxValueBytes !== undefined && bucketLimit !== settings.maxValueBytes) {
      return yield* Effect.fail(differ("maxValueBytes", settings.maxValueBytes, bucketLimit))
    }
    const version = nc.info?.version ?? "0.0.0"
    if (status.replicas > 1 && olderThan(version, SERIALIZED_CAS)) {
      yield* Effect.logWarning(
        `nats-server ${version} does not serialize compare-and-set writes of one key on a replicated bucket (nats-io/nats-server#4320, fixed in ${SERIALIZED_CAS}): writes of one key from two processes at the same moment may both succeed. Upgrade nats-server for replicas > 1.`
      )
    }
    if (bucketLimit < 1) {
      return yield* Effect.fail(
        invalid(`bucket "${bucket}" has a max message size of ${status.maxValueSize} bytes, too small`)
      )
    }
    return {
      kv,
      jsm,
      bucket,
      stream: status.streamInfo.config.name,
      maxValueBytes: Math.min(bucketLimit, largest),
      timeoutMs
    }
  })
