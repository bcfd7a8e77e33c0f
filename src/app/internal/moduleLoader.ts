/**
 * Imports the modules a config file names. A `.js` module is imported as it is. A TypeScript
 * module needs a loader: the project's own `tsx` (found from the module's folder, then from the
 * working directory) is registered once for the process. Without one the import is still tried,
 * since a loader may already be active (`node --import tsx`, Node's own type stripping); when
 * Node refuses the extension, `isMissingTypeScriptLoader` tells so.
 *
 * @internal
 */
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { ConfigError, ConfigIssue } from "../Config.ts"

const TYPESCRIPT = /\.(?:[cm]?ts|tsx)$/

/** the target of a package's export entry, by its `import` (else `default`) condition */
const importTarget = (entry: unknown): string | undefined => {
  if (typeof entry === "string") return entry
  if (typeof entry !== "object" || entry === null) return undefined
  const conditions = entry as Record<string, unknown>
  return importTarget(conditions["import"] ?? conditions["default"])
}

/** the file of `name`'s `subpath` export as `import` would load it, resolved from `dir` */
const resolveExport = (dir: string, name: string, subpath: string): string | undefined => {
  let manifest: string
  try {
    manifest = createRequire(Path.join(dir, "index.js")).resolve(`${name}/package.json`)
  } catch {
    return undefined
  }
  const { exports } = JSON.parse(readFileSync(manifest, "utf8")) as { readonly exports?: Record<string, unknown> }
  const target = importTarget(exports?.[subpath])
  return target === undefined ? undefined : Path.join(Path.dirname(manifest), target)
}

let tsxRegistered = false

/** registers the first `tsx` found from `dirs` (its ESM and CommonJS hooks), once */
const registerTsx = async (dirs: ReadonlyArray<string>): Promise<void> => {
  if (tsxRegistered) return
  for (const dir of dirs) {
    const esm = resolveExport(dir, "tsx", "./esm/api")
    if (esm === undefined) continue
    const cjs = resolveExport(dir, "tsx", "./cjs/api")
    for (const api of cjs === undefined ? [esm] : [esm, cjs]) {
      const { register } = await import(pathToFileURL(api).href) as { readonly register: () => unknown }
      register()
    }
    tsxRegistered = true
    return
  }
}

/** @internal Imports `file` (an absolute path), registering the project's tsx first when it is TypeScript. */
export const importModule = async (file: string): Promise<Record<string, unknown>> => {
  if (TYPESCRIPT.test(file)) await registerTsx([Path.dirname(file), process.cwd()])
  return import(pathToFileURL(file).href) as Promise<Record<string, unknown>>
}

/** @internal `error` is Node refusing the TypeScript module `file`: no loader was found or active */
export const isMissingTypeScriptLoader = (file: string, error: unknown): boolean =>
  TYPESCRIPT.test(file) && typeof error === "object" && error !== null &&
  (error as { readonly code?: unknown }).code === "ERR_UNKNOWN_FILE_EXTENSION"

/**
 * A TypeScript module of the config that Node cannot load, tsx being absent: a `ConfigError`
 * (its one issue at the module's path) whose message is one line naming the module and the fix.
 *
 * @internal
 */
export class TypeScriptModuleError extends ConfigError {
  constructor(options: { readonly file: string; readonly path: string; readonly module: string }) {
    super({
      file: options.file,
      issues: [
        new ConfigIssue({
          path: options.path,
          message: `${options.module} is TypeScript and the project has no tsx to load it: npm install -D tsx`
        })
      ]
    })
  }

  override get message(): string {
    return `${this.file}: ${this.issues.map((issue) => `${issue.path}: ${issue.message}`).join("; ")}`
  }
}
