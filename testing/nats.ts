/**
 * Real-process test fixtures: nats-server instances, nats-server clusters, and Node child
 * processes running TypeScript through tsx.
 *
 * Nothing here is mocked. Every process started is tracked and killed by PID when the test
 * worker exits, so a crashed suite does not leak servers. Every wait is bounded in time and
 * fails with an error that carries the process's stderr.
 *
 * Shared by the tests (through `test/fixtures/nats.ts`) and the benches (`bench/`); outside the
 * published package.
 *
 * @example
 * ```ts
 * import { afterAll, beforeAll, it } from "vitest"
 * import { startNatsServer, type NatsServer } from "../fixtures/nats.ts"
 *
 * let server: NatsServer
 * beforeAll(async () => { server = await startNatsServer() })
 * afterAll(() => server.stop())
 *
 * it("connects", async () => {
 *   const nc = await connect({ servers: server.url })
 *   await nc.close()
 * })
 * ```
 *
 * @since 0.1.0
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Http from "node:http"
import { createRequire } from "node:module"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Readline from "node:readline"
import { setTimeout as sleep } from "node:timers/promises"
import { pathToFileURL } from "node:url"
import { Effect, type Scope } from "effect"

// ---------------------------------------------------------------------------------------------
// Process tracking
// ---------------------------------------------------------------------------------------------

const liveProcesses = new Set<ChildProcess>()
const liveTempDirs = new Set<string>()

let exitHookInstalled = false

/** Last resort: if the test worker exits (or crashes) with children still running, kill them. */
const installExitHook = (): void => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on("exit", () => {
    for (const child of liveProcesses) {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(child.pid, "SIGKILL")
        } catch {
          // already gone
        }
      }
    }
    liveProcesses.clear()
    for (const dir of liveTempDirs) removeDir(dir)
  })
}

const track = (child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
  installExitHook()
  liveProcesses.add(child)
  return new Promise((resolve) => {
    // "exit" rather than "close": stdio of a killed process may stay open in grandchildren
    child.once("exit", (code, signal) => {
      liveProcesses.delete(child)
      resolve({ code, signal })
    })
    child.once("error", () => {
      liveProcesses.delete(child)
      resolve({ code: null, signal: null })
    })
  })
}

const isRunning = (child: ChildProcess): boolean => child.exitCode === null && child.signalCode === null

/** Sends SIGTERM, then SIGKILL after `graceMs`, and resolves once the process has exited. */
const terminate = async (
  child: ChildProcess,
  exited: Promise<unknown>,
  graceMs: number
): Promise<void> => {
  // the timers of the races are cancelled once the child exits, so a stopped child does not keep
  // its parent alive for the rest of the wait
  const exitedWithin = async (ms: number): Promise<boolean> => {
    const timer = new AbortController()
    try {
      return await Promise.race([
        exited.then(() => true),
        sleep(ms, undefined, { signal: timer.signal }).then(() => false, () => false)
      ])
    } finally {
      timer.abort()
    }
  }
  if (isRunning(child)) {
    child.kill("SIGTERM")
    if (!(await exitedWithin(graceMs)) && isRunning(child)) child.kill("SIGKILL")
  }
  if (!(await exitedWithin(5_000))) {
    throw new Error(`process ${child.pid} did not exit within ${graceMs + 5_000} ms of SIGTERM/SIGKILL`)
  }
}

