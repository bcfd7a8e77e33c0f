/**
 * The in-process discovery registry (`Discovery.makeInMemory`): exact membership, nodes leave
 * with their scope, addresses remapped as announced.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { DiscoveryShape, InMemoryOptions, Member, Registry } from "../Discovery.ts"
import { remapAddress } from "./discoveryOptions.ts"

const modify = (registry: Registry, f: (members: ReadonlyArray<Member>, now: number) => ReadonlyArray<Member>) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    SubscriptionRef.update(registry.ref, (state) => {
      const next = { members: f(state.members, now), lastUpdated: now }
      registry.current = next
      return next
    }))

/** @internal see `Discovery.makeInMemory` */
export const makeInMemory = (registry: Registry, options: InMemoryOptions = {}): DiscoveryShape => {
  const remap = options.remap ?? {}
  // the addresses as announced, so a change of kinds can be remapped again
  const announced = new Map<string, string>()
  return {
    announce: (member) =>
      Effect.acquireRelease(
        Effect.suspend(() => {
          announced.set(member.nodeId, member.address)
          return modify(registry, (members, now) => [
            ...members.filter((m) => m.nodeId !== member.nodeId),
            {
              ...member,
              address: remapAddress(remap, member.name, member.kinds, member.address),
              lastSeen: now,
              status: "alive"
            }
          ])
        }),
        () =>
          Effect.suspend(() => {
            announced.delete(member.nodeId)
            return modify(registry, (members) => members.filter((m) => m.nodeId !== member.nodeId))
          })
      ),
    update: (nodeId, patch) =>
      modify(registry, (members, now) =>
        members.map((m) => {
          if (m.nodeId !== nodeId) return m
          const next = { ...m, ...patch, lastSeen: now }
          const original = announced.get(nodeId)
          return original === undefined ? next : { ...next, address: remapAddress(remap, m.name, next.kinds, original) }
        })),
    unsafeState: () => registry.current,
    changes: registry.ref.changes
  }
}
