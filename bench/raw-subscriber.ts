/**
 * The subscriber of the raw nats.js baseline of the topics suite, run in its own process:
 * `node --import tsx bench/raw-subscriber.ts <url> <subject>`.
 *
 * It decodes (msgpackr) and counts every event on `<subject>`, and follows the round protocol of
 * `topics-events.ts` on `<subject>.control` (msgpackr `{ round, command, expect }`): prints
 * `round <r>` on `start`, `done <r> <received> 0` once `expect` events have arrived or on
 * `report`. Prints `ready` once the server has both subscriptions; drains and exits on SIGTERM.
 * `BENCH_CPU_PROFILE=<file>` writes a CPU profile of the process there when it is stopped.
 *
 * @since 0.1.0
 */
import { Packr } from "msgpackr"
import { connect, type Msg } from "nats"
import { serveUntilStopped } from "./cpu-profile.ts"
import { type Control, doneLine, roundLine } from "./topics-events.ts"

const [url, subject] = process.argv.slice(2)
if (url === undefined || subject === undefined) {
  console.error("usage: raw-subscriber.ts <nats-url> <subject>")
  process.exit(2)
}

// the same msgpackr settings as Troupe's MessagePack codec
const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })

let round = -1
let expect = Number.POSITIVE_INFINITY
let received = 0
let open = false

const nc = await connect({ servers: url, name: "bench-raw-subscriber" })

nc.subscribe(subject, {
  callback: (error: Error | null, msg: Msg) => {
    if (error !== null) return
    packr.unpack(msg.data)
    received++
    if (open && received >= expect) {
      open = false
      console.log(doneLine(round, received, 0))
    }
  }
})

nc.subscribe(`${subject}.control`, {
  callback: (error: Error | null, msg: Msg) => {
    if (error !== null) return
    const control = packr.unpack(msg.data) as Control
    if (control.command === "start") {
      round = control.round
      expect = control.expect
      received = 0
      open = true
      console.log(roundLine(round))
    } else if (control.round === round) {
      open = false
      console.log(doneLine(round, received, 0))
    }
  }
})

await nc.flush()
await serveUntilStopped(nc)
