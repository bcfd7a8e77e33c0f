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

/** @since 0.1.0 */
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
