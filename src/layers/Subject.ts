/**
 * NATS subject matching: tokens separated by `.`, `*` matches exactly one token, `>` (last token
 * only) matches one or more remaining tokens.
 *
 * @since 0.1.0
 */

/**
 * The longest subject token (a node id, a kind, a node name) Troupe sends or accepts.
 *
 * @since 0.5.0
 */
export const MAX_TOKEN_LENGTH = 255

/**
 * The longest subject Troupe accepts from the wire (a topic subject in an event).
 *
 * @since 0.5.0
 */
export const MAX_SUBJECT_LENGTH = 1024

const STAR = 42 // "*"
const GREATER = 62 // ">"
const DOT = 46 // "."

/**
 * Whether `u` is one subject token: 1 to 255 of `[A-Za-z0-9_-]`. Node names, kinds and node ids
 * are tokens, because they become parts of subjects (`troupe.<ns>.node.<id>`); every identifier
 * that arrives off the wire is checked with this before it is used.
 *
 * @since 0.5.0
 */
export const isToken = (u: unknown): u is string => everyChar(u, isTokenChar)

/** `[A-Za-z0-9_-]` */
const isTokenChar = (c: number): boolean =>
  (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f

/** anything but a space, a control character, a dot, a wildcard or a Unicode line break */
const isSubjectChar = (c: number): boolean =>
  !(c <= 0x20 || c === DOT || c === STAR || c === GREATER || c === 0x7f || (c >= 0x80 && c <= 0xa0) || c === 0x2028 ||
    c === 0x2029)

/**
 * A string of 1 to `MAX_TOKEN_LENGTH` characters, each `allowed`: a loop, not a regular
 * expression (it runs on every frame received).
 */
const everyChar = (u: unknown, allowed: (c: number) => boolean): u is string => {
  if (typeof u !== "string") return false
  const length = u.length
  if (length === 0 || length > MAX_TOKEN_LENGTH) return false
  for (let i = 0; i < length; i++) if (!allowed(u.charCodeAt(i))) return false
  return true
}

/**
 * Whether `u` is one token of a concrete subject, of any characters a subject can carry (no
 * space, no control character, no dot, no wildcard), at most `MAX_TOKEN_LENGTH` long: it cannot
 * break a subject it is put in. Looser than `isToken` (it takes UTF-8), for what only has to be
 * harmless.
 *
 * @since 0.5.0
 */
export const isSubjectSafe = (u: unknown): u is string => everyChar(u, isSubjectChar)

/**
 * Whether `u` is a concrete subject (no wildcards) that can be published to: dot-separated
 * non-empty tokens of printable characters (no space, no control character, no `*` or `>`),
 * at most `MAX_SUBJECT_LENGTH` long. A character loop, no split: it checks subjects off the wire.
 *
 * @since 0.5.0
 */
export const isConcreteSubject = (u: unknown): u is string => {
  if (typeof u !== "string") return false
  const length = u.length
  if (length === 0 || length > MAX_SUBJECT_LENGTH) return false
  let previous = DOT
  for (let i = 0; i < length; i++) {
    const c = u.charCodeAt(i)
    if (c <= 0x20 || c === 0x7f || (c >= 0x80 && c <= 0xa0) || c === 0x2028 || c === 0x2029) return false
    if (c === STAR || c === GREATER) return false
    if (c === DOT && previous === DOT) return false
    previous = c
  }
  return previous !== DOT
}

/**
 * Whether `subject` contains a wildcard (`*` or `>`), and so can be subscribed to but not
 * published to.
 *
 * @since 0.1.0
 */
export const isPattern = (subject: string): boolean => subject.includes("*") || subject.includes(">")

/**
 * Why `subject` is not a valid subject (or pattern, when `allowWildcards`), or `undefined` when
 * it is one: dot-separated non-empty tokens without whitespace, where `*` and `>` stand alone as
 * a whole token and `>` only as the last.
 *
 * @since 0.5.0
 */
export const subjectProblem = (subject: string, allowWildcards: boolean): string | undefined => {
  const tokens = subject.split(".")
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!
    if (token === "*" || token === ">") {
      if (!allowWildcards) return `"${subject}" is a pattern; publish to a subject without wildcards`
      if (token === ">" && i !== tokens.length - 1) return `">" must be the last token of "${subject}"`
    } else if (token.length === 0 || /[\s*>]/.test(token)) {
      return `"${subject}" has an invalid token "${token}"`
    }
  }
  return undefined
}

/**
 * Whether `subject` is a valid subject (or pattern, when `allowWildcards`): see `subjectProblem`.
 *
 * @since 0.1.0
 */
export const isValidSubject = (subject: string, allowWildcards: boolean): boolean =>
  subjectProblem(subject, allowWildcards) === undefined

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
