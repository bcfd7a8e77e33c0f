/**
 * The HTTP side of the gateway suite, run in its own process:
 * `node --import tsx bench/gateway-server.ts <nats-url> <namespace> <gateway-port> <bare-port>`.
 *
 * Serves `POST /increment` (`{ "by": 1 }` → `2`) twice, on two ports of the same process:
 * through `Gateway.layer` to the `Adder` service hosted by another process over NATS, and by a
 * bare `@effect/platform` handler that decodes the same body and answers in place. Prints
 * `ready` once the gateway's node has seen the Adder serving.
 *
 * @since 0.1.0
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Schema from "effect/Schema"
import { createServer } from "node:http"
import { Discovery, Gateway, Node } from "../src/index.ts"
import { Adder } from "./actors.ts"

const [url, namespace, gatewayPort, barePort] = process.argv.slice(2)
if (url === undefined || namespace === undefined || gatewayPort === undefined || barePort === undefined) {
  console.error("usage: gateway-server.ts <nats-url> <namespace> <gateway-port> <bare-port>")
  process.exit(2)
}

const GatewayLive = Gateway.layer({
  port: Number(gatewayPort),
  host: "127.0.0.1",
  routes: [Gateway.route("POST", "/increment", Adder, "Increment")]
})

const Payload = Schema.Struct({ by: Schema.Number })
const BareLive = HttpRouter.empty.pipe(
  HttpRouter.post(
    "/increment",
    Effect.map(HttpServerRequest.schemaBodyJson(Payload), ({ by }) => HttpServerResponse.unsafeJson(by + 1)).pipe(
      Effect.orElseSucceed(() => HttpServerResponse.empty({ status: 400 }))
    )
  ),
  HttpServer.serve(),
  Layer.provide(NodeHttpServer.layer(() => createServer(), { port: Number(barePort), host: "127.0.0.1" }))
)

const program = Effect.gen(function*() {
  yield* Discovery.awaitServing("Adder", { timeout: "30 seconds" })
  yield* Effect.sync(() => console.log("ready"))
  return yield* Effect.never
}).pipe(
  Effect.provide(
    Layer.mergeAll(GatewayLive, BareLive).pipe(
      Layer.provideMerge(Node.layerNats({ servers: url, namespace, name: "bench-gateway" }))
    )
  ),
  Effect.provide(Logger.minimumLogLevel(LogLevel.Warning))
)

NodeRuntime.runMain(program)
