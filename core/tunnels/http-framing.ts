/**
 * HTTP/1.x request framing for the tunnel's guard: where each request head on a local
 * connection ends, what it says, and how long its body is, so that every head can be checked
 * before any of it goes on to the box.
 *
 * It is strict exactly where a lenient parser would let the guard and the box disagree about
 * where the next request starts (request smuggling): a bare LF or bare CR, obsolete line folding,
 * `Content-Length` together with `Transfer-Encoding`, two `Content-Length`s, or a
 * `Transfer-Encoding` that is not exactly `chunked` is refused (400), never guessed at.
 * Bodies pass through as they arrive and are never held whole; after an upgrade (a websocket)
 * the rest of the connection is opaque.
 *
 * Node's own parser (llhttp) is as strict, but it can only be reached through Node's internals,
 * and it answers with parsed messages, not with the byte ranges the guard must forward unchanged.
 */

import { DASHBOARD_COOKIE } from '../model/tunnel.js';

export interface RequestHead {
  method: string;
  target: string;
  version: '1.0' | '1.1';
  /** Field values by lowercased name, in the order received. */
  fields: Map<string, string[]>;
}

export interface Refusal {
  status: 400 | 403 | 405 | 431 | 505;
  /** One line for whoever sent the request: what was refused and what to do. */
  message: string;
  /** For the log: what was refused (`origin http://x`, `host y`, `malformed: ...`). */
  subject: string;
}

/** Decides on a complete, well-framed head: undefined lets it through. */
export type HeadCheck = (head: RequestHead) => Refusal | undefined;

export const MAX_HEAD_BYTES = 64 * 1024;
const MAX_CHUNK_LINE = 4 * 1024;
/** 2^53 - 1 has 16 digits; anything longer cannot be a real length. */
const MAX_LENGTH_DIGITS = 15;
const CR = 0x0d;
const LF = 0x0a;
const HEAD_END = Buffer.from('\r\n\r\n');
const CRLF_BYTES = Buffer.from('\r\n');
const NO_BYTES = Buffer.alloc(0);

const enum State {
  Head,
  Body,
  ChunkLine,
  ChunkData,
  ChunkEnd,
  Trailers,
  Opaque,
  Closed,
}

// RFC 9110 token characters, and field values: HTAB, SP, VCHAR, obs-text (latin1 string view).
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([^\x00-\x20\x7f]+) HTTP\/(\d)\.(\d)$/;
const FIELD_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([\t\x20-\x7e\x80-\xff]*)$/;
const CHUNK_LINE = /^([0-9A-Fa-f]+)(?:[ \t]*;[\t\x20-\x7e\x80-\xff]*)?$/;

export function malformed(reason: string, status: 400 | 431 | 505 = 400): Refusal {
  return {
    status,
    message: `vai-mcp refused this request: ${reason}. The tunnel's guard passes only well-formed HTTP/1.x requests.`,
    subject: `malformed: ${reason}`,
  };
}

/** Field lines of a head or trailer section (without its request line and final CRLF). */
function parseFields(lines: string[], into: Map<string, string[]>): Refusal | undefined {
  for (const line of lines) {
    if (line[0] === ' ' || line[0] === '\t') return malformed('obsolete line folding (a header line that starts with a space or tab)');
    const m = FIELD_LINE.exec(line);
    if (!m) return malformed(`a malformed header line (${JSON.stringify(line.slice(0, 60))})`);
    const name = m[1]!.toLowerCase();
    const value = m[2]!.replace(/^[ \t]+|[ \t]+$/g, '');
    const list = into.get(name);
    if (list) list.push(value);
    else into.set(name, [value]);
  }
  return undefined;
}

/** A bare CR or bare LF anywhere in a head or line: refused, never read as a line end. */
function hasBareLineEnd(text: string): boolean {
  return /\r(?!\n)|(?<!\r)\n/.test(text);
}

