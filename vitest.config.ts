import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['./test/setup.ts'],
    // forks: a crash in a native binding (Dawn) takes down one worker, not the whole run
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
})