/** Keeps the last `maxChars` characters of a stream, for error messages. */
const captureTail = (stream: NodeJS.ReadableStream | null, maxChars = 8_000): { text: () => string } => {
  let buffer = ""
  stream?.setEncoding("utf8")
  stream?.on("data", (chunk: string) => {
    buffer = (buffer + chunk).slice(-maxChars)
  })
  return { text: () => buffer }
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/**
 * Polls `check` every `intervalMs` until it returns a value other than `undefined`, or fails
 * after `timeoutMs` with an error naming `description` and the last error thrown by `check`.
 *
 * @example
 * ```ts
 * await eventually(async () => (await server.subscriptionCount()) === 3 || undefined, {
 *   description: "3 subscriptions"
 * })
 * ```
 */
export const eventually = async <A>(
  check: () => Promise<A | undefined> | A | undefined,
  options: {
    readonly timeoutMs?: number | undefined
    readonly intervalMs?: number | undefined
    readonly description?: string | undefined
  } = {}
): Promise<A> => {
  const timeoutMs = options.timeoutMs ?? 10_000
  const intervalMs = options.intervalMs ?? 50
  const deadline = Date.now() + timeoutMs
  let lastError: unknown = undefined
  for (;;) {
    try {
      const result = await check()
      if (result !== undefined) return result
    } catch (error) {
      lastError = error
    }
    if (Date.now() >= deadline) {
      const cause = lastError === undefined ? "" : ` (last error: ${String(lastError)})`
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${options.description ?? "condition"}${cause}`)
    }
    await sleep(intervalMs)
  }
}

/**
 * Returns `count` distinct free TCP ports on 127.0.0.1, found by binding port 0 and closing.
 * All listeners are held open together so the ports are distinct from each other.
 */
export const freePorts = async (count: number): Promise<Array<number>> => {
  const servers: Array<Net.Server> = []
  try {
    const ports: Array<number> = []
    for (let i = 0; i < count; i++) {
      const server = Net.createServer()
      servers.push(server)
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject)
        server.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => resolve())
      })
      const address = server.address()
      if (address === null || typeof address === "string") throw new Error("could not read bound port")
      ports.push(address.port)
    }
    return ports
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))))
  }
}

/** Returns one free TCP port on 127.0.0.1. */
export const freePort = async (): Promise<number> => (await freePorts(1))[0]!

/** GETs `http://127.0.0.1:<port><path>` with a per-request timeout; rejects on non-2xx. */
const httpGet = (port: number, path: string, timeoutMs = 1_000): Promise<string> =>
  new Promise((resolve, reject) => {
    const request = Http.get({ host: "127.0.0.1", port, path, timeout: timeoutMs }, (response) => {
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => {
        body += chunk
      })
      response.on("end", () => {
        const status = response.statusCode ?? 0
        if (status >= 200 && status < 300) resolve(body)
        else reject(new Error(`GET ${path} on port ${port}: HTTP ${status} ${body}`))
      })
      response.on("error", reject)
    })
    request.on("timeout", () => request.destroy(new Error(`GET ${path} on port ${port}: timed out`)))
    request.on("error", reject)
  })

const getJson = async <A>(port: number, path: string): Promise<A> => JSON.parse(await httpGet(port, path)) as A

/** Resolves once a TCP connection to 127.0.0.1:`port` succeeds; rejects otherwise. */
const tcpProbe = (port: number, timeoutMs = 1_000): Promise<void> =>
  new Promise((resolve, reject) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    socket.setTimeout(timeoutMs)
    socket.once("connect", () => {
      socket.destroy()
      resolve()
    })
    socket.once("timeout", () => socket.destroy(new Error(`connect to port ${port} timed out`)))
    socket.once("error", reject)
  })

// ---------------------------------------------------------------------------------------------
// nats-server binary
// ---------------------------------------------------------------------------------------------

/** The command that installs nats-server on the Debian/Ubuntu images this project uses. */
export const NATS_INSTALL_COMMAND = "apt-get update && apt-get install -y nats-server"

const isExecutable = (file: string): boolean => {
  try {
    Fs.accessSync(file, Fs.constants.X_OK)
    return Fs.statSync(file).isFile()
  } catch {
    return false
  }
}

let cachedBinary: string | undefined

/**
 * Locates the nats-server binary: `$NATS_SERVER_BIN`, then `nats-server` on `PATH`, then
 * `/usr/sbin/nats-server`, `/usr/local/bin/nats-server`. Throws with the install command if
 * none exists.
 */
export const natsServerBinary = (): string => {
  if (cachedBinary !== undefined) return cachedBinary
  const fromEnv = process.env["NATS_SERVER_BIN"]
  if (fromEnv !== undefined && fromEnv !== "") {
    if (!isExecutable(fromEnv)) {
      throw new Error(
        `NATS_SERVER_BIN=${fromEnv} is not an executable file. Unset it or install nats-server: ${NATS_INSTALL_COMMAND}`
      )
    }
    return (cachedBinary = fromEnv)
  }
  const onPath = (process.env["PATH"] ?? "")
    .split(Path.delimiter)
    .filter((dir) => dir !== "")
    .map((dir) => Path.join(dir, "nats-server"))
  const found = [...onPath, "/usr/sbin/nats-server", "/usr/local/bin/nats-server"].find(isExecutable)
  if (found === undefined) {
    throw new Error(
      `nats-server not found (looked at $NATS_SERVER_BIN, PATH, /usr/sbin, /usr/local/bin). Install it with: ${NATS_INSTALL_COMMAND}`
    )
  }
  return (cachedBinary = found)
}

// ---------------------------------------------------------------------------------------------
// Single server
// ---------------------------------------------------------------------------------------------

/** Options for {@link startNatsServer}. */
export interface NatsServerOptions {
  /** Maximum message payload in bytes, written to a config file (2.9 has no CLI flag). Default: server default (1 MiB). */
  readonly maxPayload?: number | undefined
  /** Extra command-line arguments appended after the fixture's own. Default: none. */
  readonly args?: ReadonlyArray<string> | undefined
  /** How long to wait for the server to become healthy, in ms. Default: 10 000. */
  readonly startTimeoutMs?: number | undefined
  /** Server name (`--server_name`). Default: generated by nats-server. */
  readonly name?: string | undefined
  /**
   * Enable JetStream (`-js -sd <temp dir>`; nats-server writes under `<temp dir>/jetstream`). The
   * store dir is the server's own temp dir: kept across {@link NatsServer.restart} (the data
   * survives), removed on `stop`. In a cluster each server has its own.
   * Default: false. (@since 0.5.0)
   */
  readonly jetstream?: boolean | undefined
}

/** A running nats-server process on loopback. `pid` changes after {@link NatsServer.restart}. */
export interface NatsServer {
  /** Client URL, `nats://127.0.0.1:<port>`. Stable across restarts. */
  readonly url: string
  /** Client port. Stable across restarts. */
  readonly port: number
  /** HTTP monitoring port. Stable across restarts. */
  readonly monitorPort: number
  /** PID of the current process. */
  readonly pid: number
  /** Whether the current process is still running. */
  readonly running: boolean
  /** SIGTERM, then SIGKILL after a bounded wait; resolves once the process has exited. Idempotent. */
  stop(): Promise<void>
  /** Sends `signal` (default `SIGKILL`) to the current process without waiting. */
  kill(signal?: NodeJS.Signals): void
  /** Stops the current process if it is still running, then starts a new one on the same ports. */
  restart(): Promise<void>
  /**
   * Number of subscriptions the server holds (`/subsz` `num_subscriptions`; includes internal ones),
   * or, given `subject`, the number of client subscriptions whose subject contains it.
   */
  subscriptionCount(subject?: string): Promise<number>
  /** Number of routes to other cluster members (`/routez` `num_routes`). */
  routeCount(): Promise<number>
  /** Number of client connections (`/connz` `num_connections`), or, given `name`, of those with that client name. */
  connectionCount(name?: string): Promise<number>
  /** The last few kilobytes of the current process's stderr (nats-server logs there). */
  stderr(): string
  /** The JetStream store dir (`-sd`), or `undefined` without `jetstream`. Stable across restarts. (@since 0.5.0) */
  readonly storeDir: string | undefined
  /**
   * The JetStream meta leader's server name as this server sees it (`/jsz` `meta_cluster.leader`),
   * `""` while there is none, `undefined` when JetStream runs without a cluster. (@since 0.5.0)
   */
  metaLeader(): Promise<string | undefined>
}

interface ServerPorts {
  readonly port: number
  readonly monitorPort: number
}

interface RunningProcess {
  readonly child: ChildProcess
  readonly exited: Promise<unknown>
  readonly stderr: { text: () => string }
}

const STOP_GRACE_MS = 5_000

const isAddressInUse = (text: string): boolean => /address already in use/i.test(text)

class StartError extends Error {
  constructor(message: string, readonly addressInUse: boolean) {
    super(message)
  }
}

/** Spawns nats-server with `args` and waits until `/healthz` answers and the client port accepts. */
const spawnNatsServer = async (
  args: ReadonlyArray<string>,
  ports: ServerPorts,
  timeoutMs: number
): Promise<RunningProcess> => {
  const child = spawn(natsServerBinary(), args, { stdio: ["ignore", "pipe", "pipe"] })
  const exited = track(child)
  const stderr = captureTail(child.stderr)
  const stdout = captureTail(child.stdout)
  const logs = () => `${stderr.text()}${stdout.text()}`
  let exitedEarly: { code: number | null; signal: NodeJS.Signals | null } | undefined
  void exited.then((outcome) => {
    exitedEarly = outcome
  })
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (exitedEarly !== undefined) {
      throw new StartError(
        `nats-server (${
          args.join(" ")
        }) exited before becoming ready (code ${exitedEarly.code}, signal ${exitedEarly.signal}):\n${logs()}`,
        isAddressInUse(logs())
      )
    }
    try {
      await httpGet(ports.monitorPort, "/healthz", 500)
      await tcpProbe(ports.port, 500)
      return { child, exited, stderr }
    } catch {
      // not ready yet
    }
    if (Date.now() >= deadline) {
      await terminate(child, exited, 1_000).catch(() => undefined)
      throw new StartError(
        `nats-server (${args.join(" ")}) not ready within ${timeoutMs} ms:\n${logs()}`,
        isAddressInUse(logs())
      )
    }
    await sleep(50)
  }
}

const makeTempDir = (): string => {
  installExitHook()
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "troupe-nats-"))
  liveTempDirs.add(dir)
  return dir
}

