/**
 * The mailbox's queue: a FIFO with O(1) amortised push and shift, and removal of one waiting item
 * (a job whose caller gave up).
 *
 * @internal
 */

/** A FIFO with O(1) amortised push/shift. @internal */
export class Fifo<A> {
  private items: Array<A | undefined> = []
  private head = 0
  get length(): number {
    return this.items.length - this.head
  }
  push(item: A): void {
    this.items.push(item)
  }
  shift(): A | undefined {
    if (this.head >= this.items.length) return undefined
    const item = this.items[this.head]
    this.items[this.head++] = undefined
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }
  remove(item: A): boolean {
    const index = this.items.indexOf(item, this.head)
    if (index < 0) return false
    this.items.splice(index, 1)
    return true
  }
  drain(): Array<A> {
    const rest = this.items.slice(this.head) as Array<A>
    this.items = []
    this.head = 0
    return rest
  }
}
