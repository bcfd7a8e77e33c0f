/**
 * The responder node of the durable suite, run in its own process:
 * `node --import tsx bench/durable-responder.ts <url> <namespace> <bucket>`.
 *
 * One Troupe node over NATS (`Node.layerNats`, heartbeat discovery included) with its state in
 * the JetStream key-value bucket `<bucket>` (`persistence: { bucket }`), hosting the kinds of
 * `durable-actors.ts`: `Tally` (plain), `Ledger` (durable), `Ticker` (reminders) and
 * `TickerStats`. Prints `ready` once the node is built; Effect's INFO logs are silenced; SIGTERM
 * interrupts the program, which closes the node and exits. `BENCH_CPU_PROFILE=<file>` writes a
 * CPU profile of the process there when it is stopped.
 *
 * @since 0.5.0
 */
import { NodeRuntime } from "@effect/platform-node"
import * as Layer from "effect/Layer"
import { Node } from "../src/index.ts"
import { serveLayer } from "./cpu-profile.ts"
import { LedgerLive, TallyLive, tickerLayers } from "./durable-actors.ts"

const [url, namespace, bucket] = process.argv.slice(2)
if (url === undefined || namespace === undefined || bucket === undefined) {
  console.error("usage: durable-responder.ts <nats-url> <namespace> <bucket>")
  process.exit(2)
}

const counter = { fired: 0 }

const responder = Layer.mergeAll(TallyLive, LedgerLive, tickerLayers(counter)).pipe(
  Layer.provideMerge(Node.layerNats({
    servers: url,
    namespace,
    name: "bench-durable-responder",
    shutdownTimeout: "2 seconds",
    persistence: { bucket }
  }))
)

NodeRuntime.runMain(serveLayer(responder))
