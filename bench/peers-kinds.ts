/**
 * What the peers suite (`peers.ts`) and its child processes share: the payload every system is
 * asked with, the Troupe kinds and topics, the Moleculer service names, and the namespaces and
 * subjects of each system on the one nats-server.
 *
 * Every system answers the same request: `{ a, b, tag }` (two numbers and an 80-character
 * string) answered with `a + b`, and publishes the same event. The in-process comparison uses
 * the `Counter` shape of `actors.ts` (`Increment({ by })` answered with the new count) for all
 * three systems.
 *
 * @since 0.5.0
 */
import { Rpc } from "@effect/rpc"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { Actor, Topic } from "../src/index.ts"
import { Control } from "./topics-events.ts"

/**
 * The request and event body of every system over NATS.
 *
 * @since 0.5.0
 * @category payload
 */
export const Payload = Schema.Struct({ a: Schema.Number, b: Schema.Number, tag: Schema.String })

/**
 * @since 0.5.0
 * @category payload
 */
export type Payload = typeof Payload.Type

/**
 * @since 0.5.0
 * @category payload
 */
export const PAYLOAD: Payload = {
  a: 20,
  b: 22,
  tag: "order-2026-12-0001/customer-4411/warehouse-eu-west/priority-standard/gift-no-x".padEnd(80, "x")
}

/**
 * What every responder answers to `PAYLOAD`.
 *
 * @since 0.5.0
 * @category payload
 */
export const ANSWER = PAYLOAD.a + PAYLOAD.b

/**
 * Events per delivery round (Moleculer `broadcast` and Troupe topics alike).
 *
 * @since 0.5.0
 * @category constants
 */
export const EVENTS = 20_000

// ---- Troupe --------------------------------------------------------------------------------

/**
 * The Troupe kind asked over NATS: a stateless service answering `a + b`.
 *
 * @since 0.5.0
 * @category troupe
 */
export const Peer = Actor.service("Peer", [
  Rpc.make("Add", { payload: Payload.fields, success: Schema.Number })
])

/**
 * @since 0.5.0
 * @category troupe
 */
export const PeerLive = Actor.toLayer(
  Peer,
  Effect.succeed({
    Add: ({ a, b }) => Effect.succeed(a + b)
  })
)

/**
 * The topic the Troupe publisher sends `PAYLOAD` on.
 *
 * @since 0.5.0
 * @category troupe
 */
export const PeerEvent = Topic.make("peers.event", Payload)

/**
 * The round control of the Troupe subscriber (the protocol of `topics-events.ts`).
 *
 * @since 0.5.0
 * @category troupe
 */
export const PeerControl = Topic.make("peers.control", Control)

/**
 * The namespace of the Troupe responder of each codec.
 *
 * @since 0.5.0
 * @category troupe
 */
export const TROUPE_NAMESPACE = { msgpack: "peers-msgpack", json: "peers-json" } as const

/**
 * The namespace of the node whose discovery CPU is measured (nothing else uses it).
 *
 * @since 0.5.0
 * @category troupe
 */
export const DISCOVERY_NAMESPACE = "peers-discovery"

// ---- Moleculer -----------------------------------------------------------------------------

/**
 * The Moleculer namespace (its subjects are `MOL-peers.*`).
 *
 * @since 0.5.0
 * @category moleculer
 */
export const MOLECULER_NAMESPACE = "peers"

/**
 * The action answering `a + b` on the Moleculer responder.
 *
 * @since 0.5.0
 * @category moleculer
 */
export const MOLECULER_ACTION = "peer.add"

/**
 * The event the Moleculer publisher `broadcast`s.
 *
 * @since 0.5.0
 * @category moleculer
 */
export const MOLECULER_EVENT = "peers.event"

/**
 * The action taking the round control of the Moleculer subscriber.
 *
 * @since 0.5.0
 * @category moleculer
 */
export const MOLECULER_CONTROL = "peerEvents.control"

// ---- raw nats.js ---------------------------------------------------------------------------

/**
 * The subject the raw nats.js responder answers on (msgpackr).
 *
 * @since 0.5.0
 * @category raw
 */
export const RAW_SUBJECT = "bench.peers.raw"
