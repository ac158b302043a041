/**
 * A download made by this process into a folder it can write (the simulator's box tree, which
 * has no shell of its own), with the same rules as the boxes' curl: resumed from the partial
 * file, renamed into place when complete, checked against a sha256, and a token sent only to
 * its own host (redirects are followed by hand, so it never follows one elsewhere).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DownloadError, STALL_MS, type Transfer, type TransferProgress } from './installer.js';
import { redactUrl } from './tokens.js';

const MAX_REDIRECTS = 10;

async function sizeOf(file: string): Promise<number> {
  return (await stat(file).catch(() => undefined))?.size ?? 0;
}

async function sha256Of(file: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(file), h);
  return h.digest('hex');
}

/** GET with redirects followed by hand; the token goes only to its own host. */
async function get(url: string, t: Transfer, from: number, signal: AbortSignal): Promise<Response> {
  let at = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const authed = t.token && new URL(at).host.toLowerCase() === t.token.host;
    const headers: Record<string, string> = { 'user-agent': 'vai-mcp', ...(from > 0 ? { range: `bytes=${from}-` } : {}), ...(authed ? { authorization: `Bearer ${t.token!.value}` } : {}) };
    let res: Response;
    try {
      res = await fetch(at, { headers, redirect: 'manual', signal: AbortSignal.any([signal, AbortSignal.timeout(30_000)]) });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      throw new DownloadError(`downloading ${t.name} from ${redactUrl(at)} failed: ${(err as Error).cause ? String((err as Error & { cause: Error }).cause.message) : (err as Error).message}`, true);
    }
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      await res.body?.cancel().catch(() => undefined);
      at = new URL(location, at).toString();
      continue;
    }
    return res;
  }
  throw new DownloadError(`downloading ${t.name}: more than ${MAX_REDIRECTS} redirects`, false);
}

/** Downloads into `<root>/<dir>/<name>` (the root being a box's `models/` folder). */
export async function fetchDownload(root: string, t: Transfer, onBytes: (p: TransferProgress) => void, signal: AbortSignal): Promise<void> {
  const final = path.join(root, t.dir, t.name);
  const part = path.join(path.dirname(final), `.${path.basename(final)}.vai-part`);
  if ((await stat(final).catch(() => undefined))?.isFile()) return;
  await mkdir(path.dirname(final), { recursive: true, mode: 0o700 });
  let from = await sizeOf(part);
  const res = await get(t.url, t, from, signal);
  if (res.status === 416 && from > 0) {
    // The part is already whole (a cut came after its last byte): finish it below.
    await res.body?.cancel().catch(() => undefined);
  } else {
    if (!res.ok || !res.body) {
      await res.body?.cancel().catch(() => undefined);
      throw new DownloadError(`downloading ${t.name} from ${redactUrl(t.url)}: the server answered ${res.status} ${res.statusText}`, res.status >= 500);
    }
    if (res.status === 200) from = 0; // no range support: start again
    const range = /\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
    const length = Number(res.headers.get('content-length') ?? NaN);
    const total = range ? Number(range[1]) : Number.isFinite(length) ? from + length : null;
    let done = from;
    let lastByte = Date.now();
    let reported = 0;
    const stall = new AbortController();
    const watchdog = setInterval(() => {
      if (Date.now() - lastByte > STALL_MS) stall.abort();
    }, 1000);
    const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
    body.on('data', (c: Buffer) => {
      done += c.length;
      lastByte = Date.now();
      if (lastByte - reported >= 500) {
        reported = lastByte;
        onBytes({ done, total });
      }
    });
    try {
      await pipeline(body, createWriteStream(part, { flags: from > 0 ? 'a' : 'w', mode: 0o600 }), { signal: AbortSignal.any([signal, stall.signal]) });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      if (stall.signal.aborted) throw new DownloadError(`the download of ${t.name} stalled (no data for ${STALL_MS / 1000} s)`, false, true);
      throw new DownloadError(`downloading ${t.name} from ${redactUrl(t.url)} was cut off after ${done} bytes: ${(err as Error).message}`, true);
    } finally {
      clearInterval(watchdog);
    }
    if (total !== null && done < total) throw new DownloadError(`downloading ${t.name}: the connection ended after ${done} of ${total} bytes`, true);
    onBytes({ done, total });
  }
  if (t.sha256) {
    const got = await sha256Of(part);
    if (got !== t.sha256.toLowerCase()) {
      await rm(part, { force: true });
      throw new DownloadError(`sha256 mismatch for ${t.name}: expected ${t.sha256}, got ${got}; the partial file was removed`, false);
    }
  }
  await rename(part, final);
}
