/**
 * Troupe's subject matcher against a real nats-server: random patterns and subjects (seeded, so a
 * failure can be replayed with `SUBJECT_TEST_SEED=<seed>`) and a fixed table of edge cases. NATS
 * is the reference; `Subject.matches` and the in-memory transport must deliver exactly what it
 * delivers.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { connect, type NatsConnection } from "nats"
import { afterAll, beforeAll } from "vitest"
import * as Subject from "../../src/layers/Subject.ts"
import * as Transport from "../../src/layers/Transport.ts"
import { ProtocolVersion } from "../../src/schema/Envelope.ts"
import { type NatsServer, startNatsServer } from "../fixtures/nats.ts"

// ---------------------------------------------------------------------------------------------
// Seeded generation
// ---------------------------------------------------------------------------------------------

/** mulberry32: a tiny deterministic PRNG, uniform in [0, 1). */
const mulberry32 = (seed: number): () => number => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const envSeed = process.env["SUBJECT_TEST_SEED"]
const seed = envSeed !== undefined && envSeed !== "" ? Number(envSeed) >>> 0 : (Math.random() * 2 ** 32) >>> 0
const seedNote = `subject property test seed ${seed} (replay with SUBJECT_TEST_SEED=${seed})`

/** "ab" shares a prefix with "a", so a matcher comparing strings instead of tokens is caught. */
const TOKENS = ["a", "b", "ab"] as const
const PATTERN_COUNT = 20
const SUBJECT_COUNT = 24

interface Cases {
  readonly patterns: ReadonlyArray<string>
  readonly subjects: ReadonlyArray<string>
}

const generate = (seed: number): Cases => {
  const random = mulberry32(seed)
  const int = (min: number, max: number) => min + Math.floor(random() * (max - min + 1))
  const token = () => TOKENS[int(0, TOKENS.length - 1)]!

  // A third of the patterns end in `>`, a third hold at least one `*`, the rest are free.
  const pattern = (kind: number): string => {
    const length = int(1, 4)
    const tokens = Array.from({ length }, (): string => (random() < 0.3 ? "*" : token()))
    if (kind === 0 || (kind === 2 && random() < 0.3)) tokens[length - 1] = ">"
    else if (kind === 1 && !tokens.includes("*")) tokens[int(0, length - 1)] = "*"
    return tokens.join(".")
  }
  const patterns = new Set<string>()
  for (let attempt = 0; patterns.size < PATTERN_COUNT && attempt < 1_000; attempt++) {
    patterns.add(pattern(patterns.size % 3))
  }

  // Half the subjects are instances of a pattern, some of them one token short or long (the
  // near misses where `>` and length checks go wrong); the rest are uniform.
  const fromPattern = (p: string): string => {
    const tokens = p.split(".").flatMap((t) =>
      t === "*" ? [token()] : t === ">" ? Array.from({ length: int(1, 2) }, token) : [t]
    )
    const nudge = random()
    if (nudge < 0.2 && tokens.length > 1) tokens.pop()
    else if (nudge < 0.4) tokens.push(token())
    return tokens.join(".")
  }
  const uniform = () => Array.from({ length: int(1, 4) }, token).join(".")
  const patternList = [...patterns]
  const subjects = new Set<string>()
  for (let attempt = 0; subjects.size < SUBJECT_COUNT && attempt < 1_000; attempt++) {
    subjects.add(random() < 0.5 ? fromPattern(patternList[int(0, patternList.length - 1)]!) : uniform())
  }
  return { patterns: patternList, subjects: [...subjects] }
}

// ---------------------------------------------------------------------------------------------
// Delivery matrices
// ---------------------------------------------------------------------------------------------

/** How many times each pattern's subscription received each subject. */
type Deliveries = ReadonlyMap<string, ReadonlyMap<string, number>>

interface Observed {
  readonly deliveries: Deliveries
  /** deliveries whose payload did not name the subject they arrived on (should never happen) */
  readonly anomalies: ReadonlyArray<string>
}

const DELIVERY_TIMEOUT_MS = 5_000

const makeRecorder = (patterns: ReadonlyArray<string>) => {
  const deliveries = new Map(patterns.map((pattern) => [pattern, new Map<string, number>()]))
  const anomalies: Array<string> = []
  const record = (pattern: string, subject: string, payload: number, subjects: ReadonlyArray<string>) => {
    if (subjects[payload] !== subject) anomalies.push(`${pattern}: payload ${payload} arrived on "${subject}"`)
    const counts = deliveries.get(pattern)!
    counts.set(subject, (counts.get(subject) ?? 0) + 1)
  }
  return { deliveries, anomalies, record }
}

