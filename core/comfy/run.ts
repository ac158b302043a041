/**
 * Running one workflow on one box: submit (prepare, upload, queue), follow it to its end, and
 * download what it made. The supervisor's job runner calls these; they hold no state of their
 * own, so a restarted supervisor can follow a prompt again from the box's history.
 */
import path from 'node:path';
import { failure, toVaiError, VaiError } from '../lib/errors.js';
import { isObject } from '../lib/json.js';
import { sleep } from '../lib/timers.js';
import type { ComfyClient } from './client.js';
import { outputName, reserveOutputPath } from './outputs.js';
import type { ApiGraph, ComfyEvent, ComfyFileRef, HistoryEntry, NodeMap } from './types.js';
import { applyUploads, loadWorkflowFile, prepareWorkflow } from './workflow/prepare.js';

export interface JobProgress {
  phase: 'uploading' | 'queued' | 'running' | 'downloading' | 'done';
  message: string;
  node?: string;
  node_index?: number;
  node_count?: number;
  percent?: number;
  queue_position?: number;
}

export interface SubmitResult {
  prompt_id: string;
  number: number;
  node_count: number;
  /** The graph as queued (uploaded names filled in). */
  graph: ApiGraph;
  /** What progress lines need of the graph: each node's name and the nodes it takes input from. */
  nodes: NodeMap;
  /** Output nodes ComfyUI accepted the prompt without (it runs the others); absent when none. */
  node_errors?: Record<string, unknown>;
}

/**
 * Loads the workflow file, checks it against the box's node types, uploads its input files (each
 * once) and queues it. Everything that can be wrong with the input (bad JSON, unknown node types
 * or ids, a missing input file) fails before anything is uploaded or queued. `wf.baseDir` is where
 * relative file paths in the parameters start (default: the workflow file's folder).
 */
export async function submitWorkflow(
  client: ComfyClient,
  wf: { file: string; parameters: Record<string, unknown>; baseDir?: string },
  opts: { clientId: string; onProgress?: (p: JobProgress) => void },
): Promise<SubmitResult> {
  const workflow = loadWorkflowFile(wf.file);
  const objectInfo = await client.objectInfo();
  const prepared = prepareWorkflow(workflow, wf.parameters ?? {}, objectInfo, { baseDir: wf.baseDir ?? path.dirname(wf.file) });

  const files = [...new Set(prepared.uploads.map((u) => u.local_path))];
  const uploaded = new Map<string, ComfyFileRef>();
  for (const [i, file] of files.entries()) {
    opts.onProgress?.({ phase: 'uploading', message: `uploading ${path.basename(file)} (${i + 1} of ${files.length})` });
    uploaded.set(file, await client.uploadImage(file));
  }
  const graph = applyUploads(prepared, uploaded);
  const queued = await client.queuePrompt(graph, opts.clientId, prepared.ui_workflow ? { workflow: prepared.ui_workflow } : undefined);
  const skipped = queued.node_errors ? Object.keys(queued.node_errors) : [];
  opts.onProgress?.({
    phase: 'queued',
    message: `queued as ${queued.prompt_id}${skipped.length ? ` (ComfyUI skips the invalid node(s) ${skipped.join(', ')})` : ''}`,
    node_count: prepared.node_count,
  });
  return { prompt_id: queued.prompt_id, number: queued.number, node_count: prepared.node_count, graph, nodes: nodeMap(graph), ...(queued.node_errors ? { node_errors: queued.node_errors } : {}) };
}

/** What progress lines need of a graph (see NodeMap). */
export function nodeMap(graph: ApiGraph): NodeMap {
  const map: NodeMap = {};
  for (const [id, n] of Object.entries(graph)) {
    const from = Object.values(n.inputs ?? {}).filter((v): v is [string, number] => Array.isArray(v) && v.length === 2 && typeof v[0] === 'string').map((v) => v[0]);
    map[id] = { name: n._meta?.title || n.class_type, from: [...new Set(from)] };
  }
  return map;
}

// ------------------------------------------------------------------ following

export interface FollowResult {
  status: 'succeeded' | 'failed' | 'cancelled';
  error?: string;
  outputs: ComfyFileRef[];
}

