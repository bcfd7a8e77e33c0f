// ESLint (flat config) with typescript-eslint. The rules follow Effect's own repository; the
// formatting is dprint's (dprint.json, `npm run format`), so no stylistic rules here.
import js from "@eslint/js"
import tseslint from "typescript-eslint"

/** what plain Node scripts (bin/, scripts/) may use without importing it */
const nodeGlobals = Object.fromEntries(
  ["process", "console", "URL", "Buffer", "setTimeout", "clearTimeout", "AbortSignal", "fetch"].map((name) => [
    name,
    "readonly"
  ])
)

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", ".tmp/", ".scratch/", "**/*.md"] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: nodeGlobals },
    rules: {
      "no-fallthrough": "off",
      "no-irregular-whitespace": "off",
      "object-shorthand": "error",
      "prefer-destructuring": "off",
      "sort-imports": "off",
      "no-unused-vars": "off",
      "require-yield": "off",
      "prefer-rest-params": "off",
      "prefer-spread": "off",
      // the tests match indented, column-aligned output: literal spaces read as the output does
      "no-regex-spaces": "off",
      "@typescript-eslint/array-type": ["error", { default: "generic", readonly: "generic" }],
      "@typescript-eslint/no-non-null-assertion": "off",
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-empty-object-type": "off",
      "@typescript-eslint/no-unsafe-function-type": "off",
      "@typescript-eslint/no-wrapper-object-types": "off",
      // `importOriginal<typeof import("...")>()` is how vitest types a partial `vi.mock`
      "@typescript-eslint/consistent-type-imports": ["error", { disallowTypeAnnotations: false }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/ban-ts-comment": "off",
      "@typescript-eslint/no-array-constructor": "off",
      "@typescript-eslint/no-use-before-define": "off",
      "@typescript-eslint/no-namespace": "off"
    }
  },
  {
    files: ["src/**/*.ts"],
    rules: { "no-console": "error" }
  }
)
