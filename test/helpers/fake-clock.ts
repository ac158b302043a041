/**
 * A clock that moves only when the test moves it: deadlines, polls and waits of the managers
 * then happen at the fake time the test chooses, in milliseconds of real time.
 */
import type { Clock } from '../../core/lib/clock.js';

interface Sleeper {
  at: number;
  wake: () => void;
}

export class FakeClock implements Clock {
  private t: number;
  private sleepers: Sleeper[] = [];

  constructor(start = Date.now()) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const sleeper: Sleeper = {
        at: this.t + ms,
        wake: () => {
          this.sleepers = this.sleepers.filter((s) => s !== sleeper);
          signal?.removeEventListener('abort', sleeper.wake);
          resolve();
        },
      };
      this.sleepers.push(sleeper);
      signal?.addEventListener('abort', sleeper.wake, { once: true });
    });
  }

  /** Moves time on by `ms` and wakes everything that was due by then. */
  advance(ms: number): void {
    this.t += ms;
    for (const s of this.sleepers.filter((x) => x.at <= this.t)) s.wake();
  }

  /** How many sleeps are waiting (a manager that stopped leaves none behind). */
  get pending(): number {
    return this.sleepers.length;
  }
}
