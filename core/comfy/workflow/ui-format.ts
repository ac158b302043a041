/**
 * The UI format (what ComfyUI saves: `nodes` + `links`) converted to the API graph the way the
 * frontend's graphToPrompt does it.
 */
import { isObject } from '../../lib/json.js';
import type { ApiGraph, ObjectInfo } from '../types.js';
import { LocalUpload, literal } from './parameters.js';
import { Problems, unknownTypesError } from './problems.js';
import { allInputs, defaultValue, nameWidgetValues, widgetSlots } from './widgets.js';

interface UiInput {
  name: string;
  type?: string;
  link?: number | null;
  widget?: { name?: string };
}

export interface UiNode {
  id: number | string;
  type: string;
  mode?: number;
  title?: string;
  inputs?: UiInput[];
  widgets_values?: unknown[] | Record<string, unknown>;
}

interface UiLink {
  id: number;
  origin_id: string;
  origin_slot: number;
  target_id: string;
  type?: string;
}

export interface UiWorkflow {
  nodes: UiNode[];
  links: unknown;
  definitions?: { subgraphs?: unknown[] };
}

/** LiteGraph modes: 2 = never (muted), 4 = bypass. */
export const MODE_MUTED = 2;
export const MODE_BYPASS = 4;
/** Nodes that live only in the editor: they never reach the box. */
export const FRONTEND_ONLY = new Set(['Note', 'MarkdownNote', 'Reroute', 'PrimitiveNode']);

