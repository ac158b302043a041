/** Listening TCP sockets, read from /proc (Linux): who listens where, without connecting. */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface ListeningSocket {
  /** `127.0.0.1`, `[::1]`, `0.0.0.0`, `[::]`, ... */
  address: string;
  port: number;
  inode: string;
}

function hexToAddress(hex: string, v6: boolean): string {
  if (!v6) return hex.match(/../g)!.reverse().map((b) => parseInt(b, 16)).join('.');
  // /proc/net/tcp6 prints the address as four 32-bit words in host (little-endian) order.
  const words = hex.match(/.{8}/g)!.map((w) => w.match(/../g)!.reverse().join(''));
  const groups = words.join('').match(/.{4}/g)!.map((g) => g.replace(/^0+(?=.)/, ''));
  return `[${groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::')}]`;
}

/** The rows of /proc/net/tcp and tcp6: each socket's columns, and whether it is IPv6. */
function tcpRows(): { cols: string[]; v6: boolean }[] {
  const rows: { cols: string[]; v6: boolean }[] = [];
  for (const [file, v6] of [['/proc/net/tcp', false], ['/proc/net/tcp6', true]] as const) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length >= 10) rows.push({ cols, v6 });
    }
  }
  return rows;
}

/** Every TCP socket in LISTEN state on this machine (IPv4 and IPv6). */
export function listeningSockets(): ListeningSocket[] {
  return tcpRows().filter((r) => r.cols[3] === '0A').map(({ cols, v6 }) => {
    const [addr, port] = cols[1]!.split(':');
    return { address: hexToAddress(addr!, v6), port: parseInt(port!, 16), inode: cols[9]! };
  });
}

/** Established TCP connections that `pid` holds to `port` (as the remote end). */
export function connectionsTo(pid: number, port: number): number {
  const inodes = socketInodesOf(pid);
  return tcpRows().filter(({ cols }) => cols[3] === '01' && parseInt(cols[2]!.split(':')[1]!, 16) === port && inodes.has(cols[9]!)).length;
}

/** Socket inodes a process holds open. */
export function socketInodesOf(pid: number): Set<string> {
  const inodes = new Set<string>();
  let fds: string[] = [];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return inodes;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  return inodes;
}

/** `address:port` of every TCP socket in LISTEN state owned by `pid`. */
export function listeningAddresses(pid: number): string[] {
  const mine = socketInodesOf(pid);
  return listeningSockets().filter((s) => mine.has(s.inode)).map((s) => `${s.address}:${s.port}`);
}

export function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address.startsWith('[::1]');
}
