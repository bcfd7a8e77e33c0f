/**
 * `troupe/testing`: the deterministic cluster test kit.
 *
 * @since 0.5.0
 */

/**
 * N nodes in one process on a faulty in-memory network, deterministic from a seed.
 *
 * @since 0.5.0
 */
export * as TestCluster from "./TestCluster.ts"
