/**
 * core/http-framing.ts: the guard's view of a local connection. Every head is checked before
 * any of it passes; bodies pass as they come, by their framing; a malformed or smuggling-shaped
 * head is refused and nothing of it, nor anything after it, passes. Each case is fed in one
 * piece and byte by byte, since TCP may cut a stream anywhere.
 */
import { describe, expect, it } from 'vitest';
import { MAX_HEAD_BYTES, RequestFramer, type Refusal, type RequestHead } from '../../core/tunnels/http-framing.js';

interface Run {
  passed: string;
  heads: RequestHead[];
  refusal: Refusal | undefined;
}

/** Feeds `input` in pieces of `step` bytes (0: all at once); records what passed and every head checked. */
function run(input: string, step = 0, check: (h: RequestHead) => Refusal | undefined = () => undefined): Run {
  const heads: RequestHead[] = [];
  const framer = new RequestFramer((h) => {
    heads.push(h);
    return check(h);
  });
  const out: Buffer[] = [];
  const bytes = Buffer.from(input, 'latin1');
  let refusal: Refusal | undefined;
  const pieces = step === 0 ? [bytes] : Array.from({ length: Math.ceil(bytes.length / step) }, (_, k) => bytes.subarray(k * step, (k + 1) * step));
  for (const p of pieces) {
    const r = framer.feed(p, (b) => out.push(Buffer.from(b)));
    refusal ??= r;
  }
  return { passed: Buffer.concat(out).toString('latin1'), heads, refusal };
}

/** Both ways of cutting the input give the same result. */
function both(input: string, check?: (h: RequestHead) => Refusal | undefined): Run {
  const whole = run(input, 0, check);
  const bytewise = run(input, 1, check);
  expect(bytewise.passed).toBe(whole.passed);
  expect(bytewise.heads.map((h) => h.target)).toEqual(whole.heads.map((h) => h.target));
  expect(bytewise.refusal?.status).toBe(whole.refusal?.status);
  return whole;
}

const GET = (path: string, host = 'localhost:8188', extra = '') => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;
const EVIL = GET('/prompt', 'localhost:8188', 'Origin: http://evil.example\r\n');
const refuseEvil = (h: RequestHead) => (h.fields.get('origin')?.[0] === 'http://evil.example' ? { status: 403 as const, message: 'no', subject: 'origin' } : undefined);

describe('RequestFramer: clean traffic passes unchanged', () => {
  it('passes a request, keep-alive and pipelined requests, each head checked', () => {
    const input = GET('/a') + GET('/b') + GET('/c');
    const r = both(input);
    expect(r.passed).toBe(input);
    expect(r.heads.map((h) => h.target)).toEqual(['/a', '/b', '/c']);
    expect(r.heads[0]!.fields.get('host')).toEqual(['localhost:8188']);
    expect(r.refusal).toBeUndefined();
  });

  it('passes a Content-Length body as it comes, without reading it as requests', () => {
    const body = GET('/hidden', 'evil.example'); // bytes of a body, not a request
    const input = `POST /upload HTTP/1.1\r\nHost: localhost:8188\r\nContent-Length: ${body.length}\r\n\r\n${body}` + GET('/next');
    const r = both(input, (h) => (h.target === '/hidden' ? { status: 403, message: 'no', subject: 'x' } : undefined));
    expect(r.passed).toBe(input);
    expect(r.heads.map((h) => h.target)).toEqual(['/upload', '/next']);
  });

  it('passes a chunked body (extensions, trailers) and checks the request after it', () => {
    const input = 'POST /p HTTP/1.1\r\nHost: localhost:8188\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '5;name=value\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: yes\r\n\r\n' + EVIL;
    const r = both(input, refuseEvil);
    expect(r.refusal?.status).toBe(403);
    expect(r.heads.map((h) => h.target)).toEqual(['/p', '/prompt']);
    expect(r.passed).toBe(input.slice(0, input.length - EVIL.length));
  });

  it('refuses a foreign request behind a clean one on the same connection, passing only the clean one', () => {
    const r = both(GET('/ok') + EVIL + GET('/after'), refuseEvil);
    expect(r.refusal?.status).toBe(403);
    expect(r.passed).toBe(GET('/ok'));
  });

  it('ignores empty lines before a request line, and passes a body that arrives in pieces', () => {
    const input = `\r\n\r\nPOST /x HTTP/1.0\r\nHost: localhost:8188\r\nContent-Length: 3\r\n\r\nabc`;
    const r = both(input);
    expect(r.heads.map((h) => [h.method, h.target, h.version])).toEqual([['POST', '/x', '1.0']]);
    expect(r.passed).toBe(input.replace(/^(\r\n)+/, ''));
  });

  it('stops reading after an upgrade: websocket frames pass untouched', () => {
    const upgrade = GET('/ws', 'localhost:8188', 'Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n');
    const frames = '\x81\x05hello GET / HTTP/1.1\r\nHost: evil\r\n\r\n\n\n\r';
    const framer = new RequestFramer(() => undefined);
    const out: Buffer[] = [];
    expect(framer.feed(Buffer.from(upgrade + frames, 'latin1'), (b) => out.push(b))).toBeUndefined();
    expect(framer.opaque).toBe(true);
    expect(Buffer.concat(out).toString('latin1')).toBe(upgrade + frames);
  });

  it('does not stop reading for an Upgrade header without Connection: upgrade', () => {
    const r = both(GET('/ws', 'localhost:8188', 'Upgrade: websocket\r\n') + EVIL, refuseEvil);
    expect(r.refusal?.status).toBe(403);
  });
});

