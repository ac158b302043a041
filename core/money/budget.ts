/**
 * The spending budget: the most the paid boxes of this VAI_HOME may cost, counted from the first
 * use or `budget --reset`. It is state (kept in the store), set by `budget --set`, or by the
 * first command that brings VAI_BUDGET_USD when none is stored; a command with another value
 * gets a warning, never a silent change. When the ledger's spend reaches it, every live paid box
 * is stopped (or destroyed); stopped boxes' storage still counts, and at 110% they are destroyed.
 * A create or start that the budget, or the account's credit, cannot carry for an hour is refused
 * before anything is rented.
 */
import type { BudgetView } from '../api/views.js';
import type { RequestEnv } from '../config/settings.js';
import { isoAt } from '../lib/clock.js';
import { badInput, failure, toVaiError } from '../lib/errors.js';
import { accruedAt, rateOf, usd, type MoneyAction } from '../model/money.js';
import type { Provider, ProviderContext } from '../providers/provider.js';
import type { BudgetRecord, InstanceRecord } from '../store/store.js';
import type { Box, Boxes } from '../fleet/boxes.js';
import type { Ledger } from './ledger.js';

const KEY = 'budget';
/** Warnings start at this share of the budget; stopped boxes are destroyed at the last. */
const WARN_AT = 0.8;
const DESTROY_STOPPED_AT = 1.1;
/** A failed budget action is tried again this much later. */
const RETRY_MS = 60_000;

export interface BudgetActions {
  /** Stops the box, its record saying `message`. */
  stop(id: string, env: RequestEnv, message: string): Promise<unknown>;
  destroy(id: string, env: RequestEnv, message: string): Promise<unknown>;
}

/** What a caller brought (VAI_BUDGET_USD, VAI_BUDGET_ACTION): adopted when none is stored. */
export interface BudgetWish {
  limit_usd?: number;
  action?: MoneyAction;
}

export class Budget {
  constructor(
    private readonly boxes: Boxes,
    private readonly ledger: Ledger,
    private readonly isPaid: (rec: InstanceRecord) => boolean,
    private readonly actions: BudgetActions,
  ) {}

  /** The stored budget; the first use starts counting now, with no limit. */
  async ensure(): Promise<BudgetRecord> {
    const rec = this.boxes.store.budget.get(KEY);
    if (rec) return rec;
    const fresh = this.record;
    await this.boxes.store.budget.set(KEY, fresh);
    return fresh;
  }

  /** The stored budget, or the one a first use would store. */
  get record(): BudgetRecord {
    return this.boxes.store.budget.get(KEY) ?? { limit_usd: null, action: 'stop', counted_from_ms: this.boxes.clock.now() };
  }

  /** A caller's VAI_BUDGET_USD / VAI_BUDGET_ACTION: taken when no budget is stored, else a warning where it differs. */
  async adopt(wish: BudgetWish): Promise<string[]> {
    const rec = await this.ensure();
    if (rec.limit_usd === null) {
      const patch = { ...(wish.limit_usd !== undefined && { limit_usd: wish.limit_usd }), ...(wish.action !== undefined && { action: wish.action }) };
      if (Object.keys(patch).length === 0 || (patch.action === rec.action && patch.limit_usd === undefined)) return [];
      await this.boxes.store.budget.set(KEY, { ...rec, ...patch });
      this.boxes.log.info(`budget set from the caller's settings: ${this.describe()}`);
      return [];
    }
    const warnings: string[] = [];
    if (wish.limit_usd !== undefined && wish.limit_usd !== rec.limit_usd) {
      warnings.push(`The budget is ${usd(rec.limit_usd)} (kept by the supervisor); your VAI_BUDGET_USD=${wish.limit_usd} is not applied. Change it with \`vai-mcp-cli budget --set ${wish.limit_usd}\`.`);
    }
    if (wish.action !== undefined && wish.action !== rec.action) {
      warnings.push(`The budget action is "${rec.action}" (kept with the budget); your VAI_BUDGET_ACTION=${wish.action} is not applied. \`vai-mcp-cli budget --set ${rec.limit_usd} --action ${wish.action}\` changes it.`);
    }
    return warnings;
  }

