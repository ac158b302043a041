/**
 * The heartbeat the boxes' dead man's switches listen for: over each box's SSH link, whether or
 * not its tunnel is open, the supervisor runs the provider's heartbeat command every interval.
 * A box that stops hearing it (the supervisor stopped, the laptop slept) stops itself.
 */
import { deadmanOf } from '../config/money.js';
import { toVaiError } from '../lib/errors.js';
import type { Provider } from '../providers/provider.js';
import type { Boxes } from '../fleet/boxes.js';

export interface HeartbeatHost {
  run(id: string, command: string, timeoutMs: number): Promise<unknown>;
}

const RUN_TIMEOUT_MS = 15_000;

export class Heartbeats {
  private readonly inFlight = new Set<string>();
  private readonly warnedAt = new Map<string, number>();

  constructor(
    private readonly boxes: Boxes,
    private readonly host: HeartbeatHost,
  ) {}

  /** Starts a heartbeat on every running box whose switch is on and whose turn has come. */
  sweep(): void {
    const now = this.boxes.clock.now();
    for (const rec of this.boxes.records()) {
      const provider: Provider | undefined = this.boxes.providers().find((p) => p.name === rec.provider);
      const beat = provider?.heartbeat;
      if (!beat || !rec.ssh || deadmanOf(rec.config) === 0 || (rec.status !== 'running' && rec.status !== 'ready')) continue;
      const box = this.boxes.box(rec.instance_id);
      if (now < box.heartbeatAt || this.inFlight.has(rec.instance_id)) continue;
      box.heartbeatAt = now + beat.intervalMs;
      this.inFlight.add(rec.instance_id);
      void this.host.run(rec.instance_id, beat.command, RUN_TIMEOUT_MS).then(
        () => {
          box.heartbeatOkAt = this.boxes.clock.now();
          this.warnedAt.delete(rec.instance_id);
        },
        (err) => {
          // Once a minute at most per box: a box that is coming up or going away misses some.
          const last = this.warnedAt.get(rec.instance_id) ?? -Infinity;
          if (this.boxes.clock.now() - last >= 60_000 && this.boxes.store.instances.has(rec.instance_id)) {
            this.warnedAt.set(rec.instance_id, this.boxes.clock.now());
            this.boxes.log.warn(`${rec.instance_id}: heartbeat failed: ${toVaiError(err).message}`);
          }
        },
      ).finally(() => this.inFlight.delete(rec.instance_id));
    }
  }
}
