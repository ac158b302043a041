/**
 * Safety net for the test harnesses (sshd, fake boxes). A test process does not always get to
 * clean up: vitest ends its workers with SIGTERM (no 'exit' event), a crash or a timeout kills
 * them. So one small detached watchdog process per test process holds a pipe from it; when the
 * pipe closes, however the test process died, it SIGKILLs the process trees it was told about,
 * deletes the network namespaces and links, and removes the folders.
 *
 * Messages (tab-separated): `pid+ PID [MARK]` / `pid- PID` (with MARK, only while the PID's
 * command line still contains it: a PID can be reused), `ns+ NAME LINK` / `ns- NAME`,
 * `dir+ PATH` / `dir- PATH`, `mnt+ PATH` / `mnt- PATH` (a mount point: lazily unmounted first).
 */
import { spawn, type ChildProcess } from 'node:child_process';

const WATCHDOG = `
const fs = require('fs'); const cp = require('child_process');
const pids = new Map(), nss = new Map(), dirs = new Set(), mnts = new Set();
const fields = (p) => { try { const s = fs.readFileSync('/proc/' + p + '/stat', 'utf8'); return s.slice(s.lastIndexOf(')') + 2).split(' '); } catch { return undefined; } };
const kids = (pid) => { const all = []; for (const e of fs.readdirSync('/proc')) { if (/^[0-9]+$/.test(e)) { const f = fields(+e); if (f) all.push([+e, +f[1]]); } }
  const out = []; const q = [pid]; while (q.length) { const p = q.shift(); for (const [c, pp] of all) if (pp === p && !out.includes(c)) { out.push(c); q.push(c); } } return out; };
const sig = (p, s) => { try { process.kill(p, s); } catch {} };
const ip = (args) => { try { return cp.execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).toString(); } catch { return ''; } };
function reap() {
  for (const [pid, mark] of pids) {
    if (mark) { let cmd = ''; try { cmd = fs.readFileSync('/proc/' + pid + '/cmdline', 'utf8'); } catch {} if (!cmd.includes(mark)) continue; }
    sig(pid, 'SIGSTOP'); for (const p of [pid, ...kids(pid)]) sig(p, 'SIGKILL');
  }
  for (const [ns, link] of nss) { for (const p of ip(['netns', 'pids', ns]).split(/\\s+/).filter(Boolean)) sig(+p, 'SIGKILL'); if (link) ip(['link', 'del', link]); ip(['netns', 'del', ns]); }
  for (const m of mnts) { try { cp.execFileSync('umount', ['-l', m], { stdio: 'ignore', timeout: 5000 }); } catch {} try { fs.rmdirSync(m); } catch {} }
  for (const d of dirs) { try { fs.rmSync(d, { recursive: true, force: true }); } catch {} }
  process.exit(0);
}
let buf = '';
process.stdin.on('data', (d) => { buf += d; let i; while ((i = buf.indexOf('\\n')) >= 0) { const [op, a, b] = buf.slice(0, i).split('\\t'); buf = buf.slice(i + 1);
  if (op === 'pid+') pids.set(+a, b || ''); else if (op === 'pid-') pids.delete(+a);
  else if (op === 'ns+') nss.set(a, b || ''); else if (op === 'ns-') nss.delete(a);
  else if (op === 'dir+') dirs.add(a); else if (op === 'dir-') dirs.delete(a);
  else if (op === 'mnt+') mnts.add(a); else if (op === 'mnt-') mnts.delete(a); } });
process.stdin.on('end', reap); process.stdin.on('error', reap);
`;

let watchdog: ChildProcess | undefined;

/** Tells the watchdog (started on first use) what to clean up if this process dies. */
export function tellWatchdog(...parts: string[]): void {
  try {
    if (!watchdog) {
      watchdog = spawn(process.execPath, ['-e', WATCHDOG], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
      watchdog.on('error', () => {});
      watchdog.stdin!.on('error', () => {});
      watchdog.unref();
      (watchdog.stdin as unknown as { unref?: () => void }).unref?.();
    }
    watchdog.stdin!.write(`${parts.join('\t')}\n`);
  } catch {
    // best effort: the harnesses' own stop()/destroy() and exit hooks remain
  }
}
