/**
 * Summarises a V8 CPU profile (`node --cpu-prof`): self time by category (Troupe's `src/`,
 * effect, nats.js, msgpackr, GC, ...), the top functions by self time overall and within
 * Troupe's code and effect, and the inclusive time of Troupe's functions.
 *
 * `npx tsx bench/profile-top.ts <file.cpuprofile> [top=25]`
 *
 * Line numbers are those of the code V8 ran (for `.ts` files, tsx's output, which keeps most
 * lines of the source).
 *
 * @since 0.1.0
 */
import { readFileSync } from "node:fs"

interface ProfileNode {
  readonly id: number
  readonly callFrame: {
    readonly functionName: string
    readonly url: string
    readonly lineNumber: number
  }
  readonly children?: ReadonlyArray<number>
}

interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const [file, topArg] = process.argv.slice(2)
if (file === undefined) {
  console.error("usage: profile-top.ts <file.cpuprofile> [top]")
  process.exit(2)
}
const top = Number(topArg ?? 25)
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile

const byId = new Map(profile.nodes.map((node) => [node.id, node]))
const parent = new Map<number, number>()
for (const node of profile.nodes) for (const c of node.children ?? []) parent.set(c, node.id)

// self time per node: each sample's id gets the delta to the next sample
const selfMicros = new Map<number, number>()
for (let i = 0; i < profile.samples.length; i++) {
  const delta = profile.timeDeltas[i + 1] ?? 0
  selfMicros.set(profile.samples[i]!, (selfMicros.get(profile.samples[i]!) ?? 0) + delta)
}

const category = (node: ProfileNode): string => {
  const { url, functionName } = node.callFrame
  if (url.length === 0) return functionName.startsWith("(") ? functionName : "(native)"
  if (url.includes("/node_modules/effect/")) return "effect"
  if (url.includes("/node_modules/@effect/")) return "@effect/*"
  if (url.includes("/node_modules/nats/")) return "nats.js"
  if (url.includes("/node_modules/msgpackr/")) return "msgpackr"
  if (url.includes("/node_modules/tsx/") || url.includes("/node_modules/esbuild/")) return "tsx"
  if (url.startsWith("node:")) return "node internals"
  if (url.includes("/node_modules/")) return "other"
  if (url.includes("/src/")) return "troupe src/"
  if (url.includes("/bench/")) return "bench/"
  return "other"
}

const shortUrl = (url: string) =>
  url.replace(/^file:\/\//, "").replace(/^.*\/node_modules\//, "").replace(/^.*\/(src|bench|test)\//, "$1/")

const label = (node: ProfileNode) =>
  `${node.callFrame.functionName || "(anonymous)"}  ${shortUrl(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`

const idle = [...selfMicros].filter(([id]) => byId.get(id)!.callFrame.functionName === "(idle)")
  .reduce((sum, [, us]) => sum + us, 0)
const total = [...selfMicros.values()].reduce((a, b) => a + b, 0)
const busy = total - idle
const pct = (us: number) => `${((us / busy) * 100).toFixed(1).padStart(5)} %`

console.log(
  `${file}: ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s busy (percentages of busy time)\n`
)

const sumBy = (key: (node: ProfileNode) => string, filter: (node: ProfileNode) => boolean = () => true) => {
  const sums = new Map<string, number>()
  for (const [id, us] of selfMicros) {
    const node = byId.get(id)!
    if (node.callFrame.functionName === "(idle)" || !filter(node)) continue
    sums.set(key(node), (sums.get(key(node)) ?? 0) + us)
  }
  return [...sums].sort((a, b) => b[1] - a[1])
}

const print = (title: string, rows: ReadonlyArray<[string, number]>, limit = top) => {
  console.log(`== ${title}`)
  for (const [name, us] of rows.slice(0, limit)) console.log(`  ${pct(us)}  ${name}`)
  console.log()
}

print("self time by category", sumBy(category), 20)
print("self time by file", sumBy((node) => shortUrl(node.callFrame.url) || `(${category(node)})`), 20)
print("top functions, self time", sumBy(label))
print("Troupe src/, self time", sumBy(label, (node) => category(node) === "troupe src/"))
print("effect, self time", sumBy(label, (node) => category(node) === "effect"))

// inclusive time of Troupe's functions (a function counted once per sample even when recursive)
const inclusive = new Map<string, number>()
for (let i = 0; i < profile.samples.length; i++) {
  const delta = profile.timeDeltas[i + 1] ?? 0
  const seen = new Set<string>()
  for (let id: number | undefined = profile.samples[i]; id !== undefined; id = parent.get(id)) {
    const node = byId.get(id)!
    if (category(node) !== "troupe src/") continue
    const key = label(node)
    if (seen.has(key)) continue
    seen.add(key)
    inclusive.set(key, (inclusive.get(key) ?? 0) + delta)
  }
}
print("Troupe src/, inclusive time", [...inclusive].sort((a, b) => b[1] - a[1]))
