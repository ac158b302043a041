/**
 * `npm run bench [-- --json <file>] [--rounds N] [--only transfers,latency,lifecycle,memory,models,apps]`
 *
 * Measures the real supervisor, started by the built CLI with the `ssh` provider against OpenSSH
 * sshd on loopback, side by side with OpenSSH `ssh -N -L` and a direct connection, interleaving
 * the contenders round by round. Prints a Markdown report on stdout (progress on stderr) and
 * writes the same figures as JSON with `--json <file>`. Exits 1 only when something broke (or,
 * with `--strict`, when a target is missed).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ROOT } from '../test/helpers/cli.js';
import { freePort, startSshd, type SshdHandle } from '../test/helpers/sshd.js';
import { tellWatchdog } from '../test/helpers/watchdog.js';
import { negotiatedCipher, openSshL, stopProcess, type SshTarget } from './lib/openssh.js';
import { machine } from './lib/proc.js';
import { Report } from './lib/report.js';
import { Vai } from './lib/vai.js';
import { measureConcurrentOpen } from './sections/concurrent.js';
import { DIRECT, OPENSSH_DEFAULT, OPENSSH_OUR_CIPHER, OURS, OURS_GUARD_OFF, type Contender } from './sections/contenders.js';
import { measureLatency } from './sections/latency.js';
import { measureFaults, measureOpen, measureStartToUp } from './sections/lifecycle.js';
import { measureMcp } from './sections/mcp.js';
import { measureModelPrep } from './sections/models.js';
import { measureMemory, sshPrivateOf } from './sections/memory.js';
import { measureApps } from './sections/apps.js';
import { measureGuardCost, measureTransfers, WARM_UP_BYTES } from './sections/transfer.js';

const SECTIONS = ['transfers', 'latency', 'lifecycle', 'memory', 'models', 'apps'] as const;
const { values: args } = parseArgs({
  options: {
    json: { type: 'string' },
    rounds: { type: 'string', default: '5' },
    only: { type: 'string' },
    strict: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  process.stdout.write(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]!.replace(/^\/\*\*?|^ \* ?/gm, '') + '\n');
  process.exit(0);
}
const rounds = Number(args.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a whole number >= 1, got ${args.rounds}`);
const only = new Set(args.only ? args.only.split(',') : SECTIONS);
for (const s of only) if (!(SECTIONS as readonly string[]).includes(s)) throw new Error(`--only: unknown section ${s}; known: ${SECTIONS.join(', ')}`);

/** Hosts for the many-tunnel runs: 127.0.1.1 ... 127.0.1.N, 16 per sshd (OpenSSH's limit of listen addresses). */
const MANY = 200;
const PER_SSHD = 16;
/** Pairs of guard-on / guard-off transfers per direction for the guard's cost. */
const GUARD_PAIRS = 24;

function startOriginProcess(): Promise<{ port: number; child: ChildProcess }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(path.dirname(fileURLToPath(import.meta.url)), 'lib', 'origin-server.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
    if (child.pid) tellWatchdog('pid+', String(child.pid), 'origin-server');
    const timer = setTimeout(() => reject(new Error('origin did not start within 30 s')), 30_000);
    child.stdout!.once('data', (d: Buffer) => {
      clearTimeout(timer);
      resolve({ port: Number(/port (\d+)/.exec(String(d))?.[1]), child });
    });
    child.once('exit', (code) => reject(new Error(`origin exited ${code}`)));
  });
}

/** The benchmark drives real programs; say which one is missing and how to get it. */
function checkTools(): void {
  for (const [tool, args, pkg] of [['curl', ['--version'], 'curl'], ['ssh', ['-V'], 'openssh-client'], ['/usr/sbin/sshd', ['-V'], 'openssh-server']] as const) {
    const r = spawnSync(tool, [...args], { stdio: 'ignore' });
    if (r.error) throw new Error(`the benchmark needs ${tool}: install it (Debian/Ubuntu: apt-get install -y ${pkg})`);
  }
}

