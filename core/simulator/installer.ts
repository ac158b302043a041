/**
 * How models and node packs reach a simulated box, which has no shell: the supervisor downloads
 * into the box's tree with the same rules as a real box's curl (resume, sha256, tokens only to
 * their hosts), clones packs with this machine's git, and "restarts" the box's ComfyUI.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { fetchDownload } from '../comfy/provision/fetch-download.js';
import type { BoxInstaller, Transfer, TransferProgress } from '../comfy/provision/installer.js';
import type { ResolvedPack } from '../comfy/provision/registry.js';

const run = promisify(execFile);

export class SimInstaller implements BoxInstaller {
  constructor(
    readonly comfyDir: string,
    private readonly restart: () => Promise<void>,
  ) {}

  download(t: Transfer, onBytes: (p: TransferProgress) => void, signal: AbortSignal): Promise<void> {
    return fetchDownload(path.join(this.comfyDir, 'models'), t, onBytes, signal);
  }

  async installPack(p: ResolvedPack, onLine: (line: string) => void, signal: AbortSignal): Promise<'installed' | 'present'> {
    const target = path.join(this.comfyDir, 'custom_nodes', p.dir);
    if (existsSync(target)) return 'present';
    const tmp = path.join(this.comfyDir, 'custom_nodes', `.${p.dir}.vai-part`);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
    await rm(tmp, { recursive: true, force: true });
    const git = (args: string[]) => run('git', args, { signal, env: { ...process.env, GIT_TERMINAL_PROMPT: '0' }, timeout: 300_000 });
    try {
      onLine(`cloning ${p.gitUrl}`);
      await git(['clone', '-q', '--recursive', p.gitUrl, tmp]);
      if (p.ref) {
        const ok = await git(['-C', tmp, 'checkout', '-q', p.ref]).then(() => true, () => git(['-C', tmp, 'checkout', '-q', `v${p.ref}`]).then(() => true, () => false));
        if (ok) onLine(`checked out ${p.ref}`);
        else if (p.refOptional) onLine(`no ref ${p.ref} in the repository; kept its default branch`);
        else throw new Error(`no ref ${p.ref} in ${p.gitUrl}`);
      }
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      const e = err as Error & { stderr?: string };
      throw new Error(`installing node pack ${p.label} failed: ${(e.stderr || e.message).trim().split('\n').pop()}`);
    }
    if (existsSync(path.join(target, 'requirements.txt'))) onLine('requirements.txt not installed: a simulated box has no Python');
    return 'installed';
  }

  restartComfy(): Promise<void> {
    return this.restart();
  }
}
