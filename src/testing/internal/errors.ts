/**
 * The kit's error.
 *
 * @internal
 */
import * as Schema from "effect/Schema"

/**
 * `cluster.settle` found the cluster still unsettled when its time ran out: which node sees
 * what it should not, and how many frames were still in flight.
 *
 * @since 0.5.0
 * @category errors
 */
export class SettleTimeout extends Schema.TaggedError<SettleTimeout>()("SettleTimeout", {
  seed: Schema.Number,
  afterMillis: Schema.Number,
  reasons: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return `the cluster (seed ${this.seed}) did not settle within ${this.afterMillis} ms of virtual time: ${
      this.reasons.join("; ")
    }`
  }
}
