/**
 * Host-key pins: a box's SSH host key is pinned on first use, per box and host:port (Vast reuses
 * host:port pairs for later boxes, so a pin belongs to one box and goes when it is destroyed).
 * A key that differs from its pin refuses the connection; nothing ever accepts one blindly.
 */
import type { Logger } from '../lib/log.js';
import { nowIso } from '../lib/timers.js';
import type { Collection, HostKeyPin } from '../store/store.js';
import type { HostKeyVerdict } from './link.js';

export class HostKeyPins {
  constructor(
    private readonly pins: Collection<HostKeyPin>,
    private readonly log: Logger,
  ) {}

  async check(instanceId: string, hostPort: string, sha256: string): Promise<HostKeyVerdict> {
    const key = `${instanceId}|${hostPort}`;
    const pin = this.pins.get(key);
    if (!pin) {
      await this.pins.set(key, { instance_id: instanceId, host_port: hostPort, sha256, pinned_at: nowIso() });
      this.log.info(`${instanceId}: pinned host key of ${hostPort}`);
      return { ok: true };
    }
    return pin.sha256 === sha256 ? { ok: true } : { ok: false, expected: pin.sha256 };
  }

  /** Forgets a box's pins (it was destroyed, or the user accepts a new key). */
  async drop(instanceId: string): Promise<void> {
    for (const [key, pin] of this.pins.entries()) {
      if (pin.instance_id === instanceId) await this.pins.delete(key);
    }
  }
}
