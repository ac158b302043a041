/**
 * The guard in a real browser (headless Chromium): a page from another local origin tries what a
 * malicious page would against a tunnel to a `local` box (whose app, like `vastai/comfy`, allows
 * every origin): a fetch POST /prompt, a no-cors POST, a fetch of /history read back, a form POST
 * and a websocket to /ws. Through a guarded tunnel every one fails and the box's own record shows
 * none of them; through a tunnel whose box allows that origin, and through one with the guard
 * off, the same page succeeds, which shows the record would catch a leak. The ComfyUI page itself,
 * opened through the tunnel, talks to its box (fetch, POST, websocket) as usual.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, type BrowserHandle } from '../helpers/browser.js';
import { makeSandbox, type Sandbox } from '../helpers/cli.js';
import { httpGet } from '../helpers/net.js';

interface InstanceJson {
  instance_id: string;
  tunnel: { local_port: number; requests_refused: number } | null;
}
interface Received {
  method: string;
  url: string;
  origin: string | null;
  upgrade: string | null;
}

/** The page a foreign site would serve: it attacks `?target=` and shows what each attempt got. */
const ATTACK_PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>not ComfyUI</title></head><body>
<h1>Some other local web app</h1><iframe name="sink" id="sink" style="width: 600px; height: 80px"></iframe>
<pre id="results">running</pre>
<script>
(async () => {
  const q = new URLSearchParams(location.search);
  const target = q.get('target');
  const m = q.get('m');
  const results = {};
  const attempt = async (name, fn) => {
    try { results[name] = await fn(); } catch (e) { results[name] = 'blocked: ' + e.message; }
  };
  await attempt('fetch_post', async () => {
    const r = await fetch(target + '/prompt?' + m + '-fetch-post', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: {} }) });
    return 'read ' + r.status;
  });
  await attempt('nocors_post', async () => {
    const r = await fetch(target + '/prompt?' + m + '-nocors-post', { method: 'POST', mode: 'no-cors', body: '{"prompt": {}}' });
    return 'sent, ' + r.type;
  });
  await attempt('history', async () => {
    const r = await fetch(target + '/history?' + m + '-history');
    return 'read ' + r.status + ' ' + (await r.text()).slice(0, 20);
  });
  await attempt('form', () => new Promise((resolve) => {
    const f = document.createElement('form');
    f.method = 'POST'; f.action = target + '/prompt?' + m + '-form'; f.enctype = 'text/plain'; f.target = 'sink';
    const i = document.createElement('input'); i.name = '{"prompt": {}, "x": "'; i.value = '"}'; f.appendChild(i);
    document.body.appendChild(f);
    document.getElementById('sink').onload = () => resolve('submitted');
    setTimeout(() => resolve('submitted, no load event'), 5000);
    f.submit();
  }));
  await attempt('websocket', () => new Promise((resolve, reject) => {
    const ws = new WebSocket(target.replace('http:', 'ws:') + '/ws?' + m + '-ws');
    ws.onopen = () => { resolve('open'); ws.close(); };
    ws.onerror = () => reject(new Error('the websocket failed'));
  }));
  document.getElementById('results').textContent = JSON.stringify(results, null, 1);
  document.body.dataset.done = '1';
})();
</script></body></html>`;

describe('the guard in a real browser', () => {
  let sb: Sandbox;
  let browser: BrowserHandle;
  let pageServer: http.Server;
  let pagePort: number;
  const box: Record<'guarded' | 'allowing' | 'open', { id: string; port: number }> = {} as never;

  beforeAll(async () => {
    pageServer = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(ATTACK_PAGE);
    });
    await new Promise<void>((r) => pageServer.listen(0, '127.0.0.1', () => r()));
    pagePort = (pageServer.address() as AddressInfo).port;
    sb = makeSandbox();
    const make = async (name: keyof typeof box, ic: Record<string, unknown>) => {
      const [inst] = await sb.json<InstanceJson[]>(['create', sb.writeFile(`${name}.json`, { provider: 'local', instance_config: ic }), '--json']);
      box[name] = { id: inst!.instance_id, port: inst!.tunnel!.local_port };
    };
    await make('guarded', {});
    await make('allowing', { allowed_origins: [`http://127.0.0.1:${pagePort}`] });
    await make('open', { guard: 'off' });
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await sb?.cleanup();
    pageServer?.close();
  });

  async function received(port: number): Promise<Received[]> {
    const r = await httpGet(port, '/vai-sim/requests');
    return (JSON.parse(r.body) as { requests: Received[] }).requests;
  }

  /** Opens the attack page from `pageOrigin` against a box; returns what the page saw and what the box received. */
  async function attack(pageOrigin: string, port: number, m: string, shot: string) {
    const page = await browser.page();
    await page.goto(`${pageOrigin}/attack.html?target=${encodeURIComponent(`http://localhost:${port}`)}&m=${m}`);
    await page.waitForSelector('body[data-done="1"]', { timeout: 30_000 });
    const results = JSON.parse((await page.textContent('#results'))!) as Record<string, string>;
    await browser.screenshot(page, shot);
    await page.close();
    const got = (await received(port)).filter((r) => r.url.includes(`${m}-`)).map((r) => r.url.replace(/^.*?\?/, '').replace(`${m}-`, ''));
    return { results, got };
  }

  it('a page from another origin cannot reach a guarded box in any way, and the refusals are counted', async () => {
    for (const [n, pageOrigin] of [`http://127.0.0.1:${pagePort}`, `http://localhost:${pagePort}`].entries()) {
      const before = (await sb.json<{ local_port: number; requests_refused: number }[]>(['tunnel', '--list', '--json'])).find((t) => t.local_port === box.guarded.port)!;
      const { results, got } = await attack(pageOrigin, box.guarded.port, `g${n}`, `guard-foreign-page-${n}`);
      expect(results.fetch_post, pageOrigin).toMatch(/^blocked/);
      expect(results.history, pageOrigin).toMatch(/^blocked/);
      expect(results.websocket, pageOrigin).toMatch(/^blocked/);
      expect(results.nocors_post).toBe('sent, opaque'); // the browser sends it: only the box can say whether it arrived
      expect(results.form).toMatch(/^submitted/);
      expect(got, pageOrigin).toEqual([]);
      const after = (await sb.json<{ local_port: number; requests_refused: number }[]>(['tunnel', '--list', '--json'])).find((t) => t.local_port === box.guarded.port)!;
      // preflight, no-cors POST, GET, form POST, websocket
      expect(after.requests_refused - before.requests_refused).toBeGreaterThanOrEqual(5);
    }
  });

  it('the same page reaches a box that allows its origin, and one with the guard off', async () => {
    const all = ['fetch-post', 'nocors-post', 'history', 'form', 'ws'];
    for (const name of ['allowing', 'open'] as const) {
      const { results, got } = await attack(`http://127.0.0.1:${pagePort}`, box[name].port, `${name}`, `guard-${name}`);
      expect(results.fetch_post, name).toMatch(/^read \d{3}/);
      expect(results.history, name).toMatch(/^read 200 \{/);
      expect(results.websocket, name).toBe('open');
      expect([...new Set(got)].sort(), name).toEqual([...all].sort());
    }
  });

  it('the ComfyUI page opened through the tunnel talks to its box: fetch, POST and websocket', async () => {
    const page = await browser.page();
    await page.goto(`http://localhost:${box.guarded.port}/`);
    await page.waitForFunction("document.getElementById('self-check').textContent !== 'checking'", undefined, { timeout: 20_000 });
    const check = await page.textContent('#self-check');
    await browser.screenshot(page, 'guard-comfyui-page');
    await page.close();
    expect(check).toBe(`ok: ${box.guarded.id}, POST 200, websocket status`);
    const own = `http://localhost:${box.guarded.port}`;
    const got = await received(box.guarded.port);
    expect(got.some((r) => r.method === 'POST' && r.url === '/api/queue' && r.origin === own)).toBe(true);
    expect(got.some((r) => r.upgrade === 'websocket' && r.url.startsWith('/ws?clientId=page-check') && r.origin === own)).toBe(true);
  });
});