export function isSlot(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

export function isNodeId(v: unknown): v is number | string {
  return (typeof v === 'number' && Number.isFinite(v)) || (typeof v === 'string' && v !== '');
}

/** `links` as saved: `[id, from_node, from_slot, to_node, to_slot, type]` (0.4) or objects (1.0). */
function parseLinks(raw: unknown, problems: Problems): Map<number, UiLink> {
  const links = new Map<number, UiLink>();
  if (!Array.isArray(raw)) {
    problems.add('"links" is not a list.');
    return links;
  }
  raw.forEach((l, i) => {
    const t = Array.isArray(l)
      ? { id: l[0], origin_id: l[1], origin_slot: l[2], target_id: l[3], target_slot: l[4], type: l[5] }
      : isObject(l) ? l : undefined;
    if (!t || !isSlot(t.id) || !isNodeId(t.origin_id) || !isSlot(t.origin_slot) || !isNodeId(t.target_id) || !isSlot(t.target_slot)) {
      problems.add(`links[${i}] is malformed: ${JSON.stringify(l)?.slice(0, 120)} (expected [link id, from node, from slot, to node, to slot, type]).`);
      return;
    }
    links.set(t.id, { id: t.id, origin_id: String(t.origin_id), origin_slot: t.origin_slot, target_id: String(t.target_id), type: typeof t.type === 'string' ? t.type : undefined });
  });
  return links;
}

export function uiNodes(ui: UiWorkflow): Map<string, UiNode> {
  const problems = new Problems();
  const nodes = new Map<string, UiNode>();
  ui.nodes.forEach((n, i) => {
    if (!isObject(n) || !isNodeId(n.id) || typeof n.type !== 'string') {
      problems.add(`nodes[${i}] has no id or type.`);
      return;
    }
    if (nodes.has(String(n.id))) problems.add(`node id ${n.id} is used twice.`);
    if (n.inputs !== undefined && !Array.isArray(n.inputs)) problems.add(`node ${n.id} (${n.type}): "inputs" is not a list.`);
    nodes.set(String(n.id), n as unknown as UiNode);
  });
  problems.throwIfAny('The workflow file is not a valid ComfyUI workflow:', 'Save the workflow again from ComfyUI (Workflow > Save, or Export (API)) and use that file.');
  return nodes;
}

type Resolved = { link: [string, number] } | { value: unknown } | undefined;

/**
 * Converts a UI-format workflow to an API graph, as the frontend's graphToPrompt does. Frontend-
 * only nodes are dropped: a Reroute is followed to its source, a PrimitiveNode's value is pushed
 * into the inputs it feeds. Muted nodes are dropped with the links from them; a bypassed node
 * hands on its first input of the type asked for (the same slot first).
 */
export function uiToApi(ui: UiWorkflow, nodes: Map<string, UiNode>, objectInfo: ObjectInfo): ApiGraph {
  const missing = [...nodes.values()]
    .filter((n) => !FRONTEND_ONLY.has(n.type) && n.mode !== MODE_MUTED && n.mode !== MODE_BYPASS && !objectInfo[n.type])
    .map((n) => ({ type: n.type, id: String(n.id) }));
  if (missing.length) throw unknownTypesError(missing);

  const problems = new Problems();
  const links = parseLinks(ui.links, problems);
  problems.throwIfAny('The workflow\'s links are not valid:', 'Save the workflow again from ComfyUI and use that file.');

  const resolve = (linkId: number, wantType: string | undefined, where: string, seen: Set<number>): Resolved => {
    if (seen.has(linkId)) {
      problems.add(`${where}: its link ${linkId} runs in a loop through Reroute or bypassed nodes.`);
      return undefined;
    }
    seen.add(linkId);
    const link = links.get(linkId);
    if (!link) {
      problems.add(`${where} uses link ${linkId}, which is not in "links".`);
      return undefined;
    }
    const origin = nodes.get(link.origin_id);
    if (!origin) {
      problems.add(`${where}: link ${linkId} comes from node ${link.origin_id}, which is not in the workflow.`);
      return undefined;
    }
    const type = wantType ?? link.type;
    if (origin.type === 'Reroute') {
      const up = origin.inputs?.[0]?.link;
      return up == null ? undefined : resolve(up, type, where, seen);
    }
    if (origin.type === 'PrimitiveNode') {
      const wv = origin.widgets_values;
      return Array.isArray(wv) && wv.length > 0 ? { value: literal(wv[0]) } : undefined;
    }
    if (FRONTEND_ONLY.has(origin.type) || origin.mode === MODE_MUTED) return undefined;
    if (origin.mode === MODE_BYPASS) {
      const ins = origin.inputs ?? [];
      const order = [link.origin_slot, ...ins.keys()];
      const through = order.find((i) => ins[i] !== undefined && ins[i]!.type === type);
      const up = through === undefined ? undefined : ins[through]!.link;
      return up == null ? undefined : resolve(up, type, where, seen);
    }
    return { link: [String(origin.id), link.origin_slot] };
  };

  const graph: ApiGraph = {};
  for (const node of nodes.values()) {
    if (FRONTEND_ONLY.has(node.type) || node.mode === MODE_MUTED || node.mode === MODE_BYPASS) continue;
    const info = objectInfo[node.type]!;
    const inputs: Record<string, unknown> = {};
    const specs = allInputs(info);
    const wv = node.widgets_values;
    const named = Array.isArray(wv)
      ? nameWidgetValues(wv, info)
      : new Map(Object.entries(isObject(wv) ? wv : {}).filter(([k]) => specs.has(k)));
    for (const slot of widgetSlots(info, false)) {
      if (!('input' in slot)) continue;
      const v = named.has(slot.input) ? { value: named.get(slot.input) } : defaultValue(slot.spec);
      if (v) inputs[slot.input] = v.value instanceof LocalUpload ? v.value : literal(v.value);
    }
    for (const input of node.inputs ?? []) {
      if (!isObject(input) || typeof input.name !== 'string' || input.link == null) continue;
      const r = resolve(input.link, input.type, `node ${node.id} (${node.type}) input "${input.name}"`, new Set());
      // Unresolved (fed by a muted node, say): the frontend keeps the widget value, if any.
      if (r && 'link' in r) inputs[input.name] = r.link;
      else if (r) inputs[input.name] = r.value;
    }
    graph[String(node.id)] = { inputs, class_type: node.type, _meta: { title: node.title ?? info.display_name ?? node.type } };
  }
  problems.throwIfAny('The workflow\'s links are not valid:', 'Save the workflow again from ComfyUI and use that file.');
  return graph;
}
