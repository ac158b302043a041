/** The reconnect schedule of DESIGN.md section 4, with a fake clock. */
import { describe, expect, it } from 'vitest';
import { ReconnectSchedule } from '../../core/backoff.js';

/** Runs a schedule as a tunnel would: each delay passes on the clock before the next attempt. */
function delays(n: number, random: () => number, attemptMs = 0): number[] {
  let now = 1_000_000;
  const s = new ReconnectSchedule(() => now, random);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const d = s.next();
    out.push(d);
    now += d + attemptMs;
  }
  return out;
}

describe('ReconnectSchedule', () => {
  it('goes at once, 0.5 s, 1 s, then every 1.5 s for the first minute, then doubles to a 30 s cap', () => {
    const d = delays(60, () => 0.5); // 0.5 = no jitter
    expect(d.slice(0, 4)).toEqual([0, 500, 1000, 1500]);
    // The outage clock at each attempt: every delay asked before the minute is 1.5 s.
    let elapsed = 0;
    let firstSlow = -1;
    for (let i = 0; i < d.length; i++) {
      if (i >= 3 && elapsed < 60_000) expect(d[i]).toBe(1500);
      if (elapsed >= 60_000 && firstSlow < 0) firstSlow = i;
      elapsed += d[i]!;
    }
    expect(d.slice(firstSlow, firstSlow + 6)).toEqual([3000, 6000, 12000, 24000, 30000, 30000]);
    expect(Math.max(...d)).toBe(30000);
  });

  it('starts doubling only once the outage is a minute old, counting the time attempts take', () => {
    // Each attempt itself takes 5 s (a connect timeout): the minute passes after fewer attempts.
    const d = delays(20, () => 0.5, 5000);
    const firstDouble = d.findIndex((x) => x > 1500);
    const elapsed = d.slice(0, firstDouble).reduce((a, x) => a + x + 5000, 0);
    expect(elapsed).toBeGreaterThanOrEqual(60_000);
    expect(d[firstDouble]).toBe(3000);
  });

  it('keeps jitter within +-20% of the schedule\'s steps', () => {
    const bases = [0, 500, 1000, 1500, 3000, 6000, 12000, 24000, 30000];
    const low = delays(80, () => 0); // -20%
    const high = delays(80, () => 0.999999); // +20%
    for (const d of low) expect(bases.some((b) => Math.abs(d - b * 0.8) <= 1)).toBe(true);
    for (const d of high) expect(bases.some((b) => Math.abs(d - b * 1.2) <= 1)).toBe(true);
    expect(low.slice(0, 4)).toEqual([0, 400, 800, 1200]);
    expect(high.slice(0, 4)).toEqual([0, 600, 1200, 1800]);
    expect(Math.max(...high)).toBe(36000);
    expect(Math.max(...low)).toBe(24000);
  });

  it('starts over after reset()', () => {
    let now = 0;
    const s = new ReconnectSchedule(() => now, () => 0.5);
    for (let i = 0; i < 50; i++) {
      now += s.next();
    }
    expect(s.outageMs()).toBeGreaterThan(60_000);
    s.reset();
    expect(s.outageMs()).toBe(0);
    expect([s.next(), s.next(), s.next()]).toEqual([0, 500, 1000]);
  });
});
