import { defineConfig } from 'vitest/config';

// Benchmarks run by hand (`npm run bench`), never as part of `npm test`: they measure, print a
// report and only fail when something is broken, not when a number is slow.
export default defineConfig({
  test: {
    include: ['bench/**/*.bench.ts'],
    fileParallelism: false,
    testTimeout: 15 * 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
