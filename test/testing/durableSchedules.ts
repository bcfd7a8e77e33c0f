/**
 * The random fault schedules of the durable-actor properties: deposits to a few durable
 * accounts and reminders set on them, from several nodes, under lost and delayed frames,
 * partitions, dropped connections, crashes, restarts and store outages. The runner applies a
 * schedule to a TestCluster hosting `Account` (test/fixtures/account.ts), heals, settles, lets
 * every reminder come due, and reads what is stored, through asks and from the store itself.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import { Packr } from "msgpackr"
import * as Persistence from "../../src/layers/Persistence.ts"
import * as TestCluster from "../../src/testing/TestCluster.ts"
import { Account, accountLayer, makeAccountLog } from "../fixtures/account.ts"

export type Name = "a" | "b" | "c"
export const names: ReadonlyArray<Name> = ["a", "b", "c"]
export const ACCOUNTS = 3
export const ASK_TIMEOUT = 2000
/** reminders come due at most this long after they are set */
export const MAX_AFTER = 8000

export type DurableStep =
  | { readonly op: "deposit"; readonly from: Name; readonly account: number; readonly amount: number }
  | { readonly op: "subscribe"; readonly from: Name; readonly account: number; readonly after: number }
  | { readonly op: "faults"; readonly drop: number; readonly delay: number }
  | { readonly op: "partition"; readonly side: ReadonlyArray<Name> }
  | { readonly op: "crash" | "restart" | "disconnect" | "reconnect"; readonly node: Name }
  | { readonly op: "crashOwner"; readonly account: number }
  | { readonly op: "storeDown" | "storeUp" | "heal" }
  | { readonly op: "storeFaults"; readonly fail: number; readonly lostReply: number }
  | { readonly op: "advance"; readonly millis: number }

const node = FastCheck.constantFrom<Name>(...names)
const account = FastCheck.integer({ min: 0, max: ACCOUNTS - 1 })
export const durableStep: FastCheck.Arbitrary<DurableStep> = FastCheck.oneof(
  {
    weight: 4,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("deposit" as const),
      from: node,
      account,
      amount: FastCheck.constantFrom(1, 10, 100)
    })
  },
  {
    weight: 2,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("subscribe" as const),
      from: node,
      account,
      after: FastCheck.constantFrom(1, 500, 3000, MAX_AFTER)
    })
  },
  {
    weight: 1,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("faults" as const),
      drop: FastCheck.constantFrom(0, 0.05, 0.3),
      delay: FastCheck.constantFrom(0, 20, 300)
    })
  },
  {
    weight: 1,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("partition" as const),
      side: FastCheck.subarray([...names], { minLength: 1, maxLength: 2 })
    })
  },
  {
    weight: 2,
    arbitrary: FastCheck.record({
      op: FastCheck.constantFrom("crash" as const, "restart" as const, "disconnect" as const, "reconnect" as const),
      node
    })
  },
  {
    weight: 1,
    arbitrary: FastCheck.record({
      op: FastCheck.constantFrom("storeDown" as const, "storeUp" as const, "heal" as const)
    })
  },
  {
    weight: 1,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("storeFaults" as const),
      fail: FastCheck.constantFrom(0, 0.1, 0.5),
      lostReply: FastCheck.constantFrom(0, 0.1, 0.5)
    })
  },
  {
    weight: 2,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("advance" as const),
      millis: FastCheck.constantFrom(1, 50, 700, 3000)
    })
  }
)
export const durableSchedule = FastCheck.record({
  seed: FastCheck.integer({ min: 0, max: 0x7fffffff }),
  steps: FastCheck.array(durableStep, { maxLength: 20 })
})

/** one deposit or subscribe: acknowledged, failed (typed), or unknown (its node crashed, or it never ended) */
export interface Write {
  readonly op: "deposit" | "subscribe"
  readonly account: number
  readonly amount: number
  /** the reminder's name and plan (subscribe) */
  readonly plan: string
  readonly incarnation: string
  acknowledged: boolean
  failed: boolean
  ended: boolean
  /** how it ended */
  exit?: Exit.Exit<unknown, unknown>
  fiber?: Fiber.RuntimeFiber<void>
}

export interface AccountOutcome {
  readonly account: number
  /** the sums of acknowledged deposits and of those that failed or whose outcome is unknown */
  readonly acknowledged: number
  readonly uncertain: number
  /** what the store holds, read directly (undefined: nothing stored) */
  readonly stored: { readonly balance: number; readonly bills: number; readonly reminders: number } | undefined
  /** what a Balance ask answered after settling */
  readonly asked: Exit.Exit<number, unknown>
  /** acknowledged reminders (plans) and how many were set, acknowledged or not */
  readonly acknowledgedPlans: ReadonlyArray<string>
  readonly plansSet: number
  /** the reminders still in the record after every one came due, and their due times */
  readonly overdue: ReadonlyArray<string>
}

export interface DurableOutcome {
  readonly accounts: ReadonlyArray<AccountOutcome>
  /** the plans whose Bill handler ran (committed or not) */
  readonly billed: ReadonlyArray<string>
  readonly writes: ReadonlyArray<Write>
  readonly report: string
}

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" })

interface StoredRecord {
  readonly s?: { readonly balance: number; readonly bills: number }
  readonly r?: Readonly<Record<string, { readonly due: number }>>
}