  /** `budget --set` (a limit, and optionally the action) and `budget --reset` (spend counted from now). */
  async change(p: { limit_usd?: number | null; action?: MoneyAction; reset?: boolean }): Promise<void> {
    if (p.limit_usd !== undefined && p.limit_usd !== null && (!Number.isFinite(p.limit_usd) || p.limit_usd <= 0)) {
      throw badInput(`The budget must be a positive number of dollars (got ${p.limit_usd}).`, { cli: 'e.g. `vai-mcp-cli budget --set 20`', agent: 'Give limit_usd as a positive number of dollars.' });
    }
    const rec = await this.ensure();
    const now = this.boxes.clock.now();
    await this.ledger.sync();
    if (p.reset) await this.ledger.reset(now);
    const next: BudgetRecord = {
      limit_usd: p.limit_usd === undefined ? rec.limit_usd : p.limit_usd,
      action: p.action ?? rec.action,
      counted_from_ms: p.reset ? now : rec.counted_from_ms,
    };
    await this.boxes.store.budget.set(KEY, next);
    this.boxes.log.info(`budget changed: ${this.describe()}${p.reset ? ' (spend counted from now)' : ''}`);
  }

  private describe(): string {
    const r = this.record;
    return r.limit_usd === null ? 'no limit' : `${usd(r.limit_usd)}, action ${r.action}`;
  }

  /** What `budget --json` and get_budget show. */
  async view(ctx: ProviderContext, vast: Provider | undefined): Promise<BudgetView> {
    await this.ledger.sync();
    const r = this.record;
    const now = this.boxes.clock.now();
    const spent = this.ledger.spent(now);
    const burn = this.ledger.burnRate();
    const remaining = r.limit_usd === null ? null : r.limit_usd - spent;
    const credit = await this.creditOf(ctx, vast);
    return {
      limit_usd: r.limit_usd,
      spent_usd: round(spent),
      remaining_usd: remaining === null ? null : round(Math.max(0, remaining)),
      percent_spent: r.limit_usd === null ? null : Math.round((spent / r.limit_usd) * 1000) / 10,
      counted_from: isoAt(r.counted_from_ms),
      action: r.action,
      burn_usd_per_hour: round(burn),
      runs_out_at: remaining !== null && remaining > 0 && burn > 0 ? isoAt(now + (remaining / burn) * 3_600_000) : null,
      credit_usd: credit.usd,
      credit_error: credit.error,
      paid_boxes: this.ledger.all().filter((e) => e.billing !== 'ended').map((e) => ({
        instance_id: e.instance_id,
        billing: e.billing === 'running' ? ('running' as const) : ('stopped' as const),
        usd_per_hour: rateOf(e),
        spent_usd: round(accruedAt(e, now)),
      })),
      warnings: this.warnings(),
    };
  }

  private async creditOf(ctx: ProviderContext, vast: Provider | undefined): Promise<{ usd: number | null; error: string | null }> {
    if (!vast?.credit) return { usd: null, error: null };
    try {
      return { usd: await vast.credit(ctx), error: null };
    } catch (err) {
      return { usd: null, error: toVaiError(err).message };
    }
  }

  /** What every create, list and MCP result warns of: 80% spent, the action taken, money actions that failed. */
  warnings(): string[] {
    const out: string[] = [];
    const r = this.record;
    if (r.limit_usd !== null) {
      const spent = this.ledger.spent();
      const share = spent / r.limit_usd;
      const what = `${usd(spent)} of the ${usd(r.limit_usd)} budget`;
      if (share >= DESTROY_STOPPED_AT) {
        out.push(`The budget is overspent (${what}, ${pct(share)}): every paid box was ${r.action === 'stop' ? 'stopped, and at 110% destroyed' : 'destroyed'}. \`vai-mcp-cli budget --set USD\` raises it.`);
      } else if (share >= 1) {
        out.push(`The budget is spent (${what}): every paid box was ${r.action === 'stop' ? 'stopped; their storage still counts, and at 110% they are destroyed' : 'destroyed'}. \`vai-mcp-cli budget --set USD\` raises it.`);
      } else if (share >= WARN_AT) {
        out.push(`${pct(share)} of the budget is spent (${what}); at 100% every paid box is ${r.action === 'stop' ? 'stopped' : 'destroyed'}.`);
      }
    }
    for (const box of this.boxes.all()) if (box.moneyError && this.boxes.store.instances.has(box.id)) out.push(box.moneyError);
    return out;
  }

