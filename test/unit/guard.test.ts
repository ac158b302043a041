/**
 * core/guard.ts and core/origins.ts: which request heads may reach a box through a tunnel on
 * port 8188, and the lists that allow more.
 */
import { describe, expect, it } from 'vitest';
import { GuardPolicy, NO_ALLOWANCES, refusalResponse } from '../../core/tunnels/guard.js';
import { parseRequestHead, type RequestHead } from '../../core/tunnels/http-framing.js';
import { normalizeHost, normalizeOrigin, parseAllowList } from '../../core/model/origins.js';

function head(fields: Record<string, string | string[]>, requestLine = 'GET /prompt HTTP/1.1'): RequestHead {
  const lines = Object.entries(fields).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((x) => `${k}: ${x}`));
  const h = parseRequestHead(`${requestLine}\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`);
  if ('status' in h) throw new Error(h.message);
  return h;
}

const policy = new GuardPolicy(8188, NO_ALLOWANCES);
const verdict = (p: GuardPolicy, fields: Record<string, string | string[]>, requestLine?: string) => p.check(head(fields, requestLine))?.status ?? 'pass';

describe('GuardPolicy: Host', () => {
  it('passes the tunnel\'s own names, in any case', () => {
    for (const host of ['localhost:8188', '127.0.0.1:8188', '[::1]:8188', 'LOCALHOST:8188']) expect(verdict(policy, { Host: host })).toBe('pass');
  });

  it('refuses other names and other ports (DNS rebinding), and names the host and the way to allow it', () => {
    for (const host of ['evil.example:8188', 'localhost:8189', 'localhost', '127.0.0.2:8188', 'localhost.:8188']) expect(verdict(policy, { Host: host })).toBe(403);
    const r = policy.check(head({ Host: 'rebind.example:8188' }))!;
    expect(r.message).toContain('"rebind.example:8188"');
    expect(r.message).toContain('VAI_ALLOWED_HOSTS=rebind.example:8188');
    expect(r.message).toContain('allowed_hosts');
  });

  it('needs exactly one Host', () => {
    expect(verdict(policy, {})).toBe(400);
    expect(verdict(policy, { Host: ['localhost:8188', 'evil.example'] })).toBe(400);
  });

  it('checks an absolute request target like a Host', () => {
    expect(verdict(policy, { Host: 'localhost:8188' }, 'GET http://evil.example/prompt HTTP/1.1')).toBe(403);
    expect(verdict(policy, { Host: 'localhost:8188' }, 'GET http://localhost:8188/prompt HTTP/1.1')).toBe('pass');
    expect(verdict(policy, { Host: 'localhost:8188' }, 'GET evil.example:80 HTTP/1.1')).toBe(400);
    expect(verdict(policy, { Host: 'localhost:8188' }, 'CONNECT localhost:8188 HTTP/1.1')).toBe(405);
  });

  it('takes a Host without its port on port 80 only', () => {
    const p80 = new GuardPolicy(80, NO_ALLOWANCES);
    expect(verdict(p80, { Host: 'localhost' })).toBe('pass');
    expect(verdict(p80, { Host: 'localhost:80' })).toBe('pass');
    expect(verdict(p80, { Origin: 'http://localhost', Host: 'localhost' })).toBe('pass');
  });
});

describe('GuardPolicy: Origin and Sec-Fetch-Site', () => {
  it('passes the tunnel\'s own page, and clients that send neither header', () => {
    expect(verdict(policy, { Host: 'localhost:8188', Origin: 'http://localhost:8188', 'Sec-Fetch-Site': 'same-origin' })).toBe('pass');
    expect(verdict(policy, { Host: 'localhost:8188', Origin: 'http://127.0.0.1:8188' })).toBe('pass');
    expect(verdict(policy, { Host: 'localhost:8188', 'Sec-Fetch-Site': 'none' })).toBe('pass');
    expect(verdict(policy, { Host: 'localhost:8188', 'User-Agent': 'curl/8' })).toBe('pass');
  });

  it('refuses another localhost port, another host, https, and an opaque origin', () => {
    for (const origin of ['http://localhost:8189', 'http://localhost', 'https://localhost:8188', 'http://evil.example', 'null']) {
      expect(verdict(policy, { Host: 'localhost:8188', Origin: origin }), origin).toBe(403);
    }
    const r = policy.check(head({ Host: 'localhost:8188', Origin: 'http://localhost:3000' }))!;
    expect(r.subject).toBe('origin http://localhost:3000');
    expect(r.message).toContain('VAI_ALLOWED_ORIGINS=http://localhost:3000');
    expect(r.message).toContain('"allowed_origins": ["http://localhost:3000"]');
    expect(r.message).not.toContain('\n');
  });

  it('refuses same-site and cross-site requests without an allowed origin', () => {
    expect(verdict(policy, { Host: 'localhost:8188', 'Sec-Fetch-Site': 'same-site' })).toBe(403);
    expect(verdict(policy, { Host: 'localhost:8188', 'Sec-Fetch-Site': 'cross-site' })).toBe(403);
    expect(verdict(policy, { Host: 'localhost:8188', Origin: 'http://localhost:8188', 'Sec-Fetch-Site': 'cross-site' })).toBe(403);
  });

  it('refuses a repeated Origin', () => {
    expect(verdict(policy, { Host: 'localhost:8188', Origin: ['http://localhost:8188', 'http://evil.example'] })).toBe(400);
  });
});

