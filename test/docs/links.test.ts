/**
 * The Markdown pages link to each other by relative paths and `#anchors`: every such link of
 * README.md, CHANGELOG.md, bench/README.md and docs/*.md points at a file that exists and, with
 * an anchor, at a heading of it (GitHub's heading ids).
 */
import { describe, expect, it } from "@effect/vitest"
import { existsSync, readFileSync, statSync } from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { documents } from "./markdown.ts"

const root = fileURLToPath(new URL("../..", import.meta.url))

/** the text outside fenced code blocks */
const withoutFences = (text: string): string => text.replace(/^( *)(`{3,}|~{3,})[^\n]*\n[\s\S]*?^\1\2 *$/gm, "")

/** the text outside fenced code blocks and inline code */
const prose = (text: string): string => withoutFences(text).replace(/`[^`\n]*`/g, "")

/** GitHub's id of each heading of a page */
export const anchors = (text: string): ReadonlySet<string> => {
  const seen = new Map<string, number>()
  const ids = new Set<string>()
  for (const [, heading] of withoutFences(text).matchAll(/^#{1,6} +(.+?) *#* *$/gm)) {
    const base = heading!
      .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
      .replace(/`/g, "")
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/ /g, "-")
    const count = seen.get(base) ?? 0
    seen.set(base, count + 1)
    ids.add(count === 0 ? base : `${base}-${count}`)
  }
  return ids
}

/** the relative links of a page: [text](target) outside code, no scheme */
const links = (text: string): ReadonlyArray<string> =>
  [...prose(text).matchAll(/\]\(([^)\s]+)\)/g)].map((match) => match[1]!).filter((target) => !/^[a-z]+:/i.test(target))

describe("docs links", () => {
  it("every relative link and anchor of the Markdown pages resolves", () => {
    const pages = [...documents(root), "CHANGELOG.md"]
    const broken: Array<string> = []
    let count = 0
    for (const page of pages) {
      const text = readFileSync(Path.join(root, page), "utf8")
      for (const target of links(text)) {
        count++
        const [file, anchor] = target.split("#") as [string, string | undefined]
        const resolved = file === "" ? Path.join(root, page) : Path.resolve(Path.dirname(Path.join(root, page)), file)
        if (!existsSync(resolved)) {
          broken.push(`${page}: ${target} (no such file)`)
        } else if (
          anchor !== undefined && !(statSync(resolved).isFile() && anchors(readFileSync(resolved, "utf8")).has(anchor))
        ) {
          broken.push(`${page}: ${target} (no such heading)`)
        }
      }
    }
    expect(count).toBeGreaterThan(20)
    expect(broken.join("\n")).toBe("")
  })

  it("heading ids follow GitHub's rules", () => {
    const ids = anchors(
      "# Quick start\n\n## `[secure]` in the config file\n\n```sh\n# not a heading\n```\n\n## Quick start\n"
    )
    expect([...ids]).toEqual(["quick-start", "secure-in-the-config-file", "quick-start-1"])
  })
})
