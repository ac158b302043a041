/**
 * The reconnect schedule of a tunnel: at once, then 0.5 s, 1 s, 1.5 s, and every 1.5 s
 * for the first minute of an outage; after that doubling up to a 30 s cap; +-20% jitter.
 * Fast at first because most outages are short (a restarted sshd is back in well under a second),
 * slower later so a box that is gone is not hammered.
 */
export const FAST_PHASE_MS = 60_000;
export const STEADY_MS = 1_500;
export const CAP_MS = 30_000;
export const JITTER = 0.2;

export class ReconnectSchedule {
  private attempt = 0;
  private lastBase = 0;
  private outageStart: number | undefined;

  constructor(
    private readonly now: () => number = Date.now,
    private readonly random: () => number = Math.random,
  ) {}

  /** Delay before the next attempt (ms). The first call starts the outage clock. */
  next(): number {
    const t = this.now();
    this.outageStart ??= t;
    const base = nextBase(this.attempt, t - this.outageStart, this.lastBase);
    this.attempt++;
    this.lastBase = base;
    return Math.round(base * (1 + (this.random() * 2 - 1) * JITTER));
  }

  /** The link is back: the next outage starts from the beginning. */
  reset(): void {
    this.attempt = 0;
    this.lastBase = 0;
    this.outageStart = undefined;
  }

  /** How long the current outage has lasted (ms), or 0. */
  outageMs(): number {
    return this.outageStart === undefined ? 0 : this.now() - this.outageStart;
  }
}

/** The delay without jitter for attempt `attempt` (0-based) of an outage that began `outageMs` ago. */
export function nextBase(attempt: number, outageMs: number, lastBase: number): number {
  if (attempt === 0) return 0;
  if (attempt === 1) return 500;
  if (attempt === 2) return 1_000;
  if (outageMs < FAST_PHASE_MS) return STEADY_MS;
  return Math.min(CAP_MS, Math.max(STEADY_MS, lastBase) * 2);
}
