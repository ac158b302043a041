/**
 * Making a box ready for a workflow: what it needs (needs.ts) against what it has (contents.ts)
 * gives a plan; carrying it out downloads the missing models (at most 2 at once per box, each
 * resumed after a cut), installs the missing node packs, restarts ComfyUI when packs were added, and
 * checks the box again. A model named without a URL anywhere is bad input before anything moves.
 */
import type { RequestEnv } from '../../config/settings.js';
import { badInput, failure } from '../../lib/errors.js';
import type { ComfyClient } from '../client.js';
import { boxContents, hasModel, type BoxContents } from './contents.js';
import { DownloadError, type BoxInstaller, type TransferProgress } from './installer.js';
import { describePack, type Needs } from './needs.js';
import { count, type Plan, type PrepareResult } from './plan.js';
import { resolvePack } from './registry.js';
import { tokenFor } from './tokens.js';
import type { Slots } from '../../lib/slots.js';

/** The target of a preparation: the box's ComfyUI, its installer, and where progress goes. */
export interface PrepareTarget {
  instanceId: string;
  client: ComfyClient;
  installer: BoxInstaller;
  env: RequestEnv;
  /** Waits until ComfyUI answers again after a restart. */
  waitForComfy(signal: AbortSignal): Promise<void>;
  progress(message: string): void;
  /** Bytes moved or work done: the box is in use, and a waiting deadline pauses. */
  activity(): void;
  /** The box's download slots, shared by every preparation of it (at most 2 downloads at once). */
  downloadSlots: Slots;
}

/** Attempts in a row that move no byte before a download is given up. */
const MAX_IDLE_ATTEMPTS = 5;
const MB = 1_000_000;

/** Compares needs with the box; throws bad input naming each model that has no URL or folder. */
export function planFor(needs: Needs, contents: BoxContents): Plan {
  const problems: string[] = [];
  const downloads: Plan['downloads'] = [];
  let present = 0;
  for (const m of needs.models) {
    if (hasModel(contents, m.name, m.dir)) {
      present++;
      continue;
    }
    if (!m.url) problems.push(`${m.name} (named by ${m.from}) is not on the box and has no URL`);
    else if (!m.dir) problems.push(`${m.name} (named by ${m.from}) has a URL but no folder`);
    else downloads.push({ ...m, url: m.url, dir: m.dir });
  }
  if (problems.length) {
    throw badInput(`The workflow needs model files that vai-mcp cannot fetch: ${problems.join('; ')}.`,
      { cli: 'Add each to instance_config.models in the config, e.g. {"url": "https://huggingface.co/.../file.safetensors", "dir": "checkpoints"}, or put it on the box yourself.',
        agent: 'Pass each in the models argument ({"url", "dir"}), or add it to the config\'s instance_config.models.' }, 'model_without_url');
  }
  // A pack asked for by a node type the box knows is there already; config packs are checked on the box.
  const packs = needs.packs.filter((p) => !p.nodeType || !contents.nodeTypes.has(p.nodeType));
  const unique = new Map(packs.map((p) => [describePack(p.source), p]));
  return { downloads, packs: [...unique.values()], present };
}

function mb(bytes: number): string {
  return (bytes / MB).toFixed(1);
}

