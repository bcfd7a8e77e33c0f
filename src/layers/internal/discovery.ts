/**
 * Heartbeat discovery over a `Transport` (`Discovery.makeHeartbeat`), wired from its parts: each
 * local member heartbeats every period and a last time with `leaving: true`
 * (`heartbeatSender.ts`); peers are checked every period, turn `suspect` after `suspectAfter`
 * silent periods of their own and are removed after `removeAfter`, and late heartbeats of a
 * departed incarnation are ignored for `removeAfter` periods (`membership.ts`); a node that stops
 * hearing its own heartbeats resubscribes (`heartbeatListener.ts`).
 *
 * The options are validated in `discoveryOptions.ts`; the in-process registry is
 * `inMemoryDiscovery.ts`.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as PubSub from "effect/PubSub"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import type { DiscoveryShape, DiscoveryState } from "../Discovery.ts"
import { Transport } from "../Transport.ts"
import type { ResolvedOptions } from "./discoveryOptions.ts"
import { makeDrop } from "./drops.ts"
import { check, makeListener, subscribe } from "./heartbeatListener.ts"
import { announce, beatAll, type Sender, update } from "./heartbeatSender.ts"
import { changes, makeMembership, snapshot, suspect } from "./membership.ts"
import * as Subjects from "./subjects.ts"

/** @internal see `Discovery.makeHeartbeat` (the options are validated there) */
export const makeHeartbeat = (
  config: ResolvedOptions
): Effect.Effect<DiscoveryShape, never, Transport | Scope.Scope> =>
  Effect.gen(function*() {
    const transport = yield* Transport
    const clock = yield* Effect.clock
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const layerScope = yield* Effect.scope
    const pubsub = yield* Effect.acquireRelease(PubSub.unbounded<DiscoveryState>(), PubSub.shutdown)
    const now = () => clock.unsafeCurrentTimeMillis()
    const table = makeMembership(config, pubsub, now())
    const sender: Sender = { table, transport, now }
    const listener = makeListener(sender, layerScope, runFork, makeDrop(Subjects.DISCOVERY, clock, runFork))

    yield* subscribe(listener)
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(
      Effect.suspend(() => {
        listener.checkDue = now() + config.periodMillis
        return Effect.sleep(config.period)
      }),
      Effect.catchAllDefect(check(listener), (defect) => Effect.logError("discovery: membership check failed", defect))
    )))
    // peers may have suspected us while the connection was down: tell them at once; and the
    // silence of the others while we could not hear them is not held against them
    yield* transport.watch((event) => {
      if (event !== "reconnected") return
      listener.listeningSince = now()
      runFork(beatAll(sender))
    })

    const shape: DiscoveryShape = {
      reportUnreachable: (nodeId) => suspect(table, nodeId, now()),
      announce: (member) => announce(sender, member),
      update: (nodeId, patch) => update(sender, nodeId, patch),
      unsafeState: () => table.current,
      changes: changes(table),
      snapshot: () => snapshot(table)
    }
    return shape
  })
