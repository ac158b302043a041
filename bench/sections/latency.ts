/**
 * Latency of 1 KiB GETs per contender: a fresh TCP connection for each request (where Nagle
 * stalls show), and many requests over one keep-alive connection. Interleaved round by round.
 */
import http from 'node:http';
import { timedGet } from '../lib/http.js';
import { fmt, type Report } from '../lib/report.js';
import { mean, percentile, rotate, shareOver } from '../lib/stats.js';
import { OPENSSH_DEFAULT, OURS, OURS_GUARD_OFF, processGroups, type Contender } from './contenders.js';

const STALL_MS = 30;

export async function measureLatency(report: Report, contenders: Contender[], rounds: number, freshPerRound: number, keepAlivePerRound: number): Promise<void> {
  const fresh = new Map(contenders.map((c) => [c.name, [] as number[]]));
  const kept = new Map(contenders.map((c) => [c.name, [] as number[]]));
  // A group's contenders (our tunnel with the guard on and off) take turns request by request: a
  // batch that ran first after the others' would pay for its supervisor's idle spell.
  for (let r = 0; r < rounds; r++) {
    for (const group of processGroups(contenders, r)) {
      for (let i = 0; i < freshPerRound; i++) {
        for (const c of rotate(group, i)) fresh.get(c.name)!.push(await timedGet(c.port, '/small', false));
      }
    }
    for (const group of processGroups(contenders, r)) {
      const agents = new Map(group.map((c) => [c.name, new http.Agent({ keepAlive: true, maxSockets: 1 })]));
      for (const c of group) await timedGet(c.port, '/small', agents.get(c.name)!); // opens the connection; not counted
      for (let i = 0; i < keepAlivePerRound; i++) {
        for (const c of rotate(group, i)) kept.get(c.name)!.push(await timedGet(c.port, '/small', agents.get(c.name)!));
      }
      for (const a of agents.values()) a.destroy();
    }
    process.stderr.write(`latency: round ${r + 1}/${rounds} done\n`);
  }
  const summary = (xs: number[]) => ({ n: xs.length, mean: mean(xs), p50: percentile(xs, 50), p99: percentile(xs, 99), over_30ms: shareOver(xs, STALL_MS) });
  const rows = contenders.map((c) => {
    const f = summary(fresh.get(c.name)!);
    const k = summary(kept.get(c.name)!);
    return [c.name, fmt.ms(f.mean), fmt.ms(f.p50), fmt.ms(f.p99), fmt.pct(f.over_30ms), fmt.ms(k.mean), fmt.ms(k.p50), fmt.ms(k.p99), fmt.pct(k.over_30ms)];
  });
  report.table({
    title: 'Request latency: 1 KiB GETs (ms)',
    note: `${rounds} interleaved rounds (the guard on and off, each in its own supervisor, taking turns request by request); ${freshPerRound} fresh-connection and ${keepAlivePerRound} keep-alive requests per contender per round. "> 30 ms" is the share of stalled requests.`,
    columns: ['contender', 'fresh mean', 'fresh p50', 'fresh p99', 'fresh > 30 ms', 'keep-alive mean', 'keep-alive p50', 'keep-alive p99', 'keep-alive > 30 ms'],
    rows,
  });
  const ours = summary(fresh.get(OURS)!);
  const ref = summary(fresh.get(OPENSSH_DEFAULT)!);
  report.target('fresh-connection mean latency vs OpenSSH default', `${fmt.x(ours.mean / ref.mean)} (${fmt.ms(ours.mean)} vs ${fmt.ms(ref.mean)} ms)`, '<= 0.6x', ours.mean / ref.mean <= 0.6);
  report.target('fresh-connection requests over 30 ms', fmt.pct(ours.over_30ms), '<= 2%', ours.over_30ms <= 0.02);
  const off = summary(fresh.get(OURS_GUARD_OFF)!);
  report.target('fresh-connection mean latency with the guard vs guard off', `${fmt.x(ours.mean / off.mean)} (${fmt.ms(ours.mean)} vs ${fmt.ms(off.mean)} ms)`, '<= 1.1x', ours.mean / off.mean <= 1.1);
  report.figures.latency = {
    rounds,
    fresh: Object.fromEntries(contenders.map((c) => [c.name, summary(fresh.get(c.name)!)])),
    keep_alive: Object.fromEntries(contenders.map((c) => [c.name, summary(kept.get(c.name)!)])),
  };
}
