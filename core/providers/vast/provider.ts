/**
 * The `vast` provider: rents real GPU boxes on Vast.ai and reaches their ComfyUI
 * (`vastai/comfy`, ComfyUI on 127.0.0.1:18188 inside the box, no auth there) through an SSH tunnel.
 *
 * Money first: the instance cap is checked by the supervisor before any call; the price cap
 * filters the offers and a request that cannot be met under it rents nothing; a create whose
 * answer is lost is looked up by its label, never sent twice; every box carries a `vai-mcp:`
 * label so a crash cannot hide it (orphans in `list`).
 */
import { readFileSync } from 'node:fs';
import type { Config } from '../../config/config.js';
import { badInput, failure } from '../../lib/errors.js';
import { resolveAuth, type SshAuth } from '../../tunnels/ssh-auth.js';
import type { InstanceRecord } from '../../store/store.js';
import type { BoxStatus, CreatedBox, CreatePlan, CreateSpec, Heartbeat, OrphanBox, Provider, ProviderContext } from '../provider.js';
import { deadmanScale, HEARTBEAT_COMMAND, HEARTBEAT_EVERY_S, MAX_ENV_VALUE_CHARS, MAX_ONSTART_CHARS, onstartFor, watchdogEnv } from './watchdog.js';
import { AmbiguousCreateError, findVastApiKey, VastApi, type VastInstance, type VastOffer } from './api.js';
import type { SshEndpoint } from '../../model/instance.js';
import type { Shell } from '../../model/shell.js';
import type { BoxInstaller } from '../../comfy/provision/installer.js';
import { ShellInstaller } from '../../comfy/provision/shell-installer.js';

export const DEFAULT_IMAGE = 'vastai/comfy:@vastai-automatic-tag';
/**
 * SSH runtypes replace the image's entrypoint, so `onstart` must start it, or ComfyUI never
 * starts on a real box (while every fake passes). The vastai/comfy entrypoint also runs
 * PROVISIONING_SCRIPT on first boot.
 */
export const ONSTART = 'entrypoint.sh';
/**
 * The image's default ComfyUI arguments without `--enable-cors-header`: that flag replaces
 * ComfyUI's own origin check with "allow every origin". Without it, ComfyUI refuses foreign
 * origins itself, a second layer behind the tunnel's guard.
 */
export const COMFYUI_ARGS = '--disable-auto-launch --port 18188';
/** Models are downloaded once per box: counted in the ranking at the offer's download price. */
const DOWNLOAD_GB_ESTIMATE = 10;
/** A status_msg like these means the box will not come up (the official CLI's list). */
const STATUS_MSG_FAILURE = /error|failed|failure|exception|traceback|oci runtime|permission denied/i;

interface Plan extends CreatePlan {
  offers: VastOffer[];
  maxPrice: number;
}

/** VAI_VAST_PACE_SCALE: the fraction of Vast's documented intervals to use (tests use a fake API). */
function paceScale(): number {
  const v = Number(process.env.VAI_VAST_PACE_SCALE ?? 1);
  return Number.isFinite(v) && v > 0 ? Math.max(v, 0.01) : 1;
}

function api(ctx: ProviderContext): VastApi {
  const found = findVastApiKey(ctx.env, ctx.settings.vastApiKey);
  if (!found) {
    throw badInput('No Vast.ai API key: VAST_API_KEY is not set and no key file was found.',
      'Set VAST_API_KEY (https://cloud.vast.ai/manage-keys/), or log in with the official CLI (`vastai set api-key ...`).', 'vast_no_key');
  }
  return new VastApi(ctx.settings.vastUrl, found.key);
}

/** The search query for a config (reference section 3): `allocated_storage` makes dph_total the billed price. */
export function offerQuery(config: Config, maxPrice: number): Record<string, unknown> {
  const ic = config.instance_config;
  const optional: Record<string, unknown> = {};
  if (ic.min_reliability !== undefined) optional.reliability2 = { gte: ic.min_reliability };
  if (ic.min_inet_down_mbps !== undefined) optional.inet_down = { gte: ic.min_inet_down_mbps };
  if (ic.regions) optional.geolocation = { in: ic.regions };
  return {
    ...optional,
    verified: { eq: true },
    external: { eq: false },
    rentable: { eq: true },
    rented: { eq: false },
    gpu_name: { in: [ic.gpu_name] },
    num_gpus: { eq: ic.num_gpus },
    disk_space: { gte: ic.disk_size },
    dph_total: { lte: maxPrice },
    allocated_storage: ic.disk_size,
    type: 'on-demand',
    order: [['dph_total', 'asc']],
    limit: 64,
  };
}

/** What an offer costs to run for an hour, counting a one-off model download at its bandwidth price. */
export function rankingPrice(o: VastOffer): number {
  return o.dph_total + (o.inet_down_cost ?? 0) * DOWNLOAD_GB_ESTIMATE;
}

