/**
 * The `troupe` command line:
 *
 * - `troupe serve --config troupe.toml`: runs a node (the config's modules and its gateway); with
 *   a `[secure]` section it prints the node's Ed25519 public key, for the peers' trust lists;
 *   `--nats URL` and `--port N` override the file's NATS servers and HTTP port;
 * - `troupe monitor --nats URL`: the discovery state, live (nodes, kinds, serving, last seen);
 * - `troupe call KIND ID TAG --json '{...}' --nats URL`: one ask, the reply printed as JSON; with
 *   `--stream`, a streamed reply (`stream: true`) printed as it arrives, one NDJSON line per element.
 *
 * Replies are printed in their encoded (JSON-able) form, binary as base64 strings.
 *
 * `bin/troupe.mjs` calls `main`: the compiled CLI once installed, the source through tsx in the
 * repository. A config's `.js` modules load on plain Node; its `.ts` modules through the project's
 * own tsx (`npm install -D tsx`), registered when the first one is loaded.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { createRequire } from "node:module"
import { ActorSystem } from "../actors/ActorSystem.ts"
import * as Discovery from "../layers/Discovery.ts"
import * as Secure from "../layers/Secure.ts"
import * as Config from "./Config.ts"
import { dynamicKind } from "../gateway/internal/dynamic.ts"
import * as Json from "../gateway/internal/json.ts"
import { type SecureOptions, secureOptions, serveLayer } from "./internal/serve.ts"
import { natsStack } from "../runtime/internal/stack.ts"
import * as Node from "../runtime/Node.ts"

/** the package's own version (`troupe --version`) */
const VERSION = (createRequire(import.meta.url)("../../package.json") as { readonly version: string }).version

const natsOption = Options.text("nats").pipe(
  Options.optional,
  Options.withDescription(
    "NATS server URL, several comma-separated (default: the config's, else nats://127.0.0.1:4222)"
  )
)
const namespaceOption = Options.text("namespace").pipe(
  Options.optional,
  Options.withDescription("the subject namespace of the app (default: the config's, else \"default\")")
)
const codecOption = Options.choice("codec", ["msgpack", "json"]).pipe(
  Options.optional,
  Options.withDescription("the wire codec of the cluster (default: the config's, else msgpack)")
)
const configOption = Options.text("config").pipe(
  Options.withAlias("c"),
  Options.optional,
  Options.withDescription("take NATS servers, namespace, codec and [secure] from this config file")
)

interface Connection {
  readonly servers: ReadonlyArray<string>
  readonly namespace: string
  readonly codec: "msgpack" | "json"
  /** the config's `[secure]` section, read */
  readonly secure: SecureOptions | undefined
}

/** the flags first, then the config file, then the defaults */
const connection = (flags: {
  readonly nats: Option.Option<string>
  readonly namespace: Option.Option<string>
  readonly codec: Option.Option<"msgpack" | "json">
  readonly config: Option.Option<string>
}): Effect.Effect<Connection, Config.ConfigError> =>
  Effect.flatMap(
    Option.match(flags.config, {
      onNone: () => Effect.succeed(undefined),
      onSome: (file) => Effect.map(Config.load(file), (config): Config.Config | undefined => config)
    }),
    (config) =>
      Effect.map(config === undefined ? Effect.succeed(undefined) : secureOptions(config), (secure): Connection => {
        const configured = config?.nats?.servers
        return {
          servers: Option.match(flags.nats, {
            onSome: servers,
            onNone: () =>
              configured === undefined
                ? ["nats://127.0.0.1:4222"]
                : typeof configured === "string"
                ? [configured]
                : configured
          }),
          namespace: Option.getOrElse(flags.namespace, () => config?.node?.namespace ?? "default"),
          codec: Option.getOrElse(flags.codec, () => config?.node?.codec ?? "msgpack"),
          secure
        }
      })
  )

const servers = (nats: string): ReadonlyArray<string> => nats.split(",").map((s) => s.trim()).filter((s) => s !== "")

/** an error as one JSON line, with its message but never a stack */
const describe = (error: unknown): string => {
  if (typeof error === "object" && error !== null) {
    const fields: Record<string, unknown> = { ...error }
    delete fields["stack"]
    if (error instanceof Error) fields["message"] = error.message
    return JSON.stringify(fields)
  }
  return JSON.stringify({ error: String(error) })
}

// ---- serve ---------------------------------------------------------------------------------

/**
 * @internal
 * `serve`'s flags over its config file: `servers` replace `[nats] servers` (and add a `[nats]`
 * section to a file without one), `port` replaces `http.port` (the file must have `[http]`).
 */
