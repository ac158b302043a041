/**
 * What a workflow needs on a box before it can run: model files and custom node packs. Pure (no
 * network). UI-format workflows say it themselves (ComfyUI's templates carry `properties.models`
 * on loader nodes, `properties.cnr_id` / `aux_id` on custom nodes); API-format ones only name
 * files in their loader inputs. The config adds `instance_config.models` and `custom_nodes`.
 */
import path from 'node:path';
import type { ModelEntry } from '../../config/config.js';
import { isObject } from '../../lib/json.js';
import { isUiWorkflow } from '../workflow/prepare.js';

export interface ModelNeed {
  /** The file name as the workflow names it (it may carry a subfolder: `sd15/model.safetensors`). */
  name: string;
  /** Its folder under `models/`, where known. */
  dir?: string;
  url?: string;
  sha256?: string;
  /** Who asks for it, for messages: `node 4 (CheckpointLoaderSimple)` or `instance_config.models[0]`. */
  from: string;
}

export type PackSource =
  | { kind: 'git'; url: string; ref?: string }
  | { kind: 'github'; repo: string; ref?: string }
  | { kind: 'registry'; id: string; version?: string };

export interface PackNeed {
  source: PackSource;
  from: string;
  /** The node type that needs it: nothing to do when the box knows that type already. */
  nodeType?: string;
}

export interface Needs {
  models: ModelNeed[];
  packs: PackNeed[];
}

/** Loader inputs that name a model file, and the folder it lives in (ComfyUI's nodes.py). */
const LOADER_INPUTS: Record<string, string> = {
  ckpt_name: 'checkpoints',
  lora_name: 'loras',
  vae_name: 'vae',
  unet_name: 'diffusion_models',
  clip_name: 'text_encoders',
  clip_name1: 'text_encoders',
  clip_name2: 'text_encoders',
  clip_name3: 'text_encoders',
  clip_name4: 'text_encoders',
  control_net_name: 'controlnet',
  style_model_name: 'style_models',
  gligen_name: 'gligen',
  hypernetwork_name: 'hypernetworks',
  upscale_model_name: 'upscale_models',
};
/** Where a node type files the same input name elsewhere. */
const LOADER_OVERRIDES: Record<string, Record<string, string>> = {
  CLIPVisionLoader: { clip_name: 'clip_vision' },
  UpscaleModelLoader: { model_name: 'upscale_models' },
};
/** ComfyUI serves these folder pairs from the same paths. */
const FOLDER_ALIASES: Record<string, string> = { unet: 'diffusion_models', clip: 'text_encoders' };
const MODEL_FILE = /\.(safetensors|ckpt|pt|pth|bin|gguf|sft|onnx)$/i;

/** The folder name ComfyUI files a folder under (its alias's canonical name). */
export function canonicalFolder(dir: string): string {
  return FOLDER_ALIASES[dir] ?? dir;
}

export function loaderFolder(classType: string, input: string): string | undefined {
  return LOADER_OVERRIDES[classType]?.[input] ?? LOADER_INPUTS[input];
}

/** The file name a URL would be saved as: its last path segment, decoded. */
export function fileNameOfUrl(url: string): string {
  const seg = new URL(url).pathname.split('/').filter(Boolean).pop() ?? '';
  return decodeURIComponent(seg);
}

/** `custom_nodes` entries: a git URL (`#ref`), GitHub `owner/repo` (`#ref`), or a registry id (`@version`). */
export function parsePackSpec(spec: string): PackSource {
  if (/^(https?:\/\/|git@|file:\/\/|\/)/.test(spec)) {
    const [url, ref] = spec.split('#', 2) as [string, string | undefined];
    return { kind: 'git', url, ...(ref ? { ref } : {}) };
  }
  if (spec.includes('/')) {
    const [repo, ref] = spec.split('#', 2) as [string, string | undefined];
    return { kind: 'github', repo, ...(ref ? { ref } : {}) };
  }
  const [id, version] = spec.split('@', 2) as [string, string | undefined];
  return { kind: 'registry', id, ...(version ? { version } : {}) };
}

export function describePack(s: PackSource): string {
  if (s.kind === 'git') return `${s.url}${s.ref ? `#${s.ref}` : ''}`;
  if (s.kind === 'github') return `github:${s.repo}${s.ref ? `#${s.ref}` : ''}`;
  return `registry:${s.id}${s.version ? `@${s.version}` : ''}`;
}

function label(id: string | number, type: string): string {
  return `node ${id} (${type})`;
}

