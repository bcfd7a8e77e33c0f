#!/usr/bin/env node
// Makes sure `nats-server` is installed before the test suite runs (the NATS tests start a
// real server). Run by `npm test`; plain Node, no dependencies.
//
// - found on PATH: exit 0
// - found in /usr/sbin or /usr/local/bin but not on PATH (Debian puts it in /usr/sbin, which a
//   non-root PATH may lack): print a hint, exit 0 (the tests look there too)
// - missing, running as root: `apt-get update && apt-get install -y nats-server`, then check again
// - missing, not root: print the command to run, exit 1
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"

const INSTALL = "sudo apt-get update && sudo apt-get install -y nats-server"
const KNOWN_PATHS = ["/usr/sbin/nats-server", "/usr/local/bin/nats-server"]

/** The version line of a working `nats-server` binary, or undefined. */
const versionOf = (command) => {
  const result = spawnSync(command, ["--version"], { encoding: "utf8" })
  if (result.error !== undefined || result.status !== 0) return undefined
  return (result.stdout || result.stderr).trim() || "nats-server"
}

/** "path" when on PATH, "known" when only at a known location, undefined when missing. */
const locate = () => {
  if (versionOf("nats-server") !== undefined) return { where: "path" }
  for (const path of KNOWN_PATHS) {
    if (existsSync(path) && versionOf(path) !== undefined) return { where: "known", path }
  }
  return undefined
}

const report = (found) => {
  if (found.where === "known") {
    console.log(
      `ensure-nats: using ${found.path} (not on PATH; add ${
        found.path.replace(/\/nats-server$/, "")
      } to PATH to silence this)`
    )
  }
}

let found = locate()
if (found !== undefined) {
  report(found)
  process.exit(0)
}

const isRoot = typeof process.getuid === "function" && process.getuid() === 0
if (!isRoot) {
  console.error("ensure-nats: nats-server is not installed; the NATS tests need it. Install it with:")
  console.error(`  ${INSTALL}`)
  process.exit(1)
}

console.log("ensure-nats: nats-server is missing; installing it with apt-get (running as root)")
for (const args of [["update"], ["install", "-y", "nats-server"]]) {
  const result = spawnSync("apt-get", args, {
    stdio: "inherit",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
  })
  if (result.error !== undefined || result.status !== 0) {
    console.error(`ensure-nats: \`apt-get ${args.join(" ")}\` failed${result.error ? `: ${result.error.message}` : ""}`)
    process.exit(1)
  }
}

found = locate()
if (found === undefined) {
  console.error("ensure-nats: apt-get finished but nats-server is still not found")
  process.exit(1)
}
report(found)
console.log("ensure-nats: nats-server installed")
