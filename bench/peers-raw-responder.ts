/**
 * The raw nats.js responder of the peers suite, run in its own process:
 * `node --import tsx bench/peers-raw-responder.ts <url>`.
 *
 * It answers `RAW_SUBJECT`: each request `{ a, b, tag }` is decoded with msgpackr and `a + b` is
 * encoded and published to the request's reply subject, the least a hand-written nats.js
 * service can do. Prints `ready` once the server has the subscription; drains and exits on
 * SIGTERM.
 *
 * @since 0.5.0
 */
import { Packr } from "msgpackr"
import { connect, type Msg } from "nats"
import { serveUntilStopped } from "./cpu-profile.ts"
import { type Payload, RAW_SUBJECT } from "./peers-kinds.ts"

const [url] = process.argv.slice(2)
if (url === undefined) {
  console.error("usage: peers-raw-responder.ts <nats-url>")
  process.exit(2)
}

// the same msgpackr settings as Troupe's MessagePack codec
const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })

const nc = await connect({ servers: url, name: "bench-peers-raw-responder" })
nc.subscribe(RAW_SUBJECT, {
  callback: (error: Error | null, msg: Msg) => {
    if (error !== null || msg.reply === undefined) return
    const { a, b } = packr.unpack(msg.data) as Payload
    nc.publish(msg.reply, packr.pack(a + b))
  }
})
await nc.flush()
await serveUntilStopped(nc)
