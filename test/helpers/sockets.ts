/** What a process listens on, read from /proc (Linux): to check that nothing binds a wildcard. */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

function hexToAddress(hex: string, v6: boolean): string {
  if (!v6) {
    const n = hex.match(/../g)!.reverse().map((b) => parseInt(b, 16));
    return n.join('.');
  }
  // /proc/net/tcp6 prints the address as four 32-bit words in host (little-endian) order.
  const words = hex.match(/.{8}/g)!.map((w) => w.match(/../g)!.reverse().join(''));
  const groups = words.join('').match(/.{4}/g)!.map((g) => g.replace(/^0+(?=.)/, ''));
  return `[${groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::')}]`;
}

/** `address:port` of every TCP socket in LISTEN state owned by `pid`. */
export function listeningAddresses(pid: number): string[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const out: string[] = [];
  for (const [file, v6] of [['/proc/net/tcp', false], ['/proc/net/tcp6', true]] as const) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10 || cols[3] !== '0A' || !inodes.has(cols[9]!)) continue;
      const [addr, port] = cols[1]!.split(':');
      out.push(`${hexToAddress(addr!, v6)}:${parseInt(port!, 16)}`);
    }
  }
  return out;
}

export function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address.startsWith('[::1]');
}
