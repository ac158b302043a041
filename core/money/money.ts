/**
 * The money rules, composed: the ledger of what paid boxes cost, the budget over it, idle stops,
 * and the heartbeat that keeps each box's dead man's switch quiet. The supervisor runs their
 * sweeps on its clock and gives the fleet the checks it makes before spending.
 */
import type { RequestEnv } from '../config/settings.js';
import type { SweepStep } from '../lib/sweeper.js';
import type { InstanceRecord } from '../store/store.js';
import type { Boxes } from '../fleet/boxes.js';
import type { FleetMoney } from '../fleet/fleet.js';
import { Budget } from './budget.js';
import { Heartbeats } from './heartbeats.js';
import { IdleStops, type IdleHost } from './idle.js';
import { Ledger } from './ledger.js';
import { lifetimeCostAt } from '../model/money.js';

export interface MoneyHost extends IdleHost {
  destroy(id: string, env: RequestEnv, message: string): Promise<unknown>;
  /** Runs a command on the box over its SSH link (tunnel open or not). */
  run(id: string, command: string, timeoutMs: number): Promise<unknown>;
}

export class Money {
  readonly ledger: Ledger;
  readonly budget: Budget;
  readonly idle: IdleStops;
  readonly heartbeats: Heartbeats;

  constructor(boxes: Boxes, host: MoneyHost) {
    const isPaid = (rec: InstanceRecord) => boxes.providers().some((p) => p.name === rec.provider && p.countsTowardCap);
    this.ledger = new Ledger(boxes, isPaid, () => this.budget.record.counted_from_ms);
    this.budget = new Budget(boxes, this.ledger, isPaid, host);
    this.idle = new IdleStops(boxes, host);
    this.heartbeats = new Heartbeats(boxes, host);
  }

  async start(): Promise<void> {
    await this.budget.ensure();
    await this.ledger.sync();
  }

  /** The steps of the supervisor's sweep, in order: spend first, so the budget acts on today's figure. */
  steps(): SweepStep[] {
    return [
      { name: 'ledger', run: () => this.ledger.sync() },
      { name: 'budget', run: () => this.budget.sweep() },
      { name: 'idle stops', run: () => this.idle.sweep() },
      { name: 'heartbeats', run: () => this.heartbeats.sweep() },
    ];
  }

  /** What the fleet asks before it spends, and the cost it shows. */
  fleetRules(): FleetMoney {
    return {
      beforeSpend: (hourly, provider, ctx, what) => this.budget.checkAffordable(hourly, provider, ctx, what),
      costOf: (id, now) => {
        const e = this.ledger.entry(id);
        return e ? lifetimeCostAt(e, now) : undefined;
      },
    };
  }
}