async function main(): Promise<void> {
  checkTools();
  const report = new Report();
  const cleanups: (() => Promise<void> | void)[] = [];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch((e) => process.stderr.write(`cleanup: ${e}\n`));
    cleanups.length = 0;
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    const origin = await startOriginProcess();
    cleanups.push(() => void origin.child.kill('SIGTERM'));
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'vai-bench-'));
    cleanups.push(() => rmSync(tmp, { recursive: true, force: true }));

    const sshd = await startSshd({ logLevel: 'ERROR' });
    cleanups.push(() => sshd.stop());
    const target: SshTarget = { host: sshd.host, port: sshd.port, user: sshd.user, keyPath: sshd.userKeyPath, remotePort: origin.port };

    const vai = new Vai();
    cleanups.push(() => vai.cleanup());
    const box = await vai.createSshBox(target);
    const pid = vai.supervisorPid();
    const status = await vai.sb.json<{ pid: number; native_crypto: boolean; warnings: string[] }>(['daemon', 'status', '--json']);
    if (status.pid !== pid) throw new Error(`daemon status says pid ${status.pid}, /proc says ${pid}`);

    const ourCipher = vai.cipher();
    const m = machine();
    const ssh2Version = (JSON.parse(readFileSync(path.join(ROOT, 'node_modules', 'ssh2', 'package.json'), 'utf8')) as { version: string }).version;
    const opensshVersion = spawnSync('ssh', ['-V'], { encoding: 'utf8' }).stderr.trim();
    report.header.push(
      `Run ${new Date().toISOString()} on ${m.cpu}, ${m.cores} cores, ${m.memory_gib} GiB, Linux ${m.kernel}.`,
      `Node ${process.version}, ssh2 ${ssh2Version} (native crypto binding: ${status.native_crypto ? 'present' : '**missing**'}), ${opensshVersion}.`,
      `Ciphers: vai-mcp ${ourCipher}; OpenSSH default ${await negotiatedCipher(target)}. Everything on loopback; sshd, origin, clients and tunnels share the machine's ${m.cores} cores.`,
      `Reproduce: \`npm run bench -- --json bench-results.json\` (${rounds} interleaved rounds).`,
    );
    report.figures.machine = { ...m, node: process.version, ssh2: ssh2Version, openssh: opensshVersion, cipher: ourCipher, native_crypto: status.native_crypto, supervisor_pid: pid };
    report.target('ssh2 native crypto binding present', status.native_crypto ? 'present' : 'missing', 'present (else a warning at start)', status.native_crypto);

    if (only.has('transfers') || only.has('latency')) {
      const defaultPort = await freePort();
      const aesPort = await freePort();
      const sshDefault = await openSshL(target, defaultPort);
      const sshAes = await openSshL(target, aesPort, ourCipher);
      // The same box with the guard off, in a supervisor of its own: what the guard costs. (In one
      // supervisor, whichever of the two ran first after the others paid for its memory growing back.)
      const vaiOff = new Vai();
      cleanups.push(() => vaiOff.cleanup());
      const unguarded = await vaiOff.createSshBox(target, { guard: 'off' });
      const pidOff = vaiOff.supervisorPid();
      const contenders: Contender[] = [
        { name: DIRECT, cipher: '-', port: origin.port },
        { name: OPENSSH_DEFAULT, cipher: await negotiatedCipher(target), port: defaultPort, pid: sshDefault.pid! },
        { name: OPENSSH_OUR_CIPHER, cipher: ourCipher, port: aesPort, pid: sshAes.pid! },
        { name: OURS, cipher: ourCipher, port: box.local_port, pid, group: OURS },
        { name: OURS_GUARD_OFF, cipher: ourCipher, port: unguarded.local_port, pid: pidOff, group: OURS },
      ];
      try {
        if (only.has('transfers')) {
          const file = path.join(tmp, 'upload.bin');
          const buf = Buffer.allocUnsafe(256 * 1024 * 1024);
          randomFillSync(buf);
          writeFileSync(file, buf);
          const warmUpFile = path.join(tmp, 'warm-up.bin');
          writeFileSync(warmUpFile, buf.subarray(0, WARM_UP_BYTES));
          await measureTransfers(report, contenders, rounds, file, warmUpFile);
          await measureGuardCost(report, contenders.find((c) => c.name === OURS)!, contenders.find((c) => c.name === OURS_GUARD_OFF)!, GUARD_PAIRS, file, warmUpFile);
        }
        if (only.has('latency')) await measureLatency(report, contenders, rounds, 200, 400);
      } finally {
        await stopProcess(sshDefault);
        await stopProcess(sshAes);
      }
    }

    if (only.has('lifecycle')) {
      await measureOpen(report, vai, box.instance_id, target, rounds);
      await measureStartToUp(report, vai, box.local_port, rounds);
      await measureFaults(report, vai, sshd, box.instance_id, box.local_port, 3, [2, 4, 8, 16, 40]);
    }

    if (only.has('models')) await measureModelPrep(report, vai, tmp, rounds);

    if (only.has('memory') || only.has('apps')) {
      const farm: SshdHandle[] = [];
      cleanups.push(() => Promise.all(farm.map((s) => s.stop())).then(() => undefined));
      const hosts: SshTarget[] = [];
      for (let k = 0; k * PER_SSHD < MANY; k++) {
        const addrs = Array.from({ length: Math.min(PER_SSHD, MANY - k * PER_SSHD) }, (_, j) => `127.0.1.${k * PER_SSHD + j + 1}`);
        const port = await freePort({ hosts: [addrs[0]!, '0.0.0.0'] });
        const s = await startSshd({ listenAddress: addrs[0], port, logLevel: 'ERROR', extraConfig: addrs.slice(1).map((a) => `ListenAddress ${a}`) });
        farm.push(s);
        for (const a of addrs) hosts.push({ host: a, port: s.port, user: s.user, keyPath: s.userKeyPath, remotePort: origin.port });
      }
      let sshPrivate: number | undefined;
      if (only.has('memory')) {
        const many = new Vai();
        cleanups.push(() => many.cleanup());
        const { instanceIds, sshPrivateKiB } = await measureMemory(report, many, hosts, [1, 50, MANY]);
        sshPrivate = sshPrivateKiB;
        await measureMcp(report, many, 100);
        await measureConcurrentOpen(report, many, instanceIds.slice(0, 100));
        await many.cleanup();
      }
      if (only.has('apps')) {
        const appsVai = new Vai();
        cleanups.push(() => appsVai.cleanup());
        await measureApps(report, appsVai, hosts, sshPrivate ?? (await sshPrivateOf(hosts[0]!)));
      }
    }
  } finally {
    await cleanup();
  }

  const md = report.markdown();
  process.stdout.write(`\n${md}\n`);
  if (args.json) {
    writeFileSync(args.json, JSON.stringify(report.json(), null, 2));
    process.stderr.write(`figures written to ${args.json}\n`);
  }
  const missed = report.targets.filter((t) => !t.met);
  if (missed.length) process.stderr.write(`\n${missed.length} target(s) missed: ${missed.map((t) => t.name).join('; ')}\n`);
  if (args.strict && missed.length) process.exitCode = 1;
}

main().catch((err) => {
  process.stderr.write(`benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