/** The SSH endpoint of a running box: direct `22/tcp` when mapped, else the proxy host:port. */
export function sshEndpointOf(inst: VastInstance): SshEndpoint | undefined {
  const direct = inst.ports?.['22/tcp']?.[0]?.HostPort;
  if (direct && inst.public_ipaddr) return { host: inst.public_ipaddr, port: Number(direct), user: 'root' };
  if (inst.ssh_host && inst.ssh_port) {
    // Jupyter runtypes put SSH one port above (the official CLI's ssh-url).
    const port = inst.ssh_port + (/jupyter/.test(inst.image_runtype ?? '') ? 1 : 0);
    return { host: inst.ssh_host, port, user: 'root' };
  }
  return undefined;
}

/** Maps Vast's statuses to ours (reference section 5, the official CLI's readiness loop). */
export function boxStatusOf(inst: VastInstance | null): BoxStatus {
  if (!inst) return { status: 'failed', message: 'the box no longer exists on Vast.ai' };
  const actual = inst.actual_status;
  const msg = inst.status_msg ?? undefined;
  if (actual === 'offline' || actual === 'unknown') return { status: 'failed', message: `Vast.ai reports the box ${actual}${msg ? ` (${msg})` : ''}` };
  if (msg && STATUS_MSG_FAILURE.test(msg) && actual !== 'running') return { status: 'failed', message: `Vast.ai reports: ${msg}` };
  if (inst.intended_status === 'stopped' || actual === 'stopped') return { status: 'stopped', message: 'stopped (storage still bills)' };
  if (actual === 'exited') return { status: 'failed', message: `the box exited${msg ? ` (${msg})` : ''}` };
  if (actual === 'running' && (inst.intended_status ?? 'running') === 'running') {
    const ssh = sshEndpointOf(inst);
    if (ssh) return { status: 'running', ssh, message: 'running; opening the tunnel' };
    return { status: 'loading', message: 'running, waiting for its SSH endpoint' };
  }
  if (actual === 'loading') return { status: 'loading', message: msg ? `loading: ${msg}` : 'loading (pulling the image)' };
  return { status: 'provisioning', message: msg ? `scheduling: ${msg}` : 'waiting for the host to start it' };
}

const VAST_COMFY_DIR = '/workspace/ComfyUI';
const VAST_COMFY_RESTART = 'supervisorctl restart comfyui';

export class VastProvider implements Provider {
  readonly name = 'vast' as const;
  readonly checksComfy = true;
  readonly failsafeDestroy = true;
  readonly countsTowardCap = true;
  readonly progressCommand = 'tail -n 2 /var/log/onstart.log 2>/dev/null';
  /** Show-instance may be asked every 2 s (scaled like the API pacing, see vast-api.ts). */
  readonly pollIntervalMs = 2000 * paceScale();
  readonly censusIntervalMs = 30_000 * paceScale();
  /**
   * vastai/comfy (vast-ai/base-image, derivatives/pytorch/derivatives/comfyui): ComfyUI lives in
   * ${WORKSPACE}/ComfyUI with WORKSPACE=/workspace, runs from the /venv/main venv, and is the
   * Supervisor program `comfyui` (ROOT/opt/supervisor-scripts/comfyui.sh, the image's README).
   */
  async installer(rec: InstanceRecord, _ctx: ProviderContext, shell: Shell): Promise<BoxInstaller> {
    const ic = rec.config.instance_config;
    return new ShellInstaller(shell, { comfyDir: ic.comfy_dir ?? VAST_COMFY_DIR, restart: ic.comfy_restart ?? VAST_COMFY_RESTART });
  }

  readonly heartbeat: Heartbeat = { command: HEARTBEAT_COMMAND, intervalMs: HEARTBEAT_EVERY_S * 1000 * deadmanScale(), scale: deadmanScale() };

  validate(config: Config, ctx: ProviderContext): void {
    const ic = config.instance_config;
    if (!ic.gpu_name) throw badInput('instance_config.gpu_name is required with provider "vast".', 'Name the GPU as Vast.ai does, e.g. "RTX 4090".');
    if (ic.provisioning_script && !/^https?:\/\//.test(ic.provisioning_script)) {
      throw badInput(`instance_config.provisioning_script must be a URL for Vast.ai boxes (got ${ic.provisioning_script}).`,
        'Put the script somewhere the box can download it (e.g. a raw gist URL).');
    }
    const onstart = onstartFor(config, ONSTART);
    if (onstart.length > MAX_ONSTART_CHARS) throw badInput(`The box's onstart would be ${onstart.length} characters, over Vast.ai's ${MAX_ONSTART_CHARS}.`, 'Set instance_config.deadman_s to 0 to leave the watchdog out.');
    for (const [k, v] of Object.entries({ ...ic.env, ...watchdogEnv(config, ctx.settings.vastUrl) })) {
      if (v.length > MAX_ENV_VALUE_CHARS) throw badInput(`instance_config.env.${k} is ${v.length} characters; Vast.ai takes at most ${MAX_ENV_VALUE_CHARS} per value.`, 'Shorten it, or put it in a file the provisioning script downloads.');
    }
    api(ctx);
    this.publicKey(config, ctx);
  }

