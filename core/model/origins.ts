/**
 * Origins (`http://localhost:3000`) and hosts (`localhost:8188`) as the guard compares them:
 * lowercased, the scheme's default port left out, as browsers serialise them.
 */

const DEFAULT_PORTS: Record<string, string> = { http: '80', https: '443' };
/** A host name, an IPv4 address or a bracketed IPv6 address, then an optional port. */
const AUTHORITY = /^(\[[0-9a-f:.]+\]|[a-z0-9._~%!$&'()*+,;=-]+)(?::(\d{1,5}))?$/;

function splitAuthority(text: string): { host: string; port?: string } | undefined {
  const m = AUTHORITY.exec(text.toLowerCase());
  if (!m) return undefined;
  const port = m[2];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return undefined;
  return { host: m[1]!, port: port === undefined ? undefined : String(Number(port)) };
}

/** `scheme://host[:port]` in its canonical form, or undefined when `text` is not an origin. */
export function normalizeOrigin(text: string): string | undefined {
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^/?#@]+)\/?$/i.exec(text.trim());
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  const a = splitAuthority(m[2]!);
  if (!a) return undefined;
  const port = a.port === DEFAULT_PORTS[scheme] ? undefined : a.port;
  return `${scheme}://${a.host}${port ? `:${port}` : ''}`;
}

/** `host[:port]` in its canonical form, or undefined when `text` is not one. */
export function normalizeHost(text: string): string | undefined {
  const a = splitAuthority(text.trim());
  return a && `${a.host}${a.port ? `:${a.port}` : ''}`;
}

/** The names a tunnel on `port` answers to itself: `localhost:8188`, `127.0.0.1:8188`, `[::1]:8188`. */
export function loopbackHosts(port: number): string[] {
  const names = ['localhost', '127.0.0.1', '[::1]'];
  // A client leaves the port out of Host for port 80.
  return port === 80 ? names.flatMap((n) => [n, `${n}:80`]) : names.map((n) => `${n}:${port}`);
}

/** The origins of pages served by a tunnel on `port` itself. */
export function loopbackOrigins(port: number): string[] {
  return ['localhost', '127.0.0.1', '[::1]'].map((n) => normalizeOrigin(`http://${n}:${port}`)!);
}

/**
 * A comma-separated list (an environment variable) or a list (settings.json, a config) of
 * origins or hosts, normalised. Throws a message naming the first entry that is not one.
 */
export function parseAllowList(raw: string | readonly string[] | undefined, kind: 'origin' | 'host'): string[] {
  if (raw === undefined) return [];
  const entries = (typeof raw === 'string' ? raw.split(',') : raw).map((e) => e.trim()).filter((e) => e !== '');
  const out: string[] = [];
  for (const e of entries) {
    const norm = kind === 'origin' ? normalizeOrigin(e) : normalizeHost(e);
    if (!norm) {
      throw new Error(kind === 'origin' ? `${JSON.stringify(e)} is not an origin like http://localhost:3000 (scheme, host and port; no path)` : `${JSON.stringify(e)} is not a host like myhost:8188 (a name or address and an optional port; no scheme)`);
    }
    if (!out.includes(norm)) out.push(norm);
  }
  return out;
}
