/**
 * Throughput of 256 MiB downloads and uploads per contender, interleaved round by round, and the
 * CPU seconds and minor page faults of the tunnel process per GiB moved.
 *
 * A process that sat idle while the others ran gives memory back, and its next transfer pays for
 * growing it again. So each measured transfer follows an unmeasured 64 MiB one the same way
 * through the same contender. The guard's cost is measured apart, in pairs (`measureGuardCost`).
 */
import { cpuSeconds, minorFaults } from '../lib/proc.js';
import { download, upload, type Transfer } from '../lib/http.js';
import { fmt, type Report } from '../lib/report.js';
import { median } from '../lib/stats.js';
import { OPENSSH_DEFAULT, OPENSSH_OUR_CIPHER, OURS, OURS_GUARD_OFF, roundOrder, type Contender } from './contenders.js';

const SIZE = 256 * 1024 * 1024;
export const WARM_UP_BYTES = 64 * 1024 * 1024;
const GIB = 1024 ** 3;

export async function measureTransfers(report: Report, contenders: Contender[], rounds: number, uploadFile: string, warmUpFile: string): Promise<void> {
  const down = new Map<string, number[]>();
  const up = new Map<string, number[]>();
  // CPU of the tunnel process per direction: seconds, minor page faults and bytes moved.
  type Cost = { s: number; faults: number; bytes: number };
  const cpu = new Map<string, { down: Cost; up: Cost }>();
  for (const c of contenders) {
    down.set(c.name, []);
    up.set(c.name, []);
    cpu.set(c.name, { down: { s: 0, faults: 0, bytes: 0 }, up: { s: 0, faults: 0, bytes: 0 } });
  }
  const timed = async (c: Contender, run: () => Promise<Transfer>, into: Map<string, number[]>) => {
    const before = c.pid ? cpuSeconds(c.pid) : 0;
    const faultsBefore = c.pid ? minorFaults(c.pid) : 0;
    const t = await run();
    const acc = cpu.get(c.name)![into === down ? 'down' : 'up'];
    if (c.pid) {
      acc.s += cpuSeconds(c.pid) - before;
      acc.faults += minorFaults(c.pid) - faultsBefore;
    }
    acc.bytes += t.bytes;
    into.get(c.name)!.push(t.mbps);
  };
  for (let r = 0; r < rounds; r++) {
    for (const c of roundOrder(contenders, r)) {
      await download(c.port, WARM_UP_BYTES);
      await timed(c, () => download(c.port, SIZE), down);
    }
    for (const c of roundOrder(contenders, r)) {
      await upload(c.port, warmUpFile, WARM_UP_BYTES);
      await timed(c, () => upload(c.port, uploadFile, SIZE), up);
    }
    process.stderr.write(`transfers: round ${r + 1}/${rounds} done\n`);
  }

  const ref = OPENSSH_DEFAULT;
  const range = (xs: number[]) => `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})`;
  const ratio = (m: Map<string, number[]>, a: string, b: string) => median(m.get(a)!) / median(m.get(b)!);
  const cpuPerGiB = (name: string, dir?: 'down' | 'up') => {
    const c = cpu.get(name)!;
    const parts = dir ? [c[dir]] : [c.down, c.up];
    return parts.reduce((a, p) => a + p.s, 0) / (parts.reduce((a, p) => a + p.bytes, 0) / GIB);
  };
  const faultsPerGiB = (name: string, dir: 'down' | 'up') => {
    const c = cpu.get(name)![dir];
    return c.faults / (c.bytes / GIB);
  };
  report.table({
    title: 'Throughput: 256 MiB through each contender (MB/s = 10^6 B/s, curl)',
    note: `${rounds} interleaved rounds, each transfer right after an unmeasured 64 MiB one the same way through the same contender; medians (min-max). CPU is user+system time of the process carrying the tunnel (ssh, or our supervisor), over every byte it moved; page faults are its minor faults (fresh pages touched) over the same bytes.`,
    columns: ['contender', 'cipher', 'download MB/s', 'upload MB/s', 'download vs OpenSSH default', 'upload vs OpenSSH default', 'tunnel CPU s/GiB down / up', 'tunnel page faults per GiB down / up'],
    rows: contenders.map((c) => [
      c.name, c.cipher, range(down.get(c.name)!), range(up.get(c.name)!),
      fmt.x(ratio(down, c.name, ref)), fmt.x(ratio(up, c.name, ref)), c.pid ? `${cpuPerGiB(c.name, 'down').toFixed(2)} / ${cpuPerGiB(c.name, 'up').toFixed(2)}` : '-',
      c.pid ? `${faultsPerGiB(c.name, 'down').toFixed(0)} / ${faultsPerGiB(c.name, 'up').toFixed(0)}` : '-',
    ]),
  });
  const dl = ratio(down, OURS, ref);
  const ul = ratio(up, OURS, ref);
  report.target('throughput vs OpenSSH default, download', fmt.x(dl), '>= 0.95x', dl >= 0.95);
  report.target('throughput vs OpenSSH default, upload', fmt.x(ul), '>= 0.95x', ul >= 0.95);
  const guardDl = ratio(down, OURS, OURS_GUARD_OFF);
  const guardUl = ratio(up, OURS, OURS_GUARD_OFF);
  report.figures.transfers = {
    bytes: SIZE,
    rounds,
    download_mbps: Object.fromEntries(down),
    upload_mbps: Object.fromEntries(up),
    cpu_s_per_gib: Object.fromEntries(contenders.filter((c) => c.pid).map((c) => [c.name, { both: cpuPerGiB(c.name), download: cpuPerGiB(c.name, 'down'), upload: cpuPerGiB(c.name, 'up') }])),
    minor_faults_per_gib: Object.fromEntries(contenders.filter((c) => c.pid).map((c) => [c.name, { download: faultsPerGiB(c.name, 'down'), upload: faultsPerGiB(c.name, 'up') }])),
    ratios: {
      download_vs_openssh_default: dl,
      upload_vs_openssh_default: ul,
      download_vs_openssh_our_cipher: ratio(down, OURS, OPENSSH_OUR_CIPHER),
      upload_vs_openssh_our_cipher: ratio(up, OURS, OPENSSH_OUR_CIPHER),
      download_guard_vs_guard_off: guardDl,
      upload_guard_vs_guard_off: guardUl,
      cpu_vs_openssh_default: cpuPerGiB(OURS) / cpuPerGiB(ref),
      cpu_vs_openssh_our_cipher: cpuPerGiB(OURS) / cpuPerGiB(OPENSSH_OUR_CIPHER),
    },
  };
}

