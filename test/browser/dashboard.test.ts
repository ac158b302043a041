/**
 * The dashboard in a real browser (headless Chromium): three `local` boxes, each with a second
 * app; the page shows each box and its URLs, its links reach the boxes, a job's progress goes up
 * and its thumbnail appears, a tunnel is closed and reopened and a box destroyed from its buttons,
 * all without a reload. Without the token the page and its API answer 401; another origin, or
 * another Host, is refused; no box ever sees the dashboard's cookie.
 */
import http from 'node:http';
import path from 'node:path';
import { statSync } from 'node:fs';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, type BrowserHandle } from '../helpers/browser.js';
import { makeSandbox, ROOT, waitUntil, type Sandbox } from '../helpers/cli.js';
import { httpGet } from '../helpers/net.js';

interface TunnelJson {
  instance_id: string;
  local_port: number;
  url: string;
  apps: Record<string, { local_port: number; url: string; state: string }>;
}
interface InstanceJson {
  instance_id: string;
  status: string;
  tunnel: TunnelJson | null;
}

const EXAMPLES = path.join(ROOT, 'examples');

/** A request with exactly these headers (Host and Origin as a browser or an attacker would send them). */
function request(port: number, p: string, o: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, method: o.method ?? 'GET', headers: { host: `127.0.0.1:${port}`, ...o.headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('no answer in 10 s')));
    req.on('error', reject);
    req.end(o.body);
  });
}

