import { defineConfig } from "vitest/config"

export default defineConfig({
  // the package's own name (`import "troupe/Telemetry"`) resolves to src/ through the
  // `troupe-source` condition of its exports, as in tsconfig.json; then Vite's default ones
  ssr: { resolve: { conditions: ["troupe-source", "module", "node", "development|production"] } },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
