/**
 * core/ssh-auth.ts: which key is used and whether it loads (DESIGN.md section 2 "ssh_key_path",
 * invariant 6 and 10). Keys are real, made with ssh-keygen in a temp dir; the default key names are
 * looked up under a temp HOME passed as `homeDir`, so the real ~/.ssh is never read.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VaiError } from '../../core/lib/errors.js';
import { badInputOf } from '../helpers/errors.js';
import { DEFAULT_KEY_NAMES, fingerprint, loadPrivateKey, resolveAuth } from '../../core/tunnels/ssh-auth.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'vai-sshauth-unit-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const PASSPHRASE = 'correct horse battery staple';

/** Makes a key pair with ssh-keygen; returns the private key's path (the public one is `.pub`). */
function keygen(file: string, opts: { type?: 'ed25519' | 'rsa' | 'ecdsa'; passphrase?: string } = {}): string {
  mkdirSync(path.dirname(file), { recursive: true });
  const type = opts.type ?? 'ed25519';
  const args = ['-q', '-t', type, '-N', opts.passphrase ?? '', '-C', `test ${type}`, '-f', file];
  if (type === 'rsa') args.splice(3, 0, '-b', '2048');
  execFileSync('ssh-keygen', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  return file;
}

/** The key blob of an OpenSSH .pub line ("type base64 comment"). */
function pubBlob(privatePath: string): Buffer {
  return Buffer.from(readFileSync(`${privatePath}.pub`, 'utf8').trim().split(/\s+/)[1]!, 'base64');
}


/** A key error: bad input whose hint says what to do. */
function keyErrorOf(fn: () => unknown): VaiError {
  const e = badInputOf(fn);
  expect(e.hint, 'a hint that says what to do').toBeTruthy();
  return e;
}

let plain: string;
let encrypted: string;
beforeAll(() => {
  plain = keygen(path.join(root, 'keys', 'plain'));
  encrypted = keygen(path.join(root, 'keys', 'encrypted'), { passphrase: PASSPHRASE });
});

describe('loadPrivateKey: keys that load', () => {
  it('loads an unencrypted ed25519 key, whose public half is the .pub file', () => {
    const key = loadPrivateKey(plain);
    expect(key.isPrivateKey()).toBe(true);
    expect(key.type).toBe('ssh-ed25519');
    expect(key.getPublicSSH().equals(pubBlob(plain))).toBe(true);
  });

  it('loads rsa and ecdsa keys', () => {
    const rsa = keygen(path.join(root, 'keys', 'rsa'), { type: 'rsa' });
    const ecdsa = keygen(path.join(root, 'keys', 'ecdsa'), { type: 'ecdsa' });
    expect(loadPrivateKey(rsa).type).toBe('ssh-rsa');
    expect(loadPrivateKey(rsa).getPublicSSH().equals(pubBlob(rsa))).toBe(true);
    expect(loadPrivateKey(ecdsa).type).toMatch(/^ecdsa-sha2-nistp/);
    expect(loadPrivateKey(ecdsa).getPublicSSH().equals(pubBlob(ecdsa))).toBe(true);
  });

  it('loads an encrypted key with the right passphrase', () => {
    const key = loadPrivateKey(encrypted, PASSPHRASE);
    expect(key.isPrivateKey()).toBe(true);
    expect(key.getPublicSSH().equals(pubBlob(encrypted))).toBe(true);
    // It really is a working private key: it signs, and its public half verifies the signature.
    const data = Buffer.from('probe');
    const sig = key.sign(data);
    expect(sig).toBeInstanceOf(Buffer);
    expect(key.verify(data, sig as Buffer)).toBe(true);
  });
});

describe('loadPrivateKey: refusals are exit 2, name the file, and say what to do', () => {
  it('a missing file', () => {
    const missing = path.join(root, 'keys', 'does-not-exist');
    const e = keyErrorOf(() => loadPrivateKey(missing));
    expect(e.message).toContain(missing);
    expect(e.message).toMatch(/does not exist/);
    expect(e.hint).toMatch(/ssh_key_path|ssh-keygen/);
  });

  it('a folder', () => {
    const folder = path.join(root, 'keys');
    const e = keyErrorOf(() => loadPrivateKey(folder));
    expect(e.message).toContain(folder);
    expect(e.message).toMatch(/folder/);
    expect(e.hint).toMatch(/ssh_key_path|ssh-keygen/);
  });

  it('a public key', () => {
    const pub = `${plain}.pub`;
    const e = keyErrorOf(() => loadPrivateKey(pub));
    expect(e.message).toContain(pub);
    expect(e.message).toMatch(/public key/);
    expect(e.hint).toMatch(/private key|\.pub/);
  });

  it('an encrypted key without a passphrase', () => {
    for (const none of [undefined, '']) {
      const e = keyErrorOf(() => loadPrivateKey(encrypted, none));
      expect(e.message).toContain(encrypted);
      expect(e.message).toMatch(/encrypted/);
      expect(e.hint).toContain('VAI_SSH_PASSPHRASE');
    }
  });

  it('an encrypted key with a wrong passphrase, without showing the passphrase', () => {
    const wrong = 'open-barley-9931';
    const e = keyErrorOf(() => loadPrivateKey(encrypted, wrong));
    expect(e.message).toContain(encrypted);
    expect(e.message).toMatch(/passphrase/);
    expect(e.message).toMatch(/wrong/);
    expect(e.hint).toContain('VAI_SSH_PASSPHRASE');
    expect(`${e.message} ${e.hint}`).not.toContain(wrong);
    expect(JSON.stringify(e.toJSON())).not.toContain(wrong);
  });

  it('a file that is not a key at all', () => {
    const junk = path.join(root, 'keys', 'junk');
    writeFileSync(junk, 'not a key\n');
    const e = keyErrorOf(() => loadPrivateKey(junk));
    expect(e.message).toContain(junk);
  });
});

describe('resolveAuth', () => {
  let homes = 0;
  const emptyHome = () => mkdtempSync(path.join(root, `home-${++homes}-`));

  it('uses the documented default key names, in order', () => {
    expect(DEFAULT_KEY_NAMES).toEqual(['id_ed25519_vastai', 'id_ed25519', 'id_rsa', 'id_ecdsa']);
  });

  it('picks the first existing of id_ed25519_vastai, id_ed25519, id_rsa, id_ecdsa under the given home', () => {
    const home = emptyHome();
    const ssh = path.join(home, '.ssh');
    keygen(path.join(ssh, 'id_ecdsa'), { type: 'ecdsa' });
    let auth = resolveAuth({ homeDir: home, agentSocket: '/tmp/agent.sock' });
    expect(auth).toMatchObject({ kind: 'key', keyPath: path.join(ssh, 'id_ecdsa') });
    expect(auth.kind === 'key' && auth.key.getPublicSSH().equals(pubBlob(path.join(ssh, 'id_ecdsa')))).toBe(true);

    keygen(path.join(ssh, 'id_rsa'), { type: 'rsa' });
    auth = resolveAuth({ homeDir: home });
    expect(auth).toMatchObject({ kind: 'key', keyPath: path.join(ssh, 'id_rsa') });

    keygen(path.join(ssh, 'id_ed25519'));
    auth = resolveAuth({ homeDir: home });
    expect(auth).toMatchObject({ kind: 'key', keyPath: path.join(ssh, 'id_ed25519') });
    expect(auth.kind === 'key' && auth.key.getPublicSSH().equals(pubBlob(path.join(ssh, 'id_ed25519')))).toBe(true);

    keygen(path.join(ssh, 'id_ed25519_vastai'));
    auth = resolveAuth({ homeDir: home, agentSocket: '/tmp/agent.sock' });
    expect(auth).toMatchObject({ kind: 'key', keyPath: path.join(ssh, 'id_ed25519_vastai') });
    expect(auth.kind === 'key' && auth.key.getPublicSSH().equals(pubBlob(path.join(ssh, 'id_ed25519_vastai')))).toBe(true);
  });

  it('skips a default name that is a folder, not a file', () => {
    const home = emptyHome();
    mkdirSync(path.join(home, '.ssh', 'id_ed25519_vastai'), { recursive: true });
    keygen(path.join(home, '.ssh', 'id_rsa'), { type: 'rsa' });
    expect(resolveAuth({ homeDir: home })).toMatchObject({ kind: 'key', keyPath: path.join(home, '.ssh', 'id_rsa') });
  });

  it('decrypts an encrypted default key with the passphrase', () => {
    const home = emptyHome();
    const key = keygen(path.join(home, '.ssh', 'id_ed25519'), { passphrase: PASSPHRASE });
    const auth = resolveAuth({ homeDir: home, passphrase: PASSPHRASE });
    expect(auth).toMatchObject({ kind: 'key', keyPath: key });
    expect(auth.kind === 'key' && auth.key.isPrivateKey()).toBe(true);
  });

  it('falls back to the agent socket when no default key exists', () => {
    const home = emptyHome();
    mkdirSync(path.join(home, '.ssh'));
    writeFileSync(path.join(home, '.ssh', 'id_dsa'), 'not one of ours'); // not a name that is looked for
    expect(resolveAuth({ homeDir: home, agentSocket: '/run/user/1000/agent.sock' })).toEqual({ kind: 'agent', agentSocket: '/run/user/1000/agent.sock' });
  });

  it('is an exit-2 error naming what was looked for when there is no key and no agent', () => {
    const home = emptyHome();
    for (const agentSocket of [undefined, '']) {
      const e = keyErrorOf(() => resolveAuth({ homeDir: home, agentSocket }));
      for (const name of DEFAULT_KEY_NAMES) expect(e.message).toContain(name);
      expect(e.message).toMatch(/agent/);
      expect(e.hint).toMatch(/ssh_key_path|ssh-keygen/);
    }
  });

  it('uses an explicit key path over the defaults and the agent', () => {
    const home = emptyHome();
    keygen(path.join(home, '.ssh', 'id_ed25519_vastai'));
    expect(resolveAuth({ homeDir: home, keyPath: plain, agentSocket: '/tmp/a.sock' })).toMatchObject({ kind: 'key', keyPath: plain });
  });

  it('refuses a missing explicit key path, never falling back to another key', () => {
    const home = emptyHome();
    keygen(path.join(home, '.ssh', 'id_ed25519'));
    const missing = path.join(home, 'typo_key');
    const e = keyErrorOf(() => resolveAuth({ homeDir: home, keyPath: missing, agentSocket: '/tmp/a.sock' }));
    expect(e.message).toContain(missing);
  });

  it('refuses an encrypted explicit key without a passphrase, naming it', () => {
    const e = keyErrorOf(() => resolveAuth({ homeDir: emptyHome(), keyPath: encrypted }));
    expect(e.message).toContain(encrypted);
    expect(e.hint).toContain('VAI_SSH_PASSPHRASE');
  });
});

describe('fingerprint', () => {
  /** What `ssh-keygen -lf` prints: "<bits> SHA256:<digest> <comment> (<TYPE>)". */
  function sshKeygenFingerprint(file: string): string {
    const out = execFileSync('ssh-keygen', ['-lf', file], { encoding: 'utf8' });
    const fp = out.trim().split(/\s+/)[1]!;
    expect(fp).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    return fp;
  }

  for (const type of ['ed25519', 'rsa', 'ecdsa'] as const) {
    it(`matches ssh-keygen -lf for a ${type} key`, () => {
      const key = type === 'ed25519' ? plain : keygen(path.join(root, 'fp', type), { type });
      const hex = createHash('sha256').update(pubBlob(key)).digest('hex');
      expect(fingerprint(hex)).toBe(sshKeygenFingerprint(`${key}.pub`));
      // The same digest from the loaded key's public half.
      const fromLoaded = createHash('sha256').update(loadPrivateKey(key).getPublicSSH()).digest('hex');
      expect(fingerprint(fromLoaded)).toBe(sshKeygenFingerprint(`${key}.pub`));
    });
  }

  it('tells different keys apart', () => {
    const other = keygen(path.join(root, 'fp', 'other'));
    const a = fingerprint(createHash('sha256').update(pubBlob(plain)).digest('hex'));
    const b = fingerprint(createHash('sha256').update(pubBlob(other)).digest('hex'));
    expect(a).not.toBe(b);
  });
});
