/**
 * A preparation's plan, as the job runner and provisioning see it: what will be put on the box,
 * and what was. Kept apart from the work (preparer.ts), which loads only when there is work.
 */
import { describePack, type ModelNeed, type PackNeed } from './needs.js';

export interface Plan {
  downloads: (ModelNeed & { url: string; dir: string })[];
  packs: PackNeed[];
  /** Files the workflow names that the box already has. */
  present: number;
}

export interface PrepareResult {
  downloaded: string[];
  installed: string[];
  restarted: boolean;
}

export function isEmptyPlan(p: Plan): boolean {
  return p.downloads.length === 0 && p.packs.length === 0;
}

/** "3 model files and 1 node pack" style counts. */
export function count(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

export function describePlan(p: Plan): string {
  const parts: string[] = [];
  if (p.downloads.length) parts.push(`${count(p.downloads.length, 'model file')} (${p.downloads.map((d) => `${d.dir}/${d.name}`).join(', ')})`);
  if (p.packs.length) parts.push(`${count(p.packs.length, 'node pack')} (${p.packs.map((k) => describePack(k.source)).join(', ')})`);
  return parts.length ? `needs ${parts.join(' and ')} that the box lacks` : 'has every model and node pack it needs';
}

