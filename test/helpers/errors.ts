/** The bad-input error a call throws: a VaiError with exit code 2 (fails the test otherwise). */
import { expect } from 'vitest';
import { VaiError } from '../../core/lib/errors.js';

export function badInputOf(fn: () => unknown): VaiError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  if (thrown === undefined) throw new Error('expected a VaiError, but the call succeeded');
  expect(thrown).toBeInstanceOf(VaiError);
  const e = thrown as VaiError;
  expect(e.exitCode).toBe(2);
  expect(e.message.length).toBeGreaterThan(0);
  return e;
}
