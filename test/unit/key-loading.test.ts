/** SSH keys: what loads, what is refused (exit 2, naming the file and the fix), and which is picked. */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { vaiErrorOf } from '../helpers/errors.js';
import { fingerprint, loadPrivateKey, resolveAuth } from '../../core/ssh-auth.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'vai-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function keygen(name: string, opts: { type?: string; passphrase?: string; home?: string } = {}): string {
  const file = path.join(opts.home ?? dir, name);
  mkdirSync(path.dirname(file), { recursive: true });
  execFileSync('ssh-keygen', ['-q', '-t', opts.type ?? 'ed25519', '-N', opts.passphrase ?? '', '-f', file]);
  return file;
}

/** A refusal as bad input: exit 2. */
function refused(fn: () => unknown) {
  const e = vaiErrorOf(fn);
  expect(e.exitCode).toBe(2);
  return e;
}

describe('loadPrivateKey', () => {
  it('loads a plain key, and an encrypted one with its passphrase', () => {
    expect(loadPrivateKey(keygen('plain')).type).toBe('ssh-ed25519');
    const enc = keygen('enc', { passphrase: 'sesame' });
    expect(loadPrivateKey(enc, 'sesame').isPrivateKey()).toBe(true);
    expect(loadPrivateKey(keygen('rsa', { type: 'rsa' })).type).toBe('ssh-rsa');
  });

  it('refuses what cannot be used, naming the file and what to do', () => {
    const enc = keygen('enc2', { passphrase: 'sesame' });
    const missing = refused(() => loadPrivateKey(path.join(dir, 'missing')));
    expect(missing.message).toBe(`SSH key file ${path.join(dir, 'missing')} does not exist.`);
    expect(missing.hint).toMatch(/ssh_key_path/);
    expect(refused(() => loadPrivateKey(dir)).message).toMatch(/is a folder/);
    const pub = refused(() => loadPrivateKey(`${enc}.pub`));
    expect(pub.message).toContain(`${enc}.pub`);
    const noPass = refused(() => loadPrivateKey(enc));
    expect(noPass.message).toBe(`SSH key ${enc} is encrypted and no passphrase was given.`);
    expect(noPass.hint).toMatch(/VAI_SSH_PASSPHRASE/);
    const wrong = refused(() => loadPrivateKey(enc, 'open-barley'));
    expect(wrong.message).toMatch(/passphrase .* is wrong/);
    expect(wrong.message + wrong.hint).not.toContain('open-barley');
    writeFileSync(path.join(dir, 'junk'), 'hello\n');
    expect(refused(() => loadPrivateKey(path.join(dir, 'junk'))).message).toMatch(/not a private key/);
  });
});

describe('resolveAuth', () => {
  it('picks the first existing default key in order, then the agent, else refuses', () => {
    const home = mkdtempSync(path.join(dir, 'home-'));
    expect(refused(() => resolveAuth({ homeDir: home })).message).toMatch(/No SSH key found/);
    expect(resolveAuth({ homeDir: home, agentSocket: '/tmp/agent.sock' })).toEqual({ kind: 'agent', agentSocket: '/tmp/agent.sock' });
    keygen('.ssh/id_ecdsa', { home, type: 'ecdsa' });
    expect(resolveAuth({ homeDir: home, agentSocket: '/tmp/a' })).toMatchObject({ kind: 'key', keyPath: path.join(home, '.ssh', 'id_ecdsa') });
    keygen('.ssh/id_rsa', { home, type: 'rsa' });
    expect(resolveAuth({ homeDir: home })).toMatchObject({ keyPath: path.join(home, '.ssh', 'id_rsa') });
    keygen('.ssh/id_ed25519', { home });
    expect(resolveAuth({ homeDir: home })).toMatchObject({ keyPath: path.join(home, '.ssh', 'id_ed25519') });
    keygen('.ssh/id_ed25519_vastai', { home });
    expect(resolveAuth({ homeDir: home })).toMatchObject({ keyPath: path.join(home, '.ssh', 'id_ed25519_vastai') });
    // An explicit path wins over all of them.
    const explicit = keygen('explicit');
    expect(resolveAuth({ homeDir: home, keyPath: explicit })).toMatchObject({ keyPath: explicit });
  });
});

describe('fingerprint', () => {
  it('prints a SHA-256 digest the way ssh-keygen -l does', () => {
    const key = keygen('fp');
    const blob = Buffer.from(readFileSync(`${key}.pub`, 'utf8').split(' ')[1]!, 'base64');
    const hex = createHash('sha256').update(blob).digest('hex');
    const printed = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${key}.pub`], { encoding: 'utf8' }).split(' ')[1];
    expect(fingerprint(hex)).toBe(printed);
  });
});
