/**
 * The responder of the raw nats.js baseline of the NATS suite, run in its own process:
 * `node --import tsx bench/raw-responder.ts <url> <subject-prefix>`.
 *
 * It answers `<prefix>.msgpack` with msgpackr and `<prefix>.json` with JSON: each request
 * `{ by }` is decoded and `by + 1` is encoded and published to the request's reply subject, the
 * least a hand-written nats.js service can do. Prints `ready` once the server has the
 * subscriptions; drains and exits on SIGTERM. `BENCH_CPU_PROFILE=<file>` writes a CPU profile of
 * the process there when it is stopped.
 *
 * @since 0.1.0
 */
import { connect, type Msg } from "nats"
import { Packr } from "msgpackr"
import { serveUntilStopped } from "./cpu-profile.ts"

const [url, prefix] = process.argv.slice(2)
if (url === undefined || prefix === undefined) {
  console.error("usage: raw-responder.ts <nats-url> <subject-prefix>")
  process.exit(2)
}

// the same msgpackr settings as Troupe's MessagePack codec
const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })
const encoder = new TextEncoder()
const decoder = new TextDecoder()

const nc = await connect({ servers: url, name: "bench-raw-responder" })

const respond = (
  decode: (bytes: Uint8Array) => { readonly by: number },
  encode: (value: number) => Uint8Array
) =>
(error: Error | null, msg: Msg): void => {
  if (error !== null || msg.reply === undefined) return
  const { by } = decode(msg.data)
  nc.publish(msg.reply, encode(by + 1))
}

nc.subscribe(`${prefix}.msgpack`, {
  callback: respond((bytes) => packr.unpack(bytes) as { by: number }, (value) => packr.pack(value))
})
nc.subscribe(`${prefix}.json`, {
  callback: respond(
    (bytes) => JSON.parse(decoder.decode(bytes)) as { by: number },
    (value) => encoder.encode(JSON.stringify(value))
  )
})
await nc.flush()
await serveUntilStopped(nc)
