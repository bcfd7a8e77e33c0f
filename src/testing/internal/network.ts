/**
 * The faulty network: the `NetworkHook` a test cluster installs on its in-memory network. Each
 * delivery (one frame, one subscriber) is delivered, delayed, dropped or lost, with every draw
 * from the seeded `Prng`; a delayed frame waits on the simulation's clock behind the earlier
 * frames of the same publisher to the same subscription, so delay never reorders what NATS keeps
 * in order. A bounded ring of trace lines records each fate.
 *
 * @internal
 */
import type { Delivery, NetworkHook, Subscription } from "../../layers/internal/inMemory.ts"
import type { Frame } from "../../schema/Envelope.ts"
import type { Prng } from "./prng.ts"
import type { Simulation } from "./simulation.ts"

/** @internal the faults applied to every delivery between two nodes */
export interface FaultSettings {
  readonly drop: number
  readonly delayMin: number
  readonly delayMax: number
  readonly duplicate: number
}

/** @internal */
export const noFaults: FaultSettings = { drop: 0, delayMin: 0, delayMax: 0, duplicate: 0 }

/** @internal one connection to the network: one incarnation of one node */
export interface Endpoint {
  readonly node: string
  readonly label: string
  alive: boolean
  connected: boolean
}

/** @internal what the fates add up to */
export interface DeliveryStats {
  delivered: number
  delayed: number
  dropped: number
  duplicated: number
  lost: number
}

interface PairState {
  lastAt: number
  queued: number
}

/** @internal */
export class FaultyNetwork implements NetworkHook {
  faults: FaultSettings = noFaults
  /** node name → side; nodes on different sides cannot reach each other */
  sides: Map<string, number> | undefined = undefined
  readonly endpoints = new Map<string, Endpoint>()
  readonly stats: DeliveryStats = { delivered: 0, delayed: 0, dropped: 0, duplicated: 0, lost: 0 }
  inFlight = 0
  private readonly ring: Array<string> = []
  private ringStart = 0
  private readonly pairs = new WeakMap<Subscription, Map<string, PairState>>()
  private readonly gone = new WeakSet<Subscription>()

  constructor(
    private readonly sim: Simulation,
    private readonly prng: Prng,
    private readonly traceSize: number
  ) {}

  /** the trace, oldest line first */
  trace(): ReadonlyArray<string> {
    return [...this.ring.slice(this.ringStart), ...this.ring.slice(0, this.ringStart)]
  }

  record(line: string): void {
    if (this.traceSize <= 0) return
    const text = `${String(this.sim.unsafeCurrentTimeMillis() - SIM_EPOCH).padStart(7)}ms ${line}`
    if (this.ring.length < this.traceSize) this.ring.push(text)
    else {
      this.ring[this.ringStart] = text
      this.ringStart = (this.ringStart + 1) % this.traceSize
    }
  }

  /** whether the two nodes' connections are up and on one side of every partition */
  canTalk(from: Endpoint, to: Endpoint): boolean {
    if (!from.alive || !to.alive || !from.connected || !to.connected) return false
    if (from === to || this.sides === undefined) return true
    return (this.sides.get(from.node) ?? -1) === (this.sides.get(to.node) ?? -1)
  }

  reachable = (from: string | undefined, to: string | undefined): boolean => {
    const source = from === undefined ? undefined : this.endpoints.get(from)
    const target = to === undefined ? undefined : this.endpoints.get(to)
    if (source === undefined || target === undefined) return true
    return this.canTalk(source, target)
  }

  removed = (sub: Subscription): void => {
    this.gone.add(sub)
  }

  deliver = (delivery: Delivery): void => {
    const { from, sub } = delivery
    // a node's frames to itself, and frames of strangers, are never faulted
    if (from === undefined || from === sub.endpoint || sub.endpoint === undefined) {
      return sub.deliver(delivery.wire, delivery.replyTo)
    }
    const faults = this.faults
    const what = `${this.nameOf(from)}→${this.nameOf(sub.endpoint)} ${describe(delivery)}`
    if (faults.drop > 0 && this.prng.next() < faults.drop) {
      this.stats.dropped++
      return this.record(`${what} dropped`)
    }
    const delay = faults.delayMax > 0 ? this.prng.between(faults.delayMin, faults.delayMax) : 0
    const copies = faults.duplicate > 0 && this.prng.next() < faults.duplicate ? 2 : 1
    if (copies === 2) this.stats.duplicated++
    for (let copy = 0; copy < copies; copy++) this.schedule(delivery, from, what, delay, copy === 1)
  }

  private schedule(delivery: Delivery, from: string, what: string, delay: number, duplicate: boolean): void {
    const { sub } = delivery
    let bySource = this.pairs.get(sub)
    if (bySource === undefined) {
      bySource = new Map()
      this.pairs.set(sub, bySource)
    }
    let pair = bySource.get(from)
    const now = this.sim.unsafeCurrentTimeMillis()
    const label = duplicate ? "duplicate" : "delivered"
    if (delay === 0 && (pair === undefined || pair.queued === 0)) {
      this.stats.delivered++
      this.record(`${what} ${label}`)
      return sub.deliver(delivery.wire, delivery.replyTo)
    }
    if (pair === undefined) {
      pair = { lastAt: now, queued: 0 }
      bySource.set(from, pair)
    }
    // FIFO per publisher and subscription: never before the frame sent before it
    const at = Math.max(now + delay, pair.lastAt)
    pair.lastAt = at
    pair.queued++
    this.inFlight++
    this.stats.delayed++
    const state = pair
    this.sim.schedule(at, () => {
      state.queued--
      this.inFlight--
      const source = this.endpoints.get(from)
      const target = sub.endpoint === undefined ? undefined : this.endpoints.get(sub.endpoint)
      // the receiver must still be there; a sender that died meanwhile had already sent it
      const receivable = source === undefined || target === undefined ||
        this.canTalk({ ...source, alive: true }, target)
      if (this.gone.has(sub) || !receivable) {
        this.stats.lost++
        return this.record(`${what} lost in flight`)
      }
      this.stats.delivered++
      this.record(`${what} ${label} +${at - now}ms`)
      sub.deliver(delivery.wire, delivery.replyTo)
    })
  }

  private nameOf(label: string): string {
    const endpoint = this.endpoints.get(label)
    return endpoint === undefined ? label : endpoint.label
  }
}

/** the simulation's time zero: traces show virtual millis since it */
export const SIM_EPOCH = 0

const describe = (delivery: Delivery): string => {
  const frame = delivery.frame as (Frame & { readonly requestId?: number }) | undefined
  if (frame === undefined) return `bytes ${delivery.subject}`
  switch (frame._tag) {
    case "Request":
      return `Request#${frame.requestId} ${frame.kind}/${frame.id}.${frame.tag}`
    case "Exit":
      return `Exit#${frame.requestId} ${frame.exit._tag}`
    case "Heartbeat":
      return frame.leaving === true ? "Heartbeat leaving" : "Heartbeat"
    case "Event":
      return `Event ${frame.subject}`
    default:
      return frame.requestId === undefined ? frame._tag : `${frame._tag}#${frame.requestId}`
  }
}