/** While /ws is up, history is still read this often (a safety net for a silent socket). */
const SAFETY_POLL_MS = 5_000;
/** Consecutive failed polls before followJob gives up (the caller decides whether to retry). */
const MAX_POLL_FAILURES = 3;


function isFileRef(v: unknown): v is ComfyFileRef {
  return isObject(v) && typeof v.filename === 'string' && v.filename !== '' && typeof v.type === 'string';
}

/**
 * The files a finished prompt saved: every file entry of type `output` in its history outputs.
 * `images` holds SaveImage's files; other keys (`gifs`, `audio`, `video`, ...) of other save nodes
 * are taken too. Temp previews (type `temp`) are not outputs.
 */
export function outputFiles(entry: HistoryEntry): ComfyFileRef[] {
  const seen = new Set<string>();
  const files: ComfyFileRef[] = [];
  for (const out of Object.values(entry.outputs ?? {})) {
    if (!isObject(out)) continue;
    for (const list of Object.values(out)) {
      if (!Array.isArray(list)) continue;
      for (const f of list) {
        if (!isFileRef(f) || f.type !== 'output') continue;
        const ref = { filename: f.filename, subfolder: typeof f.subfolder === 'string' ? f.subfolder : '', type: f.type };
        const key = `${ref.subfolder}/${ref.filename}`;
        if (seen.has(key)) continue;
        seen.add(key);
        files.push(ref);
      }
    }
  }
  return files;
}

/** How a finished history entry ended. */
export function outcome(entry: HistoryEntry): FollowResult {
  const status = entry.status;
  const messages = Array.isArray(status?.messages) ? status.messages : [];
  const find = (name: string) => messages.find((m) => Array.isArray(m) && m[0] === name)?.[1];
  const where = (d: Record<string, unknown>) => (d.node_id ? `node ${String(d.node_id)}${d.node_type ? ` (${String(d.node_type)})` : ''}` : '');
  if (status?.status_str === 'error') {
    const interrupted = find('execution_interrupted');
    if (interrupted) {
      const at = where(interrupted);
      return { status: 'cancelled', error: `interrupted on the box${at ? ` at ${at}` : ''}`, outputs: outputFiles(entry) };
    }
    const err = find('execution_error') ?? {};
    const msg = typeof err.exception_message === 'string' ? err.exception_message.trim() : '';
    const at = where(err);
    const text = `${at ? `${at}: ` : ''}${msg || 'ComfyUI reported an error'}`;
    return { status: 'failed', error: text.length > 1000 ? `${text.slice(0, 1000)}...` : text, outputs: outputFiles(entry) };
  }
  return { status: 'succeeded', outputs: outputFiles(entry) };
}

/** Turns /ws events and queue reads into progress lines ("node 5 of 7: KSampler (node 3) 45%"). */
class ProgressTracker {
  private executed = new Set<string>();
  private cached = new Set<string>();
  private node?: string;
  private percent?: number;
  private running = false;
  private lastQueueKey = '';
  /** The socket said the prompt ended: read history now. */
  endHinted = false;
  /** The queue changed while we wait in it: read our position. */
  queueMoved = true;

  constructor(
    private readonly promptId: string,
    private readonly nodeCount: number | undefined,
    private readonly nodes: NodeMap | undefined,
    private readonly emit: (p: JobProgress) => void,
  ) {}

  private label(id: string): string {
    const name = this.nodes?.[id]?.name;
    return name ? `${name} (node ${id})` : `node ${id}`;
  }

  private total(): number | undefined {
    if (this.nodeCount === undefined) return undefined;
    return Math.max(this.nodeCount - this.cached.size, this.executed.size);
  }

  /**
   * A node runs only after every node it takes input from: those count as done too, so a
   * follower that joined late (the first nodes ran before its websocket was open) still counts right.
   */
  private ran(id: string): void {
    const todo = [id];
    while (todo.length) {
      const n = todo.pop()!;
      if (this.executed.has(n) || this.cached.has(n)) continue;
      this.executed.add(n);
      todo.push(...(this.nodes?.[n]?.from ?? []));
    }
  }

