/**
 * The Moleculer responder of the peers suite, run in its own process:
 * `node --import tsx bench/peers-moleculer-responder.ts <url>`.
 *
 * A Moleculer 0.15 `ServiceBroker` on the NATS transporter with the JSON serializer (its default
 * and its fastest here), written as its documentation shows:
 * - the action `peer.add` answers `{ a, b, tag }` with `a + b`;
 * - the service `peerEvents` counts the `peers.event` events and follows the round protocol of
 *   `topics-events.ts` through its action `peerEvents.control` (`round <r>` printed on `start`,
 *   `done <r> <received> 0` once `expect` events have arrived, or on `report`).
 *
 * Prints `ready` once the broker has started (connected, its services registered); on SIGTERM
 * the broker stops (disconnects from NATS) and the process exits.
 *
 * @since 0.5.0
 */
import { type Context, ServiceBroker } from "moleculer"
import {
  MOLECULER_ACTION,
  MOLECULER_CONTROL,
  MOLECULER_EVENT,
  MOLECULER_NAMESPACE,
  type Payload
} from "./peers-kinds.ts"
import { type Control, doneLine, roundLine } from "./topics-events.ts"

const [url] = process.argv.slice(2)
if (url === undefined) {
  console.error("usage: peers-moleculer-responder.ts <nats-url>")
  process.exit(2)
}

const broker = new ServiceBroker({
  namespace: MOLECULER_NAMESPACE,
  nodeID: "peers-moleculer-responder",
  transporter: { type: "NATS", options: { url } },
  serializer: "JSON",
  logger: false,
  skipProcessEventRegistration: true
})

const [service, action] = MOLECULER_ACTION.split(".") as [string, string]
broker.createService({
  name: service,
  actions: {
    [action]: (ctx: Context<Payload>) => ctx.params.a + ctx.params.b
  }
})

let round = -1
let expect = Number.POSITIVE_INFINITY
let received = 0
let open = false
const finish = () => {
  open = false
  console.log(doneLine(round, received, 0))
}

const [eventsService, controlAction] = MOLECULER_CONTROL.split(".") as [string, string]
broker.createService({
  name: eventsService,
  events: {
    [MOLECULER_EVENT]: () => {
      received++
      if (open && received >= expect) finish()
    }
  },
  actions: {
    [controlAction]: (ctx: Context<Control>) => {
      const control = ctx.params
      if (control.command === "start") {
        round = control.round
        expect = control.expect
        received = 0
        open = true
        console.log(roundLine(round))
      } else if (control.round === round) finish()
      return true
    }
  }
})

await broker.start()
console.log("ready")
process.once("SIGTERM", () => {
  broker.stop()
    .catch((error: unknown) => console.error("the broker did not stop cleanly:", error))
    .finally(() => process.exit(0))
})
