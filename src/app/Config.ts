/**
 * The node's config file (`troupe.toml`, or the same shape as JSON): node name, NATS servers,
 * namespace, codec, identity and trust for secure sessions (`[secure]`), the store of durable
 * actors (`[persistence]`), HTTP port and routes, and the modules to load. Validated with Schema; every mistake is reported with its path in the file.
 *
 * @example
 * ```ts
 * const config = yield* Config.load("troupe.toml")
 * // fails with ConfigError: "troupe.toml: http.routes[1].method: Expected "GET" | "POST" ..."
 * ```
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { readFile } from "node:fs/promises"
import * as Path from "node:path"
import { parse as parseToml, TomlError } from "smol-toml"
import * as Subject from "../layers/Subject.ts"

/** `"2 seconds"`, `"500 millis"`, or a number of milliseconds */
const DurationString = Schema.transform(
  Schema.Union(
    Schema.String.pipe(
      Schema.filter((s) =>
        Option.isSome(Duration.decodeUnknown(s)) || `expected a duration such as "2 seconds", got "${s}"`
      )
    ),
    Schema.NonNegative.annotations({ description: "milliseconds" })
  ),
  Schema.DurationFromSelf,
  {
    strict: true,
    decode: (input) => Duration.decode(input as Duration.DurationInput),
    encode: (duration) => Duration.toMillis(duration)
  }
)

const Name = Schema.String.pipe(Schema.filter(Subject.isToken, { message: () => "expected [A-Za-z0-9_-]+" }))

/**
 * A TCP port, 0..65535.
 *
 * @since 0.4.0
 * @category schemas
 */
export const Port = Schema.Int.pipe(Schema.between(0, 65535))

const strict = { parseOptions: { onExcessProperty: "error" as const } }

/**
 * One HTTP route of the config file: `method` + `path` to `kind` + `tag`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const RouteConfig = Schema.Struct({
  method: Schema.Literal("GET", "POST", "PUT", "PATCH", "DELETE"),
  path: Schema.String.pipe(Schema.startsWith("/")),
  kind: Name,
  tag: Schema.String.pipe(Schema.nonEmptyString()),
  /** `":name"` reads a path param, another string is a fixed id; default `":id"` (actors) */
  id: Schema.optional(Schema.String),
  /** the kind is a service (no id) */
  service: Schema.optional(Schema.Boolean),
  /** the Rpc has a streamed reply: answered as NDJSON */
  stream: Schema.optional(Schema.Boolean),
  timeout: Schema.optional(DurationString),
  /** HTTP statuses of the Rpc's typed errors, by `_tag` */
  errors: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Int.pipe(Schema.between(400, 599)) }))
}).annotations(strict)

const NonEmpty = Schema.String.pipe(Schema.nonEmptyString())

/**
 * The `[secure]` section: secure sessions over NATS (`Secure`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const SecureConfig = Schema.Struct({
  /**
   * this node's Ed25519 seed: a file (`"./keys/edge.key"` or `{ file = "..." }`, relative to the
   * config file; 32 raw bytes, or hex / base64url text), or `{ env = "TROUPE_SEED" }`
   */
  identity: Schema.Union(
    NonEmpty,
    Schema.Struct({ file: NonEmpty }).annotations(strict),
    Schema.Struct({ env: NonEmpty }).annotations(strict)
  ).annotations({
    message: () => ({
      message: `expected a key file ("./node.key" or { file = "..." }) or { env = "VARIABLE" }`,
      override: true
    })
  }),
  /**
   * who may join: `"any"`, or public keys (hex or base64url) and files holding them (one per
   * line, `#` comments), relative to the config file
   */
  trust: Schema.Union(Schema.Literal("any"), Schema.Array(NonEmpty)),
  handshakeTimeout: Schema.optional(DurationString)
}).annotations(strict)

/**
 * @since 0.1.0
 * @category models
 */
export type SecureConfig = Schema.Schema.Type<typeof SecureConfig>

