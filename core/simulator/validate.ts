/**
 * `POST /prompt` validation, following ComfyUI's execution.validate_prompt: unknown node types and
 * graphs without an output node are refused outright; otherwise each output node is checked with
 * everything it depends on, and the errors come back per node (`node_errors`) with ComfyUI's error
 * types. Outputs that validate still run when others fail, as in ComfyUI. Literal values are
 * converted in place (INT/FLOAT/STRING), so the graph that runs and lands in the PNG is the
 * converted one, as on a real box.
 */
import type { ApiGraph, InputSpec } from '../comfy/types.js';
import { nodeType, type NodeInputs, type SimNodeType } from './nodes.js';
import type { ComfyError, NodeError } from './api-types.js';
import type { FileStore } from './files.js';

export type Validation =
  | { ok: true; outputs: string[]; nodeErrors: Record<string, NodeError> }
  | { ok: false; error: ComfyError; nodeErrors: Record<string, NodeError> };

function fail(type: string, message: string, details: string): Validation {
  return { ok: false, error: { type, message, details, extra_info: {} }, nodeErrors: {} };
}

/** Python's int(): integers, booleans, and strings of digits; anything else throws. */
function toInt(value: unknown): number {
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'number' && Number.isFinite(value)) return Math.trunc(value);
  if (typeof value === 'string' && /^\s*[-+]?\d+\s*$/.test(value)) return Number(value.trim());
  throw new Error(`invalid literal for int() with base 10: ${JSON.stringify(value)}`);
}

/** Python's float(): numbers, booleans, and numeric strings. */
function toFloat(value: unknown): number {
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value.trim() !== '' && !Number.isNaN(Number(value))) return Number(value);
  throw new Error(`could not convert string to float: ${JSON.stringify(value)}`);
}

/** Whether an output of type `received` may feed an input of type `wanted` (`*` and `A,B` unions). */
function typesMatch(received: string, wanted: string): boolean {
  if (received === wanted || received === '*' || wanted === '*') return true;
  const a = received.split(',');
  const b = new Set(wanted.split(','));
  return a.some((t) => b.has(t));
}

/** Input types given as literal values (widgets in the UI); every other type comes through a link. */
const WIDGET_TYPES = ['INT', 'FLOAT', 'STRING', 'BOOLEAN'];

function problem(type: string, message: string, details: string, extra: Record<string, unknown>): ComfyError {
  return { type, message, details, extra_info: extra };
}

class Validator {
  /** node id -> [valid, its own errors]. */
  private readonly validated = new Map<string, [boolean, ComfyError[]]>();
  private readonly specs = new Map<string, NodeInputs>();

  constructor(
    private readonly prompt: ApiGraph,
    private readonly files: FileStore,
  ) {}

  private typeOf(id: string): SimNodeType {
    return nodeType(this.prompt[id]!.class_type, this.files)!;
  }

  private inputsOf(id: string): NodeInputs {
    let spec = this.specs.get(id);
    if (!spec) this.specs.set(id, (spec = this.typeOf(id).inputs(this.files)));
    return spec;
  }

  /** Checks one node and, through its links, everything upstream. */
  node(id: string, visiting = new Set<string>()): boolean {
    const done = this.validated.get(id);
    if (done) return done[0];
    visiting.add(id);
    const t = this.typeOf(id);
    const inputs = this.prompt[id]!.inputs;
    const spec = this.inputsOf(id);
    const errors: ComfyError[] = [];
    let upstreamOk = true;
    const entries: [string, InputSpec, boolean][] = [
      ...Object.entries(spec.required).map(([k, v]): [string, InputSpec, boolean] => [k, v, true]),
      ...Object.entries(spec.optional ?? {}).map(([k, v]): [string, InputSpec, boolean] => [k, v, false]),
    ];
    for (const [name, info, required] of entries) {
      if (!Object.hasOwn(inputs, name)) {
        if (required) errors.push(problem('required_input_missing', 'Required input is missing', name, { input_name: name }));
        continue;
      }
      const value = inputs[name];
      const err = Array.isArray(value) ? this.link(id, name, value, info, visiting) : this.literal(t, inputs, name, info);
      if (err === 'upstream') upstreamOk = false;
      else if (err) errors.push(err);
    }
    if (t.validate && errors.length === 0) {
      const bad = t.validate.check(inputs, this.files);
      if (bad) {
        const name = t.validate.inputs[0]!;
        errors.push(problem('custom_validation_failed', 'Custom validation failed for node', `${name} - ${bad}`, { input_name: name, received_value: inputs[name] }));
      }
    }
    visiting.delete(id);
    const ok = upstreamOk && errors.length === 0;
    this.validated.set(id, [ok, errors]);
    return ok;
  }

