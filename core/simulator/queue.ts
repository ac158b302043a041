/**
 * A simulated box's prompt queue and executor, like ComfyUI's PromptQueue + PromptExecutor: one
 * job at a time in queue order, the websocket messages a real box sends (to the job's client_id),
 * and the history of finished jobs. Samplers wait a fixed time per step so jobs take as long as
 * their step count says; an interrupt lands between steps (or between nodes).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { nodeType, type NodeOutput, type RunContext } from './nodes.js';
import type { ApiGraph, HistoryEntry } from '../comfy/types.js';
import type { QueueTuple } from './api-types.js';
import type { FileStore } from './files.js';

/** ComfyUI keeps this many history entries (MAXIMUM_HISTORY_SIZE). */
const MAX_HISTORY = 10000;

/** Sends one websocket message: to one client id, or to every client when `sid` is undefined. */
export type Notify = (type: string, data: Record<string, unknown>, sid?: string) => void;

export interface Job {
  number: number;
  promptId: string;
  prompt: ApiGraph;
  extraData: Record<string, unknown>;
  outputs: string[];
}

class Interrupted extends Error {}

type Message = [string, Record<string, unknown>];

/** The nodes the output nodes need, each after its inputs (depth first from each output). */
export function executionOrder(prompt: ApiGraph, outputs: string[]): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (id: string): void => {
    if (seen.has(id)) return;
    seen.add(id);
    for (const v of Object.values(prompt[id]!.inputs)) if (Array.isArray(v)) visit(String(v[0]));
    order.push(id);
  };
  for (const o of outputs) visit(o);
  return order;
}

function tuple(job: Job): QueueTuple {
  return [job.number, job.promptId, job.prompt, job.extraData, job.outputs];
}

export class PromptQueue {
  private pending: Job[] = [];
  private running: { job: Job; abort: AbortController; node: string | null } | undefined;
  private readonly history = new Map<string, HistoryEntry>();
  private nextNumber = 0;
  private closed = false;

  constructor(
    private readonly files: FileStore,
    private readonly notify: Notify,
    private readonly stepMs: number,
  ) {}

  /** Jobs waiting or running: ComfyUI's `queue_remaining`. */
  remaining(): number {
    return this.pending.length + (this.running ? 1 : 0);
  }

  private statusChanged(): void {
    this.notify('status', { status: { exec_info: { queue_remaining: this.remaining() } } });
  }

  /** The queue position ComfyUI gives: in order, `front` before everything, or an explicit number. */
  number(explicit: unknown, front: unknown): number {
    if (typeof explicit === 'number' && Number.isFinite(explicit)) return explicit;
    const n = this.nextNumber++;
    return front === true ? -n : n;
  }

  enqueue(job: Job): void {
    const at = this.pending.findIndex((j) => j.number > job.number);
    if (at < 0) this.pending.push(job);
    else this.pending.splice(at, 0, job);
    this.statusChanged();
    this.pump();
  }

  view(): { queue_running: QueueTuple[]; queue_pending: QueueTuple[] } {
    return { queue_running: this.running ? [tuple(this.running.job)] : [], queue_pending: this.pending.map(tuple) };
  }

  deletePending(ids: unknown[]): void {
    const drop = new Set(ids.map(String));
    const before = this.pending.length;
    this.pending = this.pending.filter((j) => !drop.has(j.promptId));
    if (this.pending.length !== before) this.statusChanged();
  }

  clearPending(): void {
    const had = this.pending.length > 0;
    this.pending = [];
    if (had) this.statusChanged();
  }

  /** Stops the running job, or only the job `promptId` when given (nothing when another runs). */
  interrupt(promptId?: string): void {
    if (this.running && (promptId === undefined || promptId === this.running.job.promptId)) this.running.abort.abort();
  }

  /** The client and node of the running job, to re-send `executing` to a client that reconnects. */
  current(): { clientId: unknown; promptId: string; node: string | null } | undefined {
    return this.running && { clientId: this.running.job.extraData.client_id, promptId: this.running.job.promptId, node: this.running.node };
  }

  /** `GET /history`: the last `maxItems` entries (all without it), oldest first, from `offset` when given. */
  historyView(maxItems?: number, offset?: number): Record<string, HistoryEntry> {
    const entries = [...this.history];
    let start = offset ?? -1;
    if (start < 0) start = maxItems !== undefined ? Math.max(0, entries.length - maxItems) : 0;
    const picked = entries.slice(start, maxItems !== undefined ? start + maxItems : undefined);
    return Object.fromEntries(picked);
  }

  historyOf(promptId: string): Record<string, HistoryEntry> {
    const h = this.history.get(promptId);
    return h ? { [promptId]: h } : {};
  }

  clearHistory(): void {
    this.history.clear();
  }