/** What a UI-format workflow names: `properties.models`, model-file widget values, and node packs. */
function uiNeeds(ui: { nodes: unknown[] }, out: Needs): void {
  for (const n of ui.nodes) {
    if (!isObject(n) || typeof n.type !== 'string') continue;
    const from = label(n.id as string | number, n.type);
    const props = isObject(n.properties) ? n.properties : {};
    const listed = Array.isArray(props.models) ? props.models.filter(isObject) : [];
    for (const m of listed) {
      if (typeof m.name !== 'string' || m.name === '') continue;
      out.models.push({ name: m.name, from, ...(typeof m.directory === 'string' && m.directory ? { dir: m.directory } : {}), ...(typeof m.url === 'string' && m.url ? { url: m.url } : {}) });
    }
    const values = Array.isArray(n.widgets_values) ? n.widgets_values : isObject(n.widgets_values) ? Object.values(n.widgets_values) : [];
    for (const v of values) {
      if (typeof v === 'string' && MODEL_FILE.test(v) && !listed.some((m) => m.name === v)) out.models.push({ name: v, from });
    }
    const cnr = typeof props.cnr_id === 'string' ? props.cnr_id : undefined;
    const aux = typeof props.aux_id === 'string' ? props.aux_id : undefined;
    const ver = typeof props.ver === 'string' && props.ver ? props.ver : undefined;
    if (cnr && cnr !== 'comfy-core') out.packs.push({ source: { kind: 'registry', id: cnr, ...(ver ? { version: ver } : {}) }, from, nodeType: n.type });
    else if (!cnr && aux && /^[\w.-]+\/[\w.-]+$/.test(aux)) out.packs.push({ source: { kind: 'github', repo: aux, ...(ver ? { ref: ver } : {}) }, from, nodeType: n.type });
  }
}

/** What an API-format graph names: the model files in its loader inputs. */
function apiNeeds(graph: Record<string, unknown>, out: Needs): void {
  for (const [id, n] of Object.entries(graph)) {
    if (!isObject(n) || typeof n.class_type !== 'string' || !isObject(n.inputs)) continue;
    for (const [input, v] of Object.entries(n.inputs)) {
      const dir = loaderFolder(n.class_type, input);
      if (dir && typeof v === 'string' && v !== '') out.models.push({ name: v, dir, from: label(id, n.class_type) });
    }
  }
}

/**
 * Everything a workflow (either format; undefined for none) and a config's lists need, merged:
 * one entry per file, the config's URL and checksum filling in what the workflow lacks.
 */
export function needsOf(workflow: unknown, config: { models?: ModelEntry[]; custom_nodes?: string[] }): Needs {
  const found: Needs = { models: [], packs: [] };
  if (workflow !== undefined) {
    if (isUiWorkflow(workflow)) uiNeeds(workflow as { nodes: unknown[] }, found);
    else if (isObject(workflow)) apiNeeds(workflow, found);
  }
  (config.models ?? []).forEach((m, i) => {
    found.models.push({ name: m.name ?? fileNameOfUrl(m.url), dir: m.dir, url: m.url, ...(m.sha256 ? { sha256: m.sha256.toLowerCase() } : {}), from: `instance_config.models[${i}]` });
  });
  (config.custom_nodes ?? []).forEach((spec, i) => found.packs.push({ source: parsePackSpec(spec), from: `instance_config.custom_nodes[${i}]` }));

  // One entry per file: the first that names it, with the folder, URL and checksum of any other.
  const models = new Map<string, ModelNeed>();
  for (const m of found.models) {
    const key = m.name;
    const seen = models.get(key);
    if (!seen) models.set(key, { ...m });
    else {
      seen.dir ??= m.dir;
      seen.url ??= m.url;
      seen.sha256 ??= m.sha256;
    }
  }
  const packs = new Map<string, PackNeed>();
  for (const p of found.packs) if (!packs.has(describePack(p.source) + (p.nodeType ?? ''))) packs.set(describePack(p.source) + (p.nodeType ?? ''), p);
  return { models: [...models.values()], packs: [...packs.values()] };
}

/** The folder a pack is cloned into: the repository's name. */
export function packDirName(gitUrl: string): string {
  const base = path.posix.basename(gitUrl.replace(/[#?].*$/, '').replace(/\/+$/, '')).replace(/\.git$/, '');
  return base.replace(/[^A-Za-z0-9_.-]/g, '_') || 'pack';
}
