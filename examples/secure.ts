/**
 * Secure sessions: three nodes on one in-memory network that serializes every frame, as a
 * network would. Two trust each other; the third has a key nobody trusts.
 *
 *   npx tsx examples/secure.ts
 *
 * With NATS, swap `Transport.layerInMemory` for `Transport.nats({ servers })`, or use
 * `Node.layerNats({ servers, secure: { identity, trust } })`.
 */
import { Rpc } from "@effect/rpc"
import { Console, Context, Effect, Layer, Logger, LogLevel, Schema } from "effect"
import { Actor, Codec, Discovery, Node, Secure, Transport } from "../src/index.ts"

const Vault = Actor.make("Vault", [Rpc.make("Open", { payload: { code: Schema.String }, success: Schema.String })])

const VaultLive = Actor.toLayer(Vault, Effect.succeed({ Open: ({ code }) => Effect.succeed(`opened with ${code}`) }))

const program = Effect.gen(function*() {
  const network = Transport.makeNetwork()
  const registry = yield* Discovery.makeRegistry
  const [alice, bob, mallory] = [
    yield* Secure.generateIdentity,
    yield* Secure.generateIdentity,
    yield* Secure.generateIdentity
  ]
  const trust = [alice.publicKey, bob.publicKey]

  const node = (name: string, identity: Secure.Identity, trusted: ReadonlyArray<string> | "any") =>
    Node.layer({ name }).pipe(
      Layer.provideMerge(Layer.merge(Secure.layer({ identity, trust: trusted }), Discovery.layerInMemory(registry))),
      Layer.provide(Layer.provideMerge(Transport.layerInMemory({ network, serialize: true }), Codec.msgpack))
    )

  const a = yield* Layer.build(VaultLive.pipe(Layer.provideMerge(node("alice", alice, trust))))
  const b = yield* Layer.build(node("bob", bob, trust))
  const m = yield* Layer.build(node("mallory", mallory, "any"))
  yield* Console.log(`alice's public key: ${alice.publicKey}`)

  const fromBob = yield* Effect.provide(Actor.client(Vault), b)
  yield* Console.log(`bob asks: ${yield* fromBob("v-1").Open({ code: "1234" })}`)
  yield* Console.log(`bob's sessions: ${Context.get(b, Secure.Secure).peers().map((p) => p.nodeId).join(", ")}`)

  const fromMallory = yield* Effect.provide(Actor.client(Vault), m)
  const refused = yield* Effect.flip(fromMallory("v-1").Open({ code: "0000" }))
  yield* Console.log(`mallory asks: ${refused._tag}: ${refused.message}`)
  yield* Console.log(`alice rejected: ${JSON.stringify(Context.get(a, Secure.Secure).stats().rejected)}`)
}).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Error))

Effect.runPromise(program)