/**
 * A head without one cookie: the dashboard's lives on 127.0.0.1, as tunnels do (cookies are not
 * kept apart by port), and no box may ever see it. A Cookie line left empty goes.
 */
export function withoutCookie(head: string, name: string): Buffer {
  const lines = head.split('\r\n').flatMap((line, i) => {
    if (i === 0 || !/^cookie:/i.test(line)) return [line];
    const kept = line.slice(line.indexOf(':') + 1).split(';').map((c) => c.trim()).filter((c) => c && !c.startsWith(`${name}=`));
    return kept.length ? [`Cookie: ${kept.join('; ')}`] : [];
  });
  return Buffer.from(lines.join('\r\n'), 'latin1');
}

/** Parses one complete head (request line through the blank line, as latin1 text). */
export function parseRequestHead(text: string): RequestHead | Refusal {
  if (hasBareLineEnd(text.slice(0, -4))) return malformed('a bare CR or LF line end (lines must end with CRLF)');
  const lines = text.slice(0, -4).split('\r\n');
  const requestLine = lines.shift()!;
  const m = REQUEST_LINE.exec(requestLine);
  if (!m) return malformed(`a malformed request line (${JSON.stringify(requestLine.slice(0, 60))})`);
  if (m[3] !== '1' || (m[4] !== '0' && m[4] !== '1')) return malformed(`HTTP/${m[3]}.${m[4]} (only HTTP/1.0 and HTTP/1.1 pass)`, 505);
  const head: RequestHead = { method: m[1]!, target: m[2]!, version: m[4] === '0' ? '1.0' : '1.1', fields: new Map() };
  return parseFields(lines, head.fields) ?? head;
}

/** The one value of a field that may appear once: undefined when absent, a refusal when repeated. */
export function singleField(head: RequestHead, name: string): string | undefined | Refusal {
  const values = head.fields.get(name);
  if (!values) return undefined;
  if (values.length > 1) return malformed(`${values.length} ${name} headers`);
  return values[0];
}

export function isRefusal(x: unknown): x is Refusal {
  return typeof x === 'object' && x !== null && 'status' in x && 'subject' in x;
}

/** How the body of a checked head is framed: its length, chunked, or a refusal. */
function bodyFraming(head: RequestHead): { chunked: true } | { length: number } | Refusal {
  const te = head.fields.get('transfer-encoding');
  const cl = head.fields.get('content-length');
  if (te && cl) return malformed('both Content-Length and Transfer-Encoding');
  if (cl) {
    if (cl.length > 1) return malformed(`${cl.length} Content-Length headers`);
    const v = cl[0]!;
    if (!/^\d+$/.test(v) || v.length > MAX_LENGTH_DIGITS) return malformed(`Content-Length ${JSON.stringify(v.slice(0, 30))} is not a length`);
    return { length: Number(v) };
  }
  if (te) {
    if (te.length > 1) return malformed(`${te.length} Transfer-Encoding headers`);
    if (head.version === '1.0') return malformed('Transfer-Encoding in an HTTP/1.0 request');
    if (te[0]!.toLowerCase() !== 'chunked') return malformed(`Transfer-Encoding ${JSON.stringify(te[0]!.slice(0, 30))} (only "chunked" passes)`);
    return { chunked: true };
  }
  return { length: 0 };
}

/** `Upgrade` with `Connection: upgrade`: after this request the box speaks another protocol. */
function isUpgrade(head: RequestHead): boolean {
  if (!head.fields.has('upgrade')) return false;
  return (head.fields.get('connection') ?? []).some((v) => v.split(',').some((t) => t.trim().toLowerCase() === 'upgrade'));
}

/**
 * One local connection's requests, in order. `feed` takes the bytes the client sent and hands
 * every run that may go on to the box to `pass`; a head goes on only once it is complete,
 * well-framed and accepted by the check. The first refusal ends the connection.
 */