/**
 * One connection subscribes to every pattern and publishes every subject once (payload: its
 * index). A sentinel published last marks the end: one connection's messages reach its own
 * subscriptions in order, so once the sentinel is in, every earlier delivery is too.
 */
const natsDeliveries = async (url: string, { patterns, subjects }: Cases): Promise<Observed> => {
  const nc: NatsConnection = await connect({ servers: url, name: "subject-property-test" })
  try {
    const sentinel = "_sentinel.end"
    const { anomalies, deliveries, record } = makeRecorder(patterns)
    for (const pattern of patterns) {
      nc.subscribe(pattern, {
        callback: (error, msg) => {
          if (error !== null) anomalies.push(`${pattern}: subscription error ${error.message}`)
          else if (msg.subject !== sentinel) record(pattern, msg.subject, Number(msg.string()), subjects)
        }
      })
    }
    let timer: NodeJS.Timeout | undefined
    const done = new Promise<void>((resolve, reject) => {
      nc.subscribe(sentinel, { max: 1, callback: () => resolve() })
      timer = setTimeout(
        () => reject(new Error(`nats-server did not deliver the sentinel within ${DELIVERY_TIMEOUT_MS} ms`)),
        DELIVERY_TIMEOUT_MS
      )
    })
    try {
      // the server must know every subscription before the first publish
      await nc.flush()
      for (const [index, subject] of subjects.entries()) nc.publish(subject, String(index))
      nc.publish(sentinel, "")
      await nc.flush()
      await done
    } finally {
      clearTimeout(timer)
    }
    return { deliveries, anomalies }
  } finally {
    await nc.close()
  }
}

/** The same experiment on a fresh in-memory network, one `Event` frame per subject. */
const inMemoryDeliveries = ({ patterns, subjects }: Cases): Effect.Effect<Observed> =>
  Effect.scoped(Effect.gen(function*() {
    const transport = Transport.makeInMemory({ network: Transport.makeNetwork() })
    const { anomalies, deliveries, record } = makeRecorder(patterns)
    for (const pattern of patterns) {
      yield* transport.subscribe(pattern, (frame) => {
        if (frame._tag !== "Event") anomalies.push(`${pattern}: unexpected ${frame._tag} frame`)
        else record(pattern, frame.subject, frame.body as number, subjects)
      })
    }
    for (const [index, subject] of subjects.entries()) {
      yield* transport.publish(subject, {
        _tag: "Event",
        v: ProtocolVersion,
        source: "subject-property-test",
        subject,
        headers: {},
        body: index
      })
    }
    return { deliveries, anomalies }
  })).pipe(Effect.orDie)

const countOf = (deliveries: Deliveries, pattern: string, subject: string): number =>
  deliveries.get(pattern)?.get(subject) ?? 0

interface Mismatch {
  readonly pattern: string
  readonly subject: string
  readonly actual: number
  readonly expected: number
}

/** Every (pattern, subject) cell where `actual` differs from `expected`. */
const mismatches = (
  { patterns, subjects }: Cases,
  actual: (pattern: string, subject: string) => number,
  expected: (pattern: string, subject: string) => number
): Array<Mismatch> =>
  patterns.flatMap((pattern) =>
    subjects.flatMap((subject) => {
      const a = actual(pattern, subject)
      const e = expected(pattern, subject)
      return a === e ? [] : [{ pattern, subject, actual: a, expected: e }]
    })
  )

const byMatcher = (pattern: string, subject: string): number => (Subject.matches(pattern, subject) ? 1 : 0)

// ---------------------------------------------------------------------------------------------
// Edge cases: [pattern, subject, does NATS deliver?]
// ---------------------------------------------------------------------------------------------

const EDGE_CASES: ReadonlyArray<readonly [string, string, boolean]> = [
  ["a.>", "a", false],
  ["a.>", "a.b", true],
  ["a.>", "a.b.c.d", true],
  ["a.>", "b.a", false],
  ["a.>", "ab.c", false],
  [">", "a", true],
  [">", "a.b.c", true],
  ["*", "a", true],
  ["*", "a.b", false],
  ["*.>", "a", false],
  ["*.>", "a.b", true],
  ["*.*", "a.b", true],
  ["*.*", "a.b.c", false],
  ["*.b", "a.b", true],
  ["*.b", "b", false],
  ["a.*.c", "a.b.c", true],
  ["a.*.c", "a.b.b", false],
  ["a.*.c", "a.c", false],
  ["a.*.>", "a.b", false],
  ["a.*.>", "a.b.c", true],
  ["a.b", "a.b", true],
  ["a.b", "a.b.c", false],
  ["a.b.c", "a.b", false],
  ["a", "ab", false],
  ["ab", "a", false]
]

