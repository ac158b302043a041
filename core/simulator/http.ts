/** Small HTTP helpers for the simulator's routes: answers, and request bodies with a size cap. */
import type http from 'node:http';

/** An error that becomes an HTTP answer with this status and message. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** A JSON body to send instead of `{error: message}`. */
    readonly body?: unknown,
  ) {
    super(message);
  }
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendBytes(res: http.ServerResponse, status: number, contentType: string, data: Buffer | string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(data), ...headers });
  res.end(data);
}

/** An empty 200, as ComfyUI answers POST /queue, /interrupt and /history. */
export function sendOk(res: http.ServerResponse): void {
  res.writeHead(200, { 'content-length': 0 });
  res.end();
}

/** The whole request body; HttpError 413 past `maxBytes` (the connection is then closed). */
export function readBody(req: http.IncomingMessage, maxBytes: number): Promise<Buffer> {
  const tooBig = () => new HttpError(413, `request body too large: the simulated box accepts at most ${maxBytes} bytes`);
  const announced = Number(req.headers['content-length']);
  if (Number.isFinite(announced) && announced > maxBytes) return Promise.reject(tooBig());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        req.removeAllListeners('data');
        req.pause();
        reject(tooBig());
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** The body parsed as JSON; an empty body is `undefined`. HttpError 400 when it is not JSON. */
export async function readJson(req: http.IncomingMessage, maxBytes: number): Promise<unknown> {
  const body = await readBody(req, maxBytes);
  if (body.length === 0) return undefined;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new HttpError(400, `the request body is not valid JSON: ${(err as Error).message}`);
  }
}

export { isObject } from '../lib/json.js';

const CONTENT_TYPES: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  json: 'application/json',
  txt: 'text/plain; charset=utf-8',
};

/** A content type from a file name's extension, as ComfyUI's mimetypes guess does. */
export function contentTypeOf(name: string): string {
  const ext = /\.([^./]+)$/.exec(name)?.[1]?.toLowerCase() ?? '';
  return CONTENT_TYPES[ext] ?? 'application/octet-stream';
}
