/**
 * From a config file to a running node: the node layer (NATS, secured by `[secure]`, or a
 * serializing in-memory one, with the store of `[persistence]`), the modules it names, and the
 * gateway of its `[http]` section.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import { readFile } from "node:fs/promises"
import type { ActorSystem } from "../../actors/ActorSystem.ts"
import type * as Topic from "../../actors/Topic.ts"
import type * as Discovery from "../../layers/Discovery.ts"
import * as Persistence from "../../layers/Persistence.ts"
import * as Secure from "../../layers/Secure.ts"
import { type Config, ConfigError, ConfigIssue, modulePaths, resolvePath } from "../Config.ts"
import * as Gateway from "../../gateway/Gateway.ts"
import { serializingInMemoryStack } from "../../runtime/internal/stack.ts"
import * as Node from "../../runtime/Node.ts"
import { importModule, isMissingTypeScriptLoader, TypeScriptModuleError } from "./moduleLoader.ts"

/** @internal what a module's layer may use */
export type ModuleContext = Node.Node | ActorSystem | Topic.TopicBus | Discovery.Discovery

const configError = (config: Config, path: string, message: string) =>
  new ConfigError({ file: config.file, issues: [new ConfigIssue({ path, message })] })

/** @internal the options of `Secure.layer` (less its namespace, the node's) */
export type SecureOptions = Node.NatsSecureOptions

/** a public key as `Secure` reads it: 32 bytes in hex or base64url; anything else is a path */
const isPublicKey = (text: string): boolean => /^[0-9a-fA-F]{64}$/.test(text) || /^[A-Za-z0-9_-]{43}=?$/.test(text)

/**
 * The `[secure]` section as `Secure` options: the identity read (from its file or variable) and
 * the trust list's files read, each mistake a `ConfigError` with its path.
 *
 * @internal
 */
