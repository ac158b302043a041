/**
 * Progress lines on their way to one waiting caller: never the same line twice in a row for one
 * box or job (a wait replays where each stands, and the same news can arrive by two routes), and
 * a line at least every 10 s while the wait lasts, so a long wait is never silent.
 */
/** A progress line: what happened, and the box it is about (when it is about one). */
export interface ProgressLine {
  message: string;
  instance_id?: string;
}

/** A quiet wait hears from us after this long (a 1 s tick: at most ~9 s between lines). */
const QUIET_MS = 8_000;
const TICK_MS = 1_000;

export class ProgressRelay {
  private readonly last = new Map<string, string>();
  private lastSentAt = Date.now();
  private readonly timer: NodeJS.Timeout | undefined;

  /** `stillWaiting` says what the wait is for and how long it has taken (the quiet-time line). */
  constructor(
    private readonly send: ((p: ProgressLine) => void) | undefined,
    stillWaiting: () => ProgressLine | undefined,
  ) {
    if (!send) return;
    this.timer = setInterval(() => {
      if (Date.now() - this.lastSentAt < QUIET_MS) return;
      const p = stillWaiting();
      if (p) this.forward(p);
    }, TICK_MS);
    this.timer.unref();
  }

  push(p: ProgressLine): void {
    const key = p.instance_id ?? '';
    if (this.last.get(key) === p.message) return;
    this.last.set(key, p.message);
    this.forward(p);
  }

  private forward(p: ProgressLine): void {
    this.lastSentAt = Date.now();
    this.send?.(p);
  }

  close(): void {
    clearInterval(this.timer);
  }
}

/** "45 s", "3 min 5 s", "2 h 10 min": how long something has taken, for progress lines. */
export function elapsed(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
