/**
 * The benchmark's HTTP origin, in its own process so the measuring process never competes with
 * it for an event loop. Prints `port N` on stdout once it listens on 127.0.0.1.
 *
 *   GET /small        1 KiB
 *   GET /big?n=N      N bytes (at most 256 MiB), written from one buffer filled at start-up
 *   PUT|POST /sink    reads the body, answers its length
 */
import { randomFillSync } from 'node:crypto';
import http from 'node:http';

const BIG = Buffer.allocUnsafe(256 * 1024 * 1024);
// Random bytes: no link in the path may gain from compressible data.
for (let off = 0; off < BIG.length; off += 1 << 26) randomFillSync(BIG, off, Math.min(1 << 26, BIG.length - off));
const SMALL = BIG.subarray(0, 1024);

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://origin');
  if (url.pathname === '/small') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': SMALL.length });
    res.end(SMALL);
  } else if (url.pathname === '/big') {
    const n = Math.min(BIG.length, Number(url.searchParams.get('n') ?? BIG.length));
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
    res.end(BIG.subarray(0, n));
  } else if (url.pathname === '/sink') {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => res.end(String(n)));
  } else {
    res.writeHead(404).end();
  }
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`port ${typeof addr === 'object' && addr ? addr.port : 0}\n`);
});
process.on('SIGTERM', () => process.exit(0));