describe('RequestFramer: framing that could hide a request is refused (400), nothing of it passes', () => {
  const hidden = EVIL;
  const cases: [string, string][] = [
    ['Content-Length with Transfer-Encoding', `POST / HTTP/1.1\r\nHost: localhost:8188\r\nContent-Length: ${5 + hidden.length}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${hidden}`],
    ['two different Content-Lengths', `POST / HTTP/1.1\r\nHost: localhost:8188\r\nContent-Length: 0\r\nContent-Length: ${hidden.length}\r\n\r\n${hidden}`],
    ['two equal Content-Lengths', `POST / HTTP/1.1\r\nHost: localhost:8188\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc${hidden}`],
    ['a Content-Length list', `POST / HTTP/1.1\r\nHost: localhost:8188\r\nContent-Length: 0, ${hidden.length}\r\n\r\n${hidden}`],
    ['a signed Content-Length', `POST / HTTP/1.1\r\nHost: localhost:8188\r\nContent-Length: +0\r\n\r\n${hidden}`],
    ['Transfer-Encoding chunked, then another coding', `POST / HTTP/1.1\r\nHost: localhost:8188\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${hidden}`],
    ['Transfer-Encoding gzip', `POST / HTTP/1.1\r\nHost: localhost:8188\r\nTransfer-Encoding: gzip\r\n\r\n${hidden}`],
    ['two Transfer-Encoding headers', `POST / HTTP/1.1\r\nHost: localhost:8188\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${hidden}`],
    ['Transfer-Encoding in HTTP/1.0', `POST / HTTP/1.0\r\nHost: localhost:8188\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${hidden}`],
    ['a space before the colon', `POST / HTTP/1.1\r\nHost: localhost:8188\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n${hidden}`],
    ['obsolete line folding', `POST / HTTP/1.1\r\nHost: localhost:8188\r\nX-Pad: a\r\n Content-Length: ${hidden.length}\r\n\r\n${hidden}`],
    ['folding of Transfer-Encoding', `POST / HTTP/1.1\r\nHost: localhost:8188\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n${hidden}`],
    ['a bare LF line end', `POST / HTTP/1.1\r\nHost: localhost:8188\r\nX: a\nContent-Length: ${hidden.length}\r\n\r\n${hidden}`],
    ['a bare LF at the end of the head', `GET / HTTP/1.1\r\nHost: localhost:8188\r\n\n${hidden}`],
    ['a bare CR', `GET / HTTP/1.1\r\nHost: localhost:8188\r\nX: a\rContent-Length: 5\r\n\r\n${hidden}`],
    ['a NUL in a header value', `GET / HTTP/1.1\r\nHost: localhost:8188\r\nX: a\x00b\r\n\r\n${hidden}`],
    ['a malformed request line', `GET  / HTTP/1.1\r\nHost: localhost:8188\r\n\r\n${hidden}`],
    ['a lowercase version', `GET / http/1.1\r\nHost: localhost:8188\r\n\r\n${hidden}`],
  ];
  for (const [name, input] of cases) {
    it(name, () => {
      const r = both(input, refuseEvil);
      expect(r.refusal?.status, r.refusal?.message).toBe(400);
      expect(r.passed).toBe('');
      expect(r.heads.map((h) => h.target)).not.toContain('/prompt');
    });
  }

  // The head was fine and went on; its body is not: the rest stops there.
  const bodies: [string, string][] = [
    ['a chunk-size with junk', '5x\r\nhello\r\n0\r\n\r\n'],
    ['a chunk-size line with a bare LF', '5\nhello\r\n0\r\n\r\n'],
    ['chunk data longer than its size', '3\r\nhello\r\n0\r\n\r\n'],
    ['a chunk size too large to be real', 'fffffffffffffffff\r\n'],
    ['a trailer with folding', '0\r\nX: a\r\n b\r\n\r\n'],
    ['a trailer with a bare LF', '0\r\nX: a\n\r\n'],
  ];
  const chunkedHead = 'POST / HTTP/1.1\r\nHost: localhost:8188\r\nTransfer-Encoding: chunked\r\n\r\n';
  for (const [name, body] of bodies) {
    it(`${name} in a chunked body`, () => {
      const input = chunkedHead + body + hidden;
      const r = both(input, refuseEvil);
      expect(r.refusal?.status, r.refusal?.message).toBe(400);
      expect(input.startsWith(r.passed)).toBe(true);
      expect(r.passed).not.toContain('/prompt');
      expect(r.heads.map((h) => h.target)).toEqual(['/']);
    });
  }

  it('refuses a head over 64 KiB with 431, without waiting for its end', () => {
    const big = `GET / HTTP/1.1\r\nHost: localhost:8188\r\nX-Big: ${'a'.repeat(MAX_HEAD_BYTES)}`;
    const r = run(big, 4096);
    expect(r.refusal?.status).toBe(431);
    expect(r.passed).toBe('');
  });

  it('refuses a bare LF head at once, before any blank line arrives', () => {
    const r = run('GET / HTTP/1.1\nHost: localhost:8188\n');
    expect(r.refusal?.status).toBe(400);
  });

  it('answers HTTP/2 and HTTP/0.9-style versions with 505', () => {
    expect(run('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n').refusal?.status).toBe(505);
    expect(run('GET / HTTP/1.2\r\nHost: localhost:8188\r\n\r\n').refusal?.status).toBe(505);
  });

  it('passes nothing after a refusal, however much more comes', () => {
    const framer = new RequestFramer(refuseEvil);
    const out: Buffer[] = [];
    expect(framer.feed(Buffer.from(EVIL), (b) => out.push(b))?.status).toBe(403);
    expect(framer.feed(Buffer.from(GET('/x')), (b) => out.push(b))).toBeUndefined();
    expect(out).toEqual([]);
  });
});
