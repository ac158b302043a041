/**
 * One simulated box's files, in memory: `input` (uploads, read by LoadImage), `output` (SaveImage)
 * and `temp` (PreviewImage), like ComfyUI's three folders; its models and node packs are on disk
 * (shelf.ts). Outputs are capped: past the cap the oldest outputs go, so a long demo cannot eat
 * the machine. Inputs are never dropped silently; an upload past their cap is refused instead.
 */
import { joinRel } from './paths.js';
import { ModelShelf } from './shelf.js';

export type FolderType = 'input' | 'output' | 'temp';
export const FOLDER_TYPES: readonly FolderType[] = ['input', 'output', 'temp'];

export interface StoredFile {
  data: Buffer;
  mtimeMs: number;
}

export class StoreFullError extends Error {}

export interface FileStoreLimits {
  /** Total bytes of output + temp files kept; the oldest are dropped past it. */
  maxOutputBytes: number;
  /** Total bytes of input files; uploads past it are refused. */
  maxInputBytes: number;
}

export class FileStore {
  /** `type/subfolder/name` -> file, in the order written (the oldest first, for eviction). */
  private readonly files = new Map<string, StoredFile>();
  private outputBytes = 0;
  private inputBytes = 0;
  /** The last SaveImage counter used per folder and prefix, so names never repeat after eviction. */
  private readonly counters = new Map<string, number>();

  constructor(
    private readonly limits: FileStoreLimits,
    /** Its models and node packs, on disk. */
    readonly shelf: ModelShelf = new ModelShelf(),
  ) {}

  private static key(type: FolderType, rel: string): string {
    return `${type}/${rel}`;
  }

  /** `rel` is a normal relative path (see normalRelPath). */
  get(type: FolderType, rel: string): StoredFile | undefined {
    return this.files.get(FileStore.key(type, rel));
  }

  has(type: FolderType, rel: string): boolean {
    return this.files.has(FileStore.key(type, rel));
  }

  put(type: FolderType, rel: string, data: Buffer): void {
    const key = FileStore.key(type, rel);
    const old = this.files.get(key);
    const oldSize = old?.data.length ?? 0;
    if (type === 'input' && this.inputBytes - oldSize + data.length > this.limits.maxInputBytes) {
      throw new StoreFullError(`the simulated box keeps at most ${this.limits.maxInputBytes} bytes of input files`);
    }
    this.files.delete(key); // re-insert: the newest goes last
    this.files.set(key, { data, mtimeMs: Date.now() });
    if (type === 'input') this.inputBytes += data.length - oldSize;
    else {
      this.outputBytes += data.length - oldSize;
      this.evictOutputs(key);
    }
  }

  private evictOutputs(keep: string): void {
    for (const [key, file] of this.files) {
      if (this.outputBytes <= this.limits.maxOutputBytes) return;
      if (key === keep || key.startsWith('input/')) continue;
      this.files.delete(key);
      this.outputBytes -= file.data.length;
    }
  }

  /** Names of the files directly in a folder (not in its subfolders), sorted: LoadImage's list. */
  listTop(type: FolderType): string[] {
    const prefix = `${type}/`;
    const names: string[] = [];
    for (const key of this.files.keys()) {
      if (key.startsWith(prefix) && !key.slice(prefix.length).includes('/')) names.push(key.slice(prefix.length));
    }
    return names.sort();
  }

  /**
   * Reserves `count` consecutive `<prefix>_<counter>_.png` counters (one per image of a batch) and
   * returns the first: one more than the last used in that folder, as ComfyUI's
   * get_save_image_path finds it. Remembered, so a dropped file's name is never reused.
   */
  reserveCounters(type: FolderType, subfolder: string, prefix: string, count: number): number {
    const id = `${type}/${joinRel(subfolder, prefix)}`;
    const first = (this.counters.get(id) ?? 0) + 1;
    this.counters.set(id, first + Math.max(1, count) - 1);
    return first;
  }
}
