/**
 * Small tmpfs mounts for tests that need a read-only or a full VAI_HOME (DESIGN.md section 6:
 * chmod does not stop root, so a read-only or full folder has to be a real filesystem). Linux and
 * root only; `mountSupport()` says why not, so a test can skip with a printed reason.
 *
 * Every mount is unmounted by `unmount()`, and at the latest when this process exits (lazily, so
 * a process still holding a file in it cannot keep it mounted).
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tellWatchdog } from './watchdog.js';

export interface Tmpfs {
  /** The mount point (a fresh folder under the temp dir). */
  readonly dir: string;
  /** Makes the filesystem read-only or writable again (`mount -o remount,ro|rw`). */
  remount(mode: 'ro' | 'rw'): void;
  /** Writes a filler file until the filesystem has no room left for even one byte in a new page. */
  fill(): void;
  /** Removes the filler file. */
  unfill(): void;
  /** Unmounts (lazily if something still holds a file there) and removes the mount point. Idempotent. */
  unmount(): void;
}

const mounted = new Set<string>();
let exitHook = false;

function sh(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
}

function forceUnmount(dir: string): void {
  try {
    sh('umount', [dir]);
  } catch {
    try {
      sh('umount', ['-l', dir]);
    } catch {
      // not mounted (any more)
    }
  }
}

let support: { ok: boolean; reason?: string } | undefined;

/** Whether this process may mount a tmpfs (root, and mount(2) allowed in this container). */
export function mountSupport(): { ok: boolean; reason?: string } {
  if (support) return support;
  if (process.platform !== 'linux') return (support = { ok: false, reason: `tmpfs mounts need Linux (this is ${process.platform})` });
  if (process.getuid?.() !== 0) return (support = { ok: false, reason: 'mounting a tmpfs needs root; CI runs as root' });
  const probe = mkdtempSync(path.join(os.tmpdir(), 'vai-mount-probe-'));
  try {
    sh('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe]);
    forceUnmount(probe);
    support = { ok: true };
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    support = { ok: false, reason: `cannot mount a tmpfs here: ${e.code === 'ENOENT' ? 'no `mount` on PATH' : (e.stderr?.toString().trim() || e.message)}` };
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
  return support;
}

/** Mounts a private (0700) tmpfs of `sizeBytes` on a fresh folder. */
export function mountTmpfs(sizeBytes: number): Tmpfs {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vai-tmpfs-'));
  sh('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', dir]);
  mounted.add(dir);
  tellWatchdog('mnt+', dir); // unmounted even if this process is killed
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const d of mounted) forceUnmount(d);
    });
  }
  const filler = path.join(dir, 'filler');
  return {
    dir,
    remount(mode) {
      sh('mount', ['-o', `remount,${mode}`, dir]);
    },
    fill() {
      const fd = openSync(filler, 'a');
      try {
        // Big chunks first, then smaller ones, down to a byte: tmpfs counts whole pages.
        for (const size of [1 << 20, 1 << 16, 4096, 512, 1]) {
          const chunk = Buffer.alloc(size, 0x55);
          for (;;) {
            try {
              writeSync(fd, chunk);
            } catch (err) {
              if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
              throw err;
            }
          }
        }
      } finally {
        closeSync(fd);
      }
    },
    unfill() {
      rmSync(filler, { force: true });
    },
    unmount() {
      if (!mounted.has(dir)) return;
      forceUnmount(dir);
      mounted.delete(dir);
      tellWatchdog('mnt-', dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Makes a folder read-only where it is, for new opens (a read-only bind mount over itself), while
 * a process that holds files in it open for writing (a running supervisor) keeps them. Returns
 * the undo. Needs what `mountSupport()` checks.
 */
export function bindReadOnly(dir: string): () => void {
  sh('mount', ['--bind', dir, dir]);
  mounted.add(dir);
  tellWatchdog('mnt+', dir);
  sh('mount', ['-o', 'remount,bind,ro', dir]);
  return () => {
    if (!mounted.has(dir)) return;
    forceUnmount(dir);
    mounted.delete(dir);
    tellWatchdog('mnt-', dir);
  };
}
