/**
 * Durable actors: an `Account` kind whose balance is kept by `Actor.state` and whose monthly fee
 * is a reminder.
 *
 *   npx tsx examples/bank.ts
 *
 * On the in-memory store it shows each message as a transaction (a refused withdrawal changes
 * nothing), the balance surviving passivation, and fencing: two nodes that each think they own
 * `alice` (each in a discovery registry of its own, as during a membership change) both
 * activate her, and the one whose save comes second gets `StateConflict` instead of overwriting
 * the other's deposit.
 *
 * With `NATS_URL` set (a `nats-server -js`), one node, `bank`, keeps the accounts in the NATS
 * JetStream key-value store through `Node.layerNats({ servers, name: "bank", persistence: {} })`:
 * it prints alice's and bob's stored balances and deposits to each, so running it twice shows
 * the first run's balances.
 *
 *   nats-server -js -sd /tmp/bank &
 *   NATS_URL=nats://127.0.0.1:4222 npx tsx examples/bank.ts   # stored: 0 and 0
 *   NATS_URL=nats://127.0.0.1:4222 npx tsx examples/bank.ts   # stored: 100 and 5
 */
import { Rpc } from "@effect/rpc"
import { Console, Effect, Layer, Logger, LogLevel, Schema, type Scope } from "effect"
import { Actor, Codec, Discovery, Node, Persistence, Transport } from "../src/index.ts"

export class Refused extends Schema.TaggedError<Refused>()("Refused", { balance: Schema.Number }) {}

export const Account = Actor.make("Account", [
  Rpc.make("Deposit", { payload: { amount: Schema.Number }, success: Schema.Number }),
  Rpc.make("Withdraw", { payload: { amount: Schema.Number }, success: Schema.Number, error: Refused }),
  Rpc.make("Balance", { success: Schema.Number }),
  Rpc.make("ChargeFee", { payload: { fee: Schema.Number } })
])

export const AccountLive = Actor.toLayer(
  Account,
  Effect.gen(function*() {
    const state = yield* Actor.state(Schema.Struct({ balance: Schema.Number }), { initial: () => ({ balance: 0 }) })
    const reminders = yield* Actor.reminders(Account)
    const add = (amount: number) => state.modify((s) => [s.balance + amount, { balance: s.balance + amount }] as const)
    return {
      Deposit: ({ amount }) =>
        // the first deposit opens the account: a fee every 30 days, stored with the balance
        Effect.zipLeft(
          add(amount),
          Effect.flatMap(reminders.list, (list) =>
            list.length > 0 ? Effect.void : reminders.set("fee", { every: "30 days" }, "ChargeFee", { fee: 1 }))
        ),
      Withdraw: ({ amount }) =>
        Effect.gen(function*() {
          const balance = yield* add(-amount)
          // the change above is discarded with the failure: the balance stays as it was
          if (balance < 0) return yield* Effect.fail(new Refused({ balance: balance + amount }))
          return balance
        }),
      Balance: () => Effect.map(state.get, (s) => s.balance),
      ChargeFee: ({ fee }) => Effect.asVoid(add(-fee))
    }
  }),
  { maxIdleTime: "1 second" }
)

const show = (label: string, value: unknown) => Console.log(`${label}: ${value}`)

/** two nodes on one in-memory network and one store, each in its own discovery registry */
const inMemory = Effect.gen(function*() {
  const network = Transport.makeNetwork()
  const store = Persistence.layerInMemory(network)
  const node = (name: string) =>
    Effect.flatMap(Discovery.makeRegistry, (registry) =>
      Layer.build(
        AccountLive.pipe(
          Layer.provide(store),
          Layer.provideMerge(Node.layer({ name })),
          Layer.provide(Layer.merge(
            Transport.layerInMemory({ network, serialize: true }).pipe(Layer.provide(Codec.msgpack)),
            Discovery.layerInMemory(registry)
          )),
          Layer.orDie
        )
      ))
  const a = yield* Effect.provide(Actor.client(Account), yield* node("a"))
  const b = yield* Effect.provide(Actor.client(Account), yield* node("b"))

  yield* show("alice deposits 100 on node a", yield* a("alice").Deposit({ amount: 100 }))
  const refused = yield* a("alice").Withdraw({ amount: 500 }).pipe(
    Effect.map(String),
    Effect.catchTag("Refused", (error) => Effect.succeed(`Refused (balance ${error.balance})`))
  )
  yield* show("alice withdraws 500", refused)
  yield* show("alice's balance, unchanged", yield* a("alice").Balance())
  yield* Effect.sleep("2 seconds") // alice is passivated after 1 second idle
  yield* show("alice's balance after passivation", yield* a("alice").Balance())

  // node b thinks it owns alice too: it activates her from the stored value
  yield* show("alice deposits 10 on node b", yield* b("alice").Deposit({ amount: 10 }))
  const conflict = yield* Effect.flip(a("alice").Deposit({ amount: 1 }))
  yield* show("alice deposits 1 on node a", `${conflict._tag} (${conflict.message})`)
  yield* show("alice's balance on node a, activated again", yield* a("alice").Balance())
  yield* show("alice's balance on node b", yield* b("alice").Balance())
})

/** one node on NATS, its accounts in the JetStream key-value store: they outlive the process */
const onNats = (url: string) =>
  Effect.gen(function*() {
    const node = yield* Layer.build(
      AccountLive.pipe(Layer.provideMerge(Node.layerNats({ servers: url, name: "bank", persistence: {} })))
    )
    const account = yield* Effect.provide(Actor.client(Account), node)
    // 0 on the first run; on the next runs, what the previous runs left
    yield* show("alice's balance, as stored", yield* account("alice").Balance())
    yield* show("bob's balance, as stored", yield* account("bob").Balance())
    yield* show("alice deposits 100", yield* account("alice").Deposit({ amount: 100 }))
    yield* show("bob deposits 5", yield* account("bob").Deposit({ amount: 5 }))
  })

const url = process.env["NATS_URL"]
const main: Effect.Effect<void, unknown, Scope.Scope> = url === undefined || url === "" ? inMemory : onNats(url)
Effect.runPromise(
  main.pipe(
    Effect.zipRight(Console.log("done")),
    Effect.scoped,
    Logger.withMinimumLogLevel(LogLevel.Error)
  )
)
