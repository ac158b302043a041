/**
 * Output for people and scripts: aligned tables with a total line, JSON for `--json`, errors on
 * stderr. With `--json`, stdout carries the JSON document and nothing else.
 */
import { type BudgetView, type InstanceView, type JobView, type TunnelView } from '../core/api/api.js';
import { toVaiError } from '../core/lib/errors.js';
import { isJobDone } from '../core/model/job.js';

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function printLine(text = ''): void {
  process.stdout.write(text + '\n');
}

/** A line on stderr: progress, notes and warnings never mix with stdout. */
export function note(text: string): void {
  process.stderr.write(text + '\n');
}

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export function money(dph: number | null | undefined): string {
  return dph === null || dph === undefined ? '-' : `$${dph.toFixed(3)}/h`;
}

export function tunnelsTable(tunnels: TunnelView[]): string {
  const rows: string[][] = [];
  for (const t of tunnels) {
    // One row per app (a supervisor older than apps sends none: ComfyUI's row); the guard and the last error are the box's.
    for (const [name, a] of Object.entries(t.apps ?? { comfyui: t })) {
      const main = name === 'comfyui';
      rows.push([
        t.instance_id,
        name,
        `${t.ssh_host}:${t.ssh_port}`,
        String(a.local_port),
        a.state,
        a.state === 'port_conflict' ? `${a.url} (taken by another program)` : a.url,
        !main ? '' : t.guard === 'off' ? 'off' : `http, ${t.requests_refused} refused`,
        !main || t.state === 'up' || !t.last_error ? '' : t.last_error,
      ]);
    }
  }
  const up = tunnels.filter((t) => t.state === 'up').length;
  const total = `Total: ${tunnels.length} tunnel${tunnels.length === 1 ? '' : 's'} (${rows.length} app${rows.length === 1 ? '' : 's'}), ${up} up`;
  return `${table(['INSTANCE', 'APP', 'SSH HOST:PORT', 'LOCAL PORT', 'STATE', 'URL', 'GUARD', 'LAST ERROR'], rows)}\n${total}`;
}

/** Seconds for people: `45s`, `12m`, `1h05m`. */
export function duration(s: number): string {
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** When an ISO time is due from now: `in 4m (22:31:05)`. */
function due(iso: string | null): string {
  if (!iso) return '-';
  const at = new Date(iso);
  const left = Math.max(0, (at.getTime() - Date.now()) / 1000);
  return `in ${duration(left)} (${at.toTimeString().slice(0, 8)})`;
}

export function instancesTable(instances: InstanceView[]): string {
  const rows = instances.map((i) => [
    i.instance_id,
    i.provider,
    i.orphan ? `${i.status} (orphan)` : i.status,
    i.ssh_host ? `${i.ssh_host}:${i.ssh_port}` : '-',
    i.tunnel ? String(i.tunnel.local_port) : '-',
    i.tunnel ? i.tunnel.state : '-',
    money(i.dph_total),
    i.cost_so_far === null ? '-' : `$${i.cost_so_far.toFixed(2)}`,
    i.idle_s === null ? '-' : duration(i.idle_s),
    due(i.idle_action_at),
    i.label,
  ]);
  const priced = instances.reduce((sum, i) => sum + (i.dph_total ?? 0), 0);
  const spent = instances.reduce((sum, i) => sum + (i.cost_so_far ?? 0), 0);
  const ready = instances.filter((i) => i.status === 'ready').length;
  const total = `Total: ${instances.length} instance${instances.length === 1 ? '' : 's'}, ${ready} ready, ${money(priced)}, about $${spent.toFixed(2)} so far`;
  return `${table(['INSTANCE', 'PROVIDER', 'STATUS', 'SSH HOST:PORT', 'LOCAL PORT', 'TUNNEL', 'PRICE', 'COST SO FAR', 'IDLE', 'IDLE ACTION', 'LABEL'], rows)}\n${total}`;
}

export function budgetText(b: BudgetView): string {
  const d = (x: number | null) => (x === null ? '-' : `$${x.toFixed(2)}`);
  const lines = [
    `Budget:     ${b.limit_usd === null ? 'none (set one with `vai-mcp-cli budget --set USD`)' : `${d(b.limit_usd)}, then ${b.action === 'stop' ? 'stop' : 'destroy'} every paid box`}`,
    `Spent:      ${d(b.spent_usd)}${b.percent_spent === null ? '' : ` (${b.percent_spent}%)`} since ${b.counted_from}`,
    `Remaining:  ${d(b.remaining_usd)}`,
    `Burn rate:  $${b.burn_usd_per_hour.toFixed(3)}/h (${b.paid_boxes.length} paid box${b.paid_boxes.length === 1 ? '' : 'es'})`,
    `Runs out:   ${b.runs_out_at ?? (b.limit_usd === null ? '-' : b.burn_usd_per_hour > 0 ? 'now' : 'never at this rate')}`,
    `Credit:     ${b.credit_usd !== null ? d(b.credit_usd) + ' (Vast.ai)' : b.credit_error ? `unknown (${b.credit_error})` : '-'}`,
  ];
  if (b.paid_boxes.length) {
    lines.push('', table(['INSTANCE', 'BILLING', 'RATE', 'SPENT'], b.paid_boxes.map((p) => [p.instance_id, p.billing, money(p.usd_per_hour), d(p.spent_usd)])));
  }
  return lines.join('\n');
}

export function jobsTable(jobs: JobView[]): string {
  const rows = jobs.map((j) => [j.job_id, j.instance_id, j.status, j.progress ?? '', String(j.outputs.length), j.cost_usd === null ? '-' : `$${j.cost_usd.toFixed(3)}`, j.created_at]);
  const running = jobs.filter((j) => !isJobDone(j.status)).length;
  return `${table(['JOB', 'INSTANCE', 'STATUS', 'PROGRESS', 'OUTPUTS', 'COST', 'CREATED'], rows)}\nTotal: ${jobs.length} job${jobs.length === 1 ? '' : 's'}, ${running} not finished`;
}

/** Prints an error as a person reads it: the message, then what to do. */
export function printError(err: unknown): void {
  const e = toVaiError(err);
  process.stderr.write(`error: ${e.message}\n`);
  if (e.hint) process.stderr.write(`  ${e.hint}\n`);
}

/**
 * A progress line on stderr: rewritten in place on a terminal, one line per step otherwise
 * (logs and CI keep every step).
 */
export class ProgressLine {
  private active = false;
  /** The line shown last: a command that waits in slices hears its latest line once per slice. */
  private last: string | undefined;
  constructor(private readonly tty = process.stderr.isTTY === true) {}

  update(text: string): void {
    if (text === this.last) return;
    this.last = text;
    if (this.tty) {
      const width = Math.max(20, (process.stderr.columns ?? 100) - 1);
      process.stderr.write(`\r\x1b[2K${text.length > width ? text.slice(0, width - 1) + '…' : text}`);
      this.active = true;
    } else {
      process.stderr.write(text + '\n');
    }
  }

  done(): void {
    if (this.tty && this.active) process.stderr.write('\r\x1b[2K');
    this.active = false;
  }
}
