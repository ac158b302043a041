/**
 * Model downloads made by a box itself, over its SSH link: the `ssh` and `vast` providers'
 * installer against a real OpenSSH sshd (the box is this machine, reached through ssh), fetching
 * with the box's curl from a local HTTP server. A cut connection is resumed where it stopped; a
 * sha256 mismatch is refused and the partial file removed; a token goes to its host only (not to
 * the host a redirect names), and is in no process list or file on the box.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DownloadError, type Transfer } from '../../core/comfy/provision/installer.js';
import { ShellInstaller } from '../../core/comfy/provision/shell-installer.js';
import { tokenFor } from '../../core/comfy/provision/tokens.js';
import { SshLink } from '../../core/tunnels/link.js';
import { loadPrivateKey } from '../../core/tunnels/ssh-auth.js';
import { startModelServer, type ModelServer } from '../helpers/model-server.js';
import { startSshd, type SshdHandle } from '../helpers/sshd.js';

const MiB = 1024 * 1024;

function sha256File(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** Every file under a folder, hidden ones included. */
function allFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

describe('downloads on a box over its SSH link (real sshd, the box\'s curl)', () => {
  let sshd: SshdHandle;
  let link: SshLink;
  let release: () => void;
  let server: ModelServer;
  let comfyDir: string;
  let installer: ShellInstaller;
  const signal = new AbortController().signal;

  beforeAll(async () => {
    sshd = await startSshd();
    server = await startModelServer();
    comfyDir = mkdtempSync(path.join(os.tmpdir(), 'vai-box-comfy-'));
    link = new SshLink({
      instanceId: 'ssh-models',
      ssh: { host: sshd.host, port: sshd.port, user: sshd.user },
      auth: { kind: 'key', keyPath: sshd.userKeyPath, key: loadPrivateKey(sshd.userKeyPath) },
      checkHostKey: async () => ({ ok: true }),
    });
    release = link.hold();
    const until = Date.now() + 15_000;
    while (!link.isReady && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(link.isReady).toBe(true);
    installer = new ShellInstaller((command, o) => link.spawn(command, o), { comfyDir, restart: 'true' });
  });

  afterAll(async () => {
    release?.();
    link?.stop();
    await server?.close();
    await sshd?.stop();
    rmSync(comfyDir, { recursive: true, force: true });
  });

  it('resumes a download whose connection was cut, from the byte where it stopped', async () => {
    const name = 'cut.safetensors';
    server.files.set(name, { size: 8 * MiB, cutOnceAt: 3 * MiB });
    const t: Transfer = { name, dir: 'checkpoints', url: server.url(name) };
    const sizes: number[] = [];
    const first = await installer.download(t, (p) => sizes.push(p.done), signal).then(() => undefined, (e: unknown) => e);
    expect(first).toBeInstanceOf(DownloadError);
    expect((first as DownloadError).retryable).toBe(true);
    const part = path.join(comfyDir, 'models', 'checkpoints', `.${name}.vai-part`);
    const arrived = readFileSync(part).length; // what was in flight when the socket went is lost
    expect(arrived).toBeGreaterThan(2 * MiB);
    expect(arrived).toBeLessThanOrEqual(3 * MiB);
    expect(existsSync(path.join(comfyDir, 'models', 'checkpoints', name))).toBe(false);

    const sentBefore = server.bytesSent;
    await installer.download(t, (p) => sizes.push(p.done), signal);
    const final = path.join(comfyDir, 'models', 'checkpoints', name);
    expect(sha256File(final)).toBe(server.sha256(name));
    expect(existsSync(part)).toBe(false);
    const asked = server.fileRequests(name).map((r) => r.range);
    expect(asked).toEqual([undefined, `bytes=${arrived}-`]);
    expect(server.bytesSent - sentBefore, 'the second attempt fetched only the rest').toBe(8 * MiB - arrived);
    console.log(`cut at 3 MiB of 8 MiB: resumed with ${asked[1]}, ${((server.bytesSent - sentBefore) / MiB).toFixed(2)} MiB fetched the second time`);
  });

  it('refuses a file whose sha256 does not match, and removes what was downloaded', async () => {
    const name = 'wrong.safetensors';
    server.files.set(name, { size: 2 * MiB });
    const err = await installer.download({ name, dir: 'loras', url: server.url(name), sha256: 'ab'.repeat(32) }, () => {}, signal).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as DownloadError).retryable).toBe(false);
    expect((err as Error).message).toMatch(/sha256 mismatch: expected abab.*, got [0-9a-f]{64}; the partial file was removed/);
    expect(readdirSync(path.join(comfyDir, 'models', 'loras'))).toEqual([]);

    // The right checksum passes.
    await installer.download({ name, dir: 'loras', url: server.url(name), sha256: server.sha256(name) }, () => {}, signal);
    expect(sha256File(path.join(comfyDir, 'models', 'loras', name))).toBe(server.sha256(name));
  });

  it('puts a file a workflow names with a subfolder into that subfolder', async () => {
    const name = 'sd15/sub.safetensors';
    server.files.set(name, { size: 1 * MiB });
    await installer.download({ name, dir: 'checkpoints', url: server.url(name) }, () => {}, signal);
    expect(sha256File(path.join(comfyDir, 'models', 'checkpoints', 'sd15', 'sub.safetensors'))).toBe(server.sha256(name));
    expect(readdirSync(path.join(comfyDir, 'models', 'checkpoints', 'sd15'))).toEqual(['sub.safetensors']);
  });

  it('sends a token to its own host only, never to the host a redirect names, and leaves it nowhere on the box', async () => {
    const name = 'gated.safetensors';
    const secret = 'hf_vaiTestToken0123456789';
    server.files.set(name, { size: 4 * MiB });
    const env = { HF_TOKEN: secret, VAI_TOKEN_HOSTS_FOR_TESTS: `HF_TOKEN=127.0.0.1:${server.port}` };
    const url = server.redirectUrl(name, 'localhost');
    const token = tokenFor(url, env);
    expect(token?.host).toBe(`127.0.0.1:${server.port}`);
    expect(tokenFor(server.url(name, 'localhost'), env), 'no token for another host').toBeUndefined();

    // While curl runs, no process on the box carries the token in its command line.
    const seenInArgs: string[] = [];
    const watch = setInterval(() => {
      for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
        try {
          const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
          if (args.includes(secret)) seenInArgs.push(args.replace(/\0/g, ' '));
        } catch {
          // ended meanwhile
        }
      }
    }, 20);
    try {
      await installer.download({ name, dir: 'checkpoints', url, token: token! }, () => {}, signal);
    } finally {
      clearInterval(watch);
    }
    expect(sha256File(path.join(comfyDir, 'models', 'checkpoints', name))).toBe(server.sha256(name));
    const redirect = server.seen.find((r) => r.path.startsWith('/redirect/'));
    const file = server.fileRequests(name).at(-1);
    expect(redirect?.authorization).toBe(`Bearer ${secret}`);
    expect(file?.host).toBe(`localhost:${server.port}`);
    expect(file?.authorization, 'the token did not follow the redirect').toBeUndefined();
    expect(seenInArgs).toEqual([]);
    for (const f of allFiles(comfyDir)) expect(readFileSync(f).includes(secret), f).toBe(false);
  });
});
