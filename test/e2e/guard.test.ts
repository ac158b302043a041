/**
 * The guard on every tunnel, through the built CLI and a real tunnel to a `local` box, whose app
 * allows every origin (as `vastai/comfy` does): raw requests a foreign page, a DNS-rebinding page
 * or a smuggling client would send are refused by the tunnel, and the box's own record of what
 * it received shows that none of them reached it, while the clean requests around them are
 * answered. A second box with `guard: "off"` takes the same requests, so the record is shown to
 * catch what gets through.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSandbox, waitUntil, type Sandbox } from '../helpers/cli.js';
import { httpGet } from '../helpers/net.js';
import { exchange, RawConnection } from '../helpers/raw-http.js';

interface TunnelJson {
  instance_id: string;
  local_port: number;
  guard: string;
  requests_refused: number;
}
interface InstanceJson {
  instance_id: string;
  tunnel: TunnelJson | null;
}
interface BoxRecord {
  requests: { method: string; url: string; origin: string | null; upgrade: string | null }[];
  refused: { error: string }[];
}

/** What the box received, asked through the tunnel by a client that sends no Origin. */
async function boxRecord(port: number): Promise<BoxRecord> {
  const r = await httpGet(port, '/vai-sim/requests');
  expect(r.status).toBe(200);
  return JSON.parse(r.body) as BoxRecord;
}

/** Every request the box received whose URL carries `marker`. */
async function reached(port: number, marker: string): Promise<string[]> {
  const rec = await boxRecord(port);
  return rec.requests.filter((r) => r.url.includes(marker)).map((r) => `${r.method} ${r.url}`);
}

