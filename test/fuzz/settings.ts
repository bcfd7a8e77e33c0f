/**
 * How the fuzz suite runs: `FUZZ_SEED` replays a failure (fast-check prints the seed and the
 * shrink path of every counterexample), `FUZZ_SCALE` multiplies the number of generated frames
 * (1 in CI: at least 10,000 per path).
 */
import * as fc from "effect/FastCheck"

const seedText = process.env["FUZZ_SEED"]
const scale = Number(process.env["FUZZ_SCALE"] ?? "1")

export const seed: number | undefined = seedText === undefined || seedText === "" ? undefined : Number(seedText)

/** frames per path in the normal suite */
export const FRAMES_PER_PATH = Math.max(1, Math.round(10_000 * (Number.isFinite(scale) && scale > 0 ? scale : 1)))

/** fast-check parameters for a property named `what` (its name is in every failure report) */
export const parameters = <T>(numRuns: number, extra?: fc.Parameters<T>): fc.Parameters<T> => ({
  numRuns,
  ...(seed === undefined ? {} : { seed }),
  ...extra
})

/** `fc.assert`, with the receive path and codec in the error message */
export const check = async <Ts>(
  what: string,
  property: fc.IAsyncProperty<Ts> | fc.IProperty<Ts>,
  params: fc.Parameters<Ts>
): Promise<void> => {
  const details = await fc.check(property as fc.IAsyncProperty<Ts>, params)
  if (details.failed) {
    const counterexample = details.counterexample === null ? "" : fc.stringify(details.counterexample)
    throw new Error(
      `fuzz property failed on ${what} (replay with FUZZ_SEED=${details.seed}; fast-check seed ${details.seed}, path "${details.counterexamplePath}", ` +
        `after ${details.numRuns} runs and ${details.numShrinks} shrinks)\n` +
        `error: ${
          details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)
        }\n` +
        `counterexample: ${counterexample.length > 3000 ? `${counterexample.slice(0, 3000)}…` : counterexample}`
    )
  }
}

/**
 * `FUZZ_TRIAGE=1`: the properties do not stop at their first failure; each path prints its
 * distinct failures (one example each, minimised by hand) and passes. For measuring the suite's
 * cost on code that still fails, and for finding every distinct failure at once.
 */
export const triage = process.env["FUZZ_TRIAGE"] === "1"

/**
 * For properties over a running node: no shrinking (each shrink step would replay on a node that
 * the earlier frames changed, and a broken node makes each step slow); the failing frame is in the
 * message. Bounded in time: a run that takes longer than this fails as interrupted.
 */
export const nodeParameters = <T>(numRuns: number): fc.Parameters<T> =>
  parameters(numRuns, { endOnFailure: true, interruptAfterTimeLimit: 45_000, markInterruptAsFailure: true })