export const withOverrides = (
  config: Config.Config,
  overrides: { readonly servers: Option.Option<ReadonlyArray<string>>; readonly port: Option.Option<number> }
): Either.Either<Config.Config, Config.ConfigError> => {
  const issues: Array<Config.ConfigIssue> = []
  let out: Config.Config = config
  if (Option.isSome(overrides.servers)) {
    const [first, ...rest] = overrides.servers.value
    if (first === undefined) {
      issues.push(new Config.ConfigIssue({ path: "--nats", message: "expected at least one NATS server URL" }))
    } else {
      out = { ...out, nats: { ...out.nats, servers: [first, ...rest] } }
    }
  }
  if (Option.isSome(overrides.port)) {
    const port = overrides.port.value
    if (out.http === undefined) {
      issues.push(new Config.ConfigIssue({ path: "--port", message: "the config file has no [http] section to serve" }))
    } else if (!Schema.is(Config.Port)(port)) {
      issues.push(new Config.ConfigIssue({ path: "--port", message: `expected a port 0..65535, got ${port}` }))
    } else {
      out = { ...out, http: { ...out.http, port } }
    }
  }
  return issues.length > 0 ? Either.left(new Config.ConfigError({ file: config.file, issues })) : Either.right(out)
}

const serve = Command.make("serve", {
  config: Options.text("config").pipe(
    Options.withAlias("c"),
    Options.withDefault("troupe.toml"),
    Options.withDescription("the config file (TOML, or JSON when it ends in .json)")
  ),
  nats: Options.text("nats").pipe(
    Options.optional,
    Options.withDescription("NATS server URL, several comma-separated, instead of the config's [nats] servers")
  ),
  port: Options.integer("port").pipe(
    Options.optional,
    Options.withDescription("the HTTP port instead of the config's http.port")
  )
}, (flags) =>
  Effect.gen(function*() {
    const config = yield* Effect.flatMap(
      Config.load(flags.config),
      (loaded) => withOverrides(loaded, { servers: Option.map(flags.nats, servers), port: flags.port })
    )
    const layer = yield* serveLayer(config)
    return yield* Effect.gen(function*() {
      const node = yield* Node.Node
      // provided when the config has a [secure] section
      const secure = yield* Effect.serviceOption(Secure.Secure)
      if (Option.isSome(secure)) yield* Console.log(`troupe: public key ${secure.value.publicKey}`)
      const http = config.http === undefined ? "" : `; http on ${config.http.host ?? "0.0.0.0"}:${config.http.port}`
      yield* Console.log(`troupe: node ${node.nodeId} up; hosting [${node.kinds().join(", ")}]${http}`)
      return yield* Effect.never
    }).pipe(Effect.provide(layer))
  })).pipe(Command.withDescription("Run a node: the modules and the HTTP gateway of a config file"))

// ---- monitor -------------------------------------------------------------------------------

const render = (state: Discovery.DiscoveryState, now: number, header: string): string => {
  const rows = state.members.map((m) =>
    [
      m.name.padEnd(14),
      m.nodeId.padEnd(26),
      (m.isServing ? "serving" : "draining").padEnd(9),
      m.status.padEnd(8),
      `${((now - m.lastSeen) / 1000).toFixed(1)}s ago`.padEnd(10),
      m.kinds.join(",")
    ].join(" ")
  )
  const title = [
    "name".padEnd(14),
    "node".padEnd(26),
    "serving".padEnd(9),
    "status".padEnd(8),
    "last seen".padEnd(10),
    "kinds"
  ]
    .join(" ")
  return [
    `${new Date(now).toISOString()}  ${header}  members=${state.members.length}`,
    title,
    ...(rows.length > 0 ? rows : ["(no nodes)"]),
    ""
  ].join("\n")
}

/** @internal milliseconds between two renders of `troupe monitor` unless `--interval` says otherwise */
export const DEFAULT_MONITOR_INTERVAL_MILLIS = 500

/** @internal the options of `troupe monitor` (exported so their defaults can be tested) */
export const monitorOptions = {
  nats: natsOption,
  namespace: namespaceOption,
  codec: codecOption,
  config: configOption,
  interval: Options.integer("interval").pipe(
    Options.withDefault(DEFAULT_MONITOR_INTERVAL_MILLIS),
    Options.withDescription(`milliseconds between two renders (default ${DEFAULT_MONITOR_INTERVAL_MILLIS})`)
  ),
  count: Options.integer("count").pipe(
    Options.optional,
    Options.withDescription("stop after this many renders (default: run until interrupted)")
  )
}

/**
 * @internal
 * What `troupe monitor` prints: the discovery state rendered at once, then every `interval`
 * milliseconds (at least 50) after the previous render; `count` renders, or forever.
 */
export const monitorRenders = (options: {
  readonly interval: number
  readonly count: Option.Option<number>
  readonly header: string
}): Stream.Stream<string, never, Discovery.Discovery> => {
  const once = Effect.gen(function*() {
    const state = yield* Discovery.state
    const now = yield* Clock.currentTimeMillis
    return render(state, now, options.header)
  })
  const renders = Stream.repeatEffectWithSchedule(
    once,
    Schedule.spaced(Duration.millis(Math.max(50, options.interval)))
  )
  return Option.match(options.count, {
    onNone: () => renders,
    onSome: (n) => Stream.take(renders, Math.max(1, n))
  })
}

