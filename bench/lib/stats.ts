/** Small statistics for the benchmark report. Inputs are never empty (callers measure first). */

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile, p in 0-100. */
export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** Share (0-1) of values above `limit`. */
export function shareOver(xs: readonly number[], limit: number): number {
  return xs.filter((x) => x > limit).length / xs.length;
}

/** Rotates a list by `k`, so contenders take turns at going first (A B C, B C A, ...). */
export function rotate<T>(xs: readonly T[], k: number): T[] {
  const n = k % xs.length;
  return [...xs.slice(n), ...xs.slice(0, n)];
}