/** Downloads one file, resuming after cuts, with progress lines at most once a second. */
async function downloadOne(t: PrepareTarget, d: Plan['downloads'][number], signal: AbortSignal): Promise<void> {
  const token = tokenFor(d.url, t.env);
  let idleAttempts = 0;
  let lastLine = 0;
  let rate = { at: Date.now(), bytes: -1, mbps: 0 };
  const onBytes = (p: TransferProgress) => {
    t.activity();
    const now = Date.now();
    if (rate.bytes < 0) rate = { at: now, bytes: p.done, mbps: 0 };
    else if (now - rate.at >= 1000) rate = { at: now, bytes: p.done, mbps: (p.done - rate.bytes) / MB / ((now - rate.at) / 1000) };
    if (now - lastLine < 1000 && p.done !== p.total) return;
    lastLine = now;
    t.progress(`downloading ${d.dir}/${d.name}: ${mb(p.done)}${p.total ? ` of ${mb(p.total)}` : ''} MB${rate.mbps ? `, ${rate.mbps.toFixed(1)} MB/s` : ''}`);
  };
  for (;;) {
    let moved = false;
    try {
      await t.installer.download({ name: d.name, dir: d.dir, url: d.url, ...(d.sha256 ? { sha256: d.sha256 } : {}), ...(token ? { token } : {}) }, (p) => {
        moved = true;
        onBytes(p);
      }, signal);
      t.progress(`${d.dir}/${d.name} is on the box${d.sha256 ? ' (sha256 checked)' : ''}`);
      return;
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      if (!(err instanceof DownloadError) || !err.retryable) throw err;
      idleAttempts = moved ? 1 : idleAttempts + 1;
      if (idleAttempts >= MAX_IDLE_ATTEMPTS) throw failure(`${err.message} (${MAX_IDLE_ATTEMPTS} attempts in a row without progress)`, 'Check the URL and the box\'s network, then run it again: what arrived is kept and resumed.', 'download_failed');
      t.progress(`${err.message}; resuming in ${idleAttempts} s`);
      await new Promise((r) => setTimeout(r, idleAttempts * 1000));
    }
  }
}

export async function carryOut(plan: Plan, t: PrepareTarget, signal: AbortSignal): Promise<PrepareResult> {
  const result: PrepareResult = { downloaded: [], installed: [], restarted: false };
  const inner = new AbortController();
  const both = AbortSignal.any([signal, inner.signal]);
  try {
    // Every file asks for a slot of the box; the first failure ends the rest, queued ones too.
    await Promise.all(plan.downloads.map((d) => t.downloadSlots.run(async () => {
      if (both.aborted) return;
      await downloadOne(t, d, both);
      result.downloaded.push(`${d.dir}/${d.name}`);
    }).catch((err: unknown) => {
      inner.abort(err);
      throw err;
    })));
  } catch (err) {
    throw signal.aborted ? signal.reason : err;
  }
  for (const p of plan.packs) {
    const pack = await resolvePack(p.source, t.env, signal);
    t.progress(`installing node pack ${pack.label} into ${t.installer.comfyDir}/custom_nodes/${pack.dir}`);
    const done = await t.installer.installPack(pack, (line) => {
      t.activity();
      t.progress(`${pack.label}: ${line}`);
    }, signal);
    if (done === 'installed') result.installed.push(pack.label);
    else t.progress(`${pack.label} is on the box already`);
  }
  if (result.installed.length) {
    t.progress(`restarting ComfyUI to load ${count(result.installed.length, 'new node pack')}`);
    await t.installer.restartComfy(signal);
    await t.waitForComfy(signal);
    result.restarted = true;
    t.progress('ComfyUI is back');
  }
  await checkAgain(plan, t);
  return result;
}

/** After the work: every planned file is listed by the box, and every node type that needed a pack is known. */
async function checkAgain(plan: Plan, t: PrepareTarget): Promise<void> {
  const now = await boxContents(t.client);
  const missing = [
    ...plan.downloads.filter((d) => !hasModel(now, d.name, d.dir)).map((d) => `${d.dir}/${d.name}`),
    ...plan.packs.filter((p) => p.nodeType && !now.nodeTypes.has(p.nodeType)).map((p) => `node type ${p.nodeType} (from ${describePack(p.source)})`),
  ];
  if (missing.length) throw failure(`After the downloads and installs the box still lacks: ${missing.join(', ')}.`, 'Look at the box\'s ComfyUI log (`vai-mcp-cli logs <id>`): a node pack may have failed to load.', 'prepare_incomplete');
}