const idOf = (n: number) => `acct-${n}`

/** runs a durable schedule, heals, settles, lets every reminder come due, and reads what is stored */
export const runDurable = (seed: number, steps: ReadonlyArray<DurableStep>): Promise<DurableOutcome> =>
  Effect.gen(function*() {
    const log = makeAccountLog()
    const cluster = yield* TestCluster.make({
      nodes: names,
      seed,
      layer: accountLayer(log, { maxIdleTime: "5 seconds", persistenceTimeout: "1 second" }),
      node: { askTimeout: `${ASK_TIMEOUT} millis` },
      onClose: "abandon"
    })
    yield* cluster.settle
    const writes: Array<Write> = []
    for (const s of steps) {
      switch (s.op) {
        case "deposit":
        case "subscribe": {
          if (cluster.status(s.from) !== "running") break
          const client = yield* cluster.client(s.from, Account)
          const plan = `p${writes.length}`
          const write: Write = {
            op: s.op,
            account: s.account,
            amount: s.op === "deposit" ? s.amount : 0,
            plan,
            incarnation: cluster.node(s.from).nodeId,
            acknowledged: false,
            failed: false,
            ended: false
          }
          const actor = client(idOf(s.account))
          const call: Effect.Effect<unknown, unknown> = s.op === "deposit"
            ? actor.Deposit({ amount: s.amount })
            : actor.Subscribe({ name: plan, plan, after: `${s.after} millis` })
          write.fiber = yield* Effect.fork(Effect.gen(function*() {
            const exit = yield* Effect.exit(call)
            write.ended = true
            write.exit = exit
            if (Exit.isSuccess(exit)) write.acknowledged = true
            else write.failed = true
          }))
          writes.push(write)
          break
        }
        case "faults":
          yield* cluster.faults({ drop: s.drop, delay: [`${s.delay / 10} millis`, `${s.delay} millis`] })
          break
        case "partition":
          yield* cluster.partition(s.side, names.filter((n) => !s.side.includes(n)))
          break
        case "crash":
        case "restart":
        case "disconnect":
        case "reconnect":
          yield* cluster[s.op](s.node)
          break
        case "crashOwner": {
          // the node where the account is active (the owner of its reminders), if any
          const owner = names.find((n) =>
            cluster.status(n) === "running" && cluster.node(n).isActive("Account", idOf(s.account))
          )
          if (owner !== undefined) yield* cluster.crash(owner)
          break
        }
        case "storeDown":
          yield* cluster.storeDown
          break
        case "storeUp":
          yield* cluster.storeUp
          break
        case "storeFaults":
          yield* cluster.storeFaults({ fail: s.fail, lostReply: s.lostReply })
          break
        case "heal":
          yield* cluster.heal
          break
        case "advance":
          yield* cluster.advance(s.millis)
      }
    }
    yield* cluster.heal
    // someone must be left to own the accounts
    if (names.every((n) => cluster.status(n) !== "running")) yield* cluster.restart("a")
    yield* cluster.settle
    yield* cluster.advance(ASK_TIMEOUT)
    // asks of a crashed node never end: their outcome is unknown
    for (const write of writes) if (!write.ended) yield* Fiber.interrupt(write.fiber!)
    // every reminder comes due, its firing retried, taken over from a crashed owner
    yield* cluster.advance(MAX_AFTER + 20_000)
    yield* cluster.settle
    const asker = names.find((n) => cluster.status(n) === "running")!
    const client = yield* cluster.client(asker, Account)
    const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
    const accounts: Array<AccountOutcome> = []
    for (let n = 0; n < ACCOUNTS; n++) {
      const asked = yield* Effect.exit(client(idOf(n)).Balance())
      const found = yield* cluster.store.get(Persistence.key("state", "Account", idOf(n))).pipe(Effect.orDie)
      const record = Option.map(found, (entry) => packr.unpack(entry.value) as StoredRecord)
      const mine = writes.filter((w) => w.account === n)
      accounts.push({
        account: n,
        acknowledged: mine.filter((w) => w.acknowledged).reduce((sum, w) => sum + w.amount, 0),
        uncertain: mine.filter((w) => !w.acknowledged).reduce((sum, w) => sum + w.amount, 0),
        stored: Option.getOrUndefined(Option.map(record, (r) => ({
          balance: r.s?.balance ?? 0,
          bills: r.s?.bills ?? 0,
          reminders: Object.keys(r.r ?? {}).length
        }))),
        asked,
        acknowledgedPlans: mine.filter((w) => w.op === "subscribe" && w.acknowledged).map((w) => w.plan),
        plansSet: mine.filter((w) => w.op === "subscribe").length,
        overdue: Option.match(record, {
          onNone: () => [],
          onSome: (r) => Object.entries(r.r ?? {}).filter(([, x]) => x.due < now).map(([name, x]) => `${name}@${x.due}`)
        })
      })
    }
    return { accounts, billed: [...log.billed], writes, report: cluster.report() } satisfies DurableOutcome
  }).pipe(
    Effect.scoped,
    Logger.withMinimumLogLevel(process.env["TROUPE_LOGS"] ? LogLevel.Debug : LogLevel.None),
    Effect.runPromise
  )
