/**
 * What the topics suite and its subscriber processes share: the event published, the Troupe
 * topics (events and round control), the raw subjects, and the lines a subscriber prints.
 *
 * A round is driven by one control message, `start`, that resets the subscriber's count and
 * tells it how many events to expect; the subscriber prints `round <r>` when it has it (so the
 * publisher starts timing only once the subscriber is listening), and `done <r> <received>
 * <dropped>` when every expected event has arrived or been dropped. A `report` message makes it
 * print the same line at once, for a round that ran out of time.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { Topic } from "../src/index.ts"

/**
 * The event every path publishes, a small order.
 *
 * @since 0.1.0
 * @category events
 */
export const Order = Schema.Struct({ id: Schema.String, total: Schema.Number })

/**
 * @since 0.1.0
 * @category events
 */
export const order: typeof Order.Type = { id: "o-1", total: 12.5 }

/**
 * @since 0.1.0
 * @category events
 */
export const OrderPlaced = Topic.make("orders.placed", Order)

/**
 * @since 0.1.0
 * @category control
 */
export const Control = Schema.Struct({
  round: Schema.Number,
  command: Schema.Literal("start", "report"),
  /** events the round publishes (`start` only) */
  expect: Schema.Number
})

/**
 * @since 0.1.0
 * @category control
 */
export type Control = typeof Control.Type

/**
 * @since 0.1.0
 * @category control
 */
export const BenchControl = Topic.make("bench.control", Control)

/**
 * The namespace of both Troupe nodes.
 *
 * @since 0.1.0
 * @category constants
 */
export const NAMESPACE = "bench"

/**
 * The raw baseline's events subject; its control subject is `<RAW_SUBJECT>.control`.
 *
 * @since 0.1.0
 * @category constants
 */
export const RAW_SUBJECT = "bench.topics.raw"

/**
 * @since 0.1.0
 * @category lines
 */
export const roundLine = (round: number): string => `round ${round}`

/**
 * @since 0.1.0
 * @category lines
 */
export const doneLine = (round: number, received: number, dropped: number): string =>
  `done ${round} ${received} ${dropped}`

/**
 * @since 0.1.0
 * @category lines
 */
export interface Done {
  readonly received: number
  readonly dropped: number
}

/**
 * The `done` line of `round`, or `undefined` for any other line.
 *
 * @since 0.1.0
 * @category lines
 */
export const parseDone = (round: number, line: string): Done | undefined => {
  const [word, r, received, dropped] = line.trim().split(" ")
  if (word !== "done" || Number(r) !== round) return undefined
  return { received: Number(received), dropped: Number(dropped) }
}
