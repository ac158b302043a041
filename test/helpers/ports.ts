/**
 * The ports the test suite (and the benchmark) may use: one range from one variable,
 * VAI_TEST_PORT_BASE (default 20000), so that a machine running other programs on high ports can
 * move the whole suite elsewhere. The default range, 20000-31999, lies below Linux's ephemeral
 * range (32768+), where outgoing connections would make ports busy at random.
 *
 *   base + 0     .. base + 8999    VAI_BASE_PORT of each sandbox (a random multiple of 50)
 *   base + 9000  .. base + 9999    .ci/run's packed-package check (base + 9000)
 *   base + 10000 .. base + 11999   single ports: sshd, HTTP stand-ins, explicit --port values
 */
export const DEFAULT_TEST_PORT_BASE = 20000;
export const TEST_PORT_SPAN = 12000;

export function testPortBase(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.VAI_TEST_PORT_BASE?.trim();
  if (!raw) return DEFAULT_TEST_PORT_BASE;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1024 || n + TEST_PORT_SPAN - 1 > 65535) {
    throw new Error(`VAI_TEST_PORT_BASE=${raw} must be a whole number from 1024 to ${65535 - TEST_PORT_SPAN + 1} (the suite uses ${TEST_PORT_SPAN} ports from it).`);
  }
  return n;
}

/** A sandbox's VAI_BASE_PORT: a random multiple of 50 in the first 9000 ports of the range. */
export function randomBasePort(env: NodeJS.ProcessEnv = process.env): number {
  return testPortBase(env) + Math.floor(Math.random() * 180) * 50;
}

/** The range single ports are picked from (see `freePort` in sshd.ts). */
export function singlePortRange(env: NodeJS.ProcessEnv = process.env): { min: number; max: number } {
  const base = testPortBase(env);
  return { min: base + 10000, max: base + TEST_PORT_SPAN - 1 };
}
