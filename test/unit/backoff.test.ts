/**
 * core/backoff.ts: the reconnect schedule of DESIGN.md section 4, exactly:
 * at once (0), then 0.5 s, 1 s, 1.5 s, and every 1.5 s for the first minute of an outage;
 * after that doubling up to a 30 s cap; +-20% jitter; reset() starts over.
 * The clock and the random source are injected: no real time passes.
 */
import { describe, expect, it } from 'vitest';
import { CAP_MS, nextBase, ReconnectSchedule } from '../../core/lib/backoff.js';

/** A clock that only moves when the test moves it. */
class FakeClock {
  constructor(public t = 1_700_000_000_000) {}
  now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

const NO_JITTER = () => 0.5; // (0.5 * 2 - 1) * 20% = 0
const LOWEST = () => 0; // -20%
const HIGHEST = () => 0.9999999; // +20% (random() is < 1)

/**
 * Runs a schedule the way a tunnel does during an outage: wait the delay, try, fail after
 * `attemptMs`, ask for the next delay.
 */
function runOutage(calls: number, random: () => number, attemptMs: number): number[] {
  const clock = new FakeClock();
  const s = new ReconnectSchedule(clock.now, random);
  const out: number[] = [];
  for (let i = 0; i < calls; i++) {
    const d = s.next();
    out.push(d);
    clock.advance(d + attemptMs);
  }
  return out;
}

describe('ReconnectSchedule without jitter', () => {
  it('goes at once, then 0.5 s, 1 s, 1.5 s', () => {
    expect(runOutage(4, NO_JITTER, 0)).toEqual([0, 500, 1000, 1500]);
  });

  it('follows the whole schedule: 1.5 s steps for the first minute, then 3, 6, 12, 24, 30, 30 s', () => {
    // Each failed attempt takes 200 ms. Attempt i (i >= 3) is asked for at
    // 2100 + (i - 3) * 1700 ms into the outage: under a minute up to i = 37 (59 900 ms),
    // past it from i = 38 (61 600 ms).
    const expected = [0, 500, 1000, ...Array<number>(35).fill(1500), 3000, 6000, 12000, 24000, 30000, 30000, 30000];
    expect(runOutage(expected.length, NO_JITTER, 200)).toEqual(expected);
  });

  it('keeps 1.5 s steps through the whole first minute when attempts fail at once', () => {
    const d = runOutage(42, NO_JITTER, 0); // the 42nd delay is asked for at 58.5 s
    expect(d.slice(0, 3)).toEqual([0, 500, 1000]);
    expect(d.slice(3)).toEqual(Array<number>(39).fill(1500));
  });

  it('counts the minute on the clock, not in attempts', () => {
    // A clock that does not move: no minute ever passes, so no doubling however many attempts.
    const clock = new FakeClock();
    const s = new ReconnectSchedule(clock.now, NO_JITTER);
    const d = Array.from({ length: 500 }, () => s.next());
    expect(d.slice(0, 3)).toEqual([0, 500, 1000]);
    expect(new Set(d.slice(3))).toEqual(new Set([1500]));
  });

  it('switches to doubling right after the minute, and the first doubled step is 3 s', () => {
    const clock = new FakeClock();
    const s = new ReconnectSchedule(clock.now, NO_JITTER);
    expect([s.next(), s.next(), s.next()]).toEqual([0, 500, 1000]);
    clock.advance(59_999);
    expect(s.next()).toBe(1500); // still inside the first minute
    clock.advance(2); // 60 001 ms into the outage
    expect(s.next()).toBe(3000);
    expect(s.next()).toBe(6000);
    expect(s.next()).toBe(12000);
    expect(s.next()).toBe(24000);
    expect(s.next()).toBe(30000);
    expect(s.next()).toBe(30000);
    clock.advance(3_600_000); // an hour later: still capped
    expect(s.next()).toBe(30000);
    expect(CAP_MS).toBe(30000);
  });

  it('measures the outage from the first next() call', () => {
    const clock = new FakeClock();
    const s = new ReconnectSchedule(clock.now, NO_JITTER);
    expect(s.outageMs()).toBe(0);
    clock.advance(120_000); // time before the outage does not count
    expect(s.outageMs()).toBe(0);
    s.next();
    clock.advance(1234);
    expect(s.outageMs()).toBe(1234);
    s.next();
    s.next();
    clock.advance(50_000); // 51.2 s into the outage
    expect(s.next()).toBe(1500);
  });
});

describe('ReconnectSchedule jitter', () => {
  /**
   * Two schedules asked at the same clock times: one without jitter (the base), one with the
   * given random source. The clock moves by a fixed step that does not depend on the delays.
   */
  function lockstep(random: () => number, calls = 70, stepMs = 1000): { base: number; got: number }[] {
    const clock = new FakeClock();
    const plain = new ReconnectSchedule(clock.now, NO_JITTER);
    const jittered = new ReconnectSchedule(clock.now, random);
    const out: { base: number; got: number }[] = [];
    for (let i = 0; i < calls; i++) {
      out.push({ base: plain.next(), got: jittered.next() });
      clock.advance(stepMs);
    }
    return out;
  }

  it('covers every step of the schedule in the lockstep runs', () => {
    const bases = new Set(lockstep(NO_JITTER).map((x) => x.base));
    expect(bases).toEqual(new Set([0, 500, 1000, 1500, 3000, 6000, 12000, 24000, 30000]));
  });

  it('is exact with random() = 0.5', () => {
    for (const { base, got } of lockstep(NO_JITTER)) expect(got).toBe(base);
  });

  it('is 20% early with random() = 0', () => {
    const run = lockstep(LOWEST);
    for (const { base, got } of run) expect(got).toBe(Math.round(base * 0.8));
    expect(run.slice(0, 4).map((x) => x.got)).toEqual([0, 400, 800, 1200]);
    expect(Math.max(...run.map((x) => x.got))).toBe(24000);
  });

  it('is at most 20% late with random() close to 1', () => {
    const run = lockstep(HIGHEST);
    for (const { base, got } of run) {
      expect(got).toBeLessThanOrEqual(Math.round(base * 1.2));
      expect(got).toBeGreaterThanOrEqual(Math.round(base * 1.2) - 1);
    }
    expect(run.slice(0, 4).map((x) => x.got)).toEqual([0, 600, 1200, 1800]);
    expect(Math.max(...run.map((x) => x.got))).toBe(36000);
  });

  it('stays within +-20% of the base for any random value, and does spread the delays', () => {
    // A small deterministic generator (LCG) standing in for Math.random.
    let seed = 12345;
    const lcg = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const run = lockstep(lcg, 200);
    for (const { base, got } of run) {
      expect(got).toBeGreaterThanOrEqual(Math.floor(base * 0.8));
      expect(got).toBeLessThanOrEqual(Math.ceil(base * 1.2));
    }
    const steady = run.filter((x) => x.base === 1500).map((x) => x.got);
    expect(new Set(steady).size).toBeGreaterThan(5); // real jitter, not a constant offset
    const capped = run.filter((x) => x.base === 30000).map((x) => x.got);
    expect(capped.length).toBeGreaterThan(5);
    expect(new Set(capped).size).toBeGreaterThan(3);
  });

  it('never delays the first attempt: "at once" is 0 whatever the jitter', () => {
    for (const random of [LOWEST, NO_JITTER, HIGHEST]) {
      const s = new ReconnectSchedule(new FakeClock().now, random);
      expect(s.next()).toBe(0);
    }
  });

  it('doubles the base, not the jittered delay', () => {
    // With -20% every time, compounding jitter would give 2400, 3840, ... instead of 0.8 x base.
    const clock = new FakeClock();
    const s = new ReconnectSchedule(clock.now, LOWEST);
    s.next();
    s.next();
    s.next();
    clock.advance(61_000);
    expect([s.next(), s.next(), s.next(), s.next(), s.next(), s.next()]).toEqual([2400, 4800, 9600, 19200, 24000, 24000]);
  });
});

describe('ReconnectSchedule.reset', () => {
  it('starts over: at once, 0.5 s, 1 s, 1.5 s, and a fresh first minute', () => {
    const clock = new FakeClock();
    const s = new ReconnectSchedule(clock.now, NO_JITTER);
    for (let i = 0; i < 60; i++) clock.advance(s.next() + 100);
    expect(s.next()).toBe(30000); // deep into a long outage
    expect(s.outageMs()).toBeGreaterThan(60_000);

    s.reset();
    expect(s.outageMs()).toBe(0);
    clock.advance(10_000);
    expect([s.next(), s.next(), s.next(), s.next()]).toEqual([0, 500, 1000, 1500]);
    // The new outage's minute counts from the first next() after reset, not from the old outage.
    clock.advance(50_000);
    expect(s.next()).toBe(1500);
    clock.advance(10_001);
    expect(s.next()).toBe(3000);
  });
});

describe('nextBase', () => {
  it('gives the un-jittered steps of the schedule', () => {
    expect(nextBase(0, 0, 0)).toBe(0);
    expect(nextBase(1, 100, 0)).toBe(500);
    expect(nextBase(2, 700, 500)).toBe(1000);
    expect(nextBase(3, 2_000, 1000)).toBe(1500);
    expect(nextBase(30, 59_999, 1500)).toBe(1500);
    expect(nextBase(31, 60_001, 1500)).toBe(3000);
    expect(nextBase(32, 63_000, 3000)).toBe(6000);
    expect(nextBase(33, 70_000, 12000)).toBe(24000);
    expect(nextBase(34, 90_000, 24000)).toBe(30000);
    expect(nextBase(35, 120_000, 30000)).toBe(30000);
  });
});
