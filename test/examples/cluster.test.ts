/**
 * `examples/cluster.test.ts`, the TestCluster example users copy, runs in the suite from here
 * (vitest's `include` is `test/**`): importing it registers its tests.
 */
import "../../examples/cluster.test.ts"
