/**
 * Version handshake: a client of a newer vai-mcp asks an older running supervisor to hand over.
 * The old one exits, a new one starts and restores every tunnel on its port. The "old" version is
 * a copy of the built package with a lower version number, started through its own CLI.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSandbox, ROOT, run, waitUntil, type Sandbox } from '../helpers/cli.js';
import { httpGet, instanceIdOfPage } from '../helpers/net.js';

describe('version handshake', () => {
  let sb: Sandbox;
  let oldDir: string;

  beforeAll(() => {
    sb = makeSandbox();
    oldDir = mkdtempSync(path.join(os.tmpdir(), 'vai-old-'));
    cpSync(path.join(ROOT, 'dist'), path.join(oldDir, 'dist'), { recursive: true });
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    writeFileSync(path.join(oldDir, 'package.json'), JSON.stringify({ ...pkg, version: '0.0.1' }));
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(oldDir, 'node_modules'));
  });
  afterAll(async () => {
    await sb.cleanup();
    rmSync(oldDir, { recursive: true, force: true });
  });

  it('a newer client makes an older supervisor hand over, and the tunnels come back on their ports', async () => {
    const oldCli = (args: string[]) => run(process.execPath, [path.join(oldDir, 'dist', 'cli', 'index.js'), ...args], { env: sb.env });
    const made = await oldCli(['create', sb.writeFile('local.json', { provider: 'local' }), '--count', '2', '--json']);
    expect(made.code, made.stderr).toBe(0);
    const before = JSON.parse(made.stdout) as { instance_id: string; tunnel: { local_port: number } }[];
    const [oldPid] = sb.supervisorPids();
    expect(readFileSync(`/proc/${oldPid}/cmdline`, 'utf8')).toContain(oldDir);

    const status = await sb.json<{ version: string; pid: number }>(['daemon', 'status', '--json']);
    expect(status.version).toBe('0.0.1'); // `daemon status` only looks; it does not hand over

    let tunnels: { instance_id: string; local_port: number; state: string }[] = [];
    await waitUntil('the new supervisor restored both tunnels', async () => {
      tunnels = await sb.json(['tunnel', '--list', '--json']);
      return tunnels.length === 2 && tunnels.every((t) => t.state === 'up');
    }, 15_000, 100);
    const pids = sb.supervisorPids();
    expect(pids).toHaveLength(1);
    expect(pids[0]).not.toBe(oldPid);
    expect(readFileSync(`/proc/${pids[0]}/cmdline`, 'utf8')).not.toContain(oldDir);
    const now = await sb.json<{ version: string }>(['daemon', 'status', '--json']);
    expect(now.version).not.toBe('0.0.1');
    expect(tunnels.map((t) => [t.instance_id, t.local_port])).toEqual(before.map((b) => [b.instance_id, b.tunnel.local_port]));
    for (const t of tunnels) expect(instanceIdOfPage((await httpGet(t.local_port)).body)).toBe(t.instance_id);
  });
});