/**
 * The `[persistence]` section: where durable actors keep their state. `store = "nats-kv"` (the
 * default) is a JetStream key-value bucket on the `[nats]` servers; `store = "memory"` keeps it in
 * this process only (lost when it exits, not shared with other nodes).
 *
 * @since 0.5.0
 * @category schemas
 */
export const PersistenceConfig = Schema.Struct({
  store: Schema.optional(Schema.Literal("nats-kv", "memory")),
  /** the bucket (default "troupe"); nats-kv only */
  bucket: Schema.optional(Name),
  /** copies of each value on a JetStream cluster, 1 to 5 (default 1); nats-kv only */
  replicas: Schema.optional(
    Schema.Int.pipe(Schema.between(1, 5, { message: () => "expected a whole number from 1 to 5" }))
  ),
  /** the largest value, in bytes */
  maxValueBytes: Schema.optional(Schema.Int.pipe(Schema.positive())),
  /** how long one store operation may take (default 5 seconds); nats-kv only */
  timeout: Schema.optional(DurationString)
}).annotations(strict)

/**
 * @since 0.5.0
 * @category models
 */
export type PersistenceConfig = Schema.Schema.Type<typeof PersistenceConfig>

/**
 * @since 0.1.0
 * @category schemas
 */
export const TroupeConfig = Schema.Struct({
  node: Schema.optional(
    Schema.Struct({
      name: Schema.optional(Name),
      namespace: Schema.optional(Name),
      codec: Schema.optional(Schema.Literal("msgpack", "json")),
      askTimeout: Schema.optional(DurationString),
      shutdownTimeout: Schema.optional(DurationString),
      /** which asks are traced: true, false or "auto" (the default; see `NodeOptions.tracing`) */
      tracing: Schema.optional(Schema.Union(Schema.Boolean, Schema.Literal("auto")))
    }).annotations(strict)
  ),
  nats: Schema.optional(
    Schema.Struct({
      servers: Schema.Union(Schema.String, Schema.NonEmptyArray(Schema.String)),
      heartbeat: Schema.optional(DurationString),
      /** the largest encoded frame sent or accepted, in bytes (default 5 MiB) */
      maxMessageBytes: Schema.optional(Schema.Int.pipe(Schema.positive())),
      /** how long a new ask waits for a lost connection to come back (default 2 seconds; @since 0.5.0) */
      reconnectWait: Schema.optional(DurationString)
    }).annotations(strict)
  ),
  secure: Schema.optional(SecureConfig),
  persistence: Schema.optional(PersistenceConfig),
  http: Schema.optional(
    Schema.Struct({
      port: Port,
      host: Schema.optional(Schema.String),
      maxBodySize: Schema.optional(Schema.Int.pipe(Schema.nonNegative())),
      timeout: Schema.optional(DurationString),
      routes: Schema.optionalWith(Schema.Array(RouteConfig), { default: () => [] })
    }).annotations(strict)
  ),
  /** modules to load, relative to the config file; each exports a Layer (`layer` or default) */
  modules: Schema.optionalWith(Schema.Array(Schema.String.pipe(Schema.nonEmptyString())), { default: () => [] })
}).annotations(strict)

/**
 * A decoded config file.
 *
 * @since 0.1.0
 * @category models
 */
export interface Config extends Schema.Schema.Type<typeof TroupeConfig> {
  /** the absolute path of the file it was read from (modules resolve against its folder) */
  readonly file: string
}

/**
 * @since 0.1.0
 * @category models
 */
export type RouteConfig = Schema.Schema.Type<typeof RouteConfig>

/**
 * @since 0.1.0
 * @category errors
 */
export class ConfigIssue extends Schema.Class<ConfigIssue>("ConfigIssue")({
  /** where in the file, such as `http.routes[1].method` (or `line 3, column 7` for syntax) */
  path: Schema.String,
  message: Schema.String
}) {}

