/**
 * The guard on a tunnel's local end: which HTTP requests may reach the box.
 *
 * ComfyUI on a box may allow every origin (`vastai/comfy` runs it with `--enable-cors-header`),
 * and browsers do not stop a page on one localhost port from calling another. So the tunnel
 * checks every request head itself (see http-framing.ts for the framing) and answers a refusal
 * without sending anything to the box:
 * - `Host` must be the tunnel's own name (`localhost:<port>`, `127.0.0.1:<port>`, `[::1]:<port>`)
 *   or an allowed host: another name is DNS rebinding.
 * - `Origin`, when sent, must be the tunnel's own (another localhost port is another origin) or
 *   an allowed one; through an allowed host, that host's own origin.
 * - `Sec-Fetch-Site`, when sent, must be `same-origin` or `none` unless the origin is allowed
 *   (browsers call other localhost ports `same-site`).
 * Requests with neither `Origin` nor `Sec-Fetch-Site` (curl, scripts, our own client) pass, and
 * so does a click on a link to the app's front page from another page (the dashboard's links):
 * a user-activated, top-level GET of `/`, which no page can read or script.
 */
import type { HeadCheck, Refusal, RequestHead } from './http-framing.js';
import { isRefusal, malformed, singleField } from './http-framing.js';
import { loopbackHosts, loopbackOrigins, normalizeHost, normalizeOrigin } from '../model/origins.js';


export interface GuardAllowances {
  /** Normalised origins whose pages may drive the box. */
  origins: readonly string[];
  /** Normalised hosts the tunnel may also be reached as (a re-forward under another name). */
  hosts: readonly string[];
}

export const NO_ALLOWANCES: GuardAllowances = { origins: [], hosts: [] };

function refuse(subject: string, message: string): Refusal {
  return { status: 403, subject, message: `vai-mcp refused this request: ${message}` };
}

/** The request target's own authority, for the absolute form (`GET http://host/path`). */
function targetAuthority(target: string): string | undefined | Refusal {
  if (target.startsWith('/')) return undefined;
  if (target === '*') return undefined;
  const m = /^https?:\/\/([^/?#]*)/i.exec(target);
  if (!m) return malformed(`a request target that is not a path (${JSON.stringify(target.slice(0, 60))})`);
  return m[1]!;
}

export class GuardPolicy {
  private readonly hosts: Set<string>;
  private readonly ownOrigins: Set<string>;
  private readonly allowedOrigins: Set<string>;
  private readonly home: string;

  constructor(
    private readonly port: number,
    allow: GuardAllowances,
  ) {
    this.hosts = new Set([...loopbackHosts(port), ...allow.hosts]);
    this.ownOrigins = new Set([...loopbackOrigins(port), ...allow.hosts.flatMap((h) => [`http://${h}`, `https://${h}`].map((o) => normalizeOrigin(o)!))]);
    this.allowedOrigins = new Set(allow.origins);
    this.home = `http://localhost:${port}`;
  }

  /** The check for one request head; undefined lets it through. */
  readonly check: HeadCheck = (head: RequestHead) => {
    if (head.method === 'CONNECT') return { status: 405, subject: 'method CONNECT', message: 'vai-mcp refused this request: CONNECT does not pass through a tunnel.' };
    const hostField = singleField(head, 'host');
    if (isRefusal(hostField)) return hostField;
    if (hostField === undefined) return malformed('no Host header');
    const fromTarget = targetAuthority(head.target);
    if (isRefusal(fromTarget)) return fromTarget;
    for (const raw of fromTarget === undefined ? [hostField] : [hostField, fromTarget]) {
      const host = normalizeHost(raw);
      if (!host || !this.hosts.has(host)) {
        return refuse(
          `host ${raw}`,
          `its Host ${JSON.stringify(raw)} is not this tunnel's (localhost:${this.port}), as when a web page reaches it under its own name (DNS rebinding). If you forward this port under that name on purpose, allow it: set VAI_ALLOWED_HOSTS=${raw} before the supervisor starts (\`vai-mcp-cli daemon stop\` ends the running one), or add "allowed_hosts": ["${raw}"] to the box's instance_config.`,
        );
      }
    }
    const originField = singleField(head, 'origin');
    if (isRefusal(originField)) return originField;
    let allowedOrigin = false;
    if (originField !== undefined) {
      const origin = normalizeOrigin(originField);
      allowedOrigin = origin !== undefined && this.allowedOrigins.has(origin);
      if (origin === undefined) {
        return refuse(`origin ${originField}`, `it comes from a page whose origin is ${JSON.stringify(originField)} (a sandboxed page, a local file or a redirect), which cannot be allowed. Open ${this.home} itself.`);
      }
      if (!allowedOrigin && !this.ownOrigins.has(origin)) {
        return refuse(
          `origin ${originField}`,
          `it comes from a page at ${JSON.stringify(originField)}, not from this tunnel's own page (${this.home}). If you trust that page to drive the box, allow its origin: set VAI_ALLOWED_ORIGINS=${originField} before the supervisor starts (\`vai-mcp-cli daemon stop\` ends the running one), or add "allowed_origins": ["${originField}"] to the box's instance_config.`,
        );
      }
    }
    const site = singleField(head, 'sec-fetch-site');
    if (isRefusal(site)) return site;
    if (site !== undefined && !allowedOrigin && !isUserOpening(head, originField)) {
      const v = site.toLowerCase();
      if (v !== 'same-origin' && v !== 'none') {
        return refuse(
          `sec-fetch-site ${site}`,
          `the browser says it comes from another site's page (Sec-Fetch-Site: ${site}). Open ${this.home} itself, or allow that page's origin (VAI_ALLOWED_ORIGINS, or "allowed_origins" in the box's instance_config).`,
        );
      }
    }
    return undefined;
  };
}

/** A user's click on a link to `/` that opens the app in its own tab (Sec-Fetch-User needs a real click). */
function isUserOpening(head: RequestHead, origin: string | undefined): boolean {
  const one = (name: string) => head.fields.get(name)?.[0]?.toLowerCase();
  return head.method === 'GET' && head.target === '/' && origin === undefined && one('sec-fetch-mode') === 'navigate' && one('sec-fetch-dest') === 'document' && one('sec-fetch-user') === '?1';
}

const REASONS: Record<Refusal['status'], string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  405: 'Method Not Allowed',
  431: 'Request Header Fields Too Large',
  505: 'HTTP Version Not Supported',
};

/** The answer to a refused request: plain text, no CORS headers (a foreign page cannot read it), and the connection closes. */
export function refusalResponse(r: Refusal): Buffer {
  const body = Buffer.from(`${r.message}\n`, 'utf8');
  return Buffer.concat([
    Buffer.from(
      `HTTP/1.1 ${r.status} ${REASONS[r.status]}\r\n` +
        'Content-Type: text/plain; charset=utf-8\r\n' +
        'X-Content-Type-Options: nosniff\r\n' +
        'Cache-Control: no-store\r\n' +
        `Content-Length: ${body.length}\r\n` +
        'Connection: close\r\n\r\n',
      'latin1',
    ),
    body,
  ]);
}
