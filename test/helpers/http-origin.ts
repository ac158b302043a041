/**
 * A real HTTP origin on loopback, standing in for the app behind a tunnel: small responses,
 * large deterministic downloads with a known checksum, an upload checksum, and its own name.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const BLOCK = 1 << 20;

/** 1 MiB of pseudo-random bytes derived from a seed. */
function block(seed: string): Buffer {
  const out = Buffer.alloc(BLOCK);
  let h = createHash('sha256').update(seed).digest();
  for (let off = 0; off < BLOCK; off += h.length) {
    h.copy(out, off);
    h = createHash('sha256').update(h).digest();
  }
  return out;
}

/** The sha256 (hex) of what `GET /bytes?n=N&seed=S` sends. */
export function expectedSha256(n: number, seed = 'vai'): string {
  const b = block(seed);
  const hash = createHash('sha256');
  for (let sent = 0; sent < n; sent += BLOCK) hash.update(b.subarray(0, Math.min(BLOCK, n - sent)));
  return hash.digest('hex');
}

export class HttpOrigin {
  private server: http.Server | undefined;
  port: number;

  constructor(readonly name = 'origin', port = 0) {
    this.port = port;
  }

  async start(): Promise<this> {
    const blocks = new Map<string, Buffer>();
    const server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://origin');
      if (req.method === 'GET' && url.pathname === '/small') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 1024 });
        res.end(Buffer.alloc(1024, 120));
        return;
      }
      if (req.method === 'GET' && url.pathname === '/id') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(this.name);
        return;
      }
      if (req.method === 'GET' && url.pathname === '/bytes') {
        const n = Number(url.searchParams.get('n') ?? 0);
        const seed = url.searchParams.get('seed') ?? 'vai';
        let b = blocks.get(seed);
        if (!b) blocks.set(seed, (b = block(seed)));
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
        let sent = 0;
        const pump = () => {
          while (sent < n) {
            const chunk = b!.subarray(0, Math.min(BLOCK, n - sent));
            sent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
        return;
      }
      if (req.method === 'POST' && url.pathname === '/sha256') {
        const hash = createHash('sha256');
        let bytes = 0;
        req.on('data', (c: Buffer) => {
          hash.update(c);
          bytes += c.length;
        });
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ sha256: hash.digest('hex'), bytes }));
        });
        return;
      }
      res.writeHead(404);
      res.end();
    });
    server.on('clientError', (_e, s) => s.destroy());
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    return this;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}
