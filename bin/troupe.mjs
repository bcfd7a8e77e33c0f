#!/usr/bin/env node
// The `troupe` command: registers tsx so that the CLI and the modules a config file names may
// be TypeScript, then runs the CLI (src/runtime/cli.ts).
import { register } from "tsx/esm/api"

register()
const { main } = await import(new URL("../src/runtime/cli.ts", import.meta.url).href)
main(process.argv)