/**
 * What the guard costs, paired: the same box through the tunnel with the guard on and off (each
 * in its own supervisor), back to back, the order swapped each pair; each pair gives one ratio,
 * and the figure is their median. Pairs cancel the drift of a shared machine that separate
 * medians of a few rounds do not (they moved by ~15% from run to run); single pairs still spread
 * by about as much, so there are many of them (a 256 MiB transfer takes well under a second).
 */
export async function measureGuardCost(report: Report, on: Contender, off: Contender, pairs: number, uploadFile: string, warmUpFile: string): Promise<void> {
  const ratios = { down: [] as number[], up: [] as number[] };
  const once = async (c: Contender, dir: 'down' | 'up') => {
    if (dir === 'down') {
      await download(c.port, WARM_UP_BYTES);
      return (await download(c.port, SIZE)).mbps;
    }
    await upload(c.port, warmUpFile, WARM_UP_BYTES);
    return (await upload(c.port, uploadFile, SIZE)).mbps;
  };
  for (let k = 0; k < pairs; k++) {
    for (const dir of ['down', 'up'] as const) {
      const first = k % 2 === 0 ? on : off;
      const a = await once(first, dir);
      const b = await once(first === on ? off : on, dir);
      ratios[dir].push(first === on ? a / b : b / a);
    }
  }
  const dl = median(ratios.down);
  const ul = median(ratios.up);
  const all = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(', ');
  report.table({
    title: 'The guard\'s cost: guard on / guard off, paired',
    note: `${pairs} pairs per direction, one 256 MiB transfer through each (after an unmeasured 64 MiB one), the order swapped each pair; the ratio of each pair, and their median.`,
    columns: ['direction', 'median ratio', 'each pair'],
    rows: [['download', fmt.x(dl), all(ratios.down)], ['upload', fmt.x(ul), all(ratios.up)]],
  });
  report.target('throughput with the guard vs guard off, download (paired)', fmt.x(dl), '>= 0.95x', dl >= 0.95);
  report.target('throughput with the guard vs guard off, upload (paired)', fmt.x(ul), '>= 0.95x', ul >= 0.95);
  report.figures.guard_cost = { pairs, download_ratios: ratios.down, upload_ratios: ratios.up, download: dl, upload: ul };
}
