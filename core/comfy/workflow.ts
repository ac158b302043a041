/**
 * A workflow file plus a config's `parameters` -> the API graph that ComfyUI's `POST /prompt`
 * takes. Pure (no network): what it needs from the box is the box's `/object_info`.
 *
 * - Both file formats: API format ("Export (API)": node id -> {class_type, inputs}) and UI format
 *   (what ComfyUI saves: `nodes` + `links`), converted here the way ComfyUI's frontend does in
 *   graphToPrompt: widget values become named inputs, links become `[node id, output index]`,
 *   frontend-only nodes (Note, Reroute, PrimitiveNode) disappear, muted nodes are dropped and
 *   bypassed nodes pass their input of the same type through.
 * - Both parameter forms, mixed freely: the original toolkit's `"<id>_<title>": {node_id, values}`
 *   (a node's widget values, in UI order) and plain `"<id>.<input>": value`.
 * - Parameter strings that name local files: images become uploads, `.txt` files their text.
 *
 * Everything that is wrong with the input is found here, before anything is uploaded or queued.
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { badInput, type VaiError } from '../lib/errors.js';
import { parseJsonText } from '../lib/json.js';
import { expandHome } from '../lib/paths.js';
import type { ApiGraph, ApiNode, ComfyFileRef, InputSpec, NodeInfo, ObjectInfo } from './types.js';

export interface PreparedWorkflow {
  graph: ApiGraph;
  /** Inputs to upload before queueing: graph[nodeId].inputs[input] is replaced by the uploaded name. */
  uploads: { node_id: string; input: string; local_path: string }[];
  /** Output nodes that will run (for progress "node n of m": the number of nodes that execute). */
  node_count: number;
  /** The UI workflow when the file was UI format (sent as extra_pnginfo.workflow). */
  ui_workflow?: unknown;
}

// ------------------------------------------------------------------ loading

