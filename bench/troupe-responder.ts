/**
 * The responder node of the NATS suite, run in its own process:
 * `node --import tsx bench/troupe-responder.ts <url> <namespace>`, with `BENCH_CODEC=json` or
 * `msgpack` (the default). `BENCH_SECURE=1` seals its traffic with `Secure` (a fresh identity,
 * trust `"any"`).
 *
 * It hosts the `Adder` service (`Increment: ({ by }) => by + 1`) on a Troupe node over NATS, with
 * NATS heartbeat discovery (`Discovery.nats()`), and prints `ready` once the node is built (its
 * queue-group subscription made, its first heartbeat sent). Effect's INFO logs are
 * silenced; SIGTERM interrupts the program, which drains the connection and exits.
 * `BENCH_CPU_PROFILE=<file>` writes a CPU profile of the process there when it is stopped.
 *
 * @since 0.1.0
 */
import { NodeRuntime } from "@effect/platform-node"
import * as Layer from "effect/Layer"
import { Codec, Discovery, Node, Secure, Transport } from "../src/index.ts"
import { AdderLive } from "./actors.ts"
import { serveLayer } from "./cpu-profile.ts"

const [url, namespace] = process.argv.slice(2)
if (url === undefined || namespace === undefined) {
  console.error("usage: troupe-responder.ts <nats-url> <namespace>   (BENCH_CODEC=json|msgpack)")
  process.exit(2)
}
const codec = process.env["BENCH_CODEC"] === "json" ? Codec.json : Codec.msgpack

const plain = Transport.nats({ servers: url, namespace, name: "bench-troupe-responder" }).pipe(Layer.provide(codec))
const transport = process.env["BENCH_SECURE"] === "1"
  ? Secure.layer({ identity: Secure.generateIdentity, trust: "any", namespace }).pipe(
    Layer.provide(Layer.merge(plain, codec))
  )
  : plain

const responder = AdderLive.pipe(
  Layer.provideMerge(Node.layer({ name: "bench-responder" })),
  Layer.provide(Layer.provideMerge(Discovery.nats(), transport))
)

NodeRuntime.runMain(serveLayer(responder))
