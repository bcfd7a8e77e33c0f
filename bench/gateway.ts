/**
 * Gateway suite: HTTP requests per second through `Gateway.layer` to the `Adder` service hosted
 * by another process over NATS, next to the same request served by a bare `@effect/platform`
 * handler (same process, same router and server, no actor) in the same run.
 *
 * Four processes on loopback: nats-server, the Adder responder (`troupe-responder.ts`), the HTTP
 * side (`gateway-server.ts`, both servers) and this one, the load generator: `CLIENTS`
 * keep-alive connections (one `http.Agent`), each sending its next `POST /increment` as soon as
 * the previous reply arrived. Every round is bounded by a request count and a time cap; the two
 * targets' rounds are interleaved, so machine load hits both alike.
 *
 * Run alone with `npx tsx bench/index.ts gateway`.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as http from "node:http"
import { freePorts } from "../testing/nats.ts"
import {
  baselineResult,
  type Budget,
  compare,
  concurrentPromises,
  measureAll,
  type Result,
  type Round,
  type Spec
} from "./harness.ts"
import { child, natsServer } from "./nats.ts"

const SUITE = "gateway"
const CLIENTS = 50
const BUDGET: Budget = { maxOps: 20_000, maxMillis: 1_500 }
const NAMESPACE = "bench-gateway"
const BODY = JSON.stringify({ by: 1 })

/** one request; true when it got `200` and the expected body */
const post = (agent: http.Agent, port: number): Promise<true | Error> =>
  new Promise((resolve) => {
    const request = http.request({
      agent,
      host: "127.0.0.1",
      port,
      method: "POST",
      path: "/increment",
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(BODY) }
    }, (response) => {
      let data = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => (data += chunk))
      response.on("end", () =>
        resolve(response.statusCode === 200 && data === "2" ? true : new Error(`${response.statusCode}: ${data}`)))
    })
    // no Nagle delay on the client side either (Node's server sets noDelay by itself)
    request.on("socket", (socket) =>
      socket.setNoDelay(true))
    request.setTimeout(10_000, () => request.destroy(new Error("no reply within 10 s")))
    request.on("error", resolve)
    request.end(BODY)
  })

/** `CLIENTS` callers, each one request at a time, until the budget's count or time is spent */
const load = (agent: http.Agent, port: number, budget: Budget): Promise<Round> =>
  concurrentPromises(budget, CLIENTS, async () => {
    const outcome = await post(agent, port)
    if (outcome !== true) throw outcome
  })

const target = (name: string, port: number) =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => new http.Agent({ keepAlive: true, maxSockets: CLIENTS })),
      (agent) => Effect.sync(() => agent.destroy())
    ),
    (agent): Spec => ({ name, budget: BUDGET, round: (budget) => Effect.promise(() => load(agent, port, budget)) })
  )

const program = Effect.gen(function*() {
  const server = yield* natsServer
  const [gatewayPort, barePort] = yield* Effect.promise(() => freePorts(2))
  const responder = yield* child("troupe-responder.ts", [server.url, NAMESPACE], { BENCH_CODEC: "msgpack" })
  yield* Effect.promise(() => responder.waitForLine(/^ready$/, 30_000))
  const http = yield* child("gateway-server.ts", [server.url, NAMESPACE, String(gatewayPort), String(barePort)])
  yield* Effect.promise(() => http.waitForLine(/^ready$/, 30_000))

  const bare = yield* target(`bare @effect/platform handler (${CLIENTS} clients)`, barePort!)
  const gateway = yield* target(`gateway → actor over NATS (${CLIENTS} clients)`, gatewayPort!)
  console.log(`  -- POST /increment, ${CLIENTS} keep-alive clients`)
  const [bareResult, gatewayResult] = yield* measureAll([bare, gateway])
  return [
    baselineResult(SUITE, bareResult!, "req/s"),
    compare(SUITE, gatewayResult!, bareResult!, {
      unit: "req/s",
      note: "adds an ask over NATS to another process (msgpack)"
    })
  ]
})

/**
 * Runs the gateway suite.
 *
 * @since 0.1.0
 */
export const run = (): Promise<Array<Result>> =>
  Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Logger.minimumLogLevel(LogLevel.Warning))))
