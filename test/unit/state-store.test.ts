/** The state store: persistence, private file modes, ids, and an unreadable file moved aside. */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { StateStore } from '../../core/state.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'vai-state-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function freshHome(): string {
  return mkdtempSync(path.join(root, 'h-'));
}

describe('StateStore', () => {
  it('keeps records across reopen, in a 0600 file', async () => {
    const home = freshHome();
    const { store, warning } = await StateStore.open(home);
    expect(warning).toBeUndefined();
    await store.tunnels.set('local-1', { instance_id: 'local-1', local_port: 8188, remote_port: 18188, ssh: { host: '127.0.0.1', port: 2222, user: 'root' }, created_at: '2026-01-01T00:00:00.000Z' });
    await store.hostKeys.set('local-1|127.0.0.1:2222', { instance_id: 'local-1', host_port: '127.0.0.1:2222', sha256: 'ab'.repeat(32), pinned_at: '2026-01-01T00:00:00.000Z' });
    await store.close();
    expect(statSync(path.join(home, 'state.sqlite')).mode & 0o777).toBe(0o600);
    const again = (await StateStore.open(home)).store;
    expect(again.tunnels.get('local-1')?.local_port).toBe(8188);
    expect(again.hostKeys.values().map((p) => p.host_port)).toEqual(['127.0.0.1:2222']);
    await again.tunnels.delete('local-1');
    await again.close();
    const third = (await StateStore.open(home)).store;
    expect(third.tunnels.values()).toEqual([]);
    await third.close();
  });

  it('numbers ids per prefix and never reuses them', async () => {
    const home = freshHome();
    const { store } = await StateStore.open(home);
    expect([await store.nextId('local'), await store.nextId('local'), await store.nextId('ssh')]).toEqual(['local-1', 'local-2', 'ssh-1']);
    await store.close();
    const again = (await StateStore.open(home)).store;
    expect(await again.nextId('local')).toBe('local-3');
    await again.close();
  });

  it('moves an unreadable state file aside, keeps its bytes, says where, and starts afresh', async () => {
    const home = freshHome();
    const file = path.join(home, 'state.sqlite');
    const garbage = 'this is not a SQLite database, but it is somebody\'s state\n'.repeat(200);
    writeFileSync(file, garbage);
    const { store, warning } = await StateStore.open(home);
    const aside = readdirSync(home).filter((f) => f.startsWith('state.sqlite.unreadable-'));
    expect(aside).toHaveLength(1);
    expect(readFileSync(path.join(home, aside[0]!), 'utf8')).toBe(garbage);
    expect(warning).toContain(file);
    expect(warning).toContain(path.join(home, aside[0]!));
    expect(warning).toMatch(/could not be read/);
    // The fresh store works.
    expect(await store.nextId('local')).toBe('local-1');
    await store.close();
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });
});
