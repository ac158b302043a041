/**
 * A simulated box's ComfyUI folder on disk (in VAI_HOME, so it survives a supervisor restart):
 * `models/<folder>/...` and `custom_nodes/<pack>/`. Its loaders list only what is there, plus
 * ComfyUI's default checkpoint, which comes preinstalled (as on the images people start from),
 * so the examples run on a fresh box. Node packs are read when ComfyUI "starts": every class in
 * a pack's `NODE_CLASS_MAPPINGS` becomes a node type (an image pass-through: nothing runs here).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

export const DEFAULT_CHECKPOINT = 'v1-5-pruned-emaonly-fp16.safetensors';
const PREINSTALLED: Record<string, string[]> = { checkpoints: [DEFAULT_CHECKPOINT] };
/** ComfyUI's own model folders (folder_paths.py), listed by `GET /models` even when empty. */
export const MODEL_FOLDERS = ['checkpoints', 'loras', 'vae', 'text_encoders', 'diffusion_models', 'clip_vision', 'style_models', 'embeddings', 'diffusers', 'vae_approx', 'controlnet', 'gligen', 'upscale_models', 'hypernetworks', 'photomaker', 'classifiers'];
const ALIASES: Record<string, string> = { unet: 'diffusion_models', clip: 'text_encoders' };

/** Files under a folder, relative with `/`, skipping hidden ones (partial downloads are hidden). */
function walk(dir: string, prefix = ''): string[] {
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    if (e.isDirectory()) out.push(...walk(path.join(dir, e.name), `${prefix}${e.name}/`));
    else if (e.isFile()) out.push(`${prefix}${e.name}`);
  }
  return out;
}

/** The keys of `NODE_CLASS_MAPPINGS = {...}` in a pack's Python files. */
function packNodeTypes(packDir: string): string[] {
  const types: string[] = [];
  for (const file of walk(packDir).filter((f) => f.endsWith('.py'))) {
    let text: string;
    try {
      text = readFileSync(path.join(packDir, file), 'utf8');
    } catch {
      continue;
    }
    const body = /NODE_CLASS_MAPPINGS\s*=\s*\{([^}]*)\}/.exec(text)?.[1];
    if (body) for (const m of body.matchAll(/["']([^"']+)["']\s*:/g)) types.push(m[1]!);
  }
  return types;
}

export class ModelShelf {
  /** Node types of the packs found at the last start. */
  private packTypes = new Set<string>();

  /** `root` is the box's ComfyUI folder; none for a box without a disk (unit tests). */
  constructor(readonly root?: string) {
    this.load();
  }

  /** What ComfyUI does at start: read the custom node packs. */
  load(): void {
    this.packTypes = new Set();
    if (!this.root) return;
    const nodes = path.join(this.root, 'custom_nodes');
    let packs: string[] = [];
    try {
      packs = readdirSync(nodes).filter((p) => !p.startsWith('.') && statSync(path.join(nodes, p)).isDirectory());
    } catch {
      // no custom_nodes folder yet
    }
    for (const p of packs) for (const t of packNodeTypes(path.join(nodes, p))) this.packTypes.add(t);
  }

  hasPackType(name: string): boolean {
    return this.packTypes.has(name);
  }

  packTypeNames(): string[] {
    return [...this.packTypes].sort();
  }

  folders(): string[] {
    const onDisk = (this.root ? walkDirs(path.join(this.root, 'models')) : []).map((d) => ALIASES[d] ?? d);
    return [...new Set([...MODEL_FOLDERS, ...onDisk])];
  }

  /** The files in a model folder, sorted; undefined for a folder ComfyUI would not know. */
  list(folder: string): string[] | undefined {
    const dir = ALIASES[folder] ?? folder;
    if (!this.folders().includes(dir) && !ALIASES[folder]) return undefined;
    // As ComfyUI: `unet` and `diffusion_models` (and `clip` / `text_encoders`) are one list.
    const dirs = [dir, ...Object.keys(ALIASES).filter((a) => ALIASES[a] === dir)];
    const names = new Set([...(PREINSTALLED[dir] ?? []), ...dirs.flatMap((d) => (this.root ? walk(path.join(this.root, 'models', d)) : []))]);
    return [...names].sort();
  }
}

function walkDirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
  } catch {
    return [];
  }
}
