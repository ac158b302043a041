/**
 * Time as the managers see it: the real clock in the supervisor, a fake one in tests (deadlines,
 * polls and waits then move only when the test moves them).
 */
import { sleep } from './timers.js';

export interface Clock {
  now(): number;
  /** Resolves after `ms` (or at once when `signal` aborts). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep,
};

export function isoAt(ms: number): string {
  return new Date(ms).toISOString();
}