/** Reads and parses a workflow file; a missing file or bad JSON is bad input naming the file. */
export function loadWorkflowFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EISDIR' ? 'is a folder' : `cannot be read (${code ?? String(err)})`;
    throw badInput(`Workflow file ${file} ${why}.`,
      'Set workflow.file to a ComfyUI workflow saved as JSON (UI format, or "Export (API)"); relative paths start at the config file\'s folder.');
  }
  return parseJsonText(text, `Workflow file ${file}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A UI-format workflow (as ComfyUI saves it): a `nodes` array and `links`. */
export function isUiWorkflow(w: unknown): boolean {
  return isObject(w) && Array.isArray(w.nodes) && w.links !== undefined;
}

/** An API-format workflow: every entry is a node with a `class_type`. */
function isApiWorkflow(w: unknown): w is ApiGraph {
  if (!isObject(w)) return false;
  const nodes = Object.values(w);
  return nodes.length > 0 && nodes.every((n) => isObject(n) && typeof n.class_type === 'string');
}

// ------------------------------------------------------------------ problems

/** Collects every problem of one kind, so that one error names them all. */
class Problems {
  readonly list: string[] = [];
  add(p: string): void {
    this.list.push(p);
  }
  throwIfAny(headline: string, hint: string): void {
    if (this.list.length === 0) return;
    const body = this.list.length === 1 ? ` ${this.list[0]}` : `\n  - ${this.list.join('\n  - ')}`;
    throw badInput(`${headline}${body}`, hint);
  }
}

function describeIds(unsorted: string[]): string {
  const ids = [...unsorted].sort((a, b) => Number(a) - Number(b) || a.localeCompare(b));
  const shown = ids.slice(0, 30).join(', ');
  return ids.length > 30 ? `${shown}, ... (${ids.length} nodes)` : shown;
}

// ------------------------------------------------------------------ parameters

/** A local file named in parameters, uploaded before queueing; its graph value becomes the uploaded name. */
class LocalUpload {
  constructor(readonly localPath: string) {}
}

const IMAGE_FILE = /\.(png|jpe?g|webp)$/i;
const TEXT_FILE = /\.txt$/i;
const URL_LIKE = /^[a-z][a-z0-9+.-]*:\/\//i;

/** The toolkit form: a node's widget values in UI order. */
interface WidgetParam {
  key: string;
  nodeId: string;
  values: unknown[];
  nodeType?: string;
}

/** The plain form: one named input of one node. */
interface InputParam {
  key: string;
  nodeId: string;
  input: string;
  value: unknown;
}

function isFile(p: string): boolean {
  return statSync(p, { throwIfNoEntry: false })?.isFile() ?? false;
}

/**
 * A parameter value as it goes into the graph: an image path becomes a LocalUpload, a `.txt` path
 * its text. URLs stay strings (some nodes load images from URLs themselves).
 */
function resolveValue(v: unknown, where: string, baseDir: string, problems: Problems): unknown {
  if (typeof v !== 'string' || URL_LIKE.test(v)) return v;
  if (!IMAGE_FILE.test(v) && !TEXT_FILE.test(v)) return v;
  const abs = path.resolve(baseDir, expandHome(v));
  if (!isFile(abs)) {
    problems.add(`${where}: the ${IMAGE_FILE.test(v) ? 'image' : 'text'} file ${abs} does not exist.`);
    return v;
  }
  if (IMAGE_FILE.test(v)) return new LocalUpload(abs);
  try {
    // One trailing newline is what editors add; the prompt itself does not end with it.
    return readFileSync(abs, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    problems.add(`${where}: cannot read the text file ${abs} (${(err as Error).message}).`);
    return v;
  }
}

function parseParameters(parameters: Record<string, unknown>, baseDir: string): { widgets: WidgetParam[]; inputs: InputParam[] } {
  const problems = new Problems();
  const widgets: WidgetParam[] = [];
  const inputs: InputParam[] = [];
  for (const [key, raw] of Object.entries(parameters ?? {})) {
    if (isObject(raw) && 'values' in raw) {
      const idRaw = raw.node_id ?? /^(\d+)_/.exec(key)?.[1];
      const nodeId = typeof idRaw === 'number' || (typeof idRaw === 'string' && idRaw.trim() !== '') ? String(idRaw).trim() : undefined;
      if (!nodeId) {
        problems.add(`parameter "${key}": no "node_id" (expected {"node_id": 13, "values": [...]}).`);
        continue;
      }
      if (!Array.isArray(raw.values)) {
        problems.add(`parameter "${key}": "values" must be a list of the node's widget values, in the order the ComfyUI editor shows them.`);
        continue;
      }
      const values = raw.values.map((v, i) => resolveValue(v, `parameter "${key}" value ${i + 1}`, baseDir, problems));
      widgets.push({ key, nodeId, values, nodeType: typeof raw.node_type === 'string' ? raw.node_type : undefined });
      continue;
    }
    const dot = key.indexOf('.');
    if (dot > 0 && dot < key.length - 1) {
      inputs.push({ key, nodeId: key.slice(0, dot).trim(), input: key.slice(dot + 1).trim(), value: resolveValue(raw, `parameter "${key}"`, baseDir, problems) });
      continue;
    }
    problems.add(`parameter "${key}": expected "<node id>.<input>": value (e.g. "6.text": "a cat") or "<node id>_<title>": {"node_id": 6, "values": [...]}.`);
  }
  problems.throwIfAny('The workflow parameters are not valid:', 'Fix the "parameters" of the config\'s workflow section, then run it again.');
  return { widgets, inputs };
}

/** ComfyUI reads a list input as a link; the frontend wraps list values so they stay values. */
function literal(v: unknown): unknown {
  return Array.isArray(v) ? { __value__: v } : v;
}

// ------------------------------------------------------------------ widgets

const WIDGET_TYPES = new Set(['INT', 'FLOAT', 'BOOLEAN', 'STRING', 'COMBO']);
const CONTROL_VALUES = new Set(['fixed', 'increment', 'decrement', 'randomize', 'increment-wrap']);
const UPLOAD_BUTTON_VALUES = new Set(['image', 'video', 'audio', 'file', 'upload']);

function specOptions(spec: InputSpec): Record<string, unknown> {
  return isObject(spec[1]) ? spec[1] : {};
}

/** The widget a frontend makes for an input, or undefined when the input is a socket only. */
function widgetType(spec: InputSpec): string | undefined {
  if (Array.isArray(spec[0])) return 'COMBO';
  return typeof spec[0] === 'string' && WIDGET_TYPES.has(spec[0]) ? spec[0] : undefined;
}

