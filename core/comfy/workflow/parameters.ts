/**
 * A config's workflow `parameters`, read: the toolkit form (a node's widget values in UI order)
 * and the plain form (`"<id>.<input>": value`), with local file paths resolved (images to
 * upload, `.txt` files to their text).
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { isObject } from '../../lib/json.js';
import { expandHome } from '../../lib/paths.js';
import { Problems } from './problems.js';

/** A local file named in parameters, uploaded before queueing; its graph value becomes the uploaded name. */
export class LocalUpload {
  constructor(readonly localPath: string) {}
}

const IMAGE_FILE = /\.(png|jpe?g|webp)$/i;
const TEXT_FILE = /\.txt$/i;
const URL_LIKE = /^[a-z][a-z0-9+.-]*:\/\//i;

/** The toolkit form: a node's widget values in UI order. */
export interface WidgetParam {
  key: string;
  nodeId: string;
  values: unknown[];
  nodeType?: string;
}

/** The plain form: one named input of one node. */
export interface InputParam {
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

export function parseParameters(parameters: Record<string, unknown>, baseDir: string): { widgets: WidgetParam[]; inputs: InputParam[] } {
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
export function literal(v: unknown): unknown {
  return Array.isArray(v) ? { __value__: v } : v;
}
