/**
 * The one place where settings become the layers under a node: the codec chosen by name, the
 * transport (NATS, or a serializing in-memory one), `Secure` wrapped around it when asked, and
 * discovery, and the JetStream key-value store when persistence is asked for. `Node.layerNats`,
 * `troupe serve` and `troupe monitor` all build their stack here.
 *
 * @internal
 */
import * as Layer from "effect/Layer"
import * as Codec from "../../layers/Codec.ts"
import * as Discovery from "../../layers/Discovery.ts"
import * as Persistence from "../../layers/Persistence.ts"
import * as Secure from "../../layers/Secure.ts"
import * as Transport from "../../layers/Transport.ts"
import type { PersistenceError } from "../../schema/Errors.ts"
import type { NatsNodeError, NatsNodeOptions, NatsSecureOptions } from "../Node.ts"

/** @internal the wire codecs a setting may name */
export type CodecName = "msgpack" | "json"

/** @internal the codec layer of a setting: `"json"`, else MessagePack */
export const codecLayer = (name: CodecName | undefined): Layer.Layer<Codec.Codec> =>
  name === "json" ? Codec.json : Codec.msgpack

/** @internal the settings of a stack over NATS: the fields of `Node.NatsNodeOptions` it reads */
export type NatsStackOptions = Pick<
  NatsNodeOptions,
  "servers" | "namespace" | "name" | "codec" | "heartbeat" | "maxMessageBytes" | "reconnectWait" | "secure"
>

/**
 * @internal
 * `Transport.nats` with its codec, sealed by `Secure.layer` when `secure` is set, and
 * `Discovery.nats` on top. Provides `Transport` and `Discovery` (and, with `secure`, `Secure`).
 */
export function natsStack(
  options: NatsStackOptions & { readonly secure: NatsSecureOptions }
): Layer.Layer<Transport.Transport | Discovery.Discovery | Secure.Secure, NatsNodeError>
export function natsStack(
  options: NatsStackOptions
): Layer.Layer<Transport.Transport | Discovery.Discovery, NatsNodeError>
export function natsStack(
  options: NatsStackOptions
):
  | Layer.Layer<Transport.Transport | Discovery.Discovery, NatsNodeError>
  | Layer.Layer<Transport.Transport | Discovery.Discovery | Secure.Secure, NatsNodeError>
{
  const codec = codecLayer(options.codec)
  const plain = Transport.nats({
    servers: options.servers,
    namespace: options.namespace,
    name: options.name,
    maxMessageBytes: options.maxMessageBytes,
    reconnectWait: options.reconnectWait
  }).pipe(Layer.provide(codec))
  const discovery = Discovery.nats(options.heartbeat === undefined ? {} : { heartbeat: options.heartbeat })
  if (options.secure === undefined) return Layer.provideMerge(discovery, plain)
  const sealed = Secure.layer({ ...options.secure, namespace: options.namespace }).pipe(
    Layer.provide(Layer.merge(plain, codec))
  )
  // typed on its own, so the compiler checks the promise of the first overload
  const stack: Layer.Layer<Transport.Transport | Discovery.Discovery | Secure.Secure, NatsNodeError> = Layer
    .provideMerge(discovery, sealed)
  return stack
}

/**
 * @internal
 * One process, no network: an in-memory transport that still encodes every frame with the named
 * codec (so routes by kind name decode as they would over NATS), and in-process discovery.
 */
export const serializingInMemoryStack = (
  codec: CodecName | undefined
): Layer.Layer<Transport.Transport | Discovery.Discovery> =>
  Layer.merge(
    Transport.layerInMemory({ serialize: true }).pipe(Layer.provide(codecLayer(codec))),
    Discovery.inMemory
  )

/**
 * @internal
 * `Persistence.natsKv` on the node's servers, on a connection of its own named after the node
 * (`<name>-persistence`), with the settings of `Node.layerNats({ persistence })`.
 */
export const natsPersistence = (
  options: Pick<NatsNodeOptions, "servers" | "name"> & { readonly persistence: Persistence.NatsKvSettings }
): Layer.Layer<Persistence.Persistence, PersistenceError> =>
  Persistence.layerNatsKv({
    ...options.persistence,
    servers: options.servers,
    name: `${options.name ?? "node"}-persistence`
  })
