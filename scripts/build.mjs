#!/usr/bin/env node
// `npm run build` (and `prepack`): compiles src/ to dist/ with tsconfig.build.json (ES modules,
// .d.ts, declaration and source maps, the `.ts` of relative imports rewritten to `.js`).
//
// tsc rewrites the extensions in the emitted JavaScript only; the declarations keep `./X.ts`.
// TypeScript resolves those, but other tools reading .d.ts files may not, so they are rewritten
// here too. `.ts` and `.js` have the same length: the declaration maps stay exact.
import { spawnSync } from "node:child_process"
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "..")
const dist = Path.join(root, "dist")

rmSync(dist, { recursive: true, force: true })

const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
const compiled = spawnSync(process.execPath, [tsc, "-p", Path.join(root, "tsconfig.build.json")], { stdio: "inherit" })
if (compiled.status !== 0) process.exit(compiled.status ?? 1)

/** `"./x.ts"` / `"../y/z.ts"` in `from "…"`, `import("…")` and `import "…"` */
const RELATIVE_TS = /((?:from|import)\s*\(?\s*)(["'])(\.{1,2}\/[^"']*?)\.ts\2/g

let rewritten = 0
for (const entry of readdirSync(dist, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith(".d.ts")) continue
  const file = Path.join(entry.parentPath ?? entry.path, entry.name)
  const text = readFileSync(file, "utf8")
  const out = text.replace(RELATIVE_TS, (_, prefix, quote, path) => `${prefix}${quote}${path}.js${quote}`)
  if (out !== text) {
    writeFileSync(file, out)
    rewritten++
  }
}
console.error(`build: dist/ compiled; relative .ts imports rewritten to .js in ${rewritten} declaration files`)
