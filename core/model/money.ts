/**
 * What money means here: a paid box bills its full price (`dph_total`, storage included) until
 * it is stopped, then its storage price until it is destroyed. Counted conservatively: a box
 * that is coming up bills its full price too.
 */

/** What a money rule does to a box: stop it (storage still bills; `start` resumes it) or destroy it. */
export type MoneyAction = 'stop' | 'destroy';

/** How a box bills now: its full price, its storage only, or nothing any more. */
export type Billing = 'running' | 'stopped' | 'ended';

/** One paid box in the spending ledger: what it has cost since the budget was counted from. */
export interface LedgerEntry {
  instance_id: string;
  /** $/h while it runs, and while it is stopped (storage). */
  dph_total: number;
  storage_dph: number;
  billing: Billing;
  /** $ accrued up to `since_ms`, counted from the budget's start. */
  accrued_usd: number;
  since_ms: number;
  /** $ it cost before the budget's start (a reset, or its first use): part of its own cost, not of the spend. */
  earlier_usd?: number;
}

export function rateOf(e: Pick<LedgerEntry, 'billing' | 'dph_total' | 'storage_dph'>): number {
  return e.billing === 'running' ? e.dph_total : e.billing === 'stopped' ? e.storage_dph : 0;
}

/** What the entry has cost up to `nowMs`. */
export function accruedAt(e: LedgerEntry, nowMs: number): number {
  return e.accrued_usd + (rateOf(e) * Math.max(0, nowMs - e.since_ms)) / 3_600_000;
}

/** What the box has cost in all, up to `nowMs`. */
export function lifetimeCostAt(e: LedgerEntry, nowMs: number): number {
  return (e.earlier_usd ?? 0) + accruedAt(e, nowMs);
}

/** Dollars for people: to the cent, or to a tenth of a cent under a dollar. */
export function usd(x: number): string {
  return `$${x.toFixed(Math.abs(x) < 1 ? 3 : 2)}`;
}
