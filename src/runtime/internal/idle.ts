/**
 * The idle deadline of a stream's other side: a producer (or an uploading caller) that sends
 * nothing for a while times out, a slow consumer does not.
 *
 * @internal
 */
import type { Deadline, Deadlines } from "./deadlines.ts"
import type { Inbox } from "./streams.ts"

/**
 * Calls `onIdle` once the other side of `inbox` has sent nothing for `timeoutMillis` while
 * the inbox is empty (a slow consumer is not an idle producer). Returns the cancel.
 *
 * @internal
 */
export const watchIdle = (
  deadlines: Deadlines,
  inbox: Inbox,
  timeoutMillis: number,
  onIdle: (idleMillis: number) => void
): () => void => {
  if (!Number.isFinite(timeoutMillis)) return () => {}
  let deadline: Deadline | undefined
  const watch = {
    onDeadline: () => {
      deadline = undefined
      if (inbox.isDone) return
      const idle = deadlines.now() - inbox.touched
      if (inbox.buffered > 0 || idle < timeoutMillis) {
        deadline = deadlines.add(Math.max(1, timeoutMillis - idle), watch)
        return
      }
      onIdle(idle)
    }
  }
  deadline = deadlines.add(timeoutMillis, watch)
  return () => {
    if (deadline !== undefined) deadlines.remove(deadline)
  }
}
