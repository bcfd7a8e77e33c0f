/**
 * `Secure` encrypts and authenticates Troupe traffic node to node: it wraps the `Transport`
 * below it, so a NATS server (or anyone on it) sees only ciphertext, and only nodes whose
 * Ed25519 key is trusted can join.
 *
 * Each node has an Ed25519 identity. Two nodes open a session with an X25519 ephemeral
 * handshake whose transcript (both ephemeral keys, both identities, the namespace) both sign;
 * one key per direction comes from the shared secret through HKDF-SHA-256; frames are sealed with
 * AES-256-GCM, the nonce a 64-bit per-direction counter, the routing header authenticated.
 * Frames to shared subjects (services, interrupts, topics, heartbeats) are sealed once with the
 * sender's group key, which it hands to trusted peers over their sessions; topic events and
 * heartbeats are also signed by the sender.
 *
 * @example
 * ```ts
 * const identity = Secure.identityFromEnv("TROUPE_SEED")
 * const App = CounterLive.pipe(
 *   Layer.provideMerge(Node.layer({ name: "a" })),
 *   Layer.provide(Discovery.nats()),
 *   Layer.provideMerge(Secure.layer({ identity, trust: [peerKeyB, peerKeyC] })),
 *   Layer.provide(Transport.nats({ servers: "nats://127.0.0.1:4222" })),
 *   Layer.provide(Codec.msgpack)
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as DurationM from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { readFile } from "node:fs/promises"
import { Codec } from "./Codec.ts"
import * as internal from "./internal/secure.ts"
import * as C from "./internal/secureCrypto.ts"
import * as Identities from "./internal/secureIdentity.ts"
import * as State from "./internal/secureState.ts"
import { Transport } from "./Transport.ts"

/**
 * An Ed25519 identity. `publicKey` is printable (base64url of the raw 32 bytes); the private
 * key never leaves the object (it is not enumerable, printed or serialised).
 *
 * @since 0.1.0
 * @category models
 */
export interface Identity {
  readonly [Identities.IdentityTypeId]: typeof Identities.IdentityTypeId
  readonly publicKey: string
}

/**
 * @since 0.1.0
 * @category guards
 */
export const isIdentity = (u: unknown): u is Identity => u instanceof Identities.Identity

/**
 * A bad identity or option of the `Secure` layer.
 *
 * @since 0.1.0
 * @category errors
 */
export class SecureConfigError extends Schema.TaggedError<SecureConfigError>()("SecureConfigError", {
  reason: Schema.String
}) {}

/**
 * The identity of a 32-byte Ed25519 seed.
 *
 * @since 0.1.0
 * @category identity
 */
export const identityFromSeed = (seed: Uint8Array): Effect.Effect<Identity, SecureConfigError> =>
  seed.byteLength === 32
    ? Effect.sync(() => new Identities.Identity(seed))
    : Effect.fail(new SecureConfigError({ reason: `an Ed25519 seed has 32 bytes, got ${seed.byteLength}` }))

const seedOfText = (text: string, where: string): Effect.Effect<Identity, SecureConfigError> => {
  const seed = C.decodeKey(text)
  return seed === undefined
    ? Effect.fail(new SecureConfigError({ reason: `${where} does not hold a 32-byte seed (hex or base64url)` }))
    : identityFromSeed(seed)
}

/**
 * The identity of the seed in a file: 32 raw bytes, or their hex or base64url text.
 *
 * @since 0.1.0
 * @category identity
 */
export const identityFromFile = (path: string): Effect.Effect<Identity, SecureConfigError> =>
  Effect.tryPromise({
    try: () => readFile(path),
    catch: (error) => new SecureConfigError({ reason: `cannot read the identity file ${path}: ${String(error)}` })
  }).pipe(Effect.flatMap((bytes) =>
    bytes.length === 32 ? identityFromSeed(bytes) : seedOfText(bytes.toString("utf8"), `the identity file ${path}`)
  ))

/**
 * The identity of the seed (hex or base64url) in an environment variable.
 *
 * @since 0.1.0
 * @category identity
 */
export const identityFromEnv = (name: string): Effect.Effect<Identity, SecureConfigError> =>
  Effect.suspend(() => {
    const value = process.env[name]
    return value === undefined || value.length === 0
      ? Effect.fail(new SecureConfigError({ reason: `the environment variable ${name} is not set` }))
      : seedOfText(value, `the environment variable ${name}`)
  })

/**
 * A fresh random identity (for tests and ephemeral nodes; with a trust list, peers must learn
 * its `publicKey`).
 *
 * @since 0.1.0
 * @category identity
 */
export const generateIdentity: Effect.Effect<Identity> = Effect.sync(() => new Identities.Identity(C.randomSeed()))

/**
 * Where an identity's seed comes from: the 32 bytes themselves, a file, an environment
 * variable, or `"generate"` for a fresh random one.
 *
 * @since 0.4.0
 * @category identity
 */
export type IdentitySource = Uint8Array | { readonly file: string } | { readonly env: string } | "generate"

/**
 * The identity of a seed from any `IdentitySource` (`identityFromSeed`, `identityFromFile`,
 * `identityFromEnv` or `generateIdentity`, chosen by the source).
 *
 * @example
 * ```ts
 * const edge = Secure.layer({ identity: Secure.identity({ env: "TROUPE_SEED" }), trust: [workerKey] })
 * ```
 *
 * @since 0.4.0
 * @category identity
 */