export class RequestFramer {
  private state = State.Head;
  /** Head (or trailer) bytes received so far, while the section is incomplete. */
  private pending: Buffer[] = [];
  private pendingLength = 0;
  /** The last (up to) three pending bytes, where a blank line may have begun. */
  private tail = NO_BYTES;
  /** Body or chunk bytes still to pass. */
  private remaining = 0;
  /** A chunk-size or trailer line being read. */
  private line = '';
  private trailerBytes = 0;
  /** The CRLF after a chunk's data: how many of its two bytes were seen. */
  private chunkEndSeen = 0;
  private upgrading = false;
  /** A CR that may begin an empty line before the next request line. */
  private leadingCR = false;

  constructor(private readonly check: HeadCheck) {}

  /** True once an upgrade went through: the rest of the connection passes unread. */
  get opaque(): boolean {
    return this.state === State.Opaque;
  }

  feed(chunk: Buffer, pass: (bytes: Buffer) => void): Refusal | undefined {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      switch (this.state) {
        case State.Opaque:
          pass(i === 0 ? chunk : chunk.subarray(i));
          return undefined;
        case State.Closed:
          return undefined;
        case State.Body:
        case State.ChunkData: {
          const take = Math.min(this.remaining, n - i);
          pass(take === n ? chunk : chunk.subarray(i, i + take));
          this.remaining -= take;
          i += take;
          if (this.remaining === 0) {
            if (this.state === State.Body) this.endMessage();
            else {
              this.state = State.ChunkEnd;
              this.chunkEndSeen = 0;
            }
          }
          break;
        }
        case State.ChunkEnd: {
          const want = this.chunkEndSeen === 0 ? CR : LF;
          if (chunk[i] !== want) return this.close(malformed('chunk data not followed by CRLF'));
          i++;
          if (++this.chunkEndSeen === 2) {
            pass(CRLF_BYTES);
            this.state = State.ChunkLine;
          }
          break;
        }
        case State.ChunkLine:
        case State.Trailers: {
          const r = this.readLine(chunk, i, pass);
          if (typeof r !== 'number') return this.close(r);
          i = r;
          break;
        }
        case State.Head: {
          const r = this.readHead(chunk, i, pass);
          if (typeof r !== 'number') return this.close(r);
          i = r;
          break;
        }
      }
    }
    return undefined;
  }

  private close(r: Refusal): Refusal {
    this.state = State.Closed;
    this.pending = [];
    this.pendingLength = 0;
    this.tail = NO_BYTES;
    return r;
  }

  private endMessage(): void {
    this.state = this.upgrading ? State.Opaque : State.Head;
  }

  /** Reads head bytes from `i`; returns where reading stopped, or a refusal. */
  private readHead(chunk: Buffer, i: number, pass: (bytes: Buffer) => void): number | Refusal {
    const n = chunk.length;
    if (this.pendingLength === 0) {
      // An empty line before a request line is ignored (RFC 9112 section 2.2), also when its
      // CR and LF come in two reads.
      if (this.leadingCR) {
        if (chunk[i] !== LF) return malformed('a bare CR line end (lines must end with CRLF)');
        this.leadingCR = false;
        i++;
      }
      while (i + 1 < n && chunk[i] === CR && chunk[i + 1] === LF) i += 2;
      if (i === n - 1 && chunk[i] === CR) {
        this.leadingCR = true;
        return n;
      }
      if (i >= n) return i;
    }
    let end = -1;
    if (this.pendingLength > 0) {
      // The blank line may straddle the previous read and this one.
      const seam = Buffer.concat([this.tail, chunk.subarray(i, i + 3)]);
      const k = seam.indexOf(HEAD_END);
      if (k >= 0) end = i + k + 4 - this.tail.length;
    }
    if (end < 0) {
      const k = chunk.indexOf(HEAD_END, i);
      if (k >= 0) end = k + 4;
    }
    const upTo = end < 0 ? n : end;
    // A bare LF refuses at once: a client that ends lines with LF alone would otherwise wait here.
    for (let k = chunk.indexOf(LF, i); k >= 0 && k < upTo; k = chunk.indexOf(LF, k + 1)) {
      const before = k > i ? chunk[k - 1] : this.tail[this.tail.length - 1];
      if (before !== CR) return malformed('a bare LF line end (lines must end with CRLF)');
    }
    const total = this.pendingLength + (upTo - i);
    if (total > MAX_HEAD_BYTES) return malformed(`a request head over ${MAX_HEAD_BYTES / 1024} KiB`, 431);
    if (end < 0) {
      const piece = Buffer.from(chunk.subarray(i)); // a copy: the caller may reuse its buffer
      this.pending.push(piece);
      this.pendingLength += piece.length;
      this.tail = Buffer.concat([this.tail, piece]).subarray(-3);
      return n;
    }
    const bytes = this.pendingLength === 0 ? chunk.subarray(i, end) : Buffer.concat([...this.pending, chunk.subarray(i, end)]);
    this.pending = [];
    this.pendingLength = 0;
    this.tail = NO_BYTES;
    const text = bytes.toString('latin1');
    const r = this.acceptHead(text);
    if (r) return r;
    pass(text.includes(`${DASHBOARD_COOKIE}=`) ? withoutCookie(text, DASHBOARD_COOKIE) : bytes);
    return end;
  }

  /** Parses and checks a complete head, and sets up its body. */
  private acceptHead(text: string): Refusal | undefined {
    const head = parseRequestHead(text);
    if (isRefusal(head)) return head;
    const framing = bodyFraming(head);
    if (isRefusal(framing)) return framing;
    const refusal = this.check(head);
    if (refusal) return refusal;
    this.upgrading = isUpgrade(head);
    if ('chunked' in framing) {
      this.state = State.ChunkLine;
      this.line = '';
    } else if (framing.length > 0) {
      this.state = State.Body;
      this.remaining = framing.length;
    } else {
      this.endMessage();
    }
    return undefined;
  }

  /** Reads a chunk-size or trailer line from `i`; acts on it once it is complete. */
  private readLine(chunk: Buffer, i: number, pass: (bytes: Buffer) => void): number | Refusal {
    const k = chunk.indexOf(LF, i);
    const upTo = k < 0 ? chunk.length : k + 1;
    this.line += chunk.toString('latin1', i, upTo);
    const limit = this.state === State.ChunkLine ? MAX_CHUNK_LINE : MAX_HEAD_BYTES - this.trailerBytes;
    if (this.line.length > limit) return malformed(this.state === State.ChunkLine ? 'a chunk-size line over 4 KiB' : 'trailers over 64 KiB', this.state === State.ChunkLine ? 400 : 431);
    if (k < 0) return upTo;
    const line = this.line;
    this.line = '';
    if (hasBareLineEnd(line.slice(0, -2)) || line[line.length - 2] !== '\r') return malformed('a bare CR or LF line end in a chunked body');
    const content = line.slice(0, -2);
    if (this.state === State.ChunkLine) {
      const m = CHUNK_LINE.exec(content);
      if (!m) return malformed(`a malformed chunk-size line (${JSON.stringify(content.slice(0, 40))})`);
      const digits = m[1]!.replace(/^0+(?=.)/, '');
      if (digits.length > 13) return malformed('a chunk size too large to be real');
      pass(Buffer.from(line, 'latin1'));
      const size = parseInt(digits, 16);
      if (size === 0) {
        this.state = State.Trailers;
        this.trailerBytes = 0;
      } else {
        this.state = State.ChunkData;
        this.remaining = size;
      }
      return upTo;
    }
    // Trailers: field lines, then an empty line ends the message.
    if (content === '') {
      pass(Buffer.from(line, 'latin1'));
      this.endMessage();
      return upTo;
    }
    const r = parseFields([content], new Map());
    if (r) return r;
    this.trailerBytes += line.length;
    pass(Buffer.from(line, 'latin1'));
    return upTo;
  }
}
