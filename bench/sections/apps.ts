/**
 * Apps and the dashboard: what one more app on a box costs the supervisor (a forward on the box's
 * link, no SSH connection of its own), against the private memory of one `ssh -N -L` process
 * measured in the same run; and the supervisor's memory with 50 boxes and the dashboard open (a
 * page connected to its live updates).
 *
 * In one fresh supervisor: 1 box, then 49 boxes with ComfyUI alone, then 50 boxes with three apps
 * each. The growth per box of each step gives the cost of the two extra apps.
 */
import http from 'node:http';
import { answers } from '../lib/http.js';
import type { SshTarget } from '../lib/openssh.js';
import { memoryOf, type Memory } from '../lib/proc.js';
import { fmt, type Report } from '../lib/report.js';
import type { Vai } from '../lib/vai.js';

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));
const EXTRA_APPS = 2;

async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

/** A page on the dashboard for `ms`: the page and its script, then its live updates (server-sent events). */
async function watchDashboard(url: string, ms: number): Promise<number> {
  const u = new URL(url);
  const token = u.searchParams.get('token')!;
  const headers = { host: u.host, cookie: `vai_mcp_ui=${token}` };
  for (const p of ['/', '/app.js', '/app.css', '/api/state']) {
    await new Promise<void>((resolve, reject) => http.get({ host: u.hostname, port: Number(u.port), path: p, headers }, (res) => res.resume().on('end', resolve)).on('error', reject));
  }
  return new Promise((resolve, reject) => {
    let events = 0;
    const req = http.get({ host: u.hostname, port: Number(u.port), path: '/api/events', headers }, (res) => {
      res.on('data', (d: Buffer) => (events += (d.toString().match(/^data: /gm) ?? []).length));
      setTimeout(() => {
        req.destroy();
        resolve(events);
      }, ms);
    });
    req.on('error', reject);
  });
}

export async function measureApps(report: Report, vai: Vai, hosts: SshTarget[], sshPrivateKiB: number): Promise<void> {
  if (hosts.length < 100) throw new Error('the apps figure needs 100 SSH hosts');
  const remote = hosts[0]!.remotePort;
  const threeApps = { ports: { comfyui: remote, portal: remote, notes: remote } };
  const ports: number[] = [];
  const add = async (hs: SshTarget[], extra: Record<string, unknown>) =>
    pool(hs, 6, async (h) => {
      const t = await vai.createSshBox(h, extra);
      ports.push(...Object.values(t.apps).map((a) => a.local_port));
    });
  const measure = async (): Promise<Memory> => {
    for (const p of ports) await answers(p, 5000); // one request through each app
    await settle(3000);
    return memoryOf(vai.supervisorPid());
  };

  await add(hosts.slice(0, 1), {});
  const m1 = await measure();
  await add(hosts.slice(1, 50), {});
  const m50 = await measure();
  const ui = await vai.sb.json<{ url: string }>(['ui', '--no-open', '--json']);
  const events = await watchDashboard(ui.url, 5000);
  const m50ui = memoryOf(vai.supervisorPid());
  process.stderr.write(`apps: 50 boxes measured, dashboard open (${events} live updates in 5 s)\n`);
  await add(hosts.slice(50, 100), threeApps);
  const m100 = await measure();
  process.stderr.write('apps: 50 boxes with three apps measured\n');

  const perBoxOne = (m50.rss - m1.rss) / 49;
  const perBoxThree = (m100.rss - m50ui.rss) / 50;
  const perApp = (perBoxThree - perBoxOne) / EXTRA_APPS;
  report.table({
    title: 'Apps per box, and the dashboard (supervisor RSS, MiB)',
    note: `One supervisor: 1 box, 50 boxes (ComfyUI only), the dashboard open with a page on its live updates for 5 s (${events} updates), then 50 more boxes with three apps each. Each app measured 3 s after one request through it.`,
    columns: ['step', 'supervisor RSS'],
    rows: [
      ['1 box', fmt.mib(m1.rss)],
      ['50 boxes, one app each', fmt.mib(m50.rss)],
      ['50 boxes, dashboard open', fmt.mib(m50ui.rss)],
      ['+ 50 boxes with three apps each (200 apps)', fmt.mib(m100.rss)],
    ],
  });
  report.table({
    title: 'Memory per added app',
    columns: ['what', 'KiB'],
    rows: [
      ['supervisor RSS per box with one app', perBoxOne.toFixed(0)],
      ['supervisor RSS per box with three apps', perBoxThree.toFixed(0)],
      ['per app more on a box', perApp.toFixed(0)],
      ['the dashboard open (50 boxes)', (m50ui.rss - m50.rss).toFixed(0)],
      ['private memory of one ssh -N -L (same run)', sshPrivateKiB.toFixed(0)],
    ],
  });
  report.target('one app more on a box vs private memory of one ssh -N -L', `${fmt.x(perApp / sshPrivateKiB)} (${perApp.toFixed(0)} vs ${sshPrivateKiB.toFixed(0)} KiB)`, '<= 0.05x', perApp / sshPrivateKiB <= 0.05);
  report.figures.apps_kib = { one_box: m1.rss, fifty_boxes: m50.rss, fifty_boxes_dashboard: m50ui.rss, hundred_boxes: m100.rss, per_box_one_app: perBoxOne, per_box_three_apps: perBoxThree, per_app: perApp, dashboard_events: events };
}
