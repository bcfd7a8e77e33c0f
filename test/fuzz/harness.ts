/**
 * A victim node and a caller node on one serializing in-memory network (heartbeat discovery,
 * `serialize: true`, optionally secure), with everything the fuzz properties look at: raw bytes
 * delivered to any subject, the drop counters, every subject the nodes publish to, the log lines
 * that carry a defect, a legitimate ask and a legitimate event, and the nodes' tables.
 */
import { Rpc } from "@effect/rpc"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Actor from "../../src/actors/Actor.ts"
import type { ActorSystem } from "../../src/actors/ActorSystem.ts"
import * as Topic from "../../src/actors/Topic.ts"
import * as Codec from "../../src/layers/Codec.ts"
import * as Discovery from "../../src/layers/Discovery.ts"
import { rejectedChunks } from "../../src/layers/internal/reassembly.ts"
import * as Secure from "../../src/layers/Secure.ts"
import * as Transport from "../../src/layers/Transport.ts"
import * as Node from "../../src/runtime/Node.ts"
import { droppedEvents, undecodableEvents } from "../../src/runtime/internal/topics.ts"
import type { Envelope } from "../../src/schema/Envelope.ts"
import { StreamError } from "../../src/schema/Errors.ts"
import { isSubject } from "./wireBytes.ts"

const rpcs = [
  Rpc.make("Echo", { payload: { n: Schema.Number }, success: Schema.Number }),
  Rpc.make("Count", { payload: { n: Schema.Number }, success: Schema.Number, stream: true }),
  Rpc.make("Put", { payload: { data: Actor.Upload }, success: Schema.Number, error: StreamError })
] as const

export const FuzzActor = Actor.make("FuzzActor", rpcs)
export const FuzzService = Actor.service("FuzzService", rpcs)
export const FuzzTopic = Topic.make("fuzz.>", Schema.Struct({ n: Schema.Number }))

const handlers = {
  Echo: ({ n }: { readonly n: number }) => Effect.succeed(n),
  // at most 3 elements, whatever a stranger asks for
  Count: ({ n }: { readonly n: number }) =>
    Stream.fromIterable(
      Array.from({ length: Number.isFinite(n) ? Math.max(0, Math.min(3, Math.floor(n))) : 0 }, (_, i) => i)
    ),
  Put: ({ data }: { readonly data: Stream.Stream<Uint8Array, StreamError> }) => Stream.runCount(data)
}

export const fuzzKinds: Layer.Layer<never, never, ActorSystem> = Layer.mergeAll(
  Actor.toLayer(FuzzActor, handlers, { maxIdleTime: "10 seconds" }),
  Actor.toLayer(FuzzService, handlers)
)

export type Mode = "json" | "msgpack" | "secure"

/** a plain serialized transport, or one sealed by `Secure` (trust "any") */
const transportLayer = (mode: Mode, network: Transport.InMemoryNetwork) => {
  const plain = Transport.layerInMemory({ network, serialize: true }).pipe(
    Layer.provide(mode === "json" ? Codec.json : Codec.msgpack)
  )
  return mode === "secure"
    ? Secure.layer({ identity: Secure.generateIdentity, trust: "any" }).pipe(
      Layer.provide(Layer.merge(plain, Codec.msgpack)),
      Layer.orDie
    )
    : Layer.merge(
      plain,
      Layer.succeed(Secure.Secure, {
        publicKey: "",
        peers: () => [],
        stats: () => ({ handshakes: 0, handshakeFailures: 0, rejected: {} })
      })
    )
}

type NodeServices = Node.Node | ActorSystem | Topic.TopicBus | Discovery.Discovery | Secure.Secure | Transport.Transport

const nodeLayer = (mode: Mode, network: Transport.InMemoryNetwork, name: string, hosted: boolean) =>
  (hosted ? fuzzKinds : Layer.empty).pipe(
    Layer.provideMerge(Node.layer({ name })),
    Layer.provideMerge(Discovery.layer({ heartbeat: "1 second", remap: {} })),
    Layer.provideMerge(transportLayer(mode, network)),
    Layer.orDie
  ) as Layer.Layer<NodeServices>

/** log lines that report a defect swallowed somewhere (a throw the code did not expect) */
const DEFECT =
  /TypeError|RangeError|ReferenceError|SyntaxError|Maximum call stack|is not a function|Cannot read prop|Cannot convert/

export interface Target {
  readonly mode: Mode
  readonly network: Transport.InMemoryNetwork
  readonly victim: Context.Context<NodeServices>
  readonly caller: Context.Context<NodeServices>
  readonly victimId: string
  readonly callerId: string
  /** subjects (and reply subjects) the nodes published to that are not valid subjects */
  readonly badSubjects: Array<string>
  /** log lines that carry a defect */
  readonly defects: Array<string>
  /** log lines written, all levels */
  logLines: number
  /** events the victim's topic subscription received */
  events: number
  /** every drop counted: malformed frames, pieces, secure rejections of the victim, topic events */
  readonly drops: () => number
  /** delivers raw bytes to a subject of the namespace, as the broker would; returns the receivers */
  readonly deliver: (subject: string, bytes: Uint8Array) => number
  /** a legitimate ask of the actor and the service, and a legitimate event: each must arrive */
  readonly legit: (n: number) => Effect.Effect<void, Error>
  /** the sizes of the victim's and the caller's tables */
  readonly tables: () => Tables
}

