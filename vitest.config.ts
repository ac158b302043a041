import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration and end-to-end files start real sshd processes, supervisors and listeners:
    // run files one at a time so they never compete for ports or CPU on 2-core machines.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Surfaces a test that leaves handles open instead of hanging the run.
    teardownTimeout: 10_000,
  },
});