describe('GuardPolicy: what a user allows', () => {
  const allowing = new GuardPolicy(8188, { origins: ['http://localhost:3000'], hosts: ['myalias:9000', 'box.tunnel.example'] });

  it('passes an allowed origin, whatever Sec-Fetch-Site says', () => {
    expect(verdict(allowing, { Host: 'localhost:8188', Origin: 'http://localhost:3000', 'Sec-Fetch-Site': 'same-site' })).toBe('pass');
    expect(verdict(allowing, { Host: 'localhost:8188', Origin: 'http://LOCALHOST:3000' })).toBe('pass');
    expect(verdict(allowing, { Host: 'localhost:8188', Origin: 'http://localhost:3001' })).toBe(403);
  });

  it('passes an allowed host and that host\'s own pages, and nothing else', () => {
    expect(verdict(allowing, { Host: 'myalias:9000', Origin: 'http://myalias:9000', 'Sec-Fetch-Site': 'same-origin' })).toBe('pass');
    expect(verdict(allowing, { Host: 'box.tunnel.example', Origin: 'https://box.tunnel.example' })).toBe('pass');
    expect(verdict(allowing, { Host: 'myalias:9001' })).toBe(403);
    expect(verdict(allowing, { Host: 'myalias:9000', Origin: 'http://myalias:9001' })).toBe(403);
  });
});

describe('origins and allow lists', () => {
  it('normalises as browsers serialise', () => {
    expect(normalizeOrigin('HTTP://LocalHost:3000/')).toBe('http://localhost:3000');
    expect(normalizeOrigin('http://localhost:80')).toBe('http://localhost');
    expect(normalizeOrigin('https://x.example:443')).toBe('https://x.example');
    expect(normalizeOrigin('http://[::1]:8188')).toBe('http://[::1]:8188');
    expect(normalizeOrigin('http://localhost:3000/path')).toBeUndefined();
    expect(normalizeOrigin('localhost:3000')).toBeUndefined();
    expect(normalizeOrigin('null')).toBeUndefined();
    expect(normalizeHost('MyHost:08188')).toBe('myhost:8188');
    expect(normalizeHost('http://x')).toBeUndefined();
    expect(normalizeHost('x:99999')).toBeUndefined();
  });

  it('parses a comma-separated variable or a list, and names a bad entry', () => {
    expect(parseAllowList(' http://localhost:3000, http://127.0.0.1:5173 ,', 'origin')).toEqual(['http://localhost:3000', 'http://127.0.0.1:5173']);
    expect(parseAllowList(['a:1', 'A:1'], 'host')).toEqual(['a:1']);
    expect(() => parseAllowList('http://localhost:3000/app', 'origin')).toThrow(/"http:\/\/localhost:3000\/app" is not an origin/);
    expect(() => parseAllowList(['http://x'], 'host')).toThrow(/is not a host/);
  });
});

describe('refusalResponse', () => {
  it('is a complete plain-text answer with no CORS header, and closes the connection', () => {
    const r = policy.check(head({ Host: 'localhost:8188', Origin: 'http://evil.example' }))!;
    const text = refusalResponse(r).toString('utf8');
    const [headPart, body] = text.split('\r\n\r\n');
    expect(headPart).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
    expect(headPart).toContain('Content-Type: text/plain; charset=utf-8');
    expect(headPart).toContain('Connection: close');
    expect(headPart).not.toMatch(/access-control/i);
    expect(headPart).toContain(`Content-Length: ${Buffer.byteLength(body!)}`);
    expect(body!.trim().split('\n')).toHaveLength(1);
    expect(body).toContain('http://evil.example');
  });
});