export interface Tables {
  readonly victimPending: number
  readonly callerPending: number
  readonly victimStreams: number
  readonly callerStreams: number
  readonly victimMembers: number
  readonly callerMembers: number
  readonly actorInstances: number
}

const chunkReasons = ["missing", "duplicate", "too-large", "inconsistent", "expired", "sender-limit", "evicted"].map((
  reason
) => rejectedChunks.pipe(Metric.tagged("reason", reason)))

const countOf = (metric: Metric.Metric.Counter<number>): number => metric.unsafeValue([]).count

const MAX_SPINS = 2000
/** past the spins, the event loop gets turns (node:crypto's callbacks, a loaded machine) up to this long */
const MAX_WAIT_MILLIS = 10_000

const nextTurn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/**
 * Runs `effect` to its end within a bounded number of yields (the TestClock never moves), then,
 * if it still runs, within a bounded number of event-loop turns: work that waits on I/O (the
 * secure layer's crypto) may need those on a loaded machine. Either bound makes a hang a failure.
 */
export const bounded = <A, E>(what: string, effect: Effect.Effect<A, E>): Effect.Effect<A, Error> =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    const startedAt = Date.now()
    for (let i = 0; i < MAX_SPINS || Date.now() - startedAt < MAX_WAIT_MILLIS; i++) {
      const exit = fiber.unsafePoll()
      if (exit !== null) {
        if (Exit.isSuccess(exit)) return exit.value
        return yield* Effect.fail(
          new Error(`${what} failed: ${String(Exit.isFailure(exit) ? exit.cause : exit)}`.slice(0, 2000))
        )
      }
      yield* (i < MAX_SPINS ? Effect.yieldNow() : nextTurn)
    }
    yield* Fiber.interrupt(fiber)
    return yield* Effect.fail(
      new Error(`${what} did not complete within ${MAX_SPINS} yields and ${MAX_WAIT_MILLIS} ms of event-loop turns`)
    )
  })