  /** The user's key: used by the tunnel, and its public half attached to each box. */
  auth(rec: Pick<InstanceRecord, 'config'>, ctx: ProviderContext): SshAuth {
    return resolveAuth({
      keyPath: rec.config.instance_config.ssh_key_path,
      passphrase: ctx.env.VAI_SSH_PASSPHRASE,
      agentSocket: ctx.env.SSH_AUTH_SOCK,
      homeDir: ctx.env.HOME,
    });
  }

  private publicKey(config: Config, ctx: ProviderContext): string {
    const auth = this.auth({ config }, ctx);
    if (auth.kind !== 'key') {
      throw badInput('Vast.ai boxes need a key file (its public half is attached to the box); only an ssh agent was found.',
        'Set instance_config.ssh_key_path, or create a key with `ssh-keygen -t ed25519`.', 'vast_needs_key_file');
    }
    try {
      return readFileSync(`${auth.keyPath}.pub`, 'utf8').trim();
    } catch {
      return `${auth.key.type} ${auth.key.getPublicSSH().toString('base64')} vai-mcp`;
    }
  }

  /** Chooses the offers for the whole request, or refuses it having rented nothing. */
  async plan(config: Config, count: number, ctx: ProviderContext): Promise<Plan> {
    const ic = config.instance_config;
    const maxPrice = ic.max_price_per_hour ?? ctx.settings.maxPricePerHour;
    const client = api(ctx);
    const fits = (await client.searchOffers(offerQuery(config, maxPrice)))
      // The API filters by price already; checked again, because no rent request may ever go
      // out for an offer over the cap.
      .filter((o) => o.gpu_name === ic.gpu_name && o.num_gpus >= ic.num_gpus && o.dph_total <= maxPrice)
      .sort((a, b) => rankingPrice(a) - rankingPrice(b));
    const chosen = fits.slice(ic.gpu_index, ic.gpu_index + count);
    if (chosen.length < count) {
      // Tell the user what it would cost: the cheapest offer without the cap.
      const all = await client.searchOffers({ ...offerQuery(config, maxPrice), dph_total: undefined });
      const cheapest = all.filter((o) => o.gpu_name === ic.gpu_name).sort((a, b) => a.dph_total - b.dph_total)[0];
      const seen = cheapest ? ` The cheapest ${ic.gpu_name} offer seen costs $${cheapest.dph_total.toFixed(3)}/h (offer ${cheapest.id}).` : ` No ${ic.gpu_name} offer was found at all.`;
      throw failure(
        `Not enough ${ic.num_gpus}x ${ic.gpu_name} offers at or under $${maxPrice.toFixed(2)}/h: ${fits.length} found${ic.gpu_index ? ` (gpu_index ${ic.gpu_index} skips the first ${ic.gpu_index})` : ''}, ${count} needed. Nothing was rented.${seen}`,
        'Raise instance_config.max_price_per_hour (or VAI_MAX_PRICE_PER_HOUR), or try another gpu_name.',
        'vast_no_offer',
      );
    }
    return { offers: chosen, maxPrice, hourly_usd: chosen.map((o) => o.dph_total) };
  }

