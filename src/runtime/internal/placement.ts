/**
 * Rendezvous (highest-random-weight) hashing: every node computes the same owner for an id from
 * the same membership, and a membership change moves only the ids of the node that changed.
 *
 * The weight of a member for an id is FNV-1a over `${nodeId}\0${id}`, finished with murmur3's
 * fmix32. Routing asks for an owner on every ask, so per membership (the array of serving node
 * ids, which routing keeps while discovery's state is unchanged) the FNV state after each
 * member's `${nodeId}\0` prefix is computed once, and the owners already found are remembered (a
 * bounded table). The weights are exactly those of hashing the whole key: nodes of every version
 * agree on the owner.
 *
 * @internal
 */

const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193

const fnvStep = (hash: number, text: string): number => {
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, FNV_PRIME)
  }
  return hash
}

// final avalanche (murmur3 fmix32) so near-identical keys spread well
const fmix32 = (hash: number): number => {
  hash ^= hash >>> 16
  hash = Math.imul(hash, 0x85ebca6b)
  hash ^= hash >>> 13
  hash = Math.imul(hash, 0xc2b2ae35)
  hash ^= hash >>> 16
  return hash >>> 0
}

/** owners remembered per membership; past this the table starts again */
const MAX_REMEMBERED_OWNERS = 4_096

interface Membership {
  /** the FNV state after `${nodeId}\0`, per member, in the membership's order */
  readonly prefixes: Int32Array
  readonly owners: Map<string, string>
}

const memberships = new WeakMap<ReadonlyArray<string>, Membership>()

const membershipOf = (nodeIds: ReadonlyArray<string>): Membership => {
  let membership = memberships.get(nodeIds)
  if (membership === undefined) {
    const prefixes = new Int32Array(nodeIds.length)
    for (let i = 0; i < nodeIds.length; i++) prefixes[i] = fnvStep(fnvStep(FNV_OFFSET, nodeIds[i]!), "\u0000")
    membership = { prefixes, owners: new Map() }
    memberships.set(nodeIds, membership)
  }
  return membership
}

const ownerAmong = (nodeIds: ReadonlyArray<string>, prefixes: Int32Array, id: string): string => {
  let best = nodeIds[0]!
  let bestWeight = -1
  for (let i = 0; i < nodeIds.length; i++) {
    const nodeId = nodeIds[i]!
    const weight = fmix32(fnvStep(prefixes[i]!, id))
    if (weight > bestWeight || (weight === bestWeight && nodeId < best)) {
      best = nodeId
      bestWeight = weight
    }
  }
  return best
}

/**
 * The owner of `id` among `nodeIds` (undefined when there is none). Pass the same array while
 * the membership is unchanged: what is worked out for it is kept with it.
 *
 * @internal
 */
export const owner = (nodeIds: ReadonlyArray<string>, id: string): string | undefined => {
  if (nodeIds.length <= 1) return nodeIds[0]
  const membership = membershipOf(nodeIds)
  let found = membership.owners.get(id)
  if (found === undefined) {
    found = ownerAmong(nodeIds, membership.prefixes, id)
    if (membership.owners.size >= MAX_REMEMBERED_OWNERS) membership.owners.clear()
    membership.owners.set(id, found)
  }
  return found
}