  deleteHistory(ids: unknown[]): void {
    for (const id of ids) this.history.delete(String(id));
  }

  close(): void {
    this.closed = true;
    this.pending = [];
    this.running?.abort.abort();
  }

  /** Starts the next job when none runs. */
  private pump(): void {
    if (this.running || this.closed) return;
    const job = this.pending.shift();
    if (!job) return;
    const abort = new AbortController();
    this.running = { job, abort, node: null };
    this.statusChanged();
    void this.execute(job, abort.signal).then((entry) => this.finish(job, entry));
  }

  private finish(job: Job, entry: HistoryEntry): void {
    this.running = undefined;
    if (this.closed) return;
    this.history.set(job.promptId, entry);
    if (this.history.size > MAX_HISTORY) this.history.delete(this.history.keys().next().value!);
    this.statusChanged();
    // As ComfyUI's prompt worker: history first, then "executing null" (clients read history on it).
    const sid = job.extraData.client_id;
    if (typeof sid === 'string') this.notify('executing', { node: null, prompt_id: job.promptId }, sid);
    setImmediate(() => this.pump());
  }

  private async execute(job: Job, signal: AbortSignal): Promise<HistoryEntry> {
    const { prompt, promptId } = job;
    const sid = typeof job.extraData.client_id === 'string' ? job.extraData.client_id : undefined;
    const messages: Message[] = [];
    // ComfyUI sends a job's messages to its client only; a few go to everyone when it has none.
    const send = (type: string, data: Record<string, unknown>, broadcast = false) => {
      if (sid !== undefined) this.notify(type, data, sid);
      else if (broadcast) this.notify(type, data);
    };
    /** A message that also goes into the history entry's status (ComfyUI's add_message). */
    const record = (type: string, data: Record<string, unknown>, broadcast = false) => {
      const stamped = { ...data, timestamp: Date.now() };
      messages.push([type, stamped]);
      send(type, stamped, broadcast);
    };
    const outputs: HistoryEntry['outputs'] = {};
    const meta: Record<string, unknown> = {};
    const values = new Map<string, unknown[]>();
    const executed: string[] = [];
    const entry = (ok: boolean): HistoryEntry => ({
      prompt: tuple(job),
      outputs,
      status: { status_str: ok ? 'success' : 'error', completed: ok, messages },
      meta,
    });

    record('execution_start', { prompt_id: promptId });
    record('execution_cached', { nodes: [], prompt_id: promptId });
    for (const id of executionOrder(prompt, job.outputs)) {
      const node = prompt[id]!;
      const type = nodeType(node.class_type, this.files)!;
      if (this.running) this.running.node = id;
      let out: NodeOutput;
      try {
        if (signal.aborted) throw new Interrupted();
        send('executing', { node: id, display_node: id, prompt_id: promptId });
        const inputs: Record<string, unknown> = {};
        for (const [name, v] of Object.entries(node.inputs)) inputs[name] = Array.isArray(v) ? values.get(String(v[0]))?.[v[1] as number] : v;
        const ctx: RunContext = {
          nodeId: id,
          prompt,
          extraPngInfo: job.extraData.extra_pnginfo as Record<string, unknown> | undefined,
          files: this.files,
          sample: (count) => this.sample(count, signal, (value, max) => send('progress', { value, max, prompt_id: promptId, node: id }, true)),
        };
        out = await type.run(inputs, ctx);
      } catch (err) {
        const base = { prompt_id: promptId, node_id: id, node_type: node.class_type, executed: [...executed] };
        if (err instanceof Interrupted || signal.aborted) {
          record('execution_interrupted', base, true);
        } else {
          const message = err instanceof Error ? err.message : String(err);
          record('execution_error', { ...base, exception_message: message, exception_type: 'Exception', traceback: [], current_inputs: {}, current_outputs: {} });
        }
        return entry(false);
      }
      values.set(id, out.result);
      executed.push(id);
      if (out.ui) {
        outputs[id] = out.ui;
        meta[id] = { node_id: id, display_node: id, parent_node: null, real_node_id: id };
        send('executed', { node: id, display_node: id, output: out.ui, prompt_id: promptId });
      }
    }
    record('execution_success', { prompt_id: promptId });
    return entry(true);
  }

  /** `count` steps of `stepMs` each, on a fixed schedule (timer slack does not add up). */
  private async sample(count: number, signal: AbortSignal, progress: (value: number, max: number) => void): Promise<void> {
    const start = performance.now();
    for (let step = 1; step <= count; step++) {
      if (signal.aborted) throw new Interrupted();
      const wait = start + step * this.stepMs - performance.now();
      try {
        await sleep(Math.max(0, wait), undefined, { signal });
      } catch {
        throw new Interrupted();
      }
      progress(step, count);
    }
  }
}