function isMediaUpload(spec: InputSpec): boolean {
  const o = specOptions(spec);
  return widgetType(spec) === 'COMBO' && [o.image_upload, o.video_upload, o.animated_image_upload, o.audio_upload].some((x) => x === true);
}

/** A node type's inputs of one group in their declared order (`input_order` when the box sends it). */
function orderedInputs(info: NodeInfo, group: 'required' | 'optional'): [string, InputSpec][] {
  const specs = info.input?.[group] ?? {};
  const order = info.input_order?.[group] ?? [];
  const names = [...order.filter((n) => n in specs), ...Object.keys(specs).filter((n) => !order.includes(n))];
  return names.map((n) => [n, specs[n]!]);
}

function allInputs(info: NodeInfo): Map<string, InputSpec> {
  return new Map([...orderedInputs(info, 'required'), ...orderedInputs(info, 'optional')]);
}

/**
 * One entry of a node's `widgets_values`: an input's value, or one of the frontend's extra widgets
 * whose value is saved too but is not an input: the "control after generate" combo after a seed
 * (and its filter box after a combo), the upload button after the required inputs of a loader,
 * and, in workflows saved before frontend 1.16, a dummy value for each `forceInput` input.
 */
type Slot = { input: string; spec: InputSpec } | { extra: 'control' | 'filter' | 'upload' | 'legacy' };

function widgetSlots(info: NodeInfo, legacyForceInput: boolean): Slot[] {
  const slots: Slot[] = [];
  const add = (name: string, spec: InputSpec) => {
    const type = widgetType(spec);
    if (!type) return;
    const o = specOptions(spec);
    if (o.forceInput) {
      if (!legacyForceInput) return;
      slots.push({ extra: 'legacy' });
    } else {
      slots.push({ input: name, spec });
    }
    // The frontend gives every INT named seed/noise_seed a control widget, and any INT or COMBO
    // whose spec asks for one; a COMBO's control comes with a filter box.
    if (type === 'INT' && (o.control_after_generate || name === 'seed' || name === 'noise_seed')) slots.push({ extra: 'control' });
    if (type === 'COMBO' && o.control_after_generate) slots.push({ extra: 'control' }, { extra: 'filter' });
  };
  const required = orderedInputs(info, 'required');
  for (const [name, spec] of required) add(name, spec);
  // The frontend appends the upload button to the required inputs (uploadImage.ts).
  if (required.some(([, spec]) => isMediaUpload(spec))) slots.push({ extra: 'upload' });
  for (const [name, spec] of orderedInputs(info, 'optional')) add(name, spec);
  return slots;
}

/**
 * Names a node's widget values (UI order) after its inputs. When the number of values matches
 * the frontend's layout, the extras are skipped by position; otherwise (a frontend that saved
 * fewer extras) an extra is skipped only when the value looks like one.
 */
function nameWidgetValues(values: readonly unknown[], info: NodeInfo): Map<string, unknown> {
  const modern = widgetSlots(info, false);
  const legacy = widgetSlots(info, true);
  const slots = values.length !== modern.length && values.length === legacy.length ? legacy : modern;
  const strict = values.length === slots.length;
  const named = new Map<string, unknown>();
  let i = 0;
  let controlSkipped = false;
  for (const slot of slots) {
    if (i >= values.length) break;
    if ('input' in slot) {
      named.set(slot.input, values[i++]);
      continue;
    }
    if (strict) {
      i++;
      continue;
    }
    const v = values[i];
    if (slot.extra === 'control') {
      controlSkipped = typeof v === 'boolean' || (typeof v === 'string' && CONTROL_VALUES.has(v));
      if (controlSkipped) i++;
    } else if (slot.extra === 'filter') {
      if (controlSkipped && typeof v === 'string') i++;
    } else if (slot.extra === 'upload') {
      if (v === null || (typeof v === 'string' && UPLOAD_BUTTON_VALUES.has(v))) i++;
    }
  }
  return named;
}