  async create(spec: CreateSpec, ctx: ProviderContext): Promise<CreatedBox> {
    const plan = spec.plan as Plan;
    const offer = plan.offers[spec.n - 1]!;
    if (offer.dph_total > plan.maxPrice) throw failure(`internal: offer ${offer.id} is over the price cap`); // never rent over the cap
    const ic = spec.config.instance_config;
    const client = api(ctx);
    const env: Record<string, string> = { ...ic.env, ...watchdogEnv(spec.config, ctx.settings.vastUrl) };
    if (ic.provisioning_script) env.PROVISIONING_SCRIPT = ic.provisioning_script;
    // A box that allows other origins keeps the image's CORS header: ComfyUI's own check would
    // refuse them (and sends no CORS headers), so the guard is then the one check.
    const allowsOrigins = (ic.allowed_origins?.length ?? 0) > 0 || ctx.settings.allowedOrigins.length > 0;
    if (env.COMFYUI_ARGS === undefined && !allowsOrigins) env.COMFYUI_ARGS = COMFYUI_ARGS;
    const body = {
      client_id: 'me',
      image: ic.image ?? DEFAULT_IMAGE,
      env,
      price: null,
      disk: ic.disk_size,
      label: spec.label,
      onstart: onstartFor(spec.config, ONSTART),
      runtype: (offer.direct_port_count ?? 0) > 0 ? 'ssh_direc ssh_proxy' : 'ssh_proxy',
      cancel_unavail: true,
      image_login: null,
      python_utf8: false,
      lang_utf8: false,
      use_jupyter_lab: false,
      jupyter_dir: null,
      force: false,
    };
    let id: string;
    try {
      id = String(await client.createInstance(offer.id, body));
    } catch (err) {
      if (!(err instanceof AmbiguousCreateError)) throw err;
      // The answer was lost: the box may exist. Look for it by its label; never rent again.
      const found = (await client.listInstances(spec.label)).find((i) => i.label === spec.label);
      if (!found) throw failure(`Renting offer ${offer.id} failed (${err.message}) and no box labelled ${spec.label} exists, so nothing was rented.`, 'Try again.');
      id = String(found.id);
    }
    // Let the box's sshd accept the user's key. Adding it to the account is a lasting change:
    // only when the account has none.
    const pub = this.publicKey(spec.config, ctx);
    const notes: string[] = [`rented offer ${offer.id} at $${offer.dph_total.toFixed(3)}/h`];
    if ((await client.accountKeys()).length === 0) {
      await client.addAccountKey(pub);
      notes.push('added your public SSH key to your Vast.ai account (it had none)');
    }
    await client.attachKey(id, pub);
    const storage_dph = offer.storage_cost === undefined ? undefined : (offer.storage_cost * ic.disk_size) / 720;
    return { instance_id: id, status: 'provisioning', dph_total: offer.dph_total, storage_dph, message: 'waiting for the host to start it', note: notes.join('; ') };
  }

  async status(rec: InstanceRecord, ctx: ProviderContext): Promise<BoxStatus> {
    return boxStatusOf(await api(ctx).showInstance(rec.instance_id));
  }

  async destroy(rec: InstanceRecord, ctx: ProviderContext): Promise<void> {
    await api(ctx).destroyInstance(rec.instance_id); // false (already gone) is fine
  }

  async stop(rec: InstanceRecord, ctx: ProviderContext): Promise<void> {
    await api(ctx).setState(rec.instance_id, 'stopped');
  }

  async start(rec: InstanceRecord, ctx: ProviderContext): Promise<void> {
    await api(ctx).setState(rec.instance_id, 'running');
  }

  /** null without a key: no account, no credit to show. */
  async credit(ctx: ProviderContext): Promise<number | null> {
    const found = findVastApiKey(ctx.env, ctx.settings.vastApiKey);
    return found ? new VastApi(ctx.settings.vastUrl, found.key).credit() : null;
  }

  logs(rec: InstanceRecord, ctx: ProviderContext): Promise<string> {
    return api(ctx).instanceLogs(rec.instance_id);
  }

  async orphans(known: ReadonlySet<string>, ctx: ProviderContext): Promise<OrphanBox[]> {
    const found = findVastApiKey(ctx.env, ctx.settings.vastApiKey);
    if (!found) return [];
    const remote = await new VastApi(ctx.settings.vastUrl, found.key).listInstances('vai-mcp');
    return remote
      .filter((r) => !known.has(String(r.id)))
      .map((r) => ({
        instance_id: String(r.id),
        label: r.label ?? '',
        dph_total: r.dph_total ?? null,
        started_at: r.start_date ? r.start_date * 1000 : null,
        ssh_host: r.ssh_host ?? null,
        ssh_port: r.ssh_port ?? null,
        state: `actual_status ${r.actual_status ?? 'null'}`,
      }));
  }

  async destroyOrphan(id: string, ctx: ProviderContext): Promise<{ destroyed: boolean; label?: string }> {
    const found = findVastApiKey(ctx.env, ctx.settings.vastApiKey);
    if (!/^\d+$/.test(id) || !found) return { destroyed: false };
    const vast = new VastApi(ctx.settings.vastUrl, found.key);
    const inst = await vast.showInstance(id);
    if (!inst || !(inst.label ?? '').startsWith('vai-mcp')) return { destroyed: false };
    await vast.destroyInstance(id);
    return { destroyed: true, label: inst.label ?? undefined };
  }

  /** Offers a config would choose from, cheapest first (for `search` and `search_offers`). */
  async search(config: Config, ctx: ProviderContext): Promise<{ offers: VastOffer[]; maxPrice: number }> {
    const maxPrice = config.instance_config.max_price_per_hour ?? ctx.settings.maxPricePerHour;
    const offers = await api(ctx).searchOffers(offerQuery(config, maxPrice));
    return { offers: offers.filter((o) => o.dph_total <= maxPrice).sort((a, b) => rankingPrice(a) - rankingPrice(b)), maxPrice };
  }
}