  /** Checks (and converts in place, as ComfyUI does) a literal input value. */
  private literal(t: SimNodeType, inputs: Record<string, unknown>, name: string, info: InputSpec): ComfyError | undefined {
    const value = inputs[name];
    const [wanted, options = {}] = info;
    const extra = { input_name: name, input_config: info, received_value: value };
    if (typeof wanted === 'string' && !WIDGET_TYPES.includes(wanted)) {
      return problem('bad_linked_input', `Input must be linked to a ${wanted} output`, `${name}: expected a link [node_id, slot_index] to a ${wanted} output, got ${JSON.stringify(value)}`, extra);
    }
    let v: unknown = value;
    try {
      if (wanted === 'INT') v = toInt(value);
      else if (wanted === 'FLOAT') v = toFloat(value);
      else if (wanted === 'STRING') v = typeof value === 'string' ? value : JSON.stringify(value);
    } catch (err) {
      const msg = (err as Error).message;
      return problem('invalid_input_type', `Failed to convert an input value to a ${String(wanted)} value`, `${name}, ${String(value)}, ${msg}`, { ...extra, exception_message: msg });
    }
    inputs[name] = v;
    if (typeof v === 'number' && typeof options.min === 'number' && v < options.min) {
      return problem('value_smaller_than_min', `Value ${v} smaller than min of ${options.min}`, name, { ...extra, received_value: v });
    }
    if (typeof v === 'number' && typeof options.max === 'number' && v > options.max) {
      return problem('value_bigger_than_max', `Value ${v} bigger than max of ${options.max}`, name, { ...extra, received_value: v });
    }
    // Combos: the value must be a choice (a model file the box has), unless the node checks it itself (VALIDATE_INPUTS).
    if (Array.isArray(wanted) && !t.validate?.inputs.includes(name)) {
      if (!wanted.includes(v)) {
        const big = wanted.length > 20; // ComfyUI does not echo long lists
        return problem('value_not_in_list', 'Value not in list', `${name}: '${String(v)}' not in ${big ? `(list of length ${wanted.length})` : JSON.stringify(wanted)}`, {
          ...extra,
          input_config: big ? null : info,
        });
      }
    }
    return undefined;
  }

  /** Checks a link `[source id, slot]`; 'upstream' when the link is fine but its source is not. */
  private link(id: string, name: string, value: unknown[], info: InputSpec, visiting: Set<string>): ComfyError | 'upstream' | undefined {
    const wanted = info[0];
    const extra = { input_name: name, input_config: info, received_value: value };
    if (value.length !== 2) return problem('bad_linked_input', 'Bad linked input, must be a length-2 list of [node_id, slot_index]', name, extra);
    const [src, slot] = value;
    const srcId = String(src);
    if ((typeof src !== 'string' && typeof src !== 'number') || !Object.hasOwn(this.prompt, srcId)) {
      return problem('bad_linked_input', 'Bad linked input, the linked node does not exist', `${name}: node '${srcId}' is not in the prompt`, extra);
    }
    const srcType = this.typeOf(srcId);
    const srcClass = this.prompt[srcId]!.class_type;
    if (typeof slot !== 'number' || !Number.isInteger(slot) || slot < 0 || slot >= srcType.output.length) {
      return problem('bad_linked_input', 'Bad linked input, the linked node has no such output', `${name}: ${srcClass} '#${srcId}' has ${srcType.output.length} output(s), there is no slot ${JSON.stringify(slot)}`, extra);
    }
    if (srcId === id) return problem('bad_linked_input', 'Bad linked input, a node cannot feed itself', name, extra);
    const received = srcType.output[slot]!;
    const wantedType = Array.isArray(wanted) ? 'COMBO' : String(wanted);
    if (!typesMatch(received, wantedType)) {
      return problem('return_type_mismatch', 'Return type mismatch between linked nodes', `${name}, received_type(${received}) mismatch input_type(${wantedType})`, {
        input_name: name,
        input_config: info,
        received_type: received,
        linked_node: value,
      });
    }
    if (visiting.has(srcId)) return problem('bad_linked_input', 'Bad linked input, the graph has a cycle', `${name}: node '${srcId}' depends on this node`, extra);
    return this.node(srcId, visiting) ? undefined : 'upstream';
  }