function removeDir(dir: string): void {
  liveTempDirs.delete(dir)
  try {
    Fs.rmSync(dir, { recursive: true, force: true })
  } catch {
    // best effort
  }
}

interface ServerPlan {
  readonly ports: ServerPorts
  readonly args: ReadonlyArray<string>
  readonly tempDir: string
  readonly storeDir: string | undefined
  readonly startTimeoutMs: number
}

const planServer = (
  options: NatsServerOptions,
  ports: ServerPorts,
  extraArgs: ReadonlyArray<string>
): ServerPlan => {
  const tempDir = makeTempDir()
  const args = ["-a", "127.0.0.1", "-p", String(ports.port), "-m", String(ports.monitorPort)]
  if (options.maxPayload !== undefined) {
    if (!Number.isInteger(options.maxPayload) || options.maxPayload <= 0) {
      throw new Error(`maxPayload must be a positive integer, got ${options.maxPayload}`)
    }
    const configFile = Path.join(tempDir, "nats.conf")
    Fs.writeFileSync(configFile, `max_payload: ${options.maxPayload}\n`)
    args.unshift("-c", configFile)
  }
  if (options.name !== undefined) args.push("--server_name", options.name)
  // nats-server keeps its streams under <-sd>/jetstream
  const storeDir = options.jetstream === true ? tempDir : undefined
  if (storeDir !== undefined) args.push("-js", "-sd", storeDir)
  args.push(...extraArgs, ...(options.args ?? []))
  return { ports, args, tempDir, storeDir, startTimeoutMs: options.startTimeoutMs ?? 10_000 }
}

