/**
 * A simulated box's user data (ComfyUI's `/userdata` API: saved workflows, settings files), in
 * memory. Paths are relative (`workflows/default.json`); one that climbs out is refused.
 */
import { StoreFullError } from './files.js';

export interface UserFile {
  data: Buffer;
  mtimeMs: number;
}

export class UserData {
  private readonly files = new Map<string, UserFile>();
  private bytes = 0;

  constructor(
    private readonly maxBytes: number,
    seed: Record<string, string> = {},
  ) {
    for (const [p, text] of Object.entries(seed)) this.put(p, Buffer.from(text, 'utf8'));
  }

  /** `p` must be a normal relative path (see normalRelPath). */
  get(p: string): UserFile | undefined {
    return this.files.get(p);
  }

  put(p: string, data: Buffer): void {
    const old = this.files.get(p)?.data.length ?? 0;
    if (this.bytes - old + data.length > this.maxBytes) throw new StoreFullError(`the simulated box keeps at most ${this.maxBytes} bytes of user data`);
    this.files.set(p, { data, mtimeMs: Date.now() });
    this.bytes += data.length - old;
  }

  delete(p: string): boolean {
    const f = this.files.get(p);
    if (!f) return false;
    this.files.delete(p);
    this.bytes -= f.data.length;
    return true;
  }

  /**
   * Files under `dir` (a normal relative path, '' for the root), relative to it and sorted; only
   * those directly in it unless `recurse`. undefined when no file is under it (no such directory).
   */
  list(dir: string, recurse: boolean): { path: string; size: number; modified: number }[] | undefined {
    const prefix = dir ? `${dir}/` : '';
    const all = [...this.files].filter(([p]) => p.startsWith(prefix));
    if (all.length === 0) return undefined;
    return all
      .map(([p, f]) => ({ path: p.slice(prefix.length), size: f.data.length, modified: f.mtimeMs / 1000 }))
      .filter((f) => recurse || !f.path.includes('/'))
      .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }
}
