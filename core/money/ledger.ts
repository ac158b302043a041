/**
 * The spending ledger: what every paid box of this VAI_HOME has cost since the budget is counted
 * from, kept in the state so that restarts never reset it. A box bills its price while it runs
 * (or comes up), its storage price while it is stopped, and nothing once destroyed (or failed). Each entry
 * holds what it had cost at a time and how it bills since, so a supervisor that was down counts
 * the time it missed.
 */
import type { Boxes } from '../fleet/boxes.js';
import { accruedAt, lifetimeCostAt, rateOf, type Billing, type LedgerEntry } from '../model/money.js';
import type { InstanceRecord } from '../store/store.js';

/** What accrued is written at least this often (and at every change of how a box bills). */
const PERSIST_MS = 15_000;

export class Ledger {
  private persistedAt = 0;

  constructor(
    private readonly boxes: Boxes,
    /** Whether a box costs money (its provider's boxes count toward the cap). */
    private readonly isPaid: (rec: InstanceRecord) => boolean,
    /** When spend is counted from (clock ms). */
    private readonly countedFrom: () => number,
  ) {}

  private get entries() {
    return this.boxes.store.ledger;
  }

  /** The entry brought up to `now` with a new way of billing (what accrued so far is kept). */
  private settled(e: LedgerEntry, now: number, patch: Partial<LedgerEntry> = {}): LedgerEntry {
    return { ...e, accrued_usd: accruedAt(e, now), since_ms: Math.max(e.since_ms, now), ...patch };
  }

  /** New paid boxes enter the ledger, each entry bills as its box does now, and what accrued is written. */
  async sync(): Promise<void> {
    const now = this.boxes.clock.now();
    for (const rec of this.boxes.records()) {
      if (!this.isPaid(rec) || rec.dph_total === undefined) continue;
      // A failed box is gone, or being ended by the failsafe: it bills nothing more.
      const billing: Billing = rec.status === 'stopped' ? 'stopped' : rec.status === 'failed' ? 'ended' : 'running';
      const e = this.entries.get(rec.instance_id);
      if (!e) {
        const created = Date.parse(rec.created_at);
        const since = Math.min(Math.max(created, this.countedFrom()), now);
        const earlier = (rec.dph_total * Math.max(0, since - created)) / 3_600_000;
        await this.entries.set(rec.instance_id, { instance_id: rec.instance_id, dph_total: rec.dph_total, storage_dph: rec.storage_dph ?? 0, billing, accrued_usd: 0, since_ms: since, earlier_usd: earlier });
      } else if (e.billing !== billing) {
        await this.entries.set(rec.instance_id, this.settled(e, now, { billing }));
      }
    }
    for (const e of this.entries.values()) {
      if (e.billing !== 'ended' && !this.boxes.store.instances.has(e.instance_id)) await this.entries.set(e.instance_id, this.settled(e, now, { billing: 'ended' }));
    }
    if (now - this.persistedAt >= PERSIST_MS) {
      this.persistedAt = now;
      for (const e of this.entries.values()) if (e.billing !== 'ended') await this.entries.set(e.instance_id, this.settled(e, now));
    }
  }

  /** $ spent by every paid box since the budget is counted from. */
  spent(now = this.boxes.clock.now()): number {
    return this.entries.values().reduce((sum, e) => sum + accruedAt(e, now), 0);
  }

  /** $/h the paid boxes bill now (running ones their price, stopped ones their storage). */
  burnRate(): number {
    return this.entries.values().reduce((sum, e) => sum + rateOf(e), 0);
  }

  entry(id: string): LedgerEntry | undefined {
    return this.entries.get(id);
  }

  all(): LedgerEntry[] {
    return this.entries.values();
  }

  /** Spend starts again from zero now: destroyed boxes leave the ledger, live ones count from now. */
  async reset(now: number): Promise<void> {
    for (const e of this.entries.values()) {
      if (e.billing === 'ended') await this.entries.delete(e.instance_id);
      else await this.entries.set(e.instance_id, { ...e, accrued_usd: 0, since_ms: now, earlier_usd: lifetimeCostAt(e, now) });
    }
  }
}
