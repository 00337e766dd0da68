// `npm run test:fast`: the unit tests and the integration tests that take a few seconds each, for
// feedback within 90 s on a 2-core machine (about 75 s there: vitest runs one file at a time on two
// cores). The integration files left out took 5 s or more in most runs there, the e2e and sim files
// far more (README, Development, names the slowest); `npm test` runs them all.
import { configDefaults, defineConfig } from 'vitest/config'
import base from './vitest.config.js'

/**
 * Unit test files too slow for the fast run: shader compilation of every matmul kernel version, and
 * the GPT's command line (real child processes training, evaluating and sampling: about 35 s).
 */
const SLOW_UNIT = ['test/unit/kernels/matmul-versions.test.ts', 'test/unit/cli-gpt.test.ts']

/** Integration test files of a few seconds each: real libp2p nodes on loopback, no training runs. */
const QUICK_INTEGRATION = [
  'daemon-data-dir',
  'inference-backends',
  'inference-bad-input',
  'inference-quorum',
  'interop',
  'openai-local',
  'protocols-network',
  'raft-libp2p',
  'raft-membership',
  'raft-restart',
  'raft-store-crash',
  'training-bad-input',
  'transport-tcp',
].map((name) => `test/integration/${name}.test.ts`)

// the base config's test options with this file list (mergeConfig would append to the base's include)
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: ['test/unit/**/*.test.ts', ...QUICK_INTEGRATION],
    exclude: [...configDefaults.exclude, ...SLOW_UNIT],
  },
})
