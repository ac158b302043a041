/**
 * A workflow file plus a config's `parameters` -> the API graph that ComfyUI's `POST /prompt`
 * takes. Pure (no network): what it needs from the box is the box's `/object_info`.
 *
 * - Both file formats: API format ("Export (API)": node id -> {class_type, inputs}) and UI format
 *   (what ComfyUI saves: `nodes` + `links`), converted (ui-format.ts) the way ComfyUI's frontend does in
 *   graphToPrompt: widget values become named inputs, links become `[node id, output index]`,
 *   frontend-only nodes (Note, Reroute, PrimitiveNode) disappear, muted nodes are dropped and
 *   bypassed nodes pass their input of the same type through.
 * - Both parameter forms, mixed freely: the original toolkit's `"<id>_<title>": {node_id, values}`
 *   (a node's widget values, in UI order) and plain `"<id>.<input>": value`.
 * - Parameter strings that name local files: images become uploads, `.txt` files their text.
 *
 * Everything that is wrong with the input is found here, before anything is uploaded or queued.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { badInput } from '../../lib/errors.js';
import { isObject, parseJsonText } from '../../lib/json.js';
import type { ApiGraph, ApiNode, ComfyFileRef, ObjectInfo } from '../types.js';
import { LocalUpload, literal, parseParameters, type InputParam, type WidgetParam } from './parameters.js';
import { describeIds, nodeLabel, Problems, unknownTypesError } from './problems.js';
import { FRONTEND_ONLY, isNodeId, isSlot, MODE_BYPASS, uiNodes, uiToApi, type UiNode, type UiWorkflow } from './ui-format.js';
import { allInputs, nameWidgetValues } from './widgets.js';

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

// ------------------------------------------------------------------ applying parameters

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