  /**
   * Refuses, before anything is rented, a create or start that the budget or the account's credit
   * cannot carry for an hour: `hourly` is the price of each box asked for.
   */
  async checkAffordable(hourly: number[], provider: Provider, ctx: ProviderContext, what: 'create' | 'start'): Promise<void> {
    if (!provider.countsTowardCap || hourly.length === 0) return;
    await this.ledger.sync();
    const need = hourly.reduce((a, b) => a + b, 0);
    const boxes = hourly.length === 1 ? (what === 'start' ? 'starting it' : 'one box') : `${hourly.length} boxes`;
    const r = this.record;
    if (r.limit_usd !== null) {
      const remaining = r.limit_usd - this.ledger.spent();
      if (remaining < need) {
        throw failure(
          `The budget cannot carry ${boxes} for an hour: that needs ${usd(need)}, and ${usd(Math.max(0, remaining))} of the ${usd(r.limit_usd)} budget remains. Nothing was ${what === 'start' ? 'started' : 'rented'}.`,
          {
            cli: 'Raise the budget (`vai-mcp-cli budget --set USD`), destroy boxes you no longer need, or start counting again (`vai-mcp-cli budget --reset`).',
            agent: 'Tell the user the budget is spent; they can raise it with `vai-mcp-cli budget --set USD` (get_budget shows it). Do not retry.',
          },
          'budget',
        );
      }
    }
    if (!provider.credit) return;
    let credit: number | null;
    try {
      credit = await provider.credit(ctx);
    } catch {
      return; // an account that cannot be asked fails the create itself, with its own reason
    }
    if (credit !== null && credit < need) {
      throw failure(
        `Your Vast.ai credit (${usd(credit)}) cannot carry ${boxes} for an hour (${usd(need)}). Nothing was ${what === 'start' ? 'started' : 'rented'}.`,
        { cli: 'Add credit at https://cloud.vast.ai/billing/, or choose a cheaper offer (max_price_per_hour).', agent: 'Tell the user to add credit to their Vast.ai account (https://cloud.vast.ai/billing/). Do not retry.' },
        'vast_credit',
      );
    }
  }

  /** Acts when the spend reaches the budget: the live paid boxes, then at 110% the stopped ones too. */
  async sweep(): Promise<void> {
    const r = this.record;
    if (r.limit_usd === null) return;
    const now = this.boxes.clock.now();
    const spent = this.ledger.spent(now);
    if (spent < r.limit_usd) return;
    const overspent = spent >= r.limit_usd * DESTROY_STOPPED_AT;
    for (const rec of this.boxes.records()) {
      if (!this.isPaid(rec)) continue;
      const box = this.boxes.box(rec.instance_id);
      // A failed box bills nothing any more (it is gone, or the failsafe ends it); 110% forgets it.
      if (box.moneyActing || box.destroying || now < box.moneyRetryAt) continue;
      const live = rec.status !== 'stopped' && rec.status !== 'failed';
      const action: MoneyAction | undefined = overspent || (r.action === 'destroy' && live) ? 'destroy' : live ? 'stop' : undefined;
      if (action) await this.act(rec, box, action, spent, r.limit_usd, now);
    }
  }

  private async act(rec: InstanceRecord, box: Box, action: MoneyAction, spent: number, limit: number, now: number): Promise<void> {
    const id = rec.instance_id;
    const env = this.boxes.envOf(id);
    const why = `the budget is spent (${usd(spent)} of ${usd(limit)})`;
    box.moneyActing = true;
    box.moneyError = undefined; // shown again if this attempt fails too
    try {
      if (action === 'destroy') {
        await this.actions.destroy(id, env, `destroyed: ${why}`);
      } else {
        await this.actions.stop(id, env, `stopped: ${why}; its storage still counts, and at 110% it is destroyed. \`vai-mcp-cli budget --set USD\` raises the budget.`);
      }
      this.boxes.log.warn(`${id}: ${why}: ${action === 'stop' ? 'stopped' : 'destroyed'} it`);
    } catch (err) {
      box.moneyRetryAt = now + RETRY_MS;
      box.moneyError = `${why}, but the ${action} of ${id} failed (${toVaiError(err).message}); it is tried again every minute. Check your provider's console.`;
      this.boxes.log.error(`${id}: ${box.moneyError}`);
      await this.boxes.update(id, { status_message: box.moneyError }).catch(() => undefined);
    } finally {
      box.moneyActing = false;
    }
  }
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function pct(share: number): string {
  return `${Math.floor(share * 100)}%`;
}