export const identity = (source: IdentitySource): Effect.Effect<Identity, SecureConfigError> =>
  source === "generate"
    ? generateIdentity
    : source instanceof Uint8Array
    ? identityFromSeed(source)
    : "file" in source
    ? identityFromFile(source.file)
    : identityFromEnv(source.env)

/**
 * A fresh random seed as base64url text, to store in a file or a secret (`identityFromFile`,
 * `identityFromEnv`).
 *
 * @since 0.1.0
 * @category identity
 */
export const generateSeed: Effect.Effect<string> = Effect.sync(() => C.encodeKey(C.randomSeed()))

/**
 * @since 0.1.0
 * @category models
 */
export interface SecureOptions {
  /** this node's identity (or how to get it) */
  readonly identity: Identity | Effect.Effect<Identity, SecureConfigError>
  /** the public keys allowed to join, or `"any"`: authenticated and encrypted, but open to every key */
  readonly trust: ReadonlyArray<string> | "any"
  /** signed into every handshake: nodes of other namespaces cannot open sessions; default `"default"` (use the transport's) */
  readonly namespace?: string | undefined
  /** how long a handshake may take before the frames waiting on it fail; default 5 seconds */
  readonly handshakeTimeout?: Duration.DurationInput | undefined
  /** a session (and the group key) is renewed after this many frames; default 2^32 */
  readonly rekeyAfterMessages?: number | undefined
  /** ... or after this long; default 1 hour */
  readonly rekeyAfter?: Duration.DurationInput | undefined
  /** frames waiting per peer for a handshake; default 1024 */
  readonly maxQueued?: number | undefined
  /**
   * seal the frames published to one subject back to back (before the next microtask) together:
   * one AES-GCM operation and one message for the batch; default: on over NATS, off in memory
   * (where delivery then stays synchronous)
   */
  readonly coalesce?: boolean | undefined
}

/**
 * A session with a peer.
 *
 * @since 0.1.0
 * @category models
 */
export interface PeerSession {
  readonly nodeId: string
  readonly publicKey: string
  readonly sessionId: number
  /** frames sent with this session */
  readonly sent: number
  /** Clock time of the handshake */
  readonly establishedAt: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface SecureStats {
  /** handshakes completed (both roles, re-keys included) */
  readonly handshakes: number
  /** handshakes this node started that failed or timed out */
  readonly handshakeFailures: number
  /** frames and handshakes rejected, by reason (`tampered`, `replay`, `old`, `untrusted`, ...) */
  readonly rejected: Readonly<Record<string, number>>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface SecureShape {
  /** this node's printable public key */
  readonly publicKey: string
  /** the peers with an established session */
  readonly peers: () => ReadonlyArray<PeerSession>
  readonly stats: () => SecureStats
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Secure extends Context.Tag("troupe/Secure")<Secure, SecureShape>() {}

/**
 * Rejected frames and handshakes, tagged with `reason`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const rejectedFrames = State.rejectedFrames

const resolve = (options: SecureOptions): Effect.Effect<State.SecureConfig, SecureConfigError> =>
  Effect.gen(function*() {
    const identity = isIdentity(options.identity) ? options.identity : yield* options.identity
    let trust: ReadonlySet<string> | "any" = "any"
    if (options.trust !== "any") {
      const keys = new Set<string>()
      for (const text of options.trust) {
        const raw = C.decodeKey(text)
        if (raw === undefined) {
          return yield* new SecureConfigError({ reason: `"${text}" is not a 32-byte public key (hex or base64url)` })
        }
        keys.add(C.encodeKey(raw))
      }
      trust = keys
    }
    const namespace = options.namespace ?? "default"
    const handshakeTimeoutMillis = DurationM.toMillis(options.handshakeTimeout ?? "5 seconds")
    const rekeyAfterMillis = DurationM.toMillis(options.rekeyAfter ?? "1 hour")
    const rekeyAfterMessages = options.rekeyAfterMessages ?? 2 ** 32
    const maxQueued = options.maxQueued ?? 1024
    if (!(handshakeTimeoutMillis > 0)) {
      return yield* new SecureConfigError({ reason: "handshakeTimeout must be positive" })
    }
    if (!(rekeyAfterMillis > 0)) return yield* new SecureConfigError({ reason: "rekeyAfter must be positive" })
    if (!Number.isInteger(rekeyAfterMessages) || rekeyAfterMessages < 1 || rekeyAfterMessages > 2 ** 48) {
      return yield* new SecureConfigError({ reason: "rekeyAfterMessages must be a whole number in [1, 2^48]" })
    }
    if (!Number.isInteger(maxQueued) || maxQueued < 1) {
      return yield* new SecureConfigError({ reason: "maxQueued must be a whole number >= 1" })
    }
    return {
      identity: identity as Identities.Identity,
      trust,
      namespace,
      handshakeTimeoutMillis,
      rekeyAfterMillis,
      rekeyAfterMessages,
      maxQueued,
      coalesce: options.coalesce
    }
  })

/**
 * Wraps the `Transport` of the context: provides a `Transport` that seals every frame (with the
 * `Codec`), and `Secure` (this node's key, its sessions, rejection counts). Put every layer that
 * talks over the transport (the node, `Discovery.nats`) above it.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: SecureOptions): Layer.Layer<Transport | Secure, SecureConfigError, Transport | Codec> =>
  Layer.scopedContext(Effect.gen(function*() {
    const config = yield* resolve(options)
    const handle = yield* internal.make(yield* Transport, yield* Codec, config)
    return Context.make(Transport, handle.transport).pipe(
      Context.add(Secure, { publicKey: handle.publicKey, peers: handle.peers, stats: handle.stats })
    )
  }))