const monitor = Command.make("monitor", monitorOptions, (flags) =>
  Effect.gen(function*() {
    const { codec, namespace, secure, servers } = yield* connection(flags)
    const layer = natsStack({ servers, namespace, name: "troupe-monitor", codec, heartbeat: "500 millis", secure })
    const tty = process.stdout.isTTY === true
    const renders = monitorRenders({
      interval: flags.interval,
      count: flags.count,
      header: `${servers.join(",")} namespace=${namespace}`
    })
    return yield* renders.pipe(
      // a terminal gets the screen redrawn; a pipe gets one block per render
      Stream.runForEach((text) => Console.log(tty ? `\x1b[2J\x1b[H${text}` : text)),
      Effect.provide(layer)
    )
  })).pipe(Command.withDescription("Show the discovery state live: nodes, kinds, serving, last seen"))

// ---- call ----------------------------------------------------------------------------------

const call = Command.make("call", {
  kind: Args.text({ name: "KIND" }).pipe(Args.withDescription("the actor kind or service")),
  id: Args.text({ name: "ID" }).pipe(Args.withDescription("the actor id (any value for a service)")),
  tag: Args.text({ name: "TAG" }).pipe(Args.withDescription("the Rpc tag")),
  json: Options.text("json").pipe(Options.withDefault("{}"), Options.withDescription("the payload as JSON")),
  service: Options.boolean("service").pipe(Options.withDescription("the kind is a service")),
  stream: Options.boolean("stream").pipe(
    Options.withDescription(
      "the Rpc has a streamed reply (stream: true): print each element as one NDJSON line as it arrives"
    )
  ),
  timeout: Options.text("timeout").pipe(
    Options.withDefault("10 seconds"),
    Options.withDescription("wait at most this long (with --stream: for the first node and for each element)")
  ),
  nats: natsOption,
  namespace: namespaceOption,
  codec: codecOption,
  config: configOption
}, (args) =>
  Effect.gen(function*() {
    let payload: unknown
    try {
      payload = JSON.parse(args.json)
    } catch (error) {
      return yield* Effect.fail(new Error(`--json is not valid JSON: ${(error as Error).message}`))
    }
    const timeout = Duration.decodeUnknown(args.timeout)
    if (Option.isNone(timeout)) return yield* Effect.fail(new Error(`--timeout: not a duration: ${args.timeout}`))
    const call = Effect.gen(function*() {
      // the node learns who hosts the kind from their first heartbeat
      yield* Discovery.awaitServing(args.kind, { timeout: timeout.value })
      const system = yield* ActorSystem
      const envelope = {
        definition: dynamicKind(args.kind, args.service, args.stream),
        id: args.id,
        tag: args.tag,
        payload,
        // for a streamed reply, an idle timeout
        timeout: timeout.value
      }
      if (args.stream) {
        return yield* Stream.runForEach(
          system.stream(envelope),
          (element) => Console.log(Json.stringifyBinary(element))
        )
      }
      yield* Console.log(Json.stringifyBinary(yield* system.ask(envelope)))
    })
    const { codec, namespace, secure, servers } = yield* connection(args)
    yield* call.pipe(
      Effect.provide(Node.layerNats({
        servers,
        namespace,
        codec,
        secure,
        name: "troupe-call",
        shutdownTimeout: "1 second"
      }))
    )
  })).pipe(Command.withDescription(
    "Ask one actor or service and print the reply as JSON (with --stream: one NDJSON line per element, as they arrive)"
  ))

// ---- troupe --------------------------------------------------------------------------------

const troupe = Command.make("troupe").pipe(
  Command.withDescription("Troupe: typed, cancellable, Effect-native actors"),
  Command.withSubcommands([serve, monitor, call])
)

const cli = Command.run(troupe, { name: "troupe", version: VERSION })

/**
 * Runs the CLI on `argv` (as `process.argv`): the exit code is 0 on success, 1 when the command
 * failed (its error printed to stderr as one JSON line, or the config's issues one per line).
 *
 * @since 0.1.0
 * @category entry points
 */
export const main = (argv: ReadonlyArray<string>): void =>
  cli(argv).pipe(
    Effect.catchAll((error) =>
      Effect.zipRight(
        ValidationError.isValidationError(error)
          ? Effect.void // @effect/cli printed it with the usage
          : error instanceof Config.ConfigError
          ? Console.error(error.message)
          : Console.error(describe(error)),
        Effect.sync(() => {
          process.exitCode = 1
        })
      )
    ),
    Effect.provide(NodeContext.layer),
    NodeRuntime.runMain({ disableErrorReporting: false })
  )
