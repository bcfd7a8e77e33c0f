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
import { writeFileSync } from "node:fs"
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
  new Promise((resolve, reject) => session.post(method, (error, result) => (error === null ? resolve(result) : reject(error))))

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
