/**
 * Waiting for boxes to settle (ready, failed, stopped, destroyed), passing their progress on: each
 * box's latest line when the wait begins and ends (so nothing between a create and its wait is
 * lost, nor a last "ready at"), every line once, and a line at least every 10 s while it lasts.
 */
import type { CallOptions, InstanceView } from '../api/api.js';
import { elapsed, ProgressRelay } from '../lib/progress.js';
import { waitForEvent } from '../lib/timers.js';
import { isSettled } from '../model/instance.js';
import type { Boxes } from './boxes.js';

export async function waitForBoxes(boxes: Boxes, ids: string[], viewOf: (id: string) => InstanceView, timeoutS: number | undefined, o: CallOptions = {}): Promise<InstanceView[]> {
  const all = () => ids.map((id) => viewOf(id));
  const relay = new ProgressRelay(o.onProgress, () => {
    const waiting = all().filter((v) => !isSettled(v.status));
    if (waiting.length === 0) return undefined;
    const each = waiting.map((v) => `${v.instance_id} (${v.status}, ${elapsed(boxes.clock.now() - Date.parse(v.created_at))})`);
    return { message: `still coming up: ${each.join(', ')}` };
  });
  // A line's event may come after the change that ended the wait (the record changes before it is stored).
  const standing = () => {
    for (const v of all()) if (v.status_message) relay.push({ instance_id: v.instance_id, message: v.status_message });
  };
  const onProgress = (p: { instance_id: string; message: string }) => {
    if (ids.includes(p.instance_id)) relay.push(p);
  };
  standing();
  boxes.events.on('progress', onProgress);
  try {
    await waitForEvent(boxes.events, 'change', () => all().every((v) => isSettled(v.status)), { timeoutMs: timeoutS === undefined ? undefined : timeoutS * 1000, signal: o.signal });
    standing();
    return all();
  } finally {
    boxes.events.off('progress', onProgress);
    relay.close();
  }
}