  /**
   * The nodes `output` depends on (itself included) that have errors of their own; ComfyUI leaves
   * out nodes failing only because of something upstream.
   */
  erroneous(output: string): [string, ComfyError[]][] {
    const seen = new Set<string>();
    const todo = [output];
    while (todo.length > 0) {
      const id = todo.pop()!;
      if (seen.has(id)) continue;
      seen.add(id);
      for (const v of Object.values(this.prompt[id]!.inputs)) {
        if (Array.isArray(v) && v.length === 2 && Object.hasOwn(this.prompt, String(v[0]))) todo.push(String(v[0]));
      }
    }
    return [...this.validated].filter(([id, [ok, errors]]) => seen.has(id) && !ok && errors.length > 0).map(([id, [, errors]]) => [id, errors]);
  }
}

export function validatePrompt(prompt: unknown, files: FileStore): Validation {
  if (typeof prompt !== 'object' || prompt === null || Array.isArray(prompt)) {
    return fail('invalid_prompt', 'Cannot execute because the prompt is not an object of nodes.', 'The prompt must be an API-format graph: {"<node id>": {"class_type": ..., "inputs": {...}}}');
  }
  const graph = prompt as ApiGraph;
  const outputs: string[] = [];
  for (const [id, node] of Object.entries(graph)) {
    if (typeof node !== 'object' || node === null || typeof node.class_type !== 'string') {
      return fail('invalid_prompt', 'Cannot execute because a node is missing the class_type property.', `Node ID '#${id}'`);
    }
    if (!nodeType(node.class_type, files)) {
      return fail('invalid_prompt', `Cannot execute because node ${node.class_type} does not exist.`, `Node ID '#${id}'`);
    }
    if (typeof node.inputs !== 'object' || node.inputs === null || Array.isArray(node.inputs)) node.inputs = {};
    if (nodeType(node.class_type, files)!.output_node) outputs.push(id);
  }
  if (outputs.length === 0) return fail('prompt_no_outputs', 'Prompt has no outputs', '');

  const v = new Validator(graph, files);
  const good: string[] = [];
  const nodeErrors: Record<string, NodeError> = {};
  for (const o of outputs) {
    if (v.node(o)) {
      good.push(o);
      continue;
    }
    for (const [id, errors] of v.erroneous(o)) {
      const entry = (nodeErrors[id] ??= { errors, dependent_outputs: [], class_type: graph[id]!.class_type });
      if (!entry.dependent_outputs.includes(o)) entry.dependent_outputs.push(o);
    }
  }
  if (good.length === 0) {
    // ComfyUI lists only the output nodes' own errors here; every node's is more useful.
    const details = Object.entries(nodeErrors)
      .flatMap(([id, e]) => e.errors.map((err) => `${e.class_type} #${id}: ${err.message}: ${err.details}`))
      .join('\n');
    return { ok: false, error: { type: 'prompt_outputs_failed_validation', message: 'Prompt outputs failed validation', details, extra_info: {} }, nodeErrors };
  }
  return { ok: true, outputs: good, nodeErrors };
}