/** builds a victim (hosting FuzzActor, FuzzService, subscribed to fuzz.>) and a caller, in the current scope */
export const makeTarget = (mode: Mode): Effect.Effect<Target, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const network = Transport.makeNetwork()
    const badSubjects: Array<string> = []
    const routeWithReply = network.routeWithReply.bind(network)
    // every publish of a node goes through here: it must name a valid subject
    network.routeWithReply = (
      subject: string,
      frame: Envelope | Uint8Array,
      replyTo: string | undefined,
      prefix: string
    ) => {
      if (!isSubject(subject)) badSubjects.push(subject)
      if (replyTo !== undefined && !isSubject(prefix + replyTo)) badSubjects.push(`reply ${prefix}${replyTo}`)
      routeWithReply(subject, frame, replyTo, prefix)
    }
    const target = {
      mode,
      network,
      badSubjects,
      defects: [] as Array<string>,
      logLines: 0,
      events: 0
    } as { -readonly [K in keyof Target]: Target[K] }
    // cheap: a line's text and the names and messages of the errors it carries, never a pretty-printed cause
    const describe = (u: unknown): string =>
      typeof u === "string" ? u : u instanceof Error ? `${u.name}: ${u.message}` : ""
    const capture = Logger.make(({ cause, message }) => {
      target.logLines++
      let text = Array.isArray(message) ? message.map(describe).join(" ") : describe(message)
      if (cause._tag !== "Empty") {
        for (const defect of Cause.defects(cause)) text += ` ${describe(defect)}`
        for (const failure of Cause.failures(cause)) text += ` ${describe(failure)}`
      }
      if (DEFECT.test(text) && target.defects.length < 20) target.defects.push(text.slice(0, 500))
    })
    const logging = Layer.merge(Logger.replace(Logger.defaultLogger, capture), Logger.minimumLogLevel(LogLevel.All))
    const victim = yield* Layer.build(nodeLayer(mode, network, "victim", true)).pipe(Effect.provide(logging))
    const caller = yield* Layer.build(nodeLayer(mode, network, "caller", false)).pipe(Effect.provide(logging))
    // on release (after a failure too), the clock moves on so that what strangers left waiting
    // (uploads, handshakes) expires and the nodes' shutdown completes; bounded
    yield* Effect.addFinalizer(() =>
      Effect.forkDaemon(Effect.forEach(Array.from({ length: 600 }), () =>
        Effect.zipRight(TestClock.adjust("1 second"), Effect.yieldNow()), { discard: true }))
    )
    const victimNode = Context.get(victim, Node.Node)
    const callerNode = Context.get(caller, Node.Node)
    yield* Topic.subscribe(FuzzTopic).pipe(
      Stream.runForEach(() =>
        Effect.sync(() => void target.events++)
      ),
      Effect.provide(victim),
      Effect.forkScoped
    )
    const victimSecure = Context.get(victim, Secure.Secure)
    const victimDiscovery = Context.get(victim, Discovery.Discovery)
    const callerDiscovery = Context.get(caller, Discovery.Discovery)
    const prefix = "troupe.default."
    target.victim = victim
    target.caller = caller
    target.victimId = victimNode.nodeId
    target.callerId = callerNode.nodeId
    target.drops = () => {
      let n = countOf(Transport.malformedFrames) + countOf(undecodableEvents) + countOf(droppedEvents)
      for (const metric of chunkReasons) n += countOf(metric)
      for (const count of Object.values(victimSecure.stats().rejected)) n += count
      return n
    }
    target.deliver = (subject, bytes) => network.route(prefix + subject, bytes)
    const actor = yield* Effect.provide(Actor.client(FuzzActor), caller)
    const service = yield* Effect.provide(Actor.client(FuzzService), caller)
    target.legit = (n) =>
      Effect.gen(function*() {
        const fromActor = yield* bounded("a legitimate ask of FuzzActor", actor("legit").Echo({ n }))
        const fromService = yield* bounded("a legitimate ask of FuzzService", service.Echo({ n }))
        if (fromActor !== n || fromService !== n) {
          return yield* Effect.fail(new Error(`legitimate asks answered ${fromActor}, ${fromService} for ${n}`))
        }
        const before = target.events
        yield* bounded(
          "a legitimate event",
          Topic.publish(FuzzTopic, { n }, { subject: "fuzz.legit" }).pipe(Effect.provide(caller))
        )
        yield* bounded(
          "the legitimate event's arrival",
          Effect.gen(function*() {
            while (target.events === before) yield* Effect.yieldNow()
          })
        )
      }).pipe(Effect.mapError((e) => (e instanceof Error ? e : new Error(String(e)))))
    target.tables = () => ({
      victimPending: victimNode.pendingAsks(),
      callerPending: callerNode.pendingAsks(),
      victimStreams: victimNode.openStreams(),
      callerStreams: callerNode.openStreams(),
      victimMembers: victimDiscovery.unsafeState().members.length,
      callerMembers: callerDiscovery.unsafeState().members.length,
      actorInstances: victimNode.activeInstances("FuzzActor")
    })
    // both nodes see each other serving before anything else
    // the caller hears the victim at the victim's next heartbeat
    for (let i = 0; i < 5 && Discovery.servingMembers(callerDiscovery.unsafeState(), "FuzzService").length === 0; i++) {
      yield* TestClock.adjust("1 second")
    }
    yield* target.legit(0)
    return target as Target
  })

/**
 * A trusted peer gone bad: a secure endpoint (trust "any", a real session with the victim) that
 * seals whatever bytes it is given, pairwise to a node's direct subject or with its group key to
 * a shared subject. Its frames reach the victim's decoder from inside a valid session.
 */
export interface Insider {
  readonly nodeId: string
  /** seals `bytes` (an encoded frame, or anything) to `subject`; returns the publish error, if any */
  readonly seal: (subject: string, bytes: Uint8Array) => string | undefined
}

export const makeInsider = (network: Transport.InMemoryNetwork): Effect.Effect<Insider, never, Scope.Scope> =>
  Effect.gen(function*() {
    const nodeId = "insider-1"
    // a codec that passes prepared bytes through (and encodes the handshake frames normally)
    const passThrough: Codec.CodecShape = {
      name: "msgpack",
      encode: (frame) => {
        const raw = frame as unknown as { readonly _tag: string; readonly bytes?: Uint8Array }
        return raw._tag === "Raw" && raw.bytes !== undefined
          ? Either.right(raw.bytes)
          : Codec.msgpackCodec.encode(frame)
      },
      decode: Codec.msgpackCodec.decode
    }
    const inner = Transport.layerInMemory({ network, serialize: true }).pipe(Layer.provide(Codec.msgpack))
    const context = yield* Layer.build(
      Secure.layer({ identity: Secure.generateIdentity, trust: "any" }).pipe(
        Layer.provide(Layer.merge(inner, Layer.succeed(Codec.Codec, passThrough))),
        Layer.orDie
      )
    )
    const transport = Context.get(context, Transport.Transport)
    // subscribing to its direct subject makes it a node that can answer handshakes
    yield* Effect.orDie(transport.subscribe(`node.${nodeId}`, () => {}))
    return {
      nodeId,
      seal: (subject, bytes) => {
        const error = transport.unsafePublish(subject, { _tag: "Raw", bytes } as unknown as Envelope)
        return error === undefined ? undefined : error.message
      }
    }
  })

/** the result of `f`, or the error it threw, as an Either (for delivery that must not throw) */
export const attempt = <A>(f: () => A): Either.Either<A, unknown> => {
  try {
    return Either.right(f())
  } catch (error) {
    return Either.left(error)
  }
}
