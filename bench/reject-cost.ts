/**
 * `npx tsx bench/reject-cost.ts`: what it costs a receiver to drop bytes that are not a frame,
 * against what it costs to decode a valid one. For each codec, µs per frame through the
 * transports' receiving end (`Transport.makeReceiver`: decode, count, drop) for a valid request,
 * a valid heartbeat and several kinds of garbage, and each one's ratio to the valid request.
 * Every figure is the median of 5 rounds, each bounded in frames and in time.
 *
 * @since 0.5.0
 */
import { Packr } from "msgpackr"
import * as Codec from "../src/layers/Codec.ts"
import { makeReceiver, resolveLimits } from "../src/layers/Transport.ts"
import { type Envelope, ProtocolVersion } from "../src/schema/Envelope.ts"

const text = (s: string) => new TextEncoder().encode(s)
const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })

const request: Envelope = {
  _tag: "Request",
  v: ProtocolVersion,
  source: "caller-3k9x0a1b",
  requestId: 41,
  kind: "Counter",
  id: "c-1",
  tag: "Increment",
  headers: {},
  body: { by: 2 }
}
const heartbeat: Envelope = {
  _tag: "Heartbeat",
  v: ProtocolVersion,
  source: "node-3k9x0a1b",
  name: "node",
  incarnation: "node-3k9x0a1b.m1x2",
  address: "nats://node-3k9x0a1b",
  kinds: ["Counter", "Greeter"],
  isServing: true,
  startedAt: 1_700_000_000_000,
  periodMillis: 1000
}

const deepJson = text("[".repeat(5000) + "]".repeat(5000))
const deepMsgpack = new Uint8Array(5001).fill(0x91)
deepMsgpack[5000] = 0x01

const garbage = (codec: Codec.CodecShape): ReadonlyArray<readonly [string, Uint8Array]> => {
  const plain = codec.name === "json" ? (u: unknown) => text(JSON.stringify(u)) : (u: unknown) => packr.pack(u)
  const random = new Uint8Array(64)
  for (let i = 0; i < random.length; i++) random[i] = (i * 151 + 7) & 0xff
  random[0] = codec.name === "json" ? 0x7b : 0x92
  return [
    ["not parseable", codec.name === "json" ? text("{\"_tag\":\"Request\",\"v\":1,") : random],
    ["[{\"toString\":1}]", plain([{ toString: 1 }])],
    ["{\"_tag\":{\"toString\":1}}", plain({ _tag: { toString: 1 } })],
    ["unknown tag", plain({ _tag: "Nope", v: 1 })],
    ["request, source \"a b c\"", plain(["Q", 1, "a b c", 1, "Counter", "c-1", "Get", 0, 2, 0])],
    ["request, requestId NaN-ish", plain(["Q", 1, "a", -1.5, "Counter", "c-1", "Get", 0, 2, 0])],
    ["heartbeat, wrong field type", plain({ ...heartbeat, kinds: "Counter", isServing: "yes" })],
    ["heartbeat, kind \"a.b\"", plain({ ...heartbeat, kinds: ["a.b"] })],
    ["nested 5000 deep", codec.name === "json" ? deepJson : deepMsgpack],
    ...(codec.name === "msgpack"
      ? [["array16 of 65535, 3 bytes", new Uint8Array([0xdc, 0xff, 0xff])] as const]
      : [])
  ]
}

const median = (values: Array<number>): number => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!

/** µs per call of `f` on `bytes`: median of 5 rounds of at most 20k calls or 200 ms */
const measure = (f: (bytes: Uint8Array) => void, bytes: Uint8Array): number => {
  for (let i = 0; i < 2000; i++) f(bytes)
  const rounds: Array<number> = []
  for (let round = 0; round < 5; round++) {
    const start = performance.now()
    let n = 0
    while (n < 20_000 && performance.now() - start < 200) {
      for (let i = 0; i < 100; i++) f(bytes)
      n += 100
    }
    rounds.push(((performance.now() - start) * 1000) / n)
  }
  return median(rounds)
}

for (const codec of [Codec.jsonCodec, Codec.msgpackCodec]) {
  let delivered = 0
  const receive = makeReceiver(codec, resolveLimits({}, Infinity), () => {
    delivered++
  })
  const valid = codec.encode(request)
  const beat = codec.encode(heartbeat)
  if (valid._tag === "Left" || beat._tag === "Left") throw new Error("cannot encode the valid frames")
  const baseline = measure(receive, valid.right)
  console.log(`\n== ${codec.name}: µs per frame through the receiver (ratio to a valid request)`)
  const line = (name: string, us: number) =>
    console.log(`${name.padEnd(34)} ${us.toFixed(3).padStart(8)} µs  ${(us / baseline).toFixed(2).padStart(6)}x`)
  line("valid request", baseline)
  line("valid heartbeat", measure(receive, beat.right))
  const before = delivered
  for (const [name, bytes] of garbage(codec)) line(name, measure(receive, bytes))
  if (delivered !== before) throw new Error(`${delivered - before} garbage frames were delivered`)
}
