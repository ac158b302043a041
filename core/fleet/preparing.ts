/**
 * Getting a box ready for a workflow, as the fleet does it: the box's ComfyUI through its tunnel
 * says what it has, its provider's installer (over the box's SSH link, or into a simulated box's
 * tree) puts the rest there, and use of the box is reported to the idle watch meanwhile. The plan
 * and the work themselves are in comfy/provision/, loaded on first use (a supervisor that never
 * prepares a box does not carry them).
 */
import type { ModelEntry } from '../config/config.js';
import type { RequestEnv } from '../config/settings.js';
import { checkComfy, ComfyClient } from '../comfy/client.js';
import type { Plan, PrepareResult } from '../comfy/provision/plan.js';
import { loadWorkflowFile } from '../comfy/workflow/prepare.js';
import { badInput, failure } from '../lib/errors.js';
import type { TunnelManager } from '../tunnels/manager.js';
import type { Boxes } from './boxes.js';

/** What a box is to be made ready for. */
export interface PrepareSpec {
  /** A workflow file (absolute path on this machine) whose models and node packs it needs. */
  workflow_file?: string;
  models?: ModelEntry[];
  custom_nodes?: string[];
}

/** How long ComfyUI may take to answer again after a restart. */
const RESTART_WAIT_MS = 300_000;

export function wantsPreparation(spec: PrepareSpec): boolean {
  return !!(spec.workflow_file || spec.models?.length || spec.custom_nodes?.length);
}

export class Preparing {
  constructor(
    private readonly boxes: Boxes,
    private readonly tunnels: TunnelManager,
    /** The box was used (bytes moved for it): the idle watch hears of it. */
    private readonly used: (id: string) => void,
  ) {}

  /** The box's ComfyUI, through its tunnel (up, ready or not). */
  private client(id: string): ComfyClient {
    const forward = this.tunnels.forwardOf(id);
    if (!forward || forward.state !== 'up') {
      throw failure(`The tunnel of ${id} is not up, so its ComfyUI cannot be asked what it has.`, { cli: `\`vai-mcp-cli tunnel ${id}\` reopens it.`, agent: `open_tunnel with instance_id "${id}" reopens it.` }, 'tunnel_down');
    }
    return new ComfyClient(`http://127.0.0.1:${forward.localPort}`);
  }

  /** What the box lacks for the spec. Bad input (a model without a URL) throws here, before any work. */
  async plan(id: string, spec: PrepareSpec): Promise<Plan> {
    const workflow = spec.workflow_file ? loadWorkflowFile(spec.workflow_file) : undefined;
    const [{ needsOf }, { planFor }, { boxContents }] = await Promise.all([import('../comfy/provision/needs.js'), import('../comfy/provision/preparer.js'), import('../comfy/provision/contents.js')]);
    return planFor(needsOf(workflow, spec), await boxContents(this.client(id)));
  }

  async carryOut(id: string, plan: Plan, env: RequestEnv, progress: (message: string) => void, signal: AbortSignal): Promise<PrepareResult> {
    const rec = this.boxes.record(id);
    const provider = this.boxes.provider(rec.provider);
    if (!provider.installer) throw badInput(`vai-mcp cannot put models or node packs on "${rec.provider}" boxes.`);
    const installer = await provider.installer(rec, this.boxes.ctx(env), this.tunnels.shell(id, env));
    const { carryOut } = await import('../comfy/provision/preparer.js');
    return carryOut(plan, {
      instanceId: id,
      client: this.client(id),
      installer,
      env,
      progress,
      activity: () => this.used(id),
      downloadSlots: this.boxes.box(id).downloads,
      waitForComfy: (s) => this.waitForComfy(id, s),
    }, signal);
  }

  /** After a restart: ComfyUI answers `GET /api/system_stats` through the tunnel again. */
  private async waitForComfy(id: string, signal: AbortSignal): Promise<void> {
    const until = this.boxes.clock.now() + RESTART_WAIT_MS;
    let last = 'no answer yet';
    while (this.boxes.clock.now() < until) {
      if (signal.aborted) throw signal.reason;
      const forward = this.tunnels.forwardOf(id);
      if (forward) {
        const r = await checkComfy(`http://127.0.0.1:${forward.localPort}`, 5000);
        if (r.ok) return;
        last = r.answer;
      }
      await this.boxes.clock.sleep(1000);
    }
    throw failure(`ComfyUI on ${id} did not answer within ${RESTART_WAIT_MS / 1000} s of its restart (last: ${last}).`, `\`vai-mcp-cli logs ${id}\` shows the box's log.`, 'comfy_restart');
  }

  /** What the box has, per folder (`vai-mcp-cli models`). */
  async models(id: string): Promise<Record<string, string[]>> {
    const { boxContents } = await import('../comfy/provision/contents.js');
    const contents = await boxContents(this.client(id));
    const out: Record<string, string[]> = {};
    for (const [folder, files] of [...contents.folders].sort(([a], [b]) => a.localeCompare(b))) out[folder] = [...files].sort();
    return out;
  }
}
