/** HTTP through a contender: timed small requests, bulk transfers with curl, readiness polls. */
import { execFile } from 'node:child_process';
import http from 'node:http';

/** One GET of `path`, body read to the end; resolves its duration in ms, rejects on any error. */
export function timedGet(port: number, path: string, agent: http.Agent | false): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.get({ host: '127.0.0.1', port, path, agent, timeout: 10_000 }, (res) => {
      res.on('data', () => {});
      res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('request timed out after 10 s')));
    req.on('error', reject);
  });
}

/** True when a GET /small through `port` answers within `timeoutMs`. */
export function answers(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/small', agent: false, timeout: timeoutMs }, (res) => {
      res.once('data', () => {
        res.destroy();
        resolve(res.statusCode === 200);
      });
      res.on('error', () => resolve(false));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/** Polls `check` every `everyMs` until true; resolves the ms it took. Bounded. */
export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 10): Promise<number> {
  const t0 = performance.now();
  while (!(await check())) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return performance.now() - t0;
}

function curl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '--fail', '--max-time', '120', '-o', '/dev/null', ...args], { timeout: 130_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`curl ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout),
    );
  });
}

export interface Transfer {
  /** 10^6 bytes per second, as curl reports it. */
  mbps: number;
  bytes: number;
}

/** Downloads `bytes` through `port` with curl (a C client, so the client costs little CPU). */
export async function download(port: number, bytes: number): Promise<Transfer> {
  const out = await curl(['-w', '%{speed_download} %{size_download}', `http://127.0.0.1:${port}/big?n=${bytes}`]);
  const [speed, size] = out.trim().split(' ').map(Number);
  if (size !== bytes) throw new Error(`download through ${port}: ${size} of ${bytes} bytes`);
  return { mbps: speed! / 1e6, bytes: size! };
}

/** Uploads the file (PUT) through `port` with curl. */
export async function upload(port: number, file: string, bytes: number): Promise<Transfer> {
  const out = await curl(['-H', 'Expect:', '-T', file, '-w', '%{speed_upload} %{size_upload}', `http://127.0.0.1:${port}/sink`]);
  const [speed, size] = out.trim().split(' ').map(Number);
  if (size !== bytes) throw new Error(`upload through ${port}: ${size} of ${bytes} bytes`);
  return { mbps: speed! / 1e6, bytes: size! };
}
