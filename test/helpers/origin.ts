/**
 * A real HTTP origin on 127.0.0.1, standing in for the app behind a tunnel (ComfyUI on a box),
 * for integration tests, end-to-end tests and benchmarks.
 *
 *   GET  /small               1 KiB
 *   GET  /bytes?n=N&seed=S    N deterministic pseudo-random bytes, streamed in 64 KiB chunks with
 *                             backpressure; header `x-sha256` is the body's sha256 (hex), computed
 *                             up front (add `&sha=0` to skip that for very large N)
 *   POST /sha256              the sha256 (hex) of the uploaded body, as text; header `x-bytes`
 *   GET  /id                  the name given at start
 *
 * The bytes are the AES-128-CTR keystream under a key derived from the seed: fast, never
 * periodic (a duplicated or reordered chunk changes the checksum), and the same stream is
 * available to tests as `deterministicBytes()` / `expectedSha256()`.
 */
import { createCipheriv, createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable } from 'node:stream';

const CHUNK = 64 * 1024;
const ZEROS = Buffer.alloc(CHUNK);
export const SMALL_SIZE = 1024;

/** The byte stream of `GET /bytes?n=N&seed=S`, in chunks of at most 64 KiB. */
export function* byteChunks(n: number, seed = ''): Generator<Buffer> {
  const key = createHash('sha256').update(`vai-origin:${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  for (let done = 0; done < n; ) {
    const len = Math.min(CHUNK, n - done);
    yield cipher.update(len === CHUNK ? ZEROS : ZEROS.subarray(0, len));
    done += len;
  }
}

/** The same bytes as a Readable, e.g. as an upload body. */
export function deterministicBytes(n: number, seed = ''): Readable {
  return Readable.from(byteChunks(n, seed), { objectMode: false });
}

const shaCache = new Map<string, string>();

/** sha256 (hex) of the body `GET /bytes?n=N&seed=S` sends. Cached. */
export function expectedSha256(n: number, seed = ''): string {
  const k = `${n}:${seed}`;
  let sha = shaCache.get(k);
  if (sha === undefined) {
    const h = createHash('sha256');
    for (const c of byteChunks(n, seed)) h.update(c);
    sha = h.digest('hex');
    if (shaCache.size > 64) shaCache.clear();
    shaCache.set(k, sha);
  }
  return sha;
}

export interface OriginOptions {
  /** What `GET /id` answers (default "origin"). */
  name?: string;
  /** Default 0: any free port; read `port` after `start()`. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
}

export class Origin {
  readonly name: string;
  readonly host: string;
  port: number;
  /** Requests answered or being answered. */
  requests = 0;
  private server: http.Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(opts: OriginOptions = {}) {
    this.name = opts.name ?? 'origin';
    this.host = opts.host ?? '127.0.0.1';
    this.port = opts.port ?? 0;
  }

  get url(): string {
    return `http://${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`;
  }

  /** TCP connections open to the origin now. */
  get openConnections(): number {
    return this.sockets.size;
  }

  get listening(): boolean {
    return this.server?.listening ?? false;
  }

  async start(): Promise<this> {
    if (this.server) return this;
    const server = http.createServer((req, res) => this.handle(req, res));
    server.on('connection', (sock: Socket) => {
      this.sockets.add(sock);
      sock.once('close', () => this.sockets.delete(sock));
    });
    server.on('clientError', (_err, sock) => sock.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: this.port, host: this.host, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return this;
  }

  /** Stops listening and destroys every open connection (a transfer in flight is cut). Idempotent. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    const closed = new Promise<void>((r) => server.close(() => r()));
    server.closeAllConnections();
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.requests++;
    res.on('error', () => {});
    req.on('error', () => {});
    const url = new URL(req.url ?? '/', 'http://origin');
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case 'GET /small':
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': SMALL_SIZE });
        res.end(Buffer.alloc(SMALL_SIZE, 'v'));
        return;
      case 'GET /id':
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(this.name);
        return;
      case 'GET /bytes':
        return this.sendBytes(url, res);
      case 'POST /sha256': {
        const hash = createHash('sha256');
        let bytes = 0;
        req.on('data', (c: Buffer) => {
          hash.update(c);
          bytes += c.length;
        });
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'text/plain', 'x-bytes': String(bytes) });
          res.end(hash.digest('hex'));
        });
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end(`no route ${route}\n`);
    }
  }

  private sendBytes(url: URL, res: http.ServerResponse): void {
    const n = Number(url.searchParams.get('n') ?? '0');
    if (!Number.isSafeInteger(n) || n < 0) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end('n must be a non-negative integer\n');
      return;
    }
    const seed = url.searchParams.get('seed') ?? '';
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/octet-stream', 'content-length': n };
    if (url.searchParams.get('sha') !== '0') headers['x-sha256'] = expectedSha256(n, seed);
    res.writeHead(200, headers);
    const chunks = byteChunks(n, seed);
    let aborted = false;
    res.once('close', () => (aborted = true));
    const pump = (): void => {
      for (;;) {
        if (aborted) return;
        const next = chunks.next();
        if (next.done) return void res.end();
        if (!res.write(next.value)) return void res.once('drain', pump);
      }
    };
    pump();
  }
}

/** Starts an origin; `close()` it when done. */
export function startOrigin(opts: OriginOptions = {}): Promise<Origin> {
  return new Origin(opts).start();
}
