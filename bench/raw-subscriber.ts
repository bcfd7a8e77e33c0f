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
 * With a third argument `effect`, each event goes the way a typed Effect consumer's would, with
 * no Troupe code: decoded with the topic's Schema, offered to a dropping `Queue` the size of a
 * round, and counted by `Stream.runForEach` on `Stream.fromQueue`. It is the suite's measure of
 * what one validated event through an Effect stream costs by itself.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { Packr } from "msgpackr"
import { connect, type Msg } from "nats"
import { serveUntilStopped } from "./cpu-profile.ts"
import { type Control, doneLine, Order, roundLine } from "./topics-events.ts"

const [url, subject, mode] = process.argv.slice(2)
if (url === undefined || subject === undefined) {
  console.error("usage: raw-subscriber.ts <nats-url> <subject> [effect]")
  process.exit(2)
}

// the same msgpackr settings as Troupe's MessagePack codec
const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })

let round = -1
let expect = Number.POSITIVE_INFINITY
let received = 0
let open = false

const nc = await connect({ servers: url, name: "bench-raw-subscriber" })

const count = () => {
  received++
  if (open && received >= expect) {
    open = false
    console.log(doneLine(round, received, 0))
  }
}

if (mode === "effect") {
  const decode = Schema.decodeUnknownEither(Order)
  const queue = Effect.runSync(Queue.dropping<typeof Order.Type>(Number(process.env["BENCH_EVENTS"] ?? 50_000)))
  Effect.runFork(Stream.runForEach(Stream.fromQueue(queue), () => Effect.sync(count)))
  nc.subscribe(subject, {
    callback: (error: Error | null, msg: Msg) => {
      if (error !== null) return
      const decoded = decode(packr.unpack(msg.data))
      if (Either.isRight(decoded)) queue.unsafeOffer(decoded.right)
    }
  })
} else {
  nc.subscribe(subject, {
    callback: (error: Error | null, msg: Msg) => {
      if (error !== null) return
      packr.unpack(msg.data)
      count()
    }
  })
}

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