describe('the dashboard in a real browser', () => {
  let sb: Sandbox;
  let browser: BrowserHandle;
  let page: Page;
  let ui: { url: string; port: number };
  let boxes: InstanceJson[];
  let blocker: http.Server;

  beforeAll(async () => {
    sb = makeSandbox();
    const config = sb.writeFile('apps.json', { provider: 'local', instance_config: { ports: { comfyui: 18188, portal: 11111 } } });
    boxes = await sb.json<InstanceJson[]>(['create', config, '--count', '3', '--json']);
    // VAI_UI_PORT is taken by another program: the dashboard takes the next free port below.
    blocker = http.createServer();
    await new Promise<void>((r) => blocker.listen(sb.basePort - 1, '127.0.0.1', () => r()));
    ui = await sb.json<{ url: string; port: number }>(['ui', '--no-open', '--json']);
    browser = await launchBrowser();
    page = await browser.page();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await sb?.cleanup();
    blocker?.close();
  });

  /** A marker the page keeps until it is reloaded: each step checks it is still there. */
  async function notReloaded(): Promise<void> {
    expect(await page.evaluate(() => (globalThis as unknown as { vaiMarker?: number }).vaiMarker)).toBe(1);
  }
  const card = (id: string) => page.locator(`article.box[data-instance="${id}"]`);

  it('answers 401 without the token, and refuses another origin or Host', async () => {
    expect(ui.url).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${ui.port}/\\?token=[0-9a-f]{64}$`));
    expect(ui.port).toBe(sb.basePort - 2);
    // Without a display, `ui` prints the URL and says no browser could be started.
    const plain = await sb.cli(['ui']);
    expect(plain.code).toBe(0);
    expect(plain.stdout.trim()).toBe(ui.url);
    expect(plain.stderr).toContain('No browser could be started here');
    // Asked again, it is the same dashboard; a client with another VAI_UI_PORT is told it applies later.
    expect((await sb.json<{ url: string }>(['ui', '--no-open', '--json'])).url).toBe(ui.url);
    const other = await sb.cli(['list'], { env: { VAI_UI_PORT: String(sb.basePort - 10) } });
    expect(other.stderr).toContain(`The supervisor runs with VAI_UI_PORT=${sb.basePort - 1}`);
    for (const p of ['/', '/api/state', '/api/events', '/app.js', '/?token=wrong']) {
      const r = await request(ui.port, p);
      expect(r.status, p).toBe(401);
      expect(r.body).not.toContain('local-1');
    }
    const action = JSON.stringify({ action: 'destroy', instance_id: boxes[0]!.instance_id, confirm: true });
    const own = `http://127.0.0.1:${ui.port}`;
    expect((await request(ui.port, '/api/action', { method: 'POST', body: action, headers: { origin: own, 'content-type': 'application/json' } })).status).toBe(401);
    // With the token's cookie, still: another page's Origin, another Host (DNS rebinding), no Origin on a POST.
    const token = new URL(ui.url).searchParams.get('token')!;
    const cookie = `vai_mcp_ui=${token}`;
    expect((await request(ui.port, '/api/state', { headers: { cookie } })).status).toBe(200);
    expect((await request(ui.port, '/api/action', { method: 'POST', body: action, headers: { cookie, origin: 'http://localhost:8188', 'content-type': 'application/json' } })).status).toBe(403);
    expect((await request(ui.port, '/api/action', { method: 'POST', body: action, headers: { cookie, 'content-type': 'application/json' } })).status).toBe(403);
    expect((await request(ui.port, '/api/state', { headers: { cookie, host: `evil.example:${ui.port}` } })).status).toBe(403);
    expect((await request(ui.port, '/api/state', { headers: { cookie, 'sec-fetch-site': 'cross-site' } })).status).toBe(403);
    const list = await sb.json<InstanceJson[]>(['list', '--json']);
    expect(list.map((b) => b.instance_id)).toEqual(boxes.map((b) => b.instance_id)); // nothing was destroyed
    // The token file is private.
    expect(statSync(path.join(sb.home, 'ui-token')).mode & 0o777).toBe(0o600);
  });

  it('shows every box with its apps, and each link reaches its own box', async () => {
    await page.goto(ui.url);
    expect(page.url()).toBe(`http://127.0.0.1:${ui.port}/`); // the token leaves the address bar
    const cookies = await browser.context.cookies(`http://127.0.0.1:${ui.port}`);
    expect(cookies.find((c) => c.name === 'vai_mcp_ui')).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    await page.evaluate(() => ((globalThis as unknown as { vaiMarker: number }).vaiMarker = 1));
    await expect.poll(() => page.locator('article.box').count(), { timeout: 10_000 }).toBe(3);
    await expect.poll(() => page.locator('#live').textContent(), { timeout: 10_000 }).toBe('live');
    for (const b of boxes) {
      const c = card(b.instance_id);
      expect(await c.locator('.status').first().textContent()).toBe('ready');
      for (const [name, a] of Object.entries(b.tunnel!.apps)) {
        const li = c.locator(`li[data-app="${name}"]`);
        expect(await li.locator('a.app-link').getAttribute('href')).toBe(a.url);
        expect(await li.locator('.state').textContent()).toBe('up');
      }
    }
    expect(Object.keys(boxes[0]!.tunnel!.apps)).toEqual(['comfyui', 'portal']);
    await browser.screenshot(page, 'dashboard-boxes');

    // Click local-2's ComfyUI link: a new tab on that box's page.
    const second = boxes[1]!;
    const [tab] = await Promise.all([browser.context.waitForEvent('page'), card(second.instance_id).locator('li[data-app="comfyui"] a.app-link').click()]);
    await tab.waitForLoadState('load');
    expect(tab.url()).toBe(`${second.tunnel!.url}/`);
    expect(await tab.textContent('#instance-id')).toBe(second.instance_id);
    await tab.close();
    // Its portal link reaches the portal app of the same box.
    const [portal] = await Promise.all([browser.context.waitForEvent('page'), card(second.instance_id).locator('li[data-app="portal"] a.app-link').click()]);
    await portal.waitForLoadState('load');
    expect(await portal.textContent('p')).toContain(`app "portal" on ${second.instance_id}`);
    await portal.close();

    // A box opened at 127.0.0.1 gets the browser's cookies for 127.0.0.1, but never the dashboard's.
    const direct = await browser.page();
    await direct.goto(`http://127.0.0.1:${second.tunnel!.local_port}/?cookie-check`);
    await direct.close();
    const seen = JSON.parse((await httpGet(second.tunnel!.local_port, '/vai-sim/requests')).body) as { requests: { url: string; cookie: string | null }[] };
    const check = seen.requests.filter((r) => r.url.includes('cookie-check'));
    expect(check.length).toBe(1);
    expect(check[0]!.cookie ?? '').not.toContain('vai_mcp_ui');
    await notReloaded();
  });

  it("shows a job's progress going up and its thumbnail, live", async () => {
    const id = boxes[0]!.instance_id;
    const job = sb.writeFile('slow-job.json', {
      provider: 'local',
      workflow: { file: path.join(EXAMPLES, 'default_workflow_api.json'), parameters: { '6.text': 'a lighthouse', '3.steps': 500, '5.width': 96, '5.height': 64 }, output_dir: path.join(path.dirname(sb.home), 'out') },
    });
    const started = await sb.json<{ job_id: string }>(['exec', id, job, '--no-wait', '--json']);
    const jobCard = page.locator(`article.job[data-job="${started.job_id}"]`);
    await jobCard.waitFor({ timeout: 15_000 });
    const values: number[] = [];
    await waitUntil('the job to succeed on the page', async () => {
      values.push(Number(await jobCard.locator('progress').getAttribute('value')));
      return (await jobCard.locator('.status').textContent()) === 'succeeded';
    }, 60_000, 200);
    const moving = values.filter((v) => v > 0 && v < 100);
    expect(new Set(moving).size, `progress values seen: ${values.join(',')}`).toBeGreaterThanOrEqual(3);
    expect(moving).toEqual([...moving].sort((a, b) => a - b)); // it only goes up
    const thumb = jobCard.locator('img.thumb').first();
    await thumb.waitFor({ timeout: 10_000 });
    await expect.poll(() => thumb.evaluate((img) => (img as unknown as { complete: boolean; naturalWidth: number }).complete && (img as unknown as { naturalWidth: number }).naturalWidth), { timeout: 10_000 }).toBe(96);
    await browser.screenshot(page, 'dashboard-job');
    await notReloaded();
  });

  it('closes and reopens a tunnel from its buttons', async () => {
    const third = boxes[2]!;
    const c = card(third.instance_id);
    await c.locator('button[data-action="close_tunnel"]:not([data-app])').click();
    await expect.poll(() => c.locator('li[data-app]').count(), { timeout: 10_000 }).toBe(0);
    expect(await page.locator('#message').textContent()).toContain(`Closed: ${third.instance_id}`);
    const tunnels = await sb.json<TunnelJson[]>(['tunnel', '--list', '--json']);
    expect(tunnels.map((t) => t.instance_id)).not.toContain(third.instance_id);
    await c.locator('button[data-action="open_tunnel"]').click();
    await expect.poll(() => c.locator('li[data-app] .state').allTextContents(), { timeout: 20_000 }).toEqual(['up', 'up']);
    // It came back on the same ports (they are sticky), and reaches its box again.
    expect(await c.locator('li[data-app="comfyui"] a.app-link').getAttribute('href')).toBe(third.tunnel!.url);
    expect((await httpGet(third.tunnel!.local_port, '/')).body).toContain(third.instance_id);
    await notReloaded();
  });

  it('destroys a box only after the user confirms', async () => {
    const third = boxes[2]!;
    const c = card(third.instance_id);
    page.once('dialog', (d) => void d.dismiss());
    await c.locator('button[data-action="destroy"]').click();
    await new Promise((r) => setTimeout(r, 1500));
    expect(await c.count()).toBe(1);
    expect((await sb.json<InstanceJson[]>(['list', '--json'])).map((b) => b.instance_id)).toContain(third.instance_id);

    let asked = '';
    page.once('dialog', (d) => {
      asked = d.message();
      void d.accept();
    });
    await c.locator('button[data-action="destroy"]').click();
    await expect.poll(() => c.count(), { timeout: 20_000 }).toBe(0);
    expect(asked).toContain(`Destroy ${third.instance_id}?`);
    expect((await sb.json<InstanceJson[]>(['list', '--json'])).map((b) => b.instance_id)).not.toContain(third.instance_id);
    await expect.poll(() => page.locator('article.box').count()).toBe(2);
    await browser.screenshot(page, 'dashboard');
    await notReloaded();
  });
});
