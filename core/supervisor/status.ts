/** `daemon status`: what the supervisor process is and holds. */
import type { DaemonStatus } from '../api/api.js';
import { VERSION } from '../lib/version.js';
import type { StateStore } from '../store/store.js';

export function daemonStatus(o: { home: string; basePort: number; socketPath: string; startedAt: Date; store: StateStore; warnings: string[] }): DaemonStatus {
  return {
    pid: process.pid,
    version: VERSION,
    home: o.home,
    base_port: o.basePort,
    socket: o.socketPath,
    started_at: o.startedAt.toISOString(),
    uptime_s: Math.round((Date.now() - o.startedAt.getTime()) / 1000),
    tunnels: o.store.tunnels.values().length,
    instances: o.store.instances.values().length,
    rss_bytes: process.memoryUsage.rss(),
    native_crypto: !o.warnings.some((w) => w.includes('native crypto')),
    warnings: o.warnings,
  };
}