  private emitRunning(): void {
    const total = this.total();
    const index = this.executed.size;
    let message = 'running';
    if (this.node) {
      message = `node ${index}${total ? ` of ${total}` : ''}: ${this.label(this.node)}`;
      if (this.percent !== undefined) message += ` ${this.percent}%`;
    }
    this.emit({ phase: 'running', message, node: this.node, node_index: index || undefined, node_count: total, percent: this.percent });
  }

  /** Returns true when the event is worth an immediate look at history or the queue. */
  onEvent(e: ComfyEvent): boolean {
    if (e.type === 'status') {
      if (!this.running) this.queueMoved = true;
      return !this.running;
    }
    // Progress events of other prompts (same client id reused) are not ours.
    const pid = (e.data as { prompt_id?: string }).prompt_id;
    if (pid !== undefined && pid !== this.promptId) return false;
    if (pid === undefined && !this.running) return false;
    switch (e.type) {
      case 'execution_start':
        this.running = true;
        this.emitRunning();
        return false;
      case 'execution_cached':
        this.running = true;
        this.cached = new Set(Array.isArray(e.data.nodes) ? e.data.nodes.map(String) : []);
        return false;
      case 'executing':
        if (e.data.node == null) {
          this.endHinted = true;
          return true;
        }
        this.running = true;
        if (this.node !== e.data.node) {
          this.node = e.data.node;
          this.ran(e.data.node);
          this.percent = undefined;
          this.emitRunning();
        }
        return false;
      case 'progress': {
        this.running = true;
        if (e.data.node && e.data.node !== this.node) {
          this.node = e.data.node;
          this.ran(e.data.node);
        }
        const pct = e.data.max > 0 ? Math.min(100, Math.round((e.data.value / e.data.max) * 100)) : undefined;
        if (pct !== this.percent) {
          this.percent = pct;
          this.emitRunning();
        }
        return false;
      }
      case 'execution_success':
      case 'execution_error':
      case 'execution_interrupted':
        this.endHinted = true;
        return true;
      default:
        return false;
    }
  }

  /** What a queue read says while history has no entry yet. */
  onQueue(running: boolean, position: number | undefined, ahead: { running: number; pending: number }): void {
    if (running) {
      if (!this.running) {
        this.running = true;
        this.emitRunning();
      }
      return;
    }
    if (position === undefined) return;
    const key = `${position}/${ahead.running}/${ahead.pending}`;
    if (key === this.lastQueueKey) return;
    this.lastQueueKey = key;
    const busy = ahead.running ? `, ${ahead.running} running` : '';
    this.emit({ phase: 'queued', message: `queued: position ${position} of ${ahead.pending}${busy}`, queue_position: position });
  }
}

/** Cuts the poller's current pause short when /ws has news (or drops), so it checks at once. */
class Waker {
  private early = new AbortController();
  wake(): void {
    this.early.abort();
  }
  pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
    if (this.early.signal.aborted) this.early = new AbortController();
    return sleep(ms, signal ? AbortSignal.any([signal, this.early.signal]) : this.early.signal);
  }
}

/**
 * Follows a queued prompt to its end: live progress from /ws, and /history/{id} (plus /queue for
 * the position while it waits) every `pollMs` when /ws is unavailable or drops (every 5 s as a
 * safety net while it is up). Ends when history has the prompt: succeeded, failed (with the
 * node and ComfyUI's message) or cancelled (interrupted, or gone from the queue without a
 * history entry). `clientId` must be the one the prompt was queued with.
 *
 * Rejects with the signal's reason when `signal` aborts (the prompt keeps running on the box),
 * and with a VaiError after 3 failed reads in a row (the box or tunnel is down): the caller
 * decides whether to follow again.
 */