/**
 * Every mistake found in a config file, each with its path.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  file: Schema.String,
  issues: Schema.Array(ConfigIssue)
}) {
  override get message(): string {
    return `${this.file}: ${this.issues.length} problem(s)\n${
      this.issues.map((i) => `  ${i.path}: ${i.message}`).join("\n")
    }`
  }
}

const formatPath = (path: ReadonlyArray<PropertyKey>): string => {
  let out = ""
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`
    else out += out === "" ? String(segment) : `.${String(segment)}`
  }
  return out === "" ? "(root)" : out
}

const EXPECTED = /^Expected (.+), actual (.+)$/s

/**
 * One issue per path, in words: Schema reports each member of a union (and the `undefined` of
 * every optional field) separately; merge those into `Expected "GET" | "POST", actual "FETCH"`.
 */
const readableIssues = (error: ParseResult.ParseError): Array<ConfigIssue> => {
  const byPath = new Map<string, Array<string>>()
  for (const issue of ParseResult.ArrayFormatter.formatErrorSync(error)) {
    if (/^Expected undefined, actual /.test(issue.message)) continue
    const path = formatPath(issue.path)
    const messages = byPath.get(path) ?? []
    if (!messages.includes(issue.message)) messages.push(issue.message)
    byPath.set(path, messages)
  }
  const issues: Array<ConfigIssue> = []
  for (const [path, messages] of byPath) {
    const custom = messages.filter((m) => !EXPECTED.test(m))
    if (custom.length > 0) {
      for (const message of custom) issues.push(new ConfigIssue({ path, message }))
      continue
    }
    const parts = messages.map((m) => EXPECTED.exec(m)!)
    const actual = parts[0]![2]
    const message = parts.every((p) => p[2] === actual)
      ? `Expected ${parts.map((p) => p[1]).join(" | ")}, actual ${actual}`
      : messages.join("; ")
    issues.push(new ConfigIssue({ path, message }))
  }
  return issues
}

const decode = Schema.decodeUnknownEither(TroupeConfig, { errors: "all", onExcessProperty: "error" })

/**
 * Validates an already parsed value (from TOML or JSON) as a config; `file` names it in errors.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromValue = (value: unknown, file: string): Either.Either<Config, ConfigError> => {
  const decoded = decode(value)
  if (Either.isRight(decoded)) return Either.right({ ...decoded.right, file: Path.resolve(file) })
  return Either.left(new ConfigError({ file, issues: readableIssues(decoded.left) }))
}

/**
 * Parses config text: JSON when `file` ends in `.json`, TOML otherwise.
 *
 * @since 0.1.0
 * @category constructors
 */
export const parse = (text: string, file: string): Either.Either<Config, ConfigError> => {
  let value: unknown
  try {
    value = file.endsWith(".json") ? JSON.parse(text) : parseToml(text)
  } catch (error) {
    const path = error instanceof TomlError ? `line ${error.line}, column ${error.column}` : "(syntax)"
    const message = error instanceof Error ? error.message.split("\n")[0]! : String(error)
    return Either.left(new ConfigError({ file, issues: [new ConfigIssue({ path, message })] }))
  }
  return fromValue(value, file)
}

/**
 * Reads and validates a config file (`.toml`, or `.json`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const load = (file: string): Effect.Effect<Config, ConfigError> =>
  Effect.tryPromise({
    try: () => readFile(file, "utf8"),
    catch: (error) =>
      new ConfigError({
        file,
        issues: [new ConfigIssue({ path: "(file)", message: `cannot read: ${(error as Error).message}` })]
      })
  }).pipe(Effect.flatMap((text) => parse(text, file)))

/**
 * The absolute paths of the config's modules (resolved against the config file's folder).
 *
 * @since 0.1.0
 * @category accessors
 */
export const modulePaths = (config: Config): ReadonlyArray<string> =>
  config.modules.map((module) => resolvePath(config, module))

/**
 * A path of the config (a module, a key file) as an absolute path: relative ones against the
 * config file's folder.
 *
 * @since 0.1.0
 * @category accessors
 */
export const resolvePath = (config: Config, path: string): string => Path.resolve(Path.dirname(config.file), path)
