/**
 * The dead man's switch script itself, run by `sh` as a box's onstart would run it, against a
 * loopback stand-in for the box's ComfyUI (`/queue`) and the Vast API: it waits while heartbeats
 * come or ComfyUI has work, then stops the box with the box's own key, with curl and with wget.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../core/config/config.js';
import { onstartFor, watchdogEnv } from '../../core/providers/vast/watchdog.js';
import { signalAll, descendantsOf } from '../helpers/procs.js';

interface Call {
  method: string;
  url: string;
  authorization: string | undefined;
  body: string;
  at: number;
}

const which = (tool: string) => ['/usr/bin', '/bin'].map((d) => path.join(d, tool)).find((p) => existsSync(p));

describe("the dead man's switch script", () => {
  let dir: string;
  let server: http.Server;
  let port: number;
  let busy: boolean;
  let calls: Call[];
  let child: ChildProcess | undefined;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vai-watchdog-'));
    busy = false;
    calls = [];
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        if (req.url === '/queue') {
          res.setHeader('Content-Type', 'application/json');
          return res.end(JSON.stringify({ queue_running: busy ? [[1, 'someone-elses-prompt', {}, {}, []]] : [], queue_pending: [] }));
        }
        calls.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization, body, at: Date.now() });
        res.setHeader('Content-Type', 'application/json');
        res.end('{"success": true}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
  });
  afterEach(async () => {
    if (child?.pid) signalAll([child.pid, ...descendantsOf(child.pid)], 'SIGKILL');
    child = undefined;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  /** Boots a "box": its onstart, with deadman_s 300 scaled to 2 s (a tick of 1 s). */
  function boot(opts: { action?: 'stop' | 'destroy'; path?: string } = {}): string {
    const config = parseConfig({ provider: 'vast', instance_config: { gpu_name: 'RTX 4090', deadman_s: 300, ready_timeout_s: 300, deadman_action: opts.action ?? 'stop', remote_port: port } });
    const env = watchdogEnv(config, `http://127.0.0.1:${port}`, 2 / 300);
    const heartbeat = path.join(dir, 'heartbeat');
    child = spawn('sh', ['-c', onstartFor(config, 'echo entrypoint ran')], {
      env: { PATH: opts.path ?? process.env.PATH, ...env, CONTAINER_ID: '4242', CONTAINER_API_KEY: 'box-own-key', VAI_HEARTBEAT_FILE: heartbeat, VAI_WATCHDOG_LOG: path.join(dir, 'watchdog.log') },
      stdio: 'ignore',
      detached: true,
    });
    return heartbeat;
  }
  const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
  async function firstCall(timeoutMs: number): Promise<Call> {
    const end = Date.now() + timeoutMs;
    while (calls.length === 0) {
      if (Date.now() > end) throw new Error(`no call to the API within ${timeoutMs} ms`);
      await wait(50);
    }
    return calls[0]!;
  }

  it('waits while heartbeats come, then stops the box with its own key (curl)', async () => {
    const heartbeat = boot();
    const beating = setInterval(() => {
      writeFileSync(heartbeat, '');
      utimesSync(heartbeat, new Date(), new Date());
    }, 300);
    await wait(4_500);
    clearInterval(beating);
    expect(calls).toEqual([]);
    const stoppedBeatingAt = Date.now();
    const call = await firstCall(6_000);
    expect(call).toMatchObject({ method: 'PUT', url: '/api/v0/instances/4242/', authorization: 'Bearer box-own-key' });
    expect(JSON.parse(call.body)).toEqual({ state: 'stopped' });
    expect(call.at - stoppedBeatingAt).toBeGreaterThanOrEqual(900); // 2 s, less the whole-second clock
    await wait(2_500);
    expect(calls).toHaveLength(1); // it acts once
  }, 20_000);

  it('does not act while ComfyUI has work, then destroys the box when asked to (wget, no curl)', async () => {
    const wget = which('wget');
    if (!wget) return console.log('skipping the wget variant: no wget here');
    // A PATH without curl: the script must fall back to wget.
    const bin = path.join(dir, 'bin');
    mkdirSync(bin);
    for (const tool of ['sh', 'date', 'sleep', 'rm', 'tr', 'stat', 'wget']) {
      const at = which(tool);
      if (at) symlinkSync(at, path.join(bin, tool));
    }
    busy = true;
    boot({ action: 'destroy', path: bin });
    await wait(5_000); // past 2 s with no heartbeat at all: only the queue holds it
    expect(calls).toEqual([]);
    busy = false;
    const call = await firstCall(6_000);
    expect(call).toMatchObject({ method: 'DELETE', url: '/api/v0/instances/4242/', authorization: 'Bearer box-own-key' });
  }, 20_000);
});