export async function followJob(
  client: ComfyClient,
  promptId: string,
  opts: { clientId: string; nodeCount?: number; nodes?: NodeMap; signal?: AbortSignal; onProgress?: (p: JobProgress) => void; pollMs?: number },
): Promise<FollowResult> {
  const { signal } = opts;
  signal?.throwIfAborted();
  const pollMs = opts.pollMs ?? 1000;
  const waker = new Waker();
  const tracker = new ProgressTracker(promptId, opts.nodeCount, opts.nodes, (p) => opts.onProgress?.(p));
  let wsUp = false;
  const watch = client.watch(opts.clientId, (e) => {
    if (tracker.onEvent(e)) waker.wake();
  });
  void watch.connected.then((ok) => {
    wsUp = ok;
  });
  void watch.closed.then(() => {
    wsUp = false;
    waker.wake(); // fall back to polling at once
  });

  /** One look at the box; the result when the prompt has ended. */
  const check = async (): Promise<FollowResult | undefined> => {
    const entry = (await client.history(promptId))[promptId];
    if (entry) return outcome(entry);
    const q = await client.queue();
    const running = q.running.some((i) => i.prompt_id === promptId);
    const index = q.pending.findIndex((i) => i.prompt_id === promptId);
    if (!running && index < 0) {
      // Off the queue: ComfyUI writes history as it takes a prompt off, so read it once more.
      const again = (await client.history(promptId))[promptId];
      if (again) return outcome(again);
      return { status: 'cancelled', error: 'the prompt left the queue of the box without a result (deleted, the queue was cleared, or ComfyUI restarted)', outputs: [] };
    }
    tracker.queueMoved = false;
    tracker.onQueue(running, index >= 0 ? index + 1 : undefined, { running: q.running.length, pending: q.pending.length });
    return undefined;
  };

  try {
    let failures = 0;
    let lastCheck = 0;
    for (;;) {
      signal?.throwIfAborted();
      const due = !wsUp || tracker.endHinted || tracker.queueMoved || Date.now() - lastCheck >= SAFETY_POLL_MS;
      if (due) {
        lastCheck = Date.now();
        try {
          const end = await check();
          failures = 0;
          if (end) return end;
        } catch (err) {
          signal?.throwIfAborted();
          if (++failures >= MAX_POLL_FAILURES) throw toVaiError(err);
        }
      }
      const wait = !wsUp || tracker.endHinted || tracker.queueMoved || failures > 0 ? pollMs : Math.min(SAFETY_POLL_MS, Math.max(pollMs, SAFETY_POLL_MS - (Date.now() - lastCheck)));
      await waker.pause(wait, signal);
    }
  } finally {
    watch.close();
  }
}

// ------------------------------------------------------------------ downloading

/**
 * Downloads a prompt's output files into `outputDir` as `<YYYYMMDD_HHMMSS>_<instance>_<file>`,
 * never over an existing file. Returns the absolute paths. When some fail, the others are still
 * downloaded and one error names the failures and what was saved.
 */
export async function downloadOutputs(
  client: ComfyClient,
  files: ComfyFileRef[],
  opts: { outputDir: string; instanceId: string; when?: Date; onProgress?: (p: JobProgress) => void },
): Promise<string[]> {
  const when = opts.when ?? new Date();
  const saved: string[] = [];
  const failed: string[] = [];
  for (const [i, f] of files.entries()) {
    const shown = f.subfolder ? `${f.subfolder}/${f.filename}` : f.filename;
    opts.onProgress?.({ phase: 'downloading', message: `downloading ${shown} (${i + 1} of ${files.length})` });
    const name = outputName(when, opts.instanceId, shown);
    for (let attempt = 1; ; attempt++) {
      const dest = reserveOutputPath(opts.outputDir, name);
      try {
        await client.download(f, dest);
        saved.push(dest);
        break;
      } catch (err) {
        // Another writer took the name between reserve and open: take the next one.
        if (err instanceof VaiError && err.code === 'file_exists' && attempt < 20) continue;
        if (err instanceof VaiError && err.code === 'output_dir') throw err;
        failed.push(`${shown} (${toVaiError(err).message})`);
        break;
      }
    }
  }
  if (failed.length) {
    throw failure(`Downloaded ${saved.length} of ${files.length} output file(s) to ${opts.outputDir}; failed: ${failed.join('; ')}`,
      saved.length ? `Saved: ${saved.join(', ')}. Run extract to fetch the rest once the box answers again.` : 'Run extract to fetch them once the box answers again.',
      'download_failed');
  }
  opts.onProgress?.({ phase: 'done', message: `${saved.length} file(s) in ${opts.outputDir}` });
  return saved;
}
