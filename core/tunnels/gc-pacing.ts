/**
 * Frees the memory of carried data promptly. Every byte a tunnel carries passes through a fresh
 * Buffer, and V8 frees a Buffer's memory only when a GC finds it dead. Left to V8, scavenges
 * came every ~13 MiB moved and mark-compacts every ~100 MiB, so tens of MiB of dead buffers
 * piled up in malloc's heap, which grew onto fresh pages and was trimmed back between GCs: 8,000
 * to 40,000 page faults per 256 MiB, at ~20 us each on these VMs (as much CPU as the crypto).
 * A minor GC every 4 MiB carried (0.2-0.6 ms each) keeps that heap near 20 MiB and reused: a
 * 256 MiB download takes a few hundred faults once warm.
 *
 * Needs `--expose-gc`, which the supervisor is started with (core/control.ts). Anywhere else
 * (tests that run tunnels in process) it does nothing.
 */

const BYTES_BETWEEN_GCS = 4 * 1024 * 1024;

type Gc = (options: { type: 'minor' | 'major' }) => void;
const gc = (globalThis as { gc?: Gc }).gc;
let bytesSinceGc = 0;

/** Counts bytes a tunnel has just moved (either way); every 4 MiB, a minor GC. */
export function noteBytesCarried(bytes: number): void {
  if (!gc) return;
  bytesSinceGc += bytes;
  if (bytesSinceGc < BYTES_BETWEEN_GCS) return;
  bytesSinceGc = 0;
  gc({ type: 'minor' });
}