/** Starts the planned server and wraps it in a handle whose `restart` reuses the plan. */
const launch = async (plan: ServerPlan): Promise<NatsServer> => {
  let current: RunningProcess
  try {
    current = await spawnNatsServer(plan.args, plan.ports, plan.startTimeoutMs)
  } catch (error) {
    removeDir(plan.tempDir)
    throw error
  }
  let stopped = false
  const { port, monitorPort } = plan.ports
  const handle: NatsServer = {
    url: `nats://127.0.0.1:${port}`,
    port,
    monitorPort,
    get pid() {
      return current.child.pid ?? -1
    },
    get running() {
      return isRunning(current.child)
    },
    stop: async () => {
      stopped = true
      await terminate(current.child, current.exited, STOP_GRACE_MS)
      removeDir(plan.tempDir)
    },
    kill: (signal = "SIGKILL") => {
      if (isRunning(current.child)) current.child.kill(signal)
    },
    restart: async () => {
      if (stopped) throw new Error(`nats-server on port ${port} was stopped; start a new one instead of restarting`)
      await terminate(current.child, current.exited, STOP_GRACE_MS)
      current = await spawnNatsServer(plan.args, plan.ports, plan.startTimeoutMs)
    },
    subscriptionCount: async (subject?: string) => {
      if (subject === undefined) {
        return (await getJson<{ num_subscriptions: number }>(monitorPort, "/subsz")).num_subscriptions
      }
      const detail = await getJson<{ subscriptions_list?: ReadonlyArray<{ subject: string }> }>(
        monitorPort,
        "/subsz?subs=1&limit=100000"
      )
      return (detail.subscriptions_list ?? []).filter((sub) => sub.subject.includes(subject)).length
    },
    routeCount: async () => (await getJson<{ num_routes: number }>(monitorPort, "/routez")).num_routes,
    connectionCount: async (name?: string) => {
      const connz = await getJson<{ num_connections: number; connections?: ReadonlyArray<{ name?: string }> }>(
        monitorPort,
        "/connz?limit=100000"
      )
      return name === undefined
        ? connz.num_connections
        : (connz.connections ?? []).filter((connection) => connection.name === name).length
    },
    stderr: () => current.stderr.text(),
    storeDir: plan.storeDir,
    metaLeader: async () => {
      const jsz = await getJson<{ meta_cluster?: { leader?: string } }>(monitorPort, "/jsz")
      return jsz.meta_cluster === undefined ? undefined : (jsz.meta_cluster.leader ?? "")
    }
  }
  return handle
}

