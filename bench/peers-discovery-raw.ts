/**
 * The raw baseline of the discovery CPU measurement of the peers suite, run in its own process:
 * `node --import tsx bench/peers-discovery-raw.ts <url>`.
 *
 * Plain nats.js subscribed to the heartbeat subject of `DISCOVERY_NAMESPACE`, decoding each
 * heartbeat with msgpackr and doing nothing else: the least a process can spend on receiving the
 * same heartbeats as the measured node. Every 250 ms it prints the line of
 * `peers-discovery-node.ts` (`cpu <performance.now()> <user+system CPU µs> <heartbeats> 0`, its
 * third field the heartbeats received so far). Prints `ready` once the server has the
 * subscription; drains and exits on SIGTERM.
 *
 * @since 0.5.0
 */
import { Packr } from "msgpackr"
import { connect, type Msg } from "nats"
import { serveUntilStopped } from "./cpu-profile.ts"
import { DISCOVERY_NAMESPACE } from "./peers-kinds.ts"

const [url] = process.argv.slice(2)
if (url === undefined) {
  console.error("usage: peers-discovery-raw.ts <nats-url>")
  process.exit(2)
}

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })
let received = 0

const nc = await connect({ servers: url, name: "bench-peers-discovery-raw" })
nc.subscribe(`troupe.${DISCOVERY_NAMESPACE}.discovery`, {
  callback: (error: Error | null, msg: Msg) => {
    if (error !== null) return
    try {
      packr.unpack(msg.data)
    } catch {
      // not a plain frame: counted all the same
    }
    received++
  }
})
await nc.flush()
const report = setInterval(() => {
  const usage = process.cpuUsage()
  console.log(`cpu ${performance.now().toFixed(3)} ${usage.user + usage.system} ${received} 0`)
}, 250)
process.once("SIGTERM", () => clearInterval(report))
await serveUntilStopped(nc)
