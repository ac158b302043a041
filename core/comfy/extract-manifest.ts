/**
 * What `extract` has already downloaded into a folder, and from which box: `.vai-extract.json`
 * in that folder. A second extract fetches only what is new, and a file the user deleted after
 * an extract is not fetched again (`force` fetches everything).
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export const MANIFEST_NAME = '.vai-extract.json';

interface ManifestFile {
  version: 1;
  /** Per box: the file as the box names it (`output/sub/x.png`, `workflows/w.json`) -> the local name. */
  boxes: Record<string, Record<string, string>>;
}

export class ExtractManifest {
  private readonly file: string;
  private readonly data: ManifestFile;

  constructor(dir: string) {
    this.file = path.join(dir, MANIFEST_NAME);
    this.data = ExtractManifest.read(this.file);
  }

  private static read(file: string): ManifestFile {
    try {
      const d = JSON.parse(readFileSync(file, 'utf8')) as ManifestFile;
      if (d?.version === 1 && typeof d.boxes === 'object' && d.boxes !== null) return d;
    } catch {
      // none yet, or not ours: start a new one
    }
    return { version: 1, boxes: {} };
  }

  has(instanceId: string, key: string): boolean {
    return this.data.boxes[instanceId]?.[key] !== undefined;
  }

  /** Records one download (written at once, so an extract cut short keeps what it got). */
  add(instanceId: string, key: string, localPath: string): void {
    (this.data.boxes[instanceId] ??= {})[key] = path.basename(localPath);
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.data, null, 2) + '\n');
    renameSync(tmp, this.file);
  }
}
