/**
 * Stand-ins for the places models and node packs come from: an HTTP file server with Range
 * support (Hugging Face and Civitai resume that way) that can cut a transfer once, redirect to
 * another host name, throttle to a rate, and records every request with its Authorization
 * header; a Comfy registry answering `GET /nodes/<id>`; and a node pack as a local bare git repo.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { byteChunks, expectedSha256 } from './origin.js';
import { freePort } from './sshd.js';

export interface SeenRequest {
  path: string;
  host: string | undefined;
  range: string | undefined;
  authorization: string | undefined;
}

export interface ModelServerOptions {
  /** Bytes per second for file bodies (default: as fast as possible). */
  rateBytesPerS?: number;
  /** Listen address (default 127.0.0.1). */
  host?: string;
}

/** A file the server serves at `/files/<name>`: `size` deterministic bytes seeded by the name. */
export interface ServedFile {
  size: number;
  /** Cut the connection after this many body bytes, once. */
  cutOnceAt?: number;
}

export class ModelServer {
  readonly seen: SeenRequest[] = [];
  readonly files = new Map<string, ServedFile>();
  /** Registry answers: pack id -> repository URL. */
  readonly registry = new Map<string, string>();
  /** Bytes of file bodies sent in all. */
  bytesSent = 0;
  /** File bodies being sent now, and the most at once so far. */
  active = 0;
  maxActive = 0;
  private readonly sockets = new Set<net.Socket>();

  constructor(
    private readonly server: http.Server,
    readonly port: number,
    readonly host: string,
  ) {
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  /** `http://<host>:<port>/files/<name>`. */
  url(name: string, host = this.host): string {
    return `http://${host}:${this.port}/files/${encodeURIComponent(name)}`;
  }

  /** A URL that redirects (302) to the file on another host name (`localhost` for 127.0.0.1). */
  redirectUrl(name: string, toHost: string): string {
    return `http://${this.host}:${this.port}/redirect/${encodeURIComponent(toHost)}/${encodeURIComponent(name)}`;
  }

  sha256(name: string): string {
    return expectedSha256(this.files.get(name)!.size, name);
  }

  fileRequests(name: string): SeenRequest[] {
    return this.seen.filter((r) => r.path === `/files/${encodeURIComponent(name)}`);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

async function sendFile(res: http.ServerResponse, name: string, file: ServedFile, range: string | undefined, srv: ModelServer, rate?: number): Promise<void> {
  const from = Number(/^bytes=(\d+)-$/.exec(range ?? '')?.[1] ?? 0);
  if (from >= file.size && from > 0) {
    res.writeHead(416, { 'content-range': `bytes */${file.size}` }).end();
    return;
  }
  const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes', 'content-length': file.size - from };
  if (from > 0) headers['content-range'] = `bytes ${from}-${file.size - 1}/${file.size}`;
  res.writeHead(from > 0 ? 206 : 200, headers);
  const cutAt = file.cutOnceAt;
  let offset = 0;
  let sent = 0;
  const started = Date.now();
  for (const chunk of byteChunks(file.size, name)) {
    const end = offset + chunk.length;
    if (end <= from) {
      offset = end;
      continue;
    }
    let piece = chunk.subarray(Math.max(0, from - offset));
    if (cutAt !== undefined && from + sent + piece.length > cutAt) {
      piece = piece.subarray(0, Math.max(0, cutAt - from - sent));
      if (piece.length) res.write(piece);
      srv.bytesSent += piece.length;
      file.cutOnceAt = undefined;
      res.socket?.destroy();
      return;
    }
    if (!res.write(piece)) await new Promise((r) => res.once('drain', r));
    sent += piece.length;
    srv.bytesSent += piece.length;
    offset = end;
    if (rate && offset < file.size) {
      const ahead = (sent / rate) * 1000 - (Date.now() - started);
      if (ahead > 5) await new Promise((r) => setTimeout(r, ahead));
    }
    if (res.destroyed) return;
  }
  res.end();
}

export async function startModelServer(opts: ModelServerOptions = {}): Promise<ModelServer> {
  const host = opts.host ?? '127.0.0.1';
  const port = await freePort();
  // eslint-disable-next-line prefer-const
  let srv: ModelServer;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    srv.seen.push({ path: url.pathname, host: req.headers.host, range: req.headers.range, authorization: req.headers.authorization });
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    if (parts[0] === 'files' && parts.length === 2 && srv.files.has(parts[1]!)) {
      srv.maxActive = Math.max(srv.maxActive, ++srv.active);
      void sendFile(res, parts[1]!, srv.files.get(parts[1]!)!, req.headers.range, srv, opts.rateBytesPerS)
        .catch(() => res.destroy())
        .finally(() => srv.active--);
      return;
    }
    if (parts[0] === 'redirect' && parts.length === 3) {
      res.writeHead(302, { location: srv.url(parts[2]!, parts[1]) }).end();
      return;
    }
    if (parts[0] === 'nodes' && parts.length === 2 && srv.registry.has(parts[1]!)) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: parts[1], name: parts[1], repository: srv.registry.get(parts[1]!) }));
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"message":"not found"}');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  srv = new ModelServer(server, port, host);
  return srv;
}

/**
 * A node pack as a bare git repository (file:// URL): an `__init__.py` whose NODE_CLASS_MAPPINGS
 * names `nodeTypes`, and a requirements.txt. `cleanup` removes it.
 */
export function makeNodePackRepo(name: string, nodeTypes: string[]): { url: string; cleanup(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vai-pack-'));
  const work = path.join(dir, 'work');
  const bare = path.join(dir, `${name}.git`);
  const git = (args: string[], cwd = dir) => execFileSync('git', args, { cwd, stdio: 'ignore', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' } });
  git(['init', '-q', '-b', 'main', work]);
  const classes = nodeTypes.map((t) => `class ${t}:\n    pass\n`).join('\n');
  writeFileSync(path.join(work, '__init__.py'), `${classes}\nNODE_CLASS_MAPPINGS = {${nodeTypes.map((t) => `"${t}": ${t}`).join(', ')}}\n`);
  writeFileSync(path.join(work, 'requirements.txt'), '');
  git(['add', '.'], work);
  git(['commit', '-q', '-m', 'pack'], work);
  git(['tag', 'v1.0.0'], work);
  git(['clone', '-q', '--bare', work, bare]);
  return { url: `file://${bare}`, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