describe('the guard on a tunnel to a box that allows every origin', () => {
  let sb: Sandbox;
  let port: number;
  let openPort: number;
  let host: string;
  let n = 0;
  /** A marker unique to one request, so the box's record shows exactly whether it arrived. */
  const mark = (what: string) => `m=${what}-${++n}`;

  beforeAll(async () => {
    sb = makeSandbox();
    const [guarded] = await sb.json<InstanceJson[]>(['create', sb.writeFile('local.json', { provider: 'local' }), '--json']);
    const [open] = await sb.json<InstanceJson[]>(['create', sb.writeFile('open.json', { provider: 'local', instance_config: { guard: 'off' } }), '--json']);
    port = guarded!.tunnel!.local_port;
    openPort = open!.tunnel!.local_port;
    host = `localhost:${port}`;
  });
  afterAll(async () => {
    await sb?.cleanup();
  });

  const post = (path: string, extra: string, hostHeader = host) =>
    `POST ${path} HTTP/1.1\r\nHost: ${hostHeader}\r\n${extra}Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`;
  const get = (path: string, extra = '', hostHeader = host) => `GET ${path} HTTP/1.1\r\nHost: ${hostHeader}\r\n${extra}\r\n`;

  it('the box itself allows every origin: without the guard a foreign page\'s POST /prompt reaches it', async () => {
    const m = mark('unguarded');
    const c = new RawConnection(openPort);
    await c.send(post(`/prompt?${m}`, 'Origin: http://evil.example\r\n', `localhost:${openPort}`));
    const r = await c.next();
    c.destroy();
    expect(r!.status).toBe(400); // ComfyUI's own answer to an empty prompt: it was processed
    expect(r!.headers['access-control-allow-origin']).toBe('*');
    expect(await reached(openPort, m)).toEqual([`POST /prompt?${m}`]);
    const preflight = await exchange(openPort, `OPTIONS /prompt HTTP/1.1\r\nHost: localhost:${openPort}\r\nOrigin: http://evil.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n`);
    expect(preflight.answers[0]!.status).toBe(200);
    expect(preflight.answers[0]!.headers['access-control-allow-origin']).toBe('*');
  });

  it('refuses a foreign Origin on POST /prompt with 403, a one-line reason, and a closed connection', async () => {
    const m = mark('origin');
    const { answers } = await exchange(port, post(`/prompt?${m}`, 'Origin: http://evil.example\r\n'));
    expect(answers).toHaveLength(1);
    expect(answers[0]!.status).toBe(403);
    expect(answers[0]!.headers['content-type']).toMatch(/^text\/plain/);
    expect(answers[0]!.headers['access-control-allow-origin']).toBeUndefined();
    expect(answers[0]!.body.trim().split('\n')).toHaveLength(1);
    expect(answers[0]!.body).toContain('http://evil.example');
    expect(answers[0]!.body).toContain('VAI_ALLOWED_ORIGINS');
    expect(await reached(port, m)).toEqual([]);
  });

  it('refuses another localhost port\'s page (another box), and its preflight', async () => {
    const m = mark('port');
    const { answers } = await exchange(port, post(`/prompt?${m}`, `Origin: http://localhost:${openPort}\r\n`));
    expect(answers.map((a) => a.status)).toEqual([403]);
    const pre = await exchange(port, `OPTIONS /prompt?${m} HTTP/1.1\r\nHost: ${host}\r\nOrigin: http://localhost:${openPort}\r\nAccess-Control-Request-Method: POST\r\n\r\n`);
    expect(pre.answers.map((a) => a.status)).toEqual([403]);
    expect(await reached(port, m)).toEqual([]);
  });

  it('refuses a websocket upgrade to /ws from a foreign origin; the box sees no upgrade', async () => {
    const m = mark('ws');
    const { answers } = await exchange(port, get(`/ws?${m}`, 'Origin: http://evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'));
    expect(answers.map((a) => a.status)).toEqual([403]);
    expect(await reached(port, m)).toEqual([]);
  });

  it('lets its own page\'s websocket through, and stops reading once it is upgraded', async () => {
    const m = mark('own-ws');
    const c = new RawConnection(port);
    await c.send(get(`/ws?${m}`, `Origin: http://${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n`));
    expect((await c.next())!.status).toBe(101);
    c.destroy();
    expect(await reached(port, m)).toEqual([`GET /ws?${m}`]);
  });

  it('answers the clean first request of a keep-alive connection and refuses the foreign second one', async () => {
    const m1 = mark('clean');
    const m2 = mark('second');
    const c = new RawConnection(port);
    await c.send(get(`/api/system_stats?${m1}`));
    expect((await c.next())!.status).toBe(200);
    await c.send(post(`/prompt?${m2}`, 'Origin: http://evil.example\r\n'));
    expect((await c.next())!.status).toBe(403);
    await c.closed();
    expect(await reached(port, m1)).toEqual([`GET /api/system_stats?${m1}`]);
    expect(await reached(port, m2)).toEqual([]);
  });

  it('with both sent at once (pipelined), the clean answer comes whole, then the refusal', async () => {
    const m1 = mark('pipe-clean');
    const m2 = mark('pipe-foreign');
    const { answers } = await exchange(port, get(`/api/system_stats?${m1}`) + post(`/prompt?${m2}`, 'Origin: http://evil.example\r\n') + get(`/?${mark('after')}`));
    expect(answers.map((a) => a.status)).toEqual([200, 403]);
    expect(JSON.parse(answers[0]!.body).system).toBeDefined();
    expect(await reached(port, m1)).toHaveLength(1);
    expect(await reached(port, m2)).toEqual([]);
  });

  it('refuses a foreign Host (DNS rebinding) and a cross-site or same-site request without Origin', async () => {
    const m = mark('host');
    const rebind = await exchange(port, get(`/history?${m}`, '', `rebind.example:${port}`));
    expect(rebind.answers.map((a) => a.status)).toEqual([403]);
    expect(rebind.answers[0]!.body).toContain(`rebind.example:${port}`);
    expect(rebind.answers[0]!.body).toContain('VAI_ALLOWED_HOSTS');
    for (const site of ['cross-site', 'same-site']) {
      const r = await exchange(port, get(`/view?filename=x.png&${m}`, `Sec-Fetch-Site: ${site}\r\nSec-Fetch-Mode: no-cors\r\n`));
      expect(r.answers.map((a) => a.status)).toEqual([403]);
    }
    expect(await reached(port, m)).toEqual([]);
  });

  it('passes a chunked body whole, then refuses the foreign request behind it', async () => {
    const m1 = mark('chunked');
    const m2 = mark('behind');
    const chunked = `POST /api/queue?${m1} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n1;ext=1\r\n}\r\n0\r\n\r\n`;
    const { answers } = await exchange(port, chunked + post(`/prompt?${m2}`, 'Origin: http://evil.example\r\n'));
    expect(answers.map((a) => a.status)).toEqual([200, 403]);
    expect(await reached(port, m1)).toEqual([`POST /api/queue?${m1}`]);
    expect(await reached(port, m2)).toEqual([]);
  });

  it('answers a head over 64 KiB with 431 and closes', async () => {
    const m = mark('big');
    const { answers } = await exchange(port, `GET /?${m} HTTP/1.1\r\nHost: ${host}\r\nX-Big: ${'a'.repeat(70 * 1024)}\r\n\r\n`);
    expect(answers.map((a) => a.status)).toEqual([431]);
    expect(await reached(port, m)).toEqual([]);
  });

  describe('smuggling shapes: 400, and the foreign request hidden behind never reaches the box', () => {
    const shapes: [string, (hidden: string) => string][] = [
      ['Content-Length with Transfer-Encoding', (h) => `POST /api/queue HTTP/1.1\r\nHost: HOST\r\nContent-Length: ${5 + h.length}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${h}`],
      ['two different Content-Lengths', (h) => `POST /api/queue HTTP/1.1\r\nHost: HOST\r\nContent-Length: 0\r\nContent-Length: ${h.length}\r\n\r\n${h}`],
      ['Transfer-Encoding that is not a final chunked', (h) => `POST /api/queue HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${h}`],
      ['obsolete line folding', (h) => `POST /api/queue HTTP/1.1\r\nHost: HOST\r\nX-Pad: a\r\n Transfer-Encoding: chunked\r\nContent-Length: ${h.length}\r\n\r\n${h}`],
      ['a bare LF line end', (h) => `POST /api/queue HTTP/1.1\r\nHost: HOST\nContent-Length: ${h.length}\r\n\r\n${h}`],
    ];
    for (const [name, shape] of shapes) {
      it(name, async () => {
        const m0 = mark('before');
        const m = mark('smuggled');
        const hidden = post(`/prompt?${m}`, 'Origin: http://evil.example\r\n');
        const { answers } = await exchange(port, get(`/api/system_stats?${m0}`) + shape(hidden).replaceAll('HOST', host));
        expect(answers.map((a) => a.status)).toEqual([200, 400]);
        expect(await reached(port, m0)).toHaveLength(1);
        expect(await reached(port, m)).toEqual([]);
        // Nothing malformed reached the box's own parser either.
        expect((await boxRecord(port)).refused).toEqual([]);
      });
    }
  });

  it('counts the refusals in tunnel --list, shows the guard, and logs each refused origin once a minute', async () => {
    const before = (await sb.json<TunnelJson[]>(['tunnel', '--list', '--json'])).find((t) => t.local_port === port)!;
    for (let i = 0; i < 3; i++) await exchange(port, post('/prompt', 'Origin: http://twice.example\r\n'));
    const tunnels = await sb.json<TunnelJson[]>(['tunnel', '--list', '--json']);
    const guarded = tunnels.find((t) => t.local_port === port)!;
    expect(guarded.guard).toBe('http');
    expect(guarded.requests_refused).toBe(before.requests_refused + 3);
    expect(tunnels.find((t) => t.local_port === openPort)!.guard).toBe('off');
    const table = await sb.cli(['tunnel', '--list']);
    expect(table.stdout).toMatch(/GUARD/);
    expect(table.stdout).toMatch(new RegExp(`${port}.*http, ${guarded.requests_refused} refused`));
    await waitUntil('the log line', () => readFileSync(path.join(sb.home, 'supervisor.log'), 'utf8').includes('origin http://twice.example'), 5000);
    const lines = readFileSync(path.join(sb.home, 'supervisor.log'), 'utf8').split('\n').filter((l) => l.includes('origin http://twice.example'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/guard refused a request to localhost:\d+ \(403\)/);
  });
});

describe('allowing origins and hosts', () => {
  let sb: Sandbox;
  beforeAll(() => {
    sb = makeSandbox({ VAI_ALLOWED_ORIGINS: 'http://localhost:3000', VAI_ALLOWED_HOSTS: 'comfy.alias:9000' });
  });
  afterAll(async () => {
    await sb?.cleanup();
  });

  it('VAI_ALLOWED_ORIGINS / VAI_ALLOWED_HOSTS at the supervisor\'s start, and instance_config lists per box', async () => {
    const [a] = await sb.json<InstanceJson[]>(['create', sb.writeFile('a.json', { provider: 'local' }), '--json']);
    const [b] = await sb.json<InstanceJson[]>(['create', sb.writeFile('b.json', { provider: 'local', instance_config: { allowed_origins: ['http://127.0.0.1:5173'], allowed_hosts: ['box-b.example'] } }), '--json']);
    const pa = a!.tunnel!.local_port;
    const pb = b!.tunnel!.local_port;
    const status = async (p: number, extra: string, hostHeader = `localhost:${p}`) => {
      const c = new RawConnection(p);
      await c.send(`GET /api/system_stats HTTP/1.1\r\nHost: ${hostHeader}\r\n${extra}\r\n`);
      const r = await c.next();
      c.destroy();
      return r!.status;
    };
    // The supervisor's lists hold for every box; a box's own only for it.
    expect(await status(pa, 'Origin: http://localhost:3000\r\nSec-Fetch-Site: same-site\r\n')).toBe(200);
    expect(await status(pb, 'Origin: http://localhost:3000\r\n')).toBe(200);
    expect(await status(pb, 'Origin: http://127.0.0.1:5173\r\nSec-Fetch-Site: cross-site\r\n')).toBe(200);
    expect(await status(pa, 'Origin: http://127.0.0.1:5173\r\n')).toBe(403);
    expect(await status(pa, '', 'comfy.alias:9000')).toBe(200);
    expect(await status(pa, 'Origin: http://comfy.alias:9000\r\n', 'comfy.alias:9000')).toBe(200);
    expect(await status(pb, '', 'box-b.example')).toBe(200);
    expect(await status(pa, '', 'box-b.example')).toBe(403);
  });

  it('a client whose lists differ from the running supervisor\'s is warned, and its value is not used', async () => {
    const r = await sb.cli(['tunnel', '--list'], { env: { VAI_ALLOWED_ORIGINS: 'http://localhost:4000' } });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('The supervisor runs with VAI_ALLOWED_ORIGINS=http://localhost:3000; your http://localhost:4000 applies after `vai-mcp-cli daemon stop`');
    const same = await sb.cli(['tunnel', '--list']);
    expect(same.stderr).not.toContain('VAI_ALLOWED');
  });

  it('refuses an allowed origin that is not an origin, naming it (exit 2)', async () => {
    const env = await sb.cli(['tunnel', '--list'], { env: { VAI_ALLOWED_ORIGINS: 'localhost:3000' } });
    expect(env.code).toBe(2);
    expect(env.stderr).toContain('VAI_ALLOWED_ORIGINS: "localhost:3000" is not an origin like http://localhost:3000');
    const cfg = await sb.cli(['create', sb.writeFile('bad.json', { provider: 'local', instance_config: { allowed_origins: ['http://x.example/app'] } })]);
    expect(cfg.code).toBe(2);
    expect(cfg.stderr).toContain('instance_config.allowed_origins: "http://x.example/app" is not an origin');
  });
});
