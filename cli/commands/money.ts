/** `budget`: what the paid boxes have spent, the limit and what is left; and the warnings other commands print. */
import type { CAC } from 'cac';
import { badInput } from '../../core/lib/errors.js';
import { supervisor } from '../client.js';
import { budgetText, note, printJson, printLine } from '../format.js';

/** Money warnings (80% of the budget spent, a money action that failed) on stderr, also with --json. */
export async function printMoneyWarnings(): Promise<void> {
  for (const w of await (await supervisor()).moneyWarnings({})) note(`warning: ${w}`);
}

function parseUsd(raw: unknown): number {
  const v = Number(raw);
  if (typeof raw === 'boolean' || !Number.isFinite(v) || v <= 0) throw badInput(`--set needs a positive number of dollars (got ${String(raw)}).`, 'Example: vai-mcp-cli budget --set 20');
  return v;
}

export function registerMoneyCommands(cli: CAC): void {
  cli
    .command('budget', 'Show what the paid boxes have spent, the budget and what remains, the burn rate and when it runs out, and your Vast.ai credit; --set and --reset change it')
    .option('--set <usd>', 'The most the paid boxes may cost, in dollars, counted from the last --reset')
    .option('--action <action>', 'With --set: what happens to every live paid box when it is spent: stop (default; storage still counts, destroyed at 110%) or destroy')
    .option('--clear', 'Remove the limit (spend is still counted)')
    .option('--reset', 'Count spend from now')
    .option('--json', 'Print the budget as JSON')
    .example('vai-mcp-cli budget --set 20')
    .example('vai-mcp-cli budget --json')
    .action(async (opts: { set?: unknown; action?: unknown; clear?: boolean; reset?: boolean; json?: boolean }) => {
      if (opts.action !== undefined && opts.action !== 'stop' && opts.action !== 'destroy') throw badInput(`--action must be stop or destroy (got ${String(opts.action)}).`);
      if (opts.action !== undefined && opts.set === undefined) throw badInput('--action goes with --set.', 'Example: vai-mcp-cli budget --set 20 --action destroy');
      if (opts.clear && opts.set !== undefined) throw badInput('Pass --set or --clear, not both.');
      const client = await supervisor();
      const change = opts.set !== undefined || opts.clear || opts.reset;
      const view = change
        ? await client.setBudget({
            limit_usd: opts.clear ? null : opts.set === undefined ? undefined : parseUsd(opts.set),
            action: opts.action as 'stop' | 'destroy' | undefined,
            reset: !!opts.reset,
          })
        : await client.getBudget({});
      if (opts.json) printJson(view);
      else printLine(budgetText(view));
      for (const w of view.warnings) note(`warning: ${w}`);
    });
}
