/**
 * The suite's own ports come from one variable, VAI_TEST_PORT_BASE (test/helpers/ports.ts): the
 * sandboxes' VAI_BASE_PORT, the single ports of sshds and stand-ins, and .ci/run's packed-package
 * check all stay in its range, so a machine with other programs on those ports can move them.
 */
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeSandbox, ROOT } from '../helpers/cli.js';
import { randomBasePort, testPortBase } from '../helpers/ports.js';
import { freePort } from '../helpers/sshd.js';

const saved = process.env.VAI_TEST_PORT_BASE;
afterEach(() => {
  if (saved === undefined) delete process.env.VAI_TEST_PORT_BASE;
  else process.env.VAI_TEST_PORT_BASE = saved;
});

describe('VAI_TEST_PORT_BASE', () => {
  it('moves every port the suite picks into its range', async () => {
    process.env.VAI_TEST_PORT_BASE = '40000';
    for (let i = 0; i < 50; i++) {
      const b = randomBasePort();
      expect(b).toBeGreaterThanOrEqual(40000);
      expect(b).toBeLessThan(49000);
      const p = await freePort();
      expect(p).toBeGreaterThanOrEqual(50000);
      expect(p).toBeLessThanOrEqual(51999);
    }
    const sb = makeSandbox();
    try {
      expect(sb.basePort).toBeGreaterThanOrEqual(40000);
      expect(sb.env.VAI_BASE_PORT).toBe(String(sb.basePort));
    } finally {
      rmSync(path.dirname(sb.home), { recursive: true, force: true });
    }
  });

  it('defaults to 20000-31999, below the ephemeral range, and refuses a base that does not fit', () => {
    delete process.env.VAI_TEST_PORT_BASE;
    expect(testPortBase()).toBe(20000);
    expect(() => testPortBase({ VAI_TEST_PORT_BASE: '60000' })).toThrow(/VAI_TEST_PORT_BASE=60000 must be a whole number/);
    expect(() => testPortBase({ VAI_TEST_PORT_BASE: 'x' })).toThrow(/VAI_TEST_PORT_BASE/);
  });

  it('.ci/run takes its packed-package port from it, not a number of its own', () => {
    const ci = readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8');
    expect(ci).not.toMatch(/VAI_BASE_PORT=\d/);
    expect(ci).toMatch(/VAI_BASE_PORT=\$\(\( \$\{VAI_TEST_PORT_BASE:-20000\} \+ 9000 \)\)/);
  });
});
