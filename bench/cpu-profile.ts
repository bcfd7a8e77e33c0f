/**
 * A V8 CPU profile of the current process through `node:inspector`: started on demand, written
 * to a file when stopped. For child processes, where `--cpu-prof` cannot be passed (Node refuses
 * it in `NODE_OPTIONS`), and for profiling one phase of a run only.
 *
 * tsx compiles each `.ts` file to one line of JavaScript, so the positions V8 records for our
 * own code are useless as they are: before writing, every frame of a file outside
 * `node_modules` is mapped back to its TypeScript line through the source map tsx registered
 * (`module.findSourceMap`).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { readFileSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector"
import { findSourceMap } from "node:module"
import { fileURLToPath } from "node:url"

interface CallFrame {
  readonly url: string
  lineNumber: number
  columnNumber: number
}

interface ProfileNode {
  readonly callFrame: CallFrame
  positionTicks?: unknown
}

/** Rewrites the positions of our own (tsx-compiled) frames to their TypeScript lines. */
const mapToSources = (profile: { readonly nodes: ReadonlyArray<ProfileNode> }): void => {
  const maps = new Map<string, ReturnType<typeof findSourceMap>>()
  for (const node of profile.nodes) {
    const { url, lineNumber, columnNumber } = node.callFrame
    if (!url.startsWith("file://") || url.includes("/node_modules/") || lineNumber < 0) continue
    let map = maps.get(url)
    if (!maps.has(url)) {
      map = findSourceMap(fileURLToPath(url)) ?? findSourceMap(url)
      maps.set(url, map)
    }
    if (map === undefined) continue
    const entry = map.findEntry(lineNumber, columnNumber)
    if (!("originalLine" in entry)) continue
    node.callFrame.lineNumber = entry.originalLine
    node.callFrame.columnNumber = entry.originalColumn
    // the ticks are per line of the compiled code: one line, no information
    delete node.positionTicks
  }
}

const post = (session: Session, method: string): Promise<unknown> =>
  new Promise((resolve, reject) =>
    session.post(method, (error, result) => (error === null ? resolve(result) : reject(error)))
  )

/**
 * Starts profiling the process; the returned function stops and writes the profile to `path`.
 *
 * @since 0.1.0
 * @category profiling
 */
export const startCpuProfile = async (path: string): Promise<() => Promise<void>> => {
  const session = new Session()
  session.connect()
  await post(session, "Profiler.enable")
  await post(session, "Profiler.start")
  return async () => {
    try {
      const result = await post(session, "Profiler.stop")
      const profile = (result as { profile: { nodes: Array<ProfileNode> } }).profile
      mapToSources(profile)
      writeFileSync(path, JSON.stringify(profile))
    } finally {
      session.disconnect()
    }
  }
}

/**
 * Profiles the process until the scope closes, then writes the `.cpuprofile` to `path`.
 *
 * @since 0.1.0
 * @category profiling
 */
export const cpuProfile = (path: string) =>
  Effect.acquireRelease(
    Effect.promise(() => startCpuProfile(path)),
    (stop) => Effect.ignoreLogged(Effect.tryPromise(stop))
  )

/**
 * The program of a Troupe bench child: builds `layer`, profiles the process from then on when
 * `BENCH_CPU_PROFILE=file` is set, prints `ready` and serves until interrupted (SIGTERM under
 * `NodeRuntime.runMain`), when the scope closes the layer and writes the profile. Logs below
 * WARNING are silenced.
 *
 * @since 0.5.0
 */
export const serveLayer = <A, E, R>(layer: Layer.Layer<A, E, R>) =>
  Effect.gen(function*() {
    yield* Layer.build(layer)
    const profilePath = process.env["BENCH_CPU_PROFILE"]
    if (profilePath !== undefined && profilePath.length > 0) yield* cpuProfile(profilePath)
    yield* Effect.sync(() => console.log("ready"))
    return yield* Effect.never
  }).pipe(Effect.scoped, Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)))

/**
 * User + system CPU time of a process in microseconds (Linux `/proc`), or NaN.
 *
 * @since 0.1.0
 */
export const cpuMicros = (pid: number): number => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // fields 14 and 15 of stat (utime, stime), counted from the state field (3)
    return ((Number(fields[11]) + Number(fields[12])) / 100) * 1e6
  } catch {
    return Number.NaN
  }
}

/**
 * The end of a raw bench child: profiles the process from now when `BENCH_CPU_PROFILE=file` is
 * set, prints `ready`, and on SIGTERM writes the profile, drains the connection and exits.
 *
 * @since 0.1.0
 */
export const serveUntilStopped = async (
  nc: { readonly drain: () => Promise<void>; readonly close: () => Promise<void> }
) => {
  const profilePath = process.env["BENCH_CPU_PROFILE"]
  const stopProfile = profilePath !== undefined && profilePath.length > 0
    ? await startCpuProfile(profilePath)
    : undefined
  console.log("ready")
  process.once("SIGTERM", () => {
    Promise.resolve(stopProfile?.())
      .catch((error) => console.error("could not write the CPU profile:", error))
      .then(() => nc.drain())
      .catch(() => nc.close())
      .finally(() => process.exit(0))
  })
}
