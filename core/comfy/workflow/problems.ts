/** What is wrong with a workflow or its parameters, worded for the person who wrote them. */
import { badInput, type VaiError } from '../../lib/errors.js';

/** Collects every problem of one kind, so that one error names them all. */
export class Problems {
  readonly list: string[] = [];
  add(p: string): void {
    this.list.push(p);
  }
  throwIfAny(headline: string, hint: string): void {
    if (this.list.length === 0) return;
    const body = this.list.length === 1 ? ` ${this.list[0]}` : `\n  - ${this.list.join('\n  - ')}`;
    throw badInput(`${headline}${body}`, hint);
  }
}

export function describeIds(unsorted: string[]): string {
  const ids = [...unsorted].sort((a, b) => Number(a) - Number(b) || a.localeCompare(b));
  const shown = ids.slice(0, 30).join(', ');
  return ids.length > 30 ? `${shown}, ... (${ids.length} nodes)` : shown;
}

export function nodeLabel(id: string, type: string): string {
  return `node ${id} (${type})`;
}

export function unknownTypesError(missing: { type: string; id: string }[]): VaiError {
  const byType = new Map<string, string[]>();
  for (const m of missing) byType.set(m.type, [...(byType.get(m.type) ?? []), m.id]);
  const list = [...byType].map(([type, ids]) => `${type} (node${ids.length > 1 ? 's' : ''} ${ids.join(', ')})`).join(', ');
  return badInput(`The box does not know these node types: ${list}; install the custom nodes or remove them.`,
    'Install the custom node packs on the box (its provisioning script is the place), or remove those nodes from the workflow, then run it again.',
    'unknown_node_types');
}