const START_ATTEMPTS = 3

/**
 * Starts a nats-server on free loopback ports (client and monitoring), in its own temp dir,
 * and waits until it is healthy and accepting connections (bounded, default 10 s).
 *
 * @example
 * ```ts
 * const server = await startNatsServer({ maxPayload: 64 * 1024 })
 * const nc = await connect({ servers: server.url })
 * // ...
 * await nc.close()
 * await server.stop()
 * ```
 */
export const startNatsServer = async (options: NatsServerOptions = {}): Promise<NatsServer> => {
  for (let attempt = 1;; attempt++) {
    const [port, monitorPort] = (await freePorts(2)) as [number, number]
    try {
      return await launch(planServer(options, { port, monitorPort }, []))
    } catch (error) {
      // Another process may grab a port between our probe and nats-server's bind: pick new ones.
      if (error instanceof StartError && error.addressInUse && attempt < START_ATTEMPTS) continue
      throw error
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------------------------

/** Options for {@link startNatsCluster}. */
export interface NatsClusterOptions extends Omit<NatsServerOptions, "name"> {
  // servers are named troupe-test-<index>
  /** How long to wait for every server to see all its routes, in ms. Default: 15 000. */
  readonly routeTimeoutMs?: number | undefined
}

/** A running full-mesh nats-server cluster on loopback. */
export interface NatsCluster {
  /** One handle per server, in start order. */
  readonly servers: ReadonlyArray<NatsServer>
  /** Client URLs, one per server, in the same order. */
  readonly urls: ReadonlyArray<string>
  /** Route (cluster) ports, one per server. */
  readonly clusterPorts: ReadonlyArray<number>
  /** Waits (bounded) until every running server reports `running - 1` routes, e.g. after a restart. */
  waitForRoutes(timeoutMs?: number): Promise<void>
  /**
   * With `jetstream`: waits (bounded) until every running server names the same running server
   * as its JetStream meta leader, e.g. after a restart. (@since 0.5.0)
   */
  waitForJetStream(timeoutMs?: number): Promise<void>
  /** Stops every server. */
  stop(): Promise<void>
}

const waitForFullMesh = async (servers: ReadonlyArray<NatsServer>, timeoutMs: number): Promise<void> => {
  const running = servers.filter((server) => server.running)
  const expected = running.length - 1
  let last: Array<number> = []
  try {
    await eventually(
      async () => {
        last = await Promise.all(running.map((server) => server.routeCount()))
        return last.every((count) => count === expected) || undefined
      },
      { timeoutMs, intervalMs: 100, description: `every server to report ${expected} routes` }
    )
  } catch (error) {
    const logs = running.map((server, i) => `--- server ${i} (${server.url}) ---\n${server.stderr()}`).join("\n")
    throw new Error(`${(error as Error).message}; last route counts: [${last.join(", ")}]\n${logs}`)
  }
}

const waitForMetaLeader = async (servers: ReadonlyArray<NatsServer>, timeoutMs: number): Promise<void> => {
  const names = servers.map((_, i) => `troupe-test-${i}`)
  let last: Array<string | undefined> = []
  try {
    await eventually(
      async () => {
        const running = servers.filter((server) => server.running)
        last = await Promise.all(running.map((server) => server.metaLeader()))
        const leader = last[0]
        if (leader === undefined || leader === "") return undefined
        const leaderRunning = servers[names.indexOf(leader)]?.running === true
        return (leaderRunning && last.every((name) => name === leader)) || undefined
      },
      { timeoutMs, intervalMs: 100, description: "every server to agree on a running JetStream meta leader" }
    )
  } catch (error) {
    const logs = servers.map((server, i) => `--- server ${i} (${server.url}) ---\n${server.stderr()}`).join("\n")
    throw new Error(`${(error as Error).message}; last leaders: [${last.join(", ")}]\n${logs}`)
  }
}

/**
 * Starts `size` nats-servers on loopback, each routing to all the others
 * (`--cluster`, `--routes`, `--cluster_name troupe-test`), and waits until every server reports
 * `size - 1` routes. With `jetstream`, each server (named `troupe-test-<index>`, as a JetStream
 * cluster needs) keeps its own store dir, and the start also waits for a JetStream meta leader.
 *
 * @example
 * ```ts
 * const cluster = await startNatsCluster(3)
 * const a = await connect({ servers: cluster.urls[0] })
 * const c = await connect({ servers: cluster.urls[2] })
 * // ...
 * await cluster.stop()
 * ```
 */
export const startNatsCluster = async (size = 3, options: NatsClusterOptions = {}): Promise<NatsCluster> => {
  if (!Number.isInteger(size) || size < 1) throw new Error(`cluster size must be a positive integer, got ${size}`)
  for (let attempt = 1;; attempt++) {
    const ports = await freePorts(size * 3)
    const members = Array.from({ length: size }, (_, i) => ({
      port: ports[i * 3]!,
      monitorPort: ports[i * 3 + 1]!,
      clusterPort: ports[i * 3 + 2]!
    }))
    const started: Array<NatsServer> = []
    try {
      const plans = members.map((member, i) => {
        const routes = members
          .filter((_, j) => j !== i)
          .map((other) => `nats://127.0.0.1:${other.clusterPort}`)
          .join(",")
        const clusterArgs = [
          "--cluster",
          `nats://127.0.0.1:${member.clusterPort}`,
          "--cluster_name",
          "troupe-test",
          ...(routes === "" ? [] : ["--routes", routes])
        ]
        return planServer({ ...options, name: `troupe-test-${i}` }, member, clusterArgs)
      })
      if (options.jetstream === true) {
        // a clustered JetStream server reports healthy only once it has peers: start them together
        const launched = await Promise.allSettled(plans.map(launch))
        for (const result of launched) if (result.status === "fulfilled") started.push(result.value)
        const failed = launched.find((result) => result.status === "rejected")
        if (failed !== undefined) throw failed.reason
      } else {
        for (const plan of plans) started.push(await launch(plan))
      }
      const cluster: NatsCluster = {
        servers: started,
        urls: started.map((server) => server.url),
        clusterPorts: members.map((member) => member.clusterPort),
        waitForRoutes: (timeoutMs = options.routeTimeoutMs ?? 15_000) => waitForFullMesh(started, timeoutMs),
        waitForJetStream: (timeoutMs = options.routeTimeoutMs ?? 15_000) => waitForMetaLeader(started, timeoutMs),
        stop: async () => {
          await Promise.all(started.map((server) => server.stop()))
        }
      }
      await cluster.waitForRoutes()
      if (options.jetstream === true) await cluster.waitForJetStream()
      return cluster
    } catch (error) {
      await Promise.all(started.map((server) => server.stop().catch(() => undefined)))
      if (error instanceof StartError && error.addressInUse && attempt < START_ATTEMPTS) continue
      throw error
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Effect resources (for `it.scoped`)
// ---------------------------------------------------------------------------------------------

/**
 * A nats-server as a scoped Effect resource: started on acquire, stopped when the scope closes.
 *
 * @example
 * ```ts
 * it.scoped("talks to nats", () =>
 *   Effect.gen(function*() {
 *     const server = yield* natsServerResource()
 *     // ...
 *   }))
 * ```
 */
export const natsServerResource = (options: NatsServerOptions = {}): Effect.Effect<NatsServer, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => startNatsServer(options)),
    (server) => Effect.promise(() => server.stop())
  )

/** A nats-server cluster as a scoped Effect resource: started on acquire, stopped on close. */
export const natsClusterResource = (
  size = 3,
  options: NatsClusterOptions = {}
): Effect.Effect<NatsCluster, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => startNatsCluster(size, options)),
    (cluster) => Effect.promise(() => cluster.stop())
  )

// ---------------------------------------------------------------------------------------------
// Node child processes
// ---------------------------------------------------------------------------------------------

/** A Node child process running a TypeScript file through tsx. */
export interface NodeChild {
  readonly pid: number
  /** Every stdout line so far, in order (live array: it grows as the child prints). */
  readonly lines: ReadonlyArray<string>
  /** The last few kilobytes of stderr. */
  stderr(): string
  /**
   * Resolves with the first stdout line (already printed or yet to come) matching `match`;
   * rejects after `timeoutMs` (default 10 000) or if the child exits first.
   */
  waitForLine(match: RegExp | ((line: string) => boolean), timeoutMs?: number): Promise<string>
  /** Sends `signal` (default `SIGTERM`) without waiting. */
  kill(signal?: NodeJS.Signals): void
  /** SIGTERM, then SIGKILL after a bounded wait; resolves once the child has exited. */
  stop(): Promise<void>
  /** Resolves with the exit code, or `null` if the child was ended by a signal. */
  readonly exited: Promise<number | null>
}

let tsxLoaderUrl: string | undefined

/** Absolute URL of tsx's loader, so `--import` works whatever the child's working directory. */
const tsxLoader = (): string => (tsxLoaderUrl ??= pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href)

/**
 * Runs `scriptPath` (a `.ts` file) in a real Node child process with
 * `node --import tsx scriptPath ...args`, with `env` merged over the parent's environment.
 * Stdout is split into lines; the process is tracked and killed if the test worker exits.
 *
 * @example
 * ```ts
 * const child = spawnNode(fileURLToPath(new URL("./echo-child.ts", import.meta.url)), ["hello"])
 * await child.waitForLine(/^ready/, 5_000)
 * await child.stop()
 * ```
 */
export const spawnNode = (
  scriptPath: string,
  args: ReadonlyArray<string> = [],
  env: Readonly<Record<string, string>> = {},
  /** `tsx: false` runs a plain JS entry point (such as `bin/troupe.mjs`) without `--import tsx` */
  options: { readonly tsx?: boolean | undefined } = {}
): NodeChild => {
  const loader = options.tsx === false ? [] : ["--import", tsxLoader()]
  const child = spawn(process.execPath, [...loader, scriptPath, ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const exitedWithSignal = track(child)
  const exited = exitedWithSignal.then(({ code }) => code)
  const stderr = captureTail(child.stderr)
  const lines: Array<string> = []
  const listeners = new Set<(line: string) => void>()
  let hasExited = false
  const exitListeners = new Set<() => void>()
  void exitedWithSignal.then(() => {
    hasExited = true
    for (const listener of exitListeners) listener()
  })
  if (child.stdout !== null) {
    Readline.createInterface({ input: child.stdout, crlfDelay: Infinity }).on("line", (line) => {
      lines.push(line)
      for (const listener of listeners) listener(line)
    })
  }
  const describe = () => `${scriptPath} (pid ${child.pid})`

  const waitForLine = (match: RegExp | ((line: string) => boolean), timeoutMs = 10_000): Promise<string> => {
    const test = typeof match === "function" ? match : (line: string) => match.test(line)
    const existing = lines.find(test)
    if (existing !== undefined) return Promise.resolve(existing)
    return new Promise<string>((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer)
        listeners.delete(onLine)
        exitListeners.delete(onExit)
      }
      const onLine = (line: string) => {
        if (test(line)) {
          cleanup()
          resolve(line)
        }
      }
      const context = () => `\nstdout:\n${lines.join("\n")}\nstderr:\n${stderr.text()}`
      const onExit = () => {
        // stdout may still hold buffered lines after "exit": give readline a moment to drain.
        setTimeout(() => {
          if (!listeners.has(onLine)) return
          cleanup()
          reject(
            new Error(
              `${describe()} exited (code ${child.exitCode}, signal ${child.signalCode}) before printing a line matching ${
                String(match)
              }${context()}`
            )
          )
        }, 100)
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(
          new Error(
            `timed out after ${timeoutMs} ms waiting for ${describe()} to print a line matching ${
              String(match)
            }${context()}`
          )
        )
      }, timeoutMs)
      listeners.add(onLine)
      exitListeners.add(onExit)
      if (hasExited) onExit()
    })
  }

  return {
    pid: child.pid ?? -1,
    lines,
    stderr: () => stderr.text(),
    waitForLine,
    kill: (signal = "SIGTERM") => {
      if (isRunning(child)) child.kill(signal)
    },
    stop: () => terminate(child, exitedWithSignal, STOP_GRACE_MS),
    exited
  }
}
