/**
 * The NATS connection's state as the transport sees it: the reconnect backoff, counted in dial
 * attempts, and whether frames can leave now (with a bounded wait for the reconnect).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { TransportError } from "../../schema/Errors.ts"
import type { TransportEvent } from "../Transport.ts"

/**
 * The reconnect backoff: exponential with jitter, from `initialMillis` doubling to `maxMillis`,
 * counted in dial attempts since the connection was lost.
 *
 * nats.js calls its `reconnectDelayHandler` on every pass of its dial loop, also on passes that
 * only wait (it dials a server once `wait` has passed since its last dial, and otherwise sleeps
 * and asks again). So `delay` returns the same value until the next dial is reported with
 * `onDial`: a counter moved by every call, or a jitter drawn again on every call, would stretch
 * the wait far beyond the schedule (7 calls for 2 dials were seen in 2.9 s).
 *
 * The first dial after a loss goes at once (the server was last dialled long ago); the wait
 * after the `n`-th failed dial is `initial * 2^(n-1)`, capped at `max`, jittered in its upper
 * half: 50-100 ms, 100-200 ms, 200-400 ms, ... up to 2.5-5 s.
 *
 * @internal
 */
export class Backoff {
  private dials = 0
  private drawnFor = -1
  private drawn = 0
  constructor(
    readonly initialMillis: number,
    readonly maxMillis: number,
    private readonly random: () => number = Math.random
  ) {}

  /** the wait before the next dial (nats.js's `reconnectDelayHandler`) */
  delay(): number {
    if (this.drawnFor !== this.dials) {
      const exponent = Math.min(Math.max(0, this.dials - 1), 30)
      const base = Math.min(this.maxMillis, this.initialMillis * 2 ** exponent)
      this.drawn = base / 2 + this.random() * (base / 2)
      this.drawnFor = this.dials
    }
    return this.drawn
  }

  /** nats.js started a dial (its `reconnecting` status) */
  onDial(): void {
    this.dials++
  }

  /** connected again: the next loss starts from `initial` */
  reset(): void {
    this.dials = 0
    this.drawnFor = -1
  }

  /** dial attempts since the connection was lost */
  get attempts(): number {
    return this.dials
  }
}

/** the error of a frame that cannot leave because the connection is down */
export const disconnected = (): TransportError => new TransportError({ reason: "disconnected" })

/**
 * Whether the connection is up, a wait for it bounded by `reconnectWaitMillis`, and the
 * transport's `watch` listeners, told of each change.
 *
 * @internal
 */
export interface Connection {
  readonly isConnected: () => boolean
  /** succeeds once connected, or fails with `TransportError` "disconnected" after the bound */
  readonly awaitConnected: (maxMillis: number) => Effect.Effect<void, TransportError>
  /** `TransportShape.watch`: `listener` hears every change until the scope closes */
  readonly watch: (listener: (event: TransportEvent) => void) => Effect.Effect<void, never, Scope.Scope>
  readonly onDisconnected: () => void
  readonly onReconnected: () => void
}

/** @internal */
export const makeConnection = (reconnectWaitMillis: number): Effect.Effect<Connection> =>
  Effect.map(Effect.makeLatch(true), (latch) => {
    let connected = true
    const listeners = new Set<(event: TransportEvent) => void>()
    const tell = (event: TransportEvent) => {
      for (const listener of [...listeners]) listener(event)
    }
    return {
      watch: (listener) =>
        Effect.asVoid(Effect.acquireRelease(
          Effect.sync(() => listeners.add(listener)),
          () => Effect.sync(() => listeners.delete(listener))
        )),
      isConnected: () => connected,
      awaitConnected: (maxMillis) =>
        Effect.suspend(() => {
          if (connected) return Effect.void
          const bound = Math.min(maxMillis, reconnectWaitMillis)
          if (!(bound > 0)) return Effect.fail(disconnected())
          return latch.await.pipe(Effect.timeoutFail({ duration: bound, onTimeout: disconnected }))
        }),
      onDisconnected: () => {
        connected = false
        latch.unsafeClose()
        tell("disconnected")
      },
      onReconnected: () => {
        connected = true
        latch.unsafeOpen()
        tell("reconnected")
      }
    }
  })
