/**
 * Rendezvous (highest-random-weight) hashing: every node computes the same owner for an id from
 * the same membership, and a membership change moves only the ids of the node that changed.
 *
 * @internal
 */

const fnv1a = (text: string): number => {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  // final avalanche (murmur3 fmix32) so near-identical keys spread well
  hash ^= hash >>> 16
  hash = Math.imul(hash, 0x85ebca6b)
  hash ^= hash >>> 13
  hash = Math.imul(hash, 0xc2b2ae35)
  hash ^= hash >>> 16
  return hash >>> 0
}

/** The owner of `id` among `nodeIds` (undefined when there is none). @internal */
export const owner = (nodeIds: ReadonlyArray<string>, id: string): string | undefined => {
  if (nodeIds.length <= 1) return nodeIds[0]
  let best: string | undefined
  let bestWeight = -1
  for (const nodeId of nodeIds) {
    const weight = fnv1a(`${nodeId}\u0000${id}`)
    if (weight > bestWeight || (weight === bestWeight && best !== undefined && nodeId < best)) {
      best = nodeId
      bestWeight = weight
    }
  }
  return best
}
