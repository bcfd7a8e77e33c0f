/**
 * The code blocks of the Markdown docs, type-checked (for `codeblocks.test.ts`): every ```ts /
 * ```typescript block of README.md, docs/*.md and bench/README.md is written to a file of its own
 * under the
 * git-ignored `.tmp/docs-codeblocks/`, and all of them are checked in one TypeScript program with
 * the repository's compiler options (strict, `exactOptionalPropertyTypes`, NodeNext), so a block
 * that stops compiling fails the suite with its document and line.
 *
 * - `import ... from "troupe"` (and every subpath of the package's `exports`) resolves to the
 *   sources in `src/`, whether `exports` points at `src/` or at a build in `dist/`.
 * - A block whose info string names a file (```ts file=counter.ts) is written under that name,
 *   so the blocks of any document can import it (`import { Counter } from "./counter.ts"`).
 * - A block marked ```ts no-check is a deliberate fragment and is not checked; every fence must
 *   name a language, so a TypeScript block cannot slip through unlabelled.
 * - Unused declarations are allowed (a block often declares a value only to show it).
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import ts from "typescript"

/** one fenced code block of a Markdown file */
export interface CodeBlock {
  /** the document, relative to the repository root */
  readonly doc: string
  /** the 1-based line of the opening fence */
  readonly line: number
  readonly lang: string
  readonly info: string
  readonly code: string
}

const checkedLanguages = new Set(["ts", "typescript"])

/** the fenced code blocks of `text`; an unclosed or unlabelled fence is an error */
export const extractBlocks = (doc: string, text: string): ReadonlyArray<CodeBlock> => {
  const lines = text.split("\n")
  const blocks: Array<CodeBlock> = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^( *)(`{3,}|~{3,})\s*(.*)$/.exec(lines[i]!)
    if (open === null) continue
    const [, indent, fence, info] = open as unknown as [string, string, string, string]
    const lang = info.split(/\s+/)[0] ?? ""
    if (lang === "") throw new Error(`${doc}:${i + 1}: a code fence without a language (use \`\`\`text for plain text)`)
    const body: Array<string> = []
    let j = i + 1
    const close = new RegExp(`^ *${fence[0] === "`" ? "`" : "~"}{${fence.length},}\\s*$`)
    while (j < lines.length && !close.test(lines[j]!)) {
      const content = lines[j]!
      body.push(content.startsWith(indent) ? content.slice(indent.length) : content.trimStart())
      j++
    }
    if (j === lines.length) throw new Error(`${doc}:${i + 1}: a code fence that is never closed`)
    blocks.push({ doc, line: i + 1, lang, info: info.trim(), code: body.join("\n") })
    i = j
  }
  return blocks
}

/** whether the block is TypeScript to type-check */
export const isChecked = (block: CodeBlock): boolean =>
  checkedLanguages.has(block.lang) && !/(^|\s)no-check(\s|$)/.test(block.info)

/** the file name a block asked for (`file=name.ts`), if any */
const fileName = (block: CodeBlock): string | undefined => /(?:^|\s)file=(\S+\.ts)(?:\s|$)/.exec(block.info)?.[1]

/** the Markdown files whose blocks are checked: README.md, docs/*.md, bench/README.md */
export const documents = (root: string): ReadonlyArray<string> => {
  const docsDir = Path.join(root, "docs")
  const docs = (() => {
    try {
      return readdirSync(docsDir).filter((name) => name.endsWith(".md")).sort().map((name) => `docs/${name}`)
    } catch {
      return []
    }
  })()
  const bench = (() => {
    try {
      readFileSync(Path.join(root, "bench", "README.md"))
      return ["bench/README.md"]
    } catch {
      return []
    }
  })()
  return ["README.md", ...docs, ...bench]
}