export const secureOptions = (config: Config): Effect.Effect<SecureOptions | undefined, ConfigError> =>
  Effect.gen(function*() {
    const secure = config.secure
    if (secure === undefined) return undefined
    const source = secure.identity
    const identity = yield* (typeof source !== "string" && "env" in source
      ? Secure.identityFromEnv(source.env)
      : Secure.identityFromFile(resolvePath(config, typeof source === "string" ? source : source.file))).pipe(
        Effect.mapError((error) => configError(config, "secure.identity", error.reason))
      )
    if (secure.trust === "any") return { identity, trust: "any", handshakeTimeout: secure.handshakeTimeout }
    const trust: Array<string> = []
    for (const [index, entry] of secure.trust.entries()) {
      if (isPublicKey(entry)) {
        trust.push(entry)
        continue
      }
      const path = `secure.trust[${index}]`
      const file = resolvePath(config, entry)
      const text = yield* Effect.tryPromise({
        try: () => readFile(file, "utf8"),
        catch: (error) =>
          configError(config, path, `not a public key, nor a readable file: ${(error as Error).message}`)
      })
      const keys = text.split("\n").map((line) => line.replace(/#.*/, "").trim()).filter((line) => line !== "")
      const bad = keys.find((key) => !isPublicKey(key))
      if (keys.length === 0 || bad !== undefined) {
        return yield* Effect.fail(
          configError(config, path, `${file} must hold public keys (hex or base64url), one per line`)
        )
      }
      trust.push(...keys)
    }
    return { identity, trust, handshakeTimeout: secure.handshakeTimeout }
  })

/**
 * @internal
 * The `[persistence]` section checked: `nats-kv` (the default) needs `[nats]`; `bucket`,
 * `replicas` and `timeout` are settings of `nats-kv` only.
 */
export const checkPersistence = (config: Config): Either.Either<void, ConfigError> => {
  const persistence = config.persistence
  if (persistence === undefined) return Either.void
  const store = persistence.store ?? "nats-kv"
  if (store === "nats-kv" && config.nats === undefined) {
    return Either.left(configError(
      config,
      "persistence.store",
      `the "nats-kv" store is a JetStream bucket on the [nats] servers: add a [nats] section, or set store = "memory" (state kept in this process only)`
    ))
  }
  if (store === "memory") {
    const misplaced = (["bucket", "replicas", "timeout"] as const).find((field) => persistence[field] !== undefined)
    if (misplaced !== undefined) {
      return Either.left(configError(config, `persistence.${misplaced}`, `a setting of store = "nats-kv" only`))
    }
  }
  return Either.void
}

/** the in-memory store of `[persistence] store = "memory"`, or nothing */
const memoryPersistence = (config: Config): Layer.Layer<Persistence.Persistence> | undefined =>
  config.persistence !== undefined && config.persistence.store === "memory"
    ? Persistence.layerInMemory(Persistence.makeMemoryStore({ maxValueBytes: config.persistence.maxValueBytes }))
    : undefined

/**
 * @internal
 * The node of a config file: over NATS (sealed by `[secure]`) when it has a `[nats]` section,
 * else in one process on a serializing in-memory stack; with the `Persistence` store of
 * `[persistence]` when it has one (checked by `checkPersistence`).
 */
export const nodeLayer = (config: Config, secure?: SecureOptions | undefined): Layer.Layer<ModuleContext, unknown> => {
  const options = {
    name: config.node?.name ?? "troupe",
    askTimeout: config.node?.askTimeout,
    shutdownTimeout: config.node?.shutdownTimeout,
    tracing: config.node?.tracing
  }
  const memory = memoryPersistence(config)
  const persistence = config.persistence
  if (config.nats !== undefined) {
    const node = Node.layerNats({
      ...options,
      servers: config.nats.servers,
      namespace: config.node?.namespace,
      codec: config.node?.codec,
      heartbeat: config.nats.heartbeat,
      maxMessageBytes: config.nats.maxMessageBytes,
      reconnectWait: config.nats.reconnectWait,
      secure,
      persistence: persistence === undefined || memory !== undefined ? undefined : {
        bucket: persistence.bucket,
        replicas: persistence.replicas,
        maxValueBytes: persistence.maxValueBytes,
        timeout: persistence.timeout
      }
    })
    return memory === undefined ? node : node.pipe(Layer.provideMerge(memory))
  }
  // no NATS: one process, frames still through the codec so routes by kind name decode
  const stack = serializingInMemoryStack(config.node?.codec)
  return Node.layer(options).pipe(Layer.provideMerge(memory === undefined ? stack : Layer.merge(stack, memory)))
}

/** @internal the gateway routes of the `[http]` section, by kind name; each bad one a `ConfigIssue` */
export const routes = (config: Config): Either.Either<ReadonlyArray<Gateway.Route>, ConfigError> => {
  const out: Array<Gateway.Route> = []
  const issues: Array<ConfigIssue> = []
  for (const [index, route] of (config.http?.routes ?? []).entries()) {
    try {
      out.push(Gateway.routeByName(route.method, route.path, {
        kind: route.kind,
        tag: route.tag,
        service: route.service,
        stream: route.stream
      }, { id: route.id, timeout: route.timeout, errors: route.errors }))
    } catch (error) {
      issues.push(new ConfigIssue({ path: `http.routes[${index}]`, message: (error as Error).message }))
    }
  }
  return issues.length > 0 ? Either.left(new ConfigError({ file: config.file, issues })) : Either.right(out)
}

/** @internal Imports each module and takes its Layer (`export const layer`, or the default export). */
export const loadModules = (
  config: Config
): Effect.Effect<Layer.Layer<never, unknown, ModuleContext>, ConfigError> =>
  Effect.gen(function*() {
    const layers: Array<Layer.Layer<never, unknown, ModuleContext>> = []
    for (const [index, file] of modulePaths(config).entries()) {
      const module = yield* Effect.tryPromise({
        try: () => importModule(file),
        catch: (error) =>
          isMissingTypeScriptLoader(file, error)
            ? new TypeScriptModuleError({ file: config.file, path: `modules[${index}]`, module: file })
            : configError(config, `modules[${index}]`, `cannot load ${file}: ${(error as Error).message}`)
      })
      const candidate = module["layer"] ?? module["default"]
      if (!Layer.isLayer(candidate)) {
        return yield* Effect.fail(
          configError(config, `modules[${index}]`, `${file} exports no Layer (as \`layer\` or default)`)
        )
      }
      layers.push(candidate as Layer.Layer<never, unknown, ModuleContext>)
    }
    return layers.length === 0
      ? Layer.empty
      : Layer.mergeAll(...(layers as [Layer.Layer<never, unknown, ModuleContext>]))
  })

/**
 * The whole node of a config file: modules on the node, and the gateway when `[http]` is set.
 * Provides the node's services, so the caller can report what it serves (and, with `[secure]`,
 * `Secure` too, though not in the type: read it with `Effect.serviceOption`).
 *
 * @internal
 */
export const serveLayer = (
  config: Config
): Effect.Effect<Layer.Layer<ModuleContext, unknown>, ConfigError> =>
  Effect.gen(function*() {
    if (config.secure !== undefined && config.nats === undefined) {
      // one process, nothing crosses a network: refuse rather than pretend to secure it
      return yield* Effect.fail(
        configError(config, "secure", "secure sessions protect traffic between nodes over NATS: add a [nats] section")
      )
    }
    yield* checkPersistence(config)
    const secure = yield* secureOptions(config)
    const modules = yield* loadModules(config)
    const gatewayRoutes = yield* routes(config)
    const http = config.http
    const gateway = http === undefined ? Layer.empty : Gateway.layer({
      port: http.port,
      host: http.host,
      routes: gatewayRoutes,
      maxBodySize: http.maxBodySize,
      timeout: http.timeout
    })
    return Layer.mergeAll(modules, gateway).pipe(Layer.provideMerge(nodeLayer(config, secure)))
  })
