/**
 * Starting the supervisor: a detached process (its own process group, its log file in VAI_HOME as
 * stdout and stderr) with the runtime settings its tunnels need to move bytes cheaply.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fsyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { homeWriteError } from '../lib/errors.js';
import { ensurePrivateDir, homeFiles } from '../lib/paths.js';
import { PACKAGE_ROOT } from '../lib/version.js';

/** The built supervisor entry point, also when this module runs from TypeScript sources (tests). */
export function supervisorEntry(): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.ts')) return path.join(PACKAGE_ROOT, 'dist', 'core', 'supervisor', 'main.js');
  return path.join(path.dirname(here), 'main.js');
}

/** Makes sure VAI_HOME takes a write (a full disk fails here, not silently in a detached process). */
function checkHomeWritable(home: string): void {
  const probe = path.join(home, `.write-test-${process.pid}`);
  try {
    const fd = openSync(probe, 'w', 0o600);
    try {
      writeSync(fd, Buffer.alloc(8192));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw homeWriteError(err, home, 'a test file');
  } finally {
    try {
      unlinkSync(probe);
    } catch {
      // never made
    }
  }
}

/**
 * V8 flags for the supervisor. Every byte a tunnel carries passes through a fresh Buffer, about
 * 1 GiB of allocations per GiB moved.
 * - `--single-threaded-gc`: with V8's concurrent array-buffer sweeping their memory was handed
 *   back late, so every ~64 MiB moved "external memory pressure" forced a full mark-compact (42
 *   per GiB, on four GC threads); single-threaded, 1 per GiB.
 * - `--expose-gc`: the tunnels run a minor GC every 4 MiB they carry (core/gc-pacing.ts), so
 *   dead buffers are freed before malloc's heap has to grow for new ones.
 * - `--max-semi-space-size=1`: V8 grows the young generation's semi-space to 16 MiB by default;
 *   1 MiB takes ~2.5 MiB off the idle supervisor.
 */
const SUPERVISOR_NODE_FLAGS = ['--single-threaded-gc', '--expose-gc', '--max-semi-space-size=1'];

/**
 * glibc malloc settings for the supervisor. Left to itself glibc gives freed memory back to the
 * kernel once ~1 MiB is free at the top of its heap, so the buffers a GC frees were returned and
 * the next reads faulted fresh pages in (~20 us a fault on these VMs). Here allocations under
 * 4 MiB come from the heap and up to 16 MiB of free heap is kept, four times what the tunnels
 * free between two of their GCs. With both, a 256 MiB download through the supervisor took a
 * few hundred faults once warm (8,000-40,000 before) and its heap stayed near 20 MiB.
 */
const SUPERVISOR_MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=4194304:glibc.malloc.trim_threshold=16777216';

/** Our tunables first, so a user's own GLIBC_TUNABLES still wins. Other C libraries ignore them. */
function supervisorTunables(user: string | undefined): string {
  return user ? `${SUPERVISOR_MALLOC_TUNABLES}:${user}` : SUPERVISOR_MALLOC_TUNABLES;
}

/** Starts a detached supervisor for a VAI_HOME. Several may start at once: the lock keeps one. */
export function spawnSupervisor(home: string, env: NodeJS.ProcessEnv): ChildProcess {
  ensurePrivateDir(home);
  checkHomeWritable(home);
  const files = homeFiles(home);
  let logFd: number;
  try {
    logFd = openSync(files.log, 'a', 0o600);
  } catch (err) {
    throw homeWriteError(err, home, `the supervisor log ${files.log}`);
  }
  try {
    const child = spawn(process.execPath, [...SUPERVISOR_NODE_FLAGS, supervisorEntry(), `--home=${home}`], {
      detached: true, // its own process group: a Ctrl-C in the caller's terminal does not reach it
      stdio: ['ignore', logFd, logFd],
      cwd: home, // never pin the caller's folder
      env: { ...env, VAI_HOME: home, GLIBC_TUNABLES: supervisorTunables(env.GLIBC_TUNABLES) },
    });
    child.unref();
    return child;
  } finally {
    closeSync(logFd);
  }
}