/** A widget's value in a new node, as the frontend creates it: the spec's default, else a combo's first choice. */
function defaultValue(spec: InputSpec): { value: unknown } | undefined {
  const o = specOptions(spec);
  if ('default' in o) return { value: o.default };
  if (Array.isArray(spec[0]) && spec[0].length > 0) return { value: spec[0][0] };
  if (spec[0] === 'COMBO' && Array.isArray(o.options) && o.options.length > 0) return { value: o.options[0] };
  return undefined;
}

// ------------------------------------------------------------------ UI format

interface UiInput {
  name: string;
  type?: string;
  link?: number | null;
  widget?: { name?: string };
}

interface UiNode {
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

interface UiWorkflow {
  nodes: UiNode[];
  links: unknown;
  definitions?: { subgraphs?: unknown[] };
}

/** LiteGraph modes: 2 = never (muted), 4 = bypass. */
const MODE_MUTED = 2;
const MODE_BYPASS = 4;
/** Nodes that live only in the editor: they never reach the box. */
const FRONTEND_ONLY = new Set(['Note', 'MarkdownNote', 'Reroute', 'PrimitiveNode']);

function isSlot(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

function isNodeId(v: unknown): v is number | string {
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

function uiNodes(ui: UiWorkflow): Map<string, UiNode> {
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

function unknownTypesError(missing: { type: string; id: string }[]): VaiError {
  const byType = new Map<string, string[]>();
  for (const m of missing) byType.set(m.type, [...(byType.get(m.type) ?? []), m.id]);
  const list = [...byType].map(([type, ids]) => `${type} (node${ids.length > 1 ? 's' : ''} ${ids.join(', ')})`).join(', ');
  return badInput(`The box does not know these node types: ${list}; install the custom nodes or remove them.`,
    'Install the custom node packs on the box (its provisioning script is the place), or remove those nodes from the workflow, then run it again.',
    'unknown_node_types');
}

type Resolved = { link: [string, number] } | { value: unknown } | undefined;

/**
 * Converts a UI-format workflow to an API graph, as the frontend's graphToPrompt does. Frontend-
 * only nodes are dropped: a Reroute is followed to its source, a PrimitiveNode's value is pushed
 * into the inputs it feeds. Muted nodes are dropped with the links from them; a bypassed node
 * hands on its first input of the type asked for (the same slot first).
 */
function uiToApi(ui: UiWorkflow, nodes: Map<string, UiNode>, objectInfo: ObjectInfo): ApiGraph {
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

// ------------------------------------------------------------------ applying parameters

function nodeLabel(id: string, type: string): string {
  return `node ${id} (${type})`;
}

/** Toolkit-form parameters on a UI workflow: the values replace the node's widgets_values. */
function applyWidgetParamsToUi(nodes: Map<string, UiNode>, params: WidgetParam[], problems: Problems): void {
  for (const p of params) {
    const node = nodes.get(p.nodeId);
    if (!node) {
      problems.add(`parameter "${p.key}": node ${p.nodeId} is not in the workflow (its nodes: ${describeIds([...nodes.keys()])}).`);
      continue;
    }
    if (p.nodeType && p.nodeType !== node.type) {
      problems.add(`parameter "${p.key}": node ${p.nodeId} is a ${node.type}, not a ${p.nodeType} (is this config meant for another workflow?).`);
      continue;
    }
    node.widgets_values = [...p.values];
  }
}

/** Toolkit-form parameters on an API graph: the widget values map onto the node's widget inputs. */
function applyWidgetParamsToApi(graph: ApiGraph, params: WidgetParam[], objectInfo: ObjectInfo, problems: Problems): void {
  for (const p of params) {
    const node = graph[p.nodeId];
    if (!node) {
      problems.add(`parameter "${p.key}": node ${p.nodeId} is not in the workflow (its nodes: ${describeIds(Object.keys(graph))}).`);
      continue;
    }
    if (p.nodeType && p.nodeType !== node.class_type) {
      problems.add(`parameter "${p.key}": node ${p.nodeId} is a ${node.class_type}, not a ${p.nodeType} (is this config meant for another workflow?).`);
      continue;
    }
    for (const [name, value] of nameWidgetValues(p.values, objectInfo[node.class_type]!)) {
      // A widget input fed by a link in this graph keeps its link, as it would in the editor.
      if (Array.isArray(node.inputs[name])) continue;
      node.inputs[name] = value instanceof LocalUpload ? value : literal(value);
    }
  }
}

/** Plain-form parameters: `"<id>.<input>": value` on the API graph. */
function applyInputParams(graph: ApiGraph, params: InputParam[], objectInfo: ObjectInfo, uiNodes: Map<string, UiNode> | undefined, problems: Problems): void {
  for (const p of params) {
    const node = graph[p.nodeId];
    if (!node) {
      const ui = uiNodes?.get(p.nodeId);
      problems.add(ui
        ? `parameter "${p.key}": ${nodeLabel(p.nodeId, ui.type)} does not run on the box (it is ${FRONTEND_ONLY.has(ui.type) ? 'an editor-only node' : ui.mode === MODE_BYPASS ? 'bypassed' : 'muted'}); set the node it feeds instead.`
        : `parameter "${p.key}": node ${p.nodeId} is not in the workflow (its nodes: ${describeIds(Object.keys(graph))}).`);
      continue;
    }
    const specs = allInputs(objectInfo[node.class_type]!);
    if (!specs.has(p.input)) {
      problems.add(`parameter "${p.key}": ${nodeLabel(p.nodeId, node.class_type)} has no input "${p.input}" (its inputs: ${[...specs.keys()].join(', ') || 'none'}).`);
      continue;
    }
    node.inputs[p.input] = p.value instanceof LocalUpload ? p.value : literal(p.value);
  }
}

// ------------------------------------------------------------------ validation

function isLinkValue(v: unknown): v is unknown[] {
  return Array.isArray(v);
}

/**
 * Checks what ComfyUI would refuse without a useful message: links to missing nodes or outputs,
 * malformed links, and a graph without an output node. Returns the number of nodes that run.
 */
function validateGraph(graph: ApiGraph, objectInfo: ObjectInfo): number {
  const problems = new Problems();
  for (const [id, node] of Object.entries(graph)) {
    if (!isObject(node.inputs)) {
      problems.add(`${nodeLabel(id, node.class_type)}: "inputs" is not an object.`);
      continue;
    }
    for (const [name, v] of Object.entries(node.inputs)) {
      if (!isLinkValue(v)) continue;
      const where = `${nodeLabel(id, node.class_type)} input "${name}"`;
      if (v.length !== 2 || !isNodeId(v[0]) || !isSlot(v[1])) {
        problems.add(`${where}: ${JSON.stringify(v).slice(0, 80)} is not a link ["<node id>", <output index>].`);
        continue;
      }
      const from = graph[String(v[0])];
      if (!from) {
        problems.add(`${where} links to node ${v[0]}, which is not in the workflow.`);
        continue;
      }
      const outputs = objectInfo[from.class_type]?.output ?? [];
      if (v[1] >= outputs.length) {
        problems.add(`${where} links to output ${v[1]} of ${nodeLabel(String(v[0]), from.class_type)}, which has ${outputs.length} output${outputs.length === 1 ? '' : 's'}.`);
        continue;
      }
      node.inputs[name] = [String(v[0]), v[1]];
    }
  }
  problems.throwIfAny('The workflow\'s links are not valid:', 'Save the workflow again from ComfyUI (or fix the API file by hand), then run it again.');

  const outputs = Object.keys(graph).filter((id) => objectInfo[graph[id]!.class_type]?.output_node);
  if (outputs.length === 0) {
    throw badInput('The workflow has no output node (such as SaveImage or PreviewImage), so ComfyUI would run nothing.',
      'Add a SaveImage node to the workflow (or un-mute the one it has), then run it again.', 'no_output_node');
  }
  // The nodes that run: every node an output node depends on.
  const runs = new Set<string>();
  const stack = [...outputs];
  while (stack.length) {
    const id = stack.pop()!;
    if (runs.has(id)) continue;
    runs.add(id);
    for (const v of Object.values(graph[id]!.inputs)) if (isLinkValue(v)) stack.push(String(v[0]));
  }
  return runs.size;
}

// ------------------------------------------------------------------ uploads

function collectUploads(graph: ApiGraph): PreparedWorkflow['uploads'] {
  const uploads: PreparedWorkflow['uploads'] = [];
  for (const [id, node] of Object.entries(graph)) {
    for (const [input, v] of Object.entries(node.inputs)) {
      if (!(v instanceof LocalUpload)) continue;
      uploads.push({ node_id: id, input, local_path: v.localPath });
      // Until it is uploaded, the graph names the file as the box will (a best guess).
      node.inputs[input] = path.basename(v.localPath);
    }
  }
  return uploads;
}

/** The saved UI workflow with local paths in its widget values turned into file names. */
function uiWithoutLocalPaths(ui: UiWorkflow): UiWorkflow {
  for (const node of ui.nodes) {
    if (!Array.isArray(node.widgets_values)) continue;
    node.widgets_values = node.widgets_values.map((v) => (v instanceof LocalUpload ? path.basename(v.localPath) : v));
  }
  return ui;
}

/** The name a workflow uses for an uploaded file: "subfolder/name" when it is in a subfolder. */
export function uploadedName(ref: ComfyFileRef): string {
  return ref.subfolder ? `${ref.subfolder}/${ref.filename}` : ref.filename;
}

/** The graph with the uploaded files' names filled in (a copy; `p` is unchanged). */
export function applyUploads(p: PreparedWorkflow, uploaded: Map<string, ComfyFileRef>): ApiGraph {
  const graph = structuredClone(p.graph);
  for (const u of p.uploads) {
    const ref = uploaded.get(u.local_path);
    if (!ref) throw new Error(`applyUploads: ${u.local_path} was not uploaded`);
    graph[u.node_id]!.inputs[u.input] = uploadedName(ref);
  }
  return graph;
}

// ------------------------------------------------------------------ the whole preparation

/**
 * Turns a parsed workflow file and a config's parameters into the graph to queue, checked
 * against the box's node types. Throws bad input (naming every problem of a kind) when the
 * workflow, a parameter or a file it names is wrong. `baseDir` is where relative file paths in
 * the parameters start (the config file's folder).
 */
export function prepareWorkflow(workflow: unknown, parameters: Record<string, unknown>, objectInfo: ObjectInfo, opts: { baseDir: string }): PreparedWorkflow {
  const params = parseParameters(parameters, opts.baseDir);
  const problems = new Problems();
  let graph: ApiGraph;
  let ui: UiWorkflow | undefined;
  let nodes: Map<string, UiNode> | undefined;

  if (isUiWorkflow(workflow)) {
    ui = structuredClone(workflow) as UiWorkflow;
    const subgraphs = ui.definitions?.subgraphs;
    if (Array.isArray(subgraphs) && subgraphs.length > 0) {
      throw badInput('The workflow uses subgraphs, which vai-mcp does not support yet.',
        'In ComfyUI, unpack the subgraphs (right-click > Unpack Subgraph) and save again, or export the workflow with "Export (API)" and use that file.',
        'unsupported_workflow');
    }
    nodes = uiNodes(ui);
    applyWidgetParamsToUi(nodes, params.widgets, problems);
    graph = uiToApi(ui, nodes, objectInfo);
  } else if (isApiWorkflow(workflow)) {
    graph = structuredClone(workflow);
    for (const [id, node] of Object.entries(graph)) if (!isObject(node.inputs)) (graph[id] as ApiNode).inputs = {};
    const missing = Object.entries(graph).filter(([, n]) => !objectInfo[n.class_type]).map(([id, n]) => ({ type: n.class_type, id }));
    if (missing.length) throw unknownTypesError(missing);
    applyWidgetParamsToApi(graph, params.widgets, objectInfo, problems);
  } else {
    throw badInput('The workflow file is not a ComfyUI workflow: expected the UI format (with "nodes" and "links") or the API format (node id -> {"class_type", "inputs"}).',
      'In ComfyUI, save the workflow (Workflow > Save) or export it with "Export (API)", and point workflow.file at that file.',
      'unsupported_workflow');
  }
  applyInputParams(graph, params.inputs, objectInfo, nodes, problems);
  problems.throwIfAny('The workflow parameters do not fit the workflow:', 'Fix the "parameters" of the config\'s workflow section, then run it again.');

  const node_count = validateGraph(graph, objectInfo);
  const uploads = collectUploads(graph);
  return { graph, uploads, node_count, ...(ui ? { ui_workflow: uiWithoutLocalPaths(ui) } : {}) };
}
