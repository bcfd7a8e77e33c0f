/**
 * NATS subject matching: tokens separated by `.`, `*` matches exactly one token, `>` (last token
 * only) matches one or more remaining tokens.
 *
 * @internal
 */

/** @internal */
export const isPattern = (subject: string): boolean => subject.includes("*") || subject.includes(">")

/** @internal */
export const isValidSubject = (subject: string, allowWildcards: boolean): boolean => {
  if (subject.length === 0) return false
  const tokens = subject.split(".")
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!
    if (token.length === 0 || /\s/.test(token)) return false
    if (token === "*" || token === ">") {
      if (!allowWildcards) return false
      if (token === ">" && i !== tokens.length - 1) return false
    } else if (token.includes("*") || token.includes(">")) {
      return false
    }
  }
  return true
}

/** @internal */
export const matches = (pattern: string, subject: string): boolean => {
  if (pattern === subject) return true
  const p = pattern.split(".")
  const s = subject.split(".")
  for (let i = 0; i < p.length; i++) {
    const token = p[i]!
    if (token === ">") return s.length > i
    if (i >= s.length) return false
    if (token !== "*" && token !== s[i]) return false
  }
  return p.length === s.length
}