/** `troupe` and its subpaths mapped to their sources, from the package's `exports` */
const packagePaths = (root: string): Record<string, Array<string>> => {
  const pkg = JSON.parse(readFileSync(Path.join(root, "package.json"), "utf8")) as {
    readonly name: string
    readonly exports?: Record<string, unknown>
  }
  const target = (value: unknown): string | undefined => {
    if (typeof value === "string") return value
    if (value !== null && typeof value === "object") {
      const conditions = value as Record<string, unknown>
      for (const key of ["source", "development", "types", "import", "default"]) {
        const found = target(conditions[key])
        if (found !== undefined) return found
      }
    }
    return undefined
  }
  const paths: Record<string, Array<string>> = {}
  for (const [subpath, value] of Object.entries(pkg.exports ?? { ".": "./src/index.ts" })) {
    if (subpath.includes("*")) continue
    const file = target(value)
    if (file === undefined) continue
    const source = file.replace(/^\.\/dist\//, "./src/").replace(/\.d\.ts$|\.js$/, ".ts")
    paths[subpath === "." ? pkg.name : `${pkg.name}/${subpath.slice(2)}`] = [Path.join(root, source)]
  }
  return paths
}

/** one problem found in a block, located in its document */
export interface BlockProblem {
  readonly doc: string
  readonly line: number
  readonly message: string
}

/**
 * Writes the checked blocks under `outDir` and type-checks them in one program; the problems
 * are located at their line in the Markdown document.
 */
export const checkBlocks = (
  root: string,
  blocks: ReadonlyArray<CodeBlock>,
  outDir: string
): ReadonlyArray<BlockProblem> => {
  rmSync(outDir, { recursive: true, force: true })
  mkdirSync(outDir, { recursive: true })
  const byFile = new Map<string, CodeBlock>()
  for (const block of blocks.filter(isChecked)) {
    const name = fileName(block) ?? `${block.doc.replace(/\.md$/, "").replace(/[^A-Za-z0-9]+/g, "-")}-L${block.line}.ts`
    const previous = byFile.get(name)
    if (previous !== undefined) {
      throw new Error(`${block.doc}:${block.line}: file=${name} is also ${previous.doc}:${previous.line}`)
    }
    byFile.set(name, block)
  }
  const files = new Map<string, CodeBlock>()
  for (const [name, block] of byFile) {
    const file = Path.join(outDir, name)
    // `export {}` after the code keeps every block a module (no globals shared between blocks)
    // and leaves its line numbers as they are
    writeFileSync(file, `${block.code}\nexport {}\n`)
    files.set(Path.resolve(file), block)
  }

  const configFile = ts.readConfigFile(Path.join(root, "tsconfig.json"), ts.sys.readFile)
  if (configFile.error !== undefined) {
    throw new Error(ts.flattenDiagnosticMessageText(configFile.error.messageText, "\n"))
  }
  const parsed = ts.parseJsonConfigFileContent(configFile.config, ts.sys, root)
  const options: ts.CompilerOptions = {
    ...parsed.options,
    noEmit: true,
    noUnusedLocals: false,
    noUnusedParameters: false,
    paths: packagePaths(root)
  }
  const program = ts.createProgram({ rootNames: [...files.keys()], options })
  const problems: Array<BlockProblem> = []
  for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n")
    const source = diagnostic.file
    const block = source === undefined ? undefined : files.get(Path.resolve(source.fileName))
    if (source === undefined) {
      problems.push({ doc: "tsconfig.json", line: 0, message: `TS${diagnostic.code}: ${message}` })
    } else if (block !== undefined) {
      const { line, character } = source.getLineAndCharacterOfPosition(diagnostic.start ?? 0)
      problems.push({
        doc: block.doc,
        line: block.line + 1 + line,
        message: `(block of line ${block.line}, column ${character + 1}) TS${diagnostic.code}: ${message}`
      })
    }
    // diagnostics of the sources themselves are `npm run typecheck`'s to report
  }
  return problems.sort((a, b) => a.doc.localeCompare(b.doc) || a.line - b.line)
}

/** the problems as the lines of a failure message */
export const formatProblems = (problems: ReadonlyArray<BlockProblem>): string =>
  problems.map((problem) => `${problem.doc}:${problem.line}: ${problem.message}`).join("\n")
