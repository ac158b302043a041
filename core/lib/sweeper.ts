/**
 * A loop on the clock: its steps run at once (a deadline that passed while no supervisor ran acts
 * now), then every `everyMs`. A slow step never overlaps the next round; a failing one is logged
 * and the others still run.
 */
import type { Clock } from './clock.js';
import type { Logger } from './log.js';

export interface SweepStep {
  name: string;
  run(): Promise<void> | void;
}

export class Sweeper {
  private running: AbortController | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly everyMs: number,
    private readonly steps: SweepStep[],
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.running) return;
    const running = (this.running = new AbortController());
    void (async () => {
      while (!running.signal.aborted) {
        await this.round();
        await this.clock.sleep(this.everyMs, running.signal);
      }
    })();
  }

  stop(): void {
    this.running?.abort();
    this.running = undefined;
  }

  /** One pass of every step. */
  async round(): Promise<void> {
    for (const step of this.steps) {
      try {
        await step.run();
      } catch (err) {
        this.log.error(`${step.name} failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }
}
