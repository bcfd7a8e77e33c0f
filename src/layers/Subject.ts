/**
 * NATS subject matching: tokens separated by `.`, `*` matches exactly one token, `>` (last token
 * only) matches one or more remaining tokens.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export const isPattern = (subject: string): boolean => subject.includes("*") || subject.includes(">")

/** @since 0.1.0 */
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

const STAR = 42 // "*"
const GREATER = 62 // ">"

/**
 * Whether `subject` matches `pattern` (NATS wildcards: `*` one token, `>` one or more at the end).
 * Walks both strings token by token without splitting them: it runs for every frame delivered in
 * memory.
 *
 * @since 0.1.0
 */
export const matches = (pattern: string, subject: string): boolean => {
  if (pattern === subject) return true
  const patternLength = pattern.length
  const subjectLength = subject.length
  // the start of the current token in each (past the end: no token left)
  let p = 0
  let s = 0
  while (p <= patternLength) {
    let patternEnd = pattern.indexOf(".", p)
    if (patternEnd < 0) patternEnd = patternLength
    const wildcard = patternEnd - p === 1 ? pattern.charCodeAt(p) : 0
    if (wildcard === GREATER) return s <= subjectLength
    if (s > subjectLength) return false
    let subjectEnd = subject.indexOf(".", s)
    if (subjectEnd < 0) subjectEnd = subjectLength
    if (wildcard !== STAR) {
      if (patternEnd - p !== subjectEnd - s) return false
      for (let i = 0; i < patternEnd - p; i++) {
        if (pattern.charCodeAt(p + i) !== subject.charCodeAt(s + i)) return false
      }
    }
    p = patternEnd + 1
    s = subjectEnd + 1
  }
  return s > subjectLength
}

/**
 * NATS delivery semantics for one message: every plain subscriber receives it, and one member
 * of each queue group does, taking turns per group and subject.
 *
 * @since 0.1.0
 */
export class FanOut {
  private readonly turns = new Map<string, number>()

  /** The receivers among `matching` (subscribers whose pattern matches `subject`). */
  select<S>(matching: ReadonlyArray<S>, subject: string, groupOf: (subscriber: S) => string | undefined): Array<S> {
    const receivers: Array<S> = []
    let groups: Map<string, Array<S>> | undefined
    for (const subscriber of matching) {
      const group = groupOf(subscriber)
      if (group === undefined) {
        receivers.push(subscriber)
      } else {
        groups ??= new Map()
        const members = groups.get(group)
        if (members) members.push(subscriber)
        else groups.set(group, [subscriber])
      }
    }
    if (groups !== undefined) {
      for (const [group, members] of groups) {
        const key = `${group}\u0000${subject}`
        const turn = (this.turns.get(key) ?? 0) % members.length
        this.turns.set(key, turn + 1)
        receivers.push(members[turn]!)
      }
    }
    return receivers
  }
}
