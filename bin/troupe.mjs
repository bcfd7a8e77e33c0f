#!/usr/bin/env node
// The `troupe` command. Installed, it runs the compiled CLI (dist/app/cli.js) on plain Node.
// In the repository, where src/ is present and tsx is installed, it runs the CLI from source
// through tsx instead, so `npm run troupe` and the tests never see a stale dist/.
import { existsSync } from "node:fs"
import { createRequire } from "node:module"

const source = new URL("../src/app/cli.ts", import.meta.url)

const tsxApi = () => {
  try {
    return createRequire(import.meta.url).resolve("tsx/package.json") && "tsx/esm/api"
  } catch {
    return undefined
  }
}

const load = async () => {
  const api = existsSync(source) ? tsxApi() : undefined
  if (api !== undefined) {
    const { register } = await import(api)
    register()
    return import(source.href)
  }
  return import("../dist/app/cli.js")
}

const { main } = await load()
main(process.argv)
