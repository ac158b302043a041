/**
 * What a box has, asked of its own ComfyUI (never guessed from this machine): the files in each
 * model folder (`GET /models/<folder>`, or the loaders' choices in `/object_info` where the box's
 * ComfyUI has no model endpoints) and the node types it knows.
 */
import type { ComfyClient } from '../client.js';
import type { ObjectInfo } from '../types.js';
import { canonicalFolder, loaderFolder } from './needs.js';

export interface BoxContents {
  /** Folder -> file names (canonical folder names: `unet` is `diffusion_models`). */
  folders: Map<string, Set<string>>;
  nodeTypes: Set<string>;
}

/** The loaders' choices, per folder: what an older ComfyUI without `/models` still tells. */
function foldersFromObjectInfo(info: ObjectInfo): Map<string, Set<string>> {
  const folders = new Map<string, Set<string>>();
  for (const [type, node] of Object.entries(info)) {
    for (const [input, spec] of Object.entries({ ...node.input?.required, ...node.input?.optional })) {
      const dir = loaderFolder(type, input);
      if (!dir || !Array.isArray(spec?.[0])) continue;
      const set = folders.get(dir) ?? new Set<string>();
      for (const v of spec[0]) if (typeof v === 'string') set.add(v);
      folders.set(dir, set);
    }
  }
  return folders;
}

export async function boxContents(client: ComfyClient): Promise<BoxContents> {
  const info = await client.objectInfo();
  const names = await client.modelFolders();
  if (!names) return { folders: foldersFromObjectInfo(info), nodeTypes: new Set(Object.keys(info)) };
  const folders = new Map<string, Set<string>>();
  const lists = await Promise.all(names.map(async (f) => [f, (await client.modelsIn(f)) ?? []] as const));
  for (const [f, files] of lists) {
    const set = folders.get(canonicalFolder(f)) ?? new Set<string>();
    for (const name of files) set.add(name);
    folders.set(canonicalFolder(f), set);
  }
  return { folders, nodeTypes: new Set(Object.keys(info)) };
}

/** Whether the box has a file: in its folder when known, else in any folder. */
export function hasModel(contents: BoxContents, name: string, dir?: string): boolean {
  if (dir) return contents.folders.get(canonicalFolder(dir))?.has(name) ?? false;
  for (const files of contents.folders.values()) if (files.has(name)) return true;
  return false;
}
