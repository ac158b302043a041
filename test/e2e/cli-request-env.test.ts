/**
 * The supervisor outlives the client that started it, so each request must use the caller's
 * own settings (DESIGN.md "Its environment"). Checked with two fake Vast.ai APIs: each client's
 * `list` reaches its own VAST_URL with its own key, through one and the same supervisor.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSandbox, type Sandbox } from '../helpers/cli.js';
import { FakeVast } from '../helpers/fake-vast.js';

interface InstanceJson {
  instance_id: string;
  provider: string;
  status: string;
  label: string;
  dph_total: number | null;
  orphan?: boolean;
}

describe('per-request environment', () => {
  let sb: Sandbox;
  let vastA: FakeVast;
  let vastB: FakeVast;
  const keyA = 'key-aaaa-1111-secret';
  const keyB = 'key-bbbb-2222-secret';

  beforeAll(async () => {
    sb = makeSandbox();
    vastA = await new FakeVast([keyA]).start();
    vastB = await new FakeVast([keyB]).start();
    vastB.addInstance({ id: 904123, label: 'vai-mcp:req42:1', dph_total: 0.37 });
    vastB.addInstance({ id: 904124, label: 'my own box' });
    // More than one page of the v1 list (25 per page), with one more orphan on the second page.
    for (let i = 0; i < 30; i++) vastB.addInstance({ id: 905000 + i, label: `other-${i}` });
    vastB.addInstance({ id: 906000, label: 'vai-mcp:req43:1' });
  });
  afterAll(async () => {
    await sb.cleanup();
    await vastA.close();
    await vastB.close();
  });

  it('each client reaches its own VAST_URL with its own key, through one supervisor', async () => {
    const a = await sb.cli(['list', '--json'], { env: { VAST_URL: vastA.url, VAST_API_KEY: keyA } });
    expect(a.code, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout)).toEqual([]);
    expect(vastA.requests.length).toBeGreaterThan(0);
    expect(vastA.requests.every((r) => r.authorization === `Bearer ${keyA}`)).toBe(true);
    const [pid] = sb.supervisorPids();

    const seenByA = vastA.requests.length;
    const b = await sb.cli(['list', '--json'], { env: { VAST_URL: vastB.url, VAST_API_KEY: keyB } });
    expect(b.code, b.stderr).toBe(0);
    expect(sb.supervisorPids()).toEqual([pid]); // the same supervisor served both
    const listed = JSON.parse(b.stdout) as InstanceJson[];
    expect(listed.map((i) => [i.instance_id, i.orphan, i.provider, i.label])).toEqual([
      ['904123', true, 'vast', 'vai-mcp:req42:1'],
      ['906000', true, 'vast', 'vai-mcp:req43:1'],
    ]);
    expect(listed[0]!.dph_total).toBe(0.37);
    expect(vastA.requests.length).toBe(seenByA); // B's request never went to A
    expect(vastB.requests.every((r) => r.authorization === `Bearer ${keyB}` && r.path === '/api/v1/instances/')).toBe(true);
    expect(vastB.requests.length).toBe(2); // two pages

    const table = await sb.cli(['list'], { env: { VAST_URL: vastB.url, VAST_API_KEY: keyB } });
    expect(table.stdout).toMatch(/904123\s+vast\s+running \(orphan\)/);
  });

  it('a refused key is a warning on stderr, never echoed; a 429 without Retry-After is retried', async () => {
    const bad = await sb.cli(['list', '--json'], { env: { VAST_URL: vastB.url, VAST_API_KEY: 'wrong-key-9999-secret' } });
    expect(bad.code).toBe(0);
    expect(JSON.parse(bad.stdout)).toEqual([]);
    expect(bad.stderr).toMatch(/API key was refused/);
    expect(bad.stderr + bad.stdout).not.toContain('wrong-key-9999-secret');

    vastB.rateLimitNext(2);
    const before = vastB.requests.length;
    const r = await sb.cli(['list', '--json'], { env: { VAST_URL: vastB.url, VAST_API_KEY: keyB } });
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as InstanceJson[]).map((i) => i.instance_id)).toEqual(['904123', '906000']);
    expect(vastB.requests.length - before).toBe(4); // 2 throttled + 2 pages

    const log = readFileSync(path.join(sb.home, 'supervisor.log'), 'utf8');
    for (const secret of [keyA, keyB, 'wrong-key-9999-secret']) expect(log).not.toContain(secret);
  });

  it('the official CLI\'s key file is used when VAST_API_KEY is not set', async () => {
    const { mkdirSync, writeFileSync } = await import('node:fs');
    const configDir = path.join(sb.env.HOME!, '.config', 'vastai');
    mkdirSync(configDir, { recursive: true });
    writeFileSync(path.join(configDir, 'vast_api_key'), keyB + '\n');
    const r = await sb.cli(['list', '--json'], { env: { VAST_URL: vastB.url } });
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as InstanceJson[]).map((i) => i.instance_id)).toEqual(['904123', '906000']);
  });
});
