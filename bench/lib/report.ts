/** The benchmark's report: Markdown tables on stdout, the same figures as JSON (`--json <file>`). */

export interface Table {
  title: string;
  note?: string;
  columns: string[];
  rows: string[][];
}

export interface Target {
  name: string;
  /** What was measured, as printed. */
  measured: string;
  /** The limit, as printed (e.g. "<= 0.6x OpenSSH"). */
  limit: string;
  met: boolean;
}

export class Report {
  readonly tables: Table[] = [];
  readonly targets: Target[] = [];
  /** Raw figures by section, for the JSON file. */
  readonly figures: Record<string, unknown> = {};
  readonly header: string[] = [];

  table(t: Table): void {
    this.tables.push(t);
    process.stderr.write(`\n${renderTable(t)}\n`); // progress: each section as soon as it is done
  }

  target(name: string, measured: string, limit: string, met: boolean): void {
    this.targets.push({ name, measured, limit, met });
  }

  markdown(): string {
    const targets: Table = {
      title: 'Targets',
      columns: ['target', 'measured', 'limit', 'met'],
      rows: this.targets.map((t) => [t.name, t.measured, t.limit, t.met ? 'yes' : '**no**']),
    };
    return ['## vai-mcp benchmark', '', ...this.header, '', renderTable(targets), ...this.tables.map(renderTable)].join('\n');
  }

  json(): unknown {
    return { header: this.header, targets: this.targets, tables: this.tables, figures: this.figures };
  }
}

function renderTable(t: Table): string {
  return [
    `### ${t.title}`,
    '',
    ...(t.note ? [t.note, ''] : []),
    `| ${t.columns.join(' | ')} |`,
    `|${t.columns.map(() => '---').join('|')}|`,
    ...t.rows.map((r) => `| ${r.join(' | ')} |`),
    '',
  ].join('\n');
}

export const fmt = {
  ms: (v: number) => (v < 10 ? v.toFixed(2) : v.toFixed(0)),
  x: (v: number) => `${v.toFixed(2)}x`,
  pct: (v: number) => `${(v * 100).toFixed(1)}%`,
  mib: (kib: number) => (kib / 1024).toFixed(1),
};
