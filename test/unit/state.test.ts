/**
 * core/state.ts: the keyv + SQLite store in VAI_HOME (DESIGN.md section 1 "State").
 * Records persist across reopen, the file is 0600, ids are never reused, and a state file that is
 * not a SQLite database is moved aside with its bytes intact (never lost or overwritten), with a
 * warning that names both paths, and a fresh working store takes its place.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../core/config/config.js';
import { type InstanceRecord, StateStore } from '../../core/store/store.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'vai-state-unit-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Stores opened by a test, closed after it whatever happens. */
const open: StateStore[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

function freshHome(): string {
  const h = mkdtempSync(path.join(root, 'home-'));
  chmodSync(h, 0o700);
  return h;
}

async function openStore(home: string) {
  const opened = await StateStore.open(home);
  open.push(opened.store);
  return opened;
}

async function closeStore(store: StateStore): Promise<void> {
  open.splice(open.indexOf(store), 1);
  await store.close();
}

const modeOf = (p: string) => statSync(p).mode & 0o777;
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

function instance(id: string): InstanceRecord {
  return {
    instance_id: id,
    provider: 'local',
    label: `vai-mcp ${id}`,
    status: 'ready',
    status_message: 'ComfyUI answers',
    ssh: { host: '127.0.0.1', port: 42022, user: 'root' },
    remote_port: 18188,
    config: parseConfig({ provider: 'local', instance_config: { simulate: { start_delay_s: 1, fail: 'never' } } }),
    created_at: '2026-01-02T03:04:05.000Z',
    ready_at: '2026-01-02T03:05:05.000Z',
    ready_deadline: '2026-01-02T03:34:05.000Z',
    request_id: 'req-1',
  };
}

describe('StateStore persistence', () => {
  it('keeps every kind of record across close and reopen', async () => {
    const home = freshHome();
    const { store, warning } = await openStore(home);
    expect(warning).toBeUndefined();

    const rec = instance('local-1');
    await store.instances.set('local-1', rec);
    await store.tunnels.set('local-1', {
      instance_id: 'local-1', local_port: 48188, remote_port: 18188,
      ssh: { host: '127.0.0.1', port: 42022, user: 'root' }, key_path: '/k/id', created_at: '2026-01-02T03:05:06.000Z',
    });
    await store.ports.set('local-1', { port: 48188, instance_id: 'local-1' });
    await store.hostKeys.set('local-1|127.0.0.1:42022', { instance_id: 'local-1', host_port: '127.0.0.1:42022', sha256: 'ab'.repeat(32), pinned_at: '2026-01-02T03:05:06.000Z' });
    await store.requests.set('req-1', { request_id: 'req-1', provider: 'local', fingerprint: 'f'.repeat(64), instance_ids: ['local-1'], created_at: '2026-01-02T03:04:05.000Z' });
    await closeStore(store);

    const again = (await openStore(home)).store;
    expect(again.instances.get('local-1')).toEqual(rec);
    expect(again.tunnels.get('local-1')).toMatchObject({ local_port: 48188, key_path: '/k/id', ssh: { port: 42022 } });
    expect(again.ports.get('local-1')).toEqual({ port: 48188, instance_id: 'local-1' });
    expect(again.hostKeys.values()).toEqual([{ instance_id: 'local-1', host_port: '127.0.0.1:42022', sha256: 'ab'.repeat(32), pinned_at: '2026-01-02T03:05:06.000Z' }]);
    expect(again.requests.get('req-1')?.instance_ids).toEqual(['local-1']);
  });

  it('keeps the collections apart: the same key in two collections is two records', async () => {
    const home = freshHome();
    const { store } = await openStore(home);
    await store.ports.set('x', { port: 50001, instance_id: 'x' });
    await closeStore(store);
    const again = (await openStore(home)).store;
    expect(again.ports.get('x')?.port).toBe(50001);
    expect(again.instances.get('x')).toBeUndefined();
    expect(again.tunnels.values()).toEqual([]);
  });

  it('persists updates and deletions', async () => {
    const home = freshHome();
    const { store } = await openStore(home);
    await store.instances.set('local-1', instance('local-1'));
    await store.instances.set('local-2', instance('local-2'));
    await store.instances.set('local-1', { ...instance('local-1'), status: 'stopped' });
    await store.instances.delete('local-2');
    await closeStore(store);

    const again = (await openStore(home)).store;
    expect(again.instances.get('local-1')?.status).toBe('stopped');
    expect(again.instances.has('local-2')).toBe(false);
    expect(again.instances.entries().map(([k]) => k)).toEqual(['local-1']);
  });
});

describe('StateStore file', () => {
  it('is a real SQLite file, mode 0600', async () => {
    const home = freshHome();
    const { store } = await openStore(home);
    await store.instances.set('local-1', instance('local-1'));
    const file = path.join(home, 'state.sqlite');
    expect(modeOf(file)).toBe(0o600);
    await closeStore(store);
    expect(modeOf(file)).toBe(0o600);
    expect(readFileSync(file).subarray(0, 16).equals(SQLITE_MAGIC)).toBe(true);
  });

  it('makes an existing state file 0600 again when it was opened up', async () => {
    const home = freshHome();
    const file = path.join(home, 'state.sqlite');
    await closeStore((await openStore(home)).store);
    chmodSync(file, 0o644);
    await openStore(home);
    expect(modeOf(file)).toBe(0o600);
  });
});

describe('StateStore ids', () => {
  it('gives local-1, local-2, ... per prefix', async () => {
    const { store } = await openStore(freshHome());
    expect(await store.nextId('local')).toBe('local-1');
    expect(await store.nextId('local')).toBe('local-2');
    expect(await store.nextId('ssh')).toBe('ssh-1');
    expect(await store.nextId('local')).toBe('local-3');
  });

  it('never reuses an id after reopen, even when the instances are gone', async () => {
    const home = freshHome();
    const { store } = await openStore(home);
    for (let i = 0; i < 3; i++) {
      const id = await store.nextId('local');
      await store.instances.set(id, instance(id));
    }
    for (const id of ['local-1', 'local-2', 'local-3']) await store.instances.delete(id);
    await closeStore(store);

    const again = (await openStore(home)).store;
    expect(again.instances.values()).toEqual([]);
    expect(await again.nextId('local')).toBe('local-4');
    await closeStore(again);
    const third = (await openStore(home)).store;
    expect(await third.nextId('local')).toBe('local-5');
    expect(await third.nextId('ssh')).toBe('ssh-1');
  });

  it('gives concurrent callers distinct ids, and never reuses one after reopen', async () => {
    // Several rounds: a write order race does not show every time, so one round proves little.
    const home = freshHome();
    let store = (await openStore(home)).store;
    let issued = 0;
    for (let round = 0; round < 40; round++) {
      const ids = await Promise.all(Array.from({ length: 20 }, () => store.nextId('local')));
      expect(new Set(ids)).toEqual(new Set(Array.from({ length: 20 }, (_, i) => `local-${issued + i + 1}`)));
      issued += 20;
      await closeStore(store);
      store = (await openStore(home)).store;
      // What the file remembers must be the highest id handed out, else the next one repeats an id.
      expect(store.counters.get('local'), `after round ${round + 1}`).toBe(issued);
    }
    expect(await store.nextId('local')).toBe(`local-${issued + 1}`);
  });
});

describe('StateStore concurrent writes', () => {
  it('persists the last of several concurrent writes to one key, as memory shows it', async () => {
    const home = freshHome();
    let store = (await openStore(home)).store;
    for (let round = 0; round < 40; round++) {
      await Promise.all(Array.from({ length: 20 }, (_, i) =>
        store.instances.set('local-1', { ...instance('local-1'), status_message: `round ${round} write ${i}` })));
      expect(store.instances.get('local-1')?.status_message).toBe(`round ${round} write 19`);
      await closeStore(store);
      store = (await openStore(home)).store;
      expect(store.instances.get('local-1')?.status_message, `after round ${round + 1}`).toBe(`round ${round} write 19`);
    }
  });
});

describe('StateStore with an unreadable state file', () => {
  const cases: [string, Buffer][] = [
    ['text that is not SQLite', Buffer.from('this is somebody\'s state, but not a SQLite database\n'.repeat(200))],
    ['random bytes', randomBytes(8192)],
    ['a few bytes', Buffer.from('hello\n')],
  ];

  for (const [what, garbage] of cases) {
    it(`moves ${what} aside with its bytes intact, warns naming both paths, and starts a fresh store`, async () => {
      const home = freshHome();
      const file = path.join(home, 'state.sqlite');
      writeFileSync(file, garbage);

      const { store, warning } = await openStore(home);

      const aside = readdirSync(home).filter((f) => f.startsWith('state.sqlite.unreadable-'));
      expect(aside).toHaveLength(1);
      const asidePath = path.join(home, aside[0]!);
      expect(readFileSync(asidePath).equals(garbage)).toBe(true);

      expect(warning).toBeDefined();
      expect(warning).toContain(file);
      expect(warning).toContain(asidePath);

      // A fresh, private, working store in its place.
      expect(modeOf(file)).toBe(0o600);
      expect(store.instances.values()).toEqual([]);
      expect(await store.nextId('local')).toBe('local-1');
      await store.instances.set('local-1', instance('local-1'));
      await closeStore(store);
      expect(readFileSync(file).subarray(0, 16).equals(SQLITE_MAGIC)).toBe(true);

      // Reopening the fresh one is quiet and finds what was written; the moved file stays.
      const again = await openStore(home);
      expect(again.warning).toBeUndefined();
      expect(again.store.instances.get('local-1')?.instance_id).toBe('local-1');
      expect(await again.store.nextId('local')).toBe('local-2');
      expect(readdirSync(home).filter((f) => f.startsWith('state.sqlite.unreadable-'))).toEqual(aside);
      expect(readFileSync(asidePath).equals(garbage)).toBe(true);
    });
  }
});
