/** Slots (core/lib/slots.ts): at most N sections at once, the rest in call order. */
import { describe, expect, it } from 'vitest';
import { Slots } from '../../core/lib/slots.js';

describe('Slots', () => {
  it('runs at most its size at once, the others in the order they asked, and frees a slot on failure', async () => {
    const slots = new Slots(2);
    let now = 0;
    let most = 0;
    const order: number[] = [];
    const work = (i: number, fail = false) => slots.run(async () => {
      most = Math.max(most, ++now);
      order.push(i);
      await new Promise((r) => setTimeout(r, 20));
      now--;
      if (fail) throw new Error(`job ${i} failed`);
      return i;
    });
    const results = await Promise.allSettled([work(1), work(2, true), work(3), work(4), work(5)]);
    expect(most).toBe(2);
    expect(order).toEqual([1, 2, 3, 4, 5]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
    expect(await work(6)).toBe(6);
  });
});
