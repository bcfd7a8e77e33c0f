/**
 * `npm run bench`: runs every suite in sequence and prints one summary table.
 *
 * - `npm run bench -- inmemory` runs only the suites whose name contains `inmemory`.
 * - `BENCH_JSON=path` also writes the results as JSON.
 * - `BENCH_STRICT=1` makes a missed target (or a suite that crashed) exit 1; by default the
 *   bench reports and exits 0.
 *
 * A suite is a file exporting `run(): Promise<Array<Result>>` (see `harness.ts`); add it to
 * `suites` below. Suites are imported lazily so that one whose dependencies are missing (a NATS
 * server, say) becomes a failed line instead of stopping the others.
 *
 * @since 0.1.0
 */
import { writeFileSync } from "node:fs"
import { formatRate, type Result, type Suite } from "./harness.ts"

const suites: ReadonlyArray<{ readonly name: string; readonly load: () => Promise<Suite> }> = [
  { name: "inmemory", load: () => import("./inmemory.ts") },
  { name: "nats", load: () => import("./nats.ts") },
  { name: "topics", load: () => import("./topics.ts") },
  { name: "streams", load: () => import("./streams.ts") },
  { name: "secure", load: () => import("./secure.ts") },
  { name: "gateway", load: () => import("./gateway.ts") },
  { name: "durable", load: () => import("./durable.ts") },
  { name: "peers", load: () => import("./peers.ts") }
]

const errorLine = (suite: string, error: unknown): Result => ({
  suite,
  name: "suite crashed",
  value: Number.NaN,
  unit: "",
  pass: false,
  note: (error instanceof Error ? error.message : String(error)).split("\n")[0]!.slice(0, 160)
})

const runSuites = async (filter: ReadonlyArray<string>): Promise<Array<Result>> => {
  const results: Array<Result> = []
  for (const suite of suites) {
    if (filter.length > 0 && !filter.some((f) => suite.name.includes(f))) continue
    console.log(`\n== ${suite.name}`)
    const started = performance.now()
    try {
      const mod = await suite.load()
      results.push(...(await mod.run()))
    } catch (error) {
      console.log(`  suite ${suite.name} crashed:`, error)
      results.push(errorLine(suite.name, error))
    }
    console.log(`  (${((performance.now() - started) / 1000).toFixed(1)} s)`)
  }
  return results
}

const statusOf = (r: Result): string => (r.pass === undefined ? "" : r.pass ? "PASS" : "FAIL")

const table = (results: ReadonlyArray<Result>): string => {
  const header = ["suite", "measurement", "value", "unit", "baseline", "ratio", "target", "status", "failures", "note"]
  const rows = results.map((r) => [
    r.suite,
    r.name,
    formatRate(r.value),
    r.unit,
    r.baseline === undefined ? "" : `${r.baseline.name} = ${formatRate(r.baseline.value)}`,
    r.ratio === undefined ? "" : `${r.ratio.toFixed(2)}x`,
    r.target === undefined ? "" : `${r.below === true ? "<" : ">="} ${r.target}x`,
    statusOf(r),
    r.failures === undefined || r.failures === 0 ? "" : String(r.failures),
    r.note ?? ""
  ])
  const numeric = new Set([2, 5])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd()
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n")
}

const main = async () => {
  const started = performance.now()
  const results = await runSuites(process.argv.slice(2))
  console.log(`\n== summary (${((performance.now() - started) / 1000).toFixed(1)} s, node ${process.version})\n`)
  console.log(table(results))
  const failed = results.filter((r) => r.pass === false)
  const withFailures = results.filter((r) => (r.failures ?? 0) > 0)
  console.log(
    `\n${failed.length === 0 ? "all targets met" : `${failed.length} target(s) missed`}` +
      (withFailures.length > 0 ? `; ${withFailures.length} measurement(s) had failed operations` : "")
  )
  const jsonPath = process.env["BENCH_JSON"]
  if (jsonPath !== undefined && jsonPath.length > 0) writeFileSync(jsonPath, JSON.stringify(results, null, 2))
  if (process.env["BENCH_STRICT"] === "1" && failed.length > 0) process.exitCode = 1
  // a suite that leaked a handle (a socket, a timer) must not keep the bench alive forever; the
  // wait is longer than the 5 s timers a stopped child process leaves behind (`spawnNode`'s
  // `stop` races its exit with them), which would otherwise set this off by luck of timing
  setTimeout(() => {
    console.error("bench: something kept the process alive after the last suite; exiting")
    process.exit(process.exitCode ?? 0)
  }, 15_000).unref()
}

main().catch((error) => {
  console.error("bench: runner crashed", error)
  process.exitCode = 1
})
