/** The views of boxes, built from their records: what `list --json` and list_instances show. */
import type { InstanceView, OfferView, TunnelView } from '../api/views.js';
import type { OrphanBox } from '../providers/provider.js';
import type { VastOffer } from '../providers/vast/api.js';
import type { InstanceRecord, RequestRecord } from '../store/store.js';

/** $ spent at `dph` $/h from `sinceMs` to `nowMs`, to a tenth of a cent. */
export function costSoFar(dph: number, sinceMs: number, nowMs: number): number {
  return Math.round(dph * (Math.max(0, nowMs - sinceMs) / 3_600_000) * 1000) / 1000;
}

/** What the money rules know of a box: its spend so far and how long it has been idle. */
export interface BoxMoney {
  cost_so_far?: number;
  idle_since: number | null;
  idle_action_at: number | null;
}

export function instanceView(rec: InstanceRecord, tunnel: TunnelView | null, nowMs: number, money?: BoxMoney): InstanceView {
  return {
    instance_id: rec.instance_id,
    provider: rec.provider,
    status: rec.status,
    label: rec.label,
    dph_total: rec.dph_total ?? null,
    cost_so_far: rec.dph_total === undefined ? null : money?.cost_so_far !== undefined ? Math.round(money.cost_so_far * 1000) / 1000 : costSoFar(rec.dph_total, Date.parse(rec.created_at), nowMs),
    idle_s: money?.idle_since == null ? null : Math.max(0, Math.round((nowMs - money.idle_since) / 1000)),
    idle_action_at: money?.idle_action_at == null ? null : new Date(money.idle_action_at).toISOString(),
    created_at: rec.created_at,
    ready_at: rec.ready_at ?? null,
    status_message: rec.status_message ?? null,
    ssh_host: rec.ssh?.host ?? null,
    ssh_port: rec.ssh?.port ?? null,
    remote_port: rec.remote_port,
    request_id: rec.request_id ?? null,
    tunnel,
  };
}

/** A box of a repeated request that was destroyed before this supervisor remembers. */
export function destroyedView(id: string, request: RequestRecord): InstanceView {
  return {
    instance_id: id, provider: request.provider, status: 'destroyed', label: '', dph_total: null, cost_so_far: null, idle_s: null, idle_action_at: null, created_at: request.created_at, ready_at: null,
    status_message: 'destroyed', ssh_host: null, ssh_port: null, remote_port: 0, request_id: request.request_id, tunnel: null,
  };
}

export function orphanView(o: OrphanBox, provider: InstanceView['provider'], nowMs: number): InstanceView {
  return {
    instance_id: o.instance_id,
    provider,
    status: 'running',
    label: o.label,
    dph_total: o.dph_total,
    cost_so_far: o.dph_total && o.started_at ? costSoFar(o.dph_total, o.started_at, nowMs) : null,
    idle_s: null,
    idle_action_at: null,
    created_at: o.started_at ? new Date(o.started_at).toISOString() : '',
    ready_at: null,
    status_message: `orphan: a vai-mcp box on the ${provider === 'vast' ? 'Vast.ai ' : ''}account that this machine does not know (${o.state}); if nobody needs it: \`vai-mcp-cli destroy ${o.instance_id}\``,
    ssh_host: o.ssh_host,
    ssh_port: o.ssh_port,
    remote_port: 0,
    request_id: null,
    tunnel: null,
    orphan: true,
  };
}

export function offerView(o: VastOffer): OfferView {
  return {
    offer_id: o.id,
    gpu_name: o.gpu_name,
    num_gpus: o.num_gpus,
    gpu_ram_gb: o.gpu_ram ? Math.round(o.gpu_ram / 1000) : null,
    dph_total: o.dph_total,
    inet_down_cost: o.inet_down_cost ?? null,
    inet_down_mbps: o.inet_down ?? null,
    inet_up_mbps: o.inet_up ?? null,
    reliability: o.reliability2 ?? o.reliability ?? null,
    geolocation: o.geolocation ?? null,
    disk_space_gb: o.disk_space ?? null,
    direct_ssh: (o.direct_port_count ?? 0) > 0,
  };
}