const edgeCases: Cases = {
  patterns: [...new Set(EDGE_CASES.map(([pattern]) => pattern))],
  subjects: [...new Set(EDGE_CASES.map(([, subject]) => subject))]
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

let server: NatsServer
const randomCases = generate(seed)
const pairCount = randomCases.patterns.length * randomCases.subjects.length
let natsRandom: Promise<Observed> | undefined
/** NATS's answer for the random cases, computed once and shared by the tests that need it. */
const natsRandomDeliveries = () => (natsRandom ??= natsDeliveries(server.url, randomCases))

beforeAll(async () => {
  server = await startNatsServer()
}, 15_000)

afterAll(async () => {
  await server?.stop()
})

describe("subject matching agrees with nats-server", () => {
  it("the generator covers `*`, `>`, matching and non-matching pairs (else the properties prove little)", (ctx) => {
    ctx.onTestFailed(() => console.error(seedNote))
    const { patterns, subjects } = randomCases
    expect(patterns.length, seedNote).toBe(PATTERN_COUNT)
    expect(subjects.length, seedNote).toBe(SUBJECT_COUNT)
    expect(patterns.filter((p) => p.split(".").includes("*")).length, seedNote).toBeGreaterThanOrEqual(5)
    expect(patterns.filter((p) => p.endsWith(">")).length, seedNote).toBeGreaterThanOrEqual(5)
    const matching = patterns.flatMap((p) => subjects.filter((s) => Subject.matches(p, s))).length
    expect(matching, seedNote).toBeGreaterThanOrEqual(20)
    expect(pairCount - matching, seedNote).toBeGreaterThanOrEqual(100)
  })

  it.live(
    "NATS delivers a random subject to a random pattern exactly when `matches` says so",
    (ctx) =>
      Effect.gen(function*() {
        ctx.onTestFailed(() => console.error(seedNote))
        const nats = yield* Effect.promise(natsRandomDeliveries)
        expect(nats.anomalies, seedNote).toEqual([])
        expect(
          mismatches(randomCases, (p, s) => countOf(nats.deliveries, p, s), byMatcher),
          `${seedNote}: cells where NATS (actual) and Subject.matches (expected) disagree`
        ).toEqual([])
      }),
    10_000
  )

  it.live(
    "the in-memory transport delivers exactly what NATS delivers for random patterns and subjects",
    (ctx) =>
      Effect.gen(function*() {
        ctx.onTestFailed(() => console.error(seedNote))
        const nats = yield* Effect.promise(natsRandomDeliveries)
        const inMemory = yield* inMemoryDeliveries(randomCases)
        expect(inMemory.anomalies, seedNote).toEqual([])
        expect(
          mismatches(
            randomCases,
            (p, s) => countOf(inMemory.deliveries, p, s),
            (p, s) => countOf(nats.deliveries, p, s)
          ),
          `${seedNote}: cells where the in-memory transport (actual) and NATS (expected) disagree`
        ).toEqual([])
      }),
    10_000
  )

  it.live(
    "edge cases of `*` and `>`: NATS, `matches` and the in-memory transport give the documented answer",
    () =>
      Effect.gen(function*() {
        const nats = yield* Effect.promise(() => natsDeliveries(server.url, edgeCases))
        const inMemory = yield* inMemoryDeliveries(edgeCases)
        expect(nats.anomalies).toEqual([])
        expect(inMemory.anomalies).toEqual([])
        const answers = EDGE_CASES.map(([pattern, subject]) => ({
          pattern,
          subject,
          nats: countOf(nats.deliveries, pattern, subject) === 1,
          matches: Subject.matches(pattern, subject),
          inMemory: countOf(inMemory.deliveries, pattern, subject) === 1
        }))
        expect(answers).toEqual(
          EDGE_CASES.map(([pattern, subject, expected]) => ({
            pattern,
            subject,
            nats: expected,
            matches: expected,
            inMemory: expected
          }))
        )
        // and every other cell of the table's pattern x subject matrix
        expect(mismatches(edgeCases, (p, s) => countOf(nats.deliveries, p, s), byMatcher)).toEqual([])
        expect(
          mismatches(edgeCases, (p, s) => countOf(inMemory.deliveries, p, s), (p, s) => countOf(nats.deliveries, p, s))
        ).toEqual([])
      }),
    10_000
  )
})
