/** Time helpers every manager uses: a pause that never holds the process open, ISO timestamps, and waiting for an event. */
import type { EventEmitter } from 'node:events';

/** Waits `ms` (or less, when `signal` aborts); never keeps the process alive by itself. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    t.unref();
    signal?.addEventListener('abort', done, { once: true });
  });
}

export function nowIso(): string {
  return new Date().toISOString();
}

/**
 * Resolves true once `ready()` holds (checked at once and after each `event` on `emitter`), or
 * false when `timeoutMs` passes or `signal` aborts first. Listeners are always removed.
 */
export function waitForEvent(
  emitter: EventEmitter,
  event: string,
  ready: () => boolean,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<boolean> {
  if (ready()) return Promise.resolve(true);
  return new Promise((resolve) => {
    const finish = (ok: boolean) => {
      if (timer) clearTimeout(timer);
      emitter.off(event, onEvent);
      opts.signal?.removeEventListener('abort', onAbort);
      resolve(ok);
    };
    const onEvent = () => {
      if (ready()) finish(true);
    };
    const onAbort = () => finish(false);
    const timer = opts.timeoutMs !== undefined ? setTimeout(() => finish(false), opts.timeoutMs) : undefined;
    emitter.on(event, onEvent);
    if (opts.signal?.aborted) return finish(false);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
