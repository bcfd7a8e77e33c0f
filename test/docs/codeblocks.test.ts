/**
 * Every TypeScript code block of README.md, docs/*.md and bench/README.md compiles, type-checked
 * as the repository's own code is (see `markdown.ts` for how blocks are written and marked),
 * and every ```toml block is a config file `Config.parse` accepts.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import { readFileSync } from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Config from "../../src/app/Config.ts"
import { checkBlocks, documents, extractBlocks, formatProblems, isChecked } from "./markdown.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))
const outDir = Path.join(root, ".tmp", "docs-codeblocks")
const allBlocks = () => documents(root).flatMap((doc) => extractBlocks(doc, readFileSync(Path.join(root, doc), "utf8")))

describe("docs code blocks", () => {
  it("every ts block of the README and docs/*.md type-checks", () => {
    const blocks = allBlocks()
    const checked = blocks.filter(isChecked)
    // the README's quick start alone has blocks; an extraction that finds none is broken
    expect(checked.filter((block) => block.doc === "README.md").length).toBeGreaterThan(0)
    const problems = checkBlocks(root, blocks, Path.join(outDir, "docs"))
    expect(formatProblems(problems), `${checked.length} blocks checked`).toBe("")
  }, 180_000)

  it("every toml block of the docs is a valid troupe.toml", () => {
    const tomls = allBlocks().filter((block) => block.lang === "toml" && !/(^|\s)no-check(\s|$)/.test(block.info))
    expect(tomls.length).toBeGreaterThan(0)
    const problems = tomls.flatMap((block) => {
      const parsed = Config.parse(block.code, "troupe.toml")
      return Either.isLeft(parsed)
        ? parsed.left.issues.map((issue) => `${block.doc}:${block.line}: ${issue.path}: ${issue.message}`)
        : []
    })
    expect(problems.join("\n")).toBe("")
  })

  it("a block that does not compile is reported at its document and line", () => {
    const doc = [
      "# A page",
      "",
      "```ts",
      "const fine: number = 1",
      "const wrong: number = \"one\"",
      "```",
      "",
      "- a list item",
      "",
      "  ```typescript",
      "  import { readFileSync } from \"node:fs\"",
      "  readFileSync.nothingHere",
      "  ```",
      "",
      "```ts no-check",
      "const skipped: number = \"not checked\"",
      "```",
      "",
      "```toml",
      "key = \"value\"",
      "```"
    ].join("\n")
    const blocks = extractBlocks("page.md", doc)
    expect(blocks.map((block) => [block.line, block.lang, isChecked(block)])).toEqual([
      [3, "ts", true],
      [10, "typescript", true],
      [15, "ts", false],
      [19, "toml", false]
    ])
    const problems = checkBlocks(root, blocks, Path.join(outDir, "self-test"))
    expect(problems.map((problem) => [problem.doc, problem.line])).toEqual([["page.md", 5], ["page.md", 12]])
    expect(problems[0]!.message).toContain("TS2322")
    expect(problems[1]!.message).toContain("nothingHere")
  }, 180_000)

  it("a fence without a language is refused", () => {
    expect(() => extractBlocks("page.md", "text\n\n```\ncode\n```\n")).toThrow(
      "page.md:3: a code fence without a language"
    )
  })
})
