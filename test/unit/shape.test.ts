/**
 * The shape of the product code, as the build checks it: no file over 500 lines, no class over
 * 300, the supervisor a composition root of at most 250 lines, and no comment pointing at a file
 * outside the repository (what code needs of a design note is said where it is needed, or in docs/).
 * The import rules are dependency-cruiser's (.dependency-cruiser.cjs, run by `npm test`).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';

function productFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) out.push(p);
    }
  };
  for (const d of ['core', 'server', 'cli']) walk(path.join(ROOT, d));
  return out;
}

const rel = (f: string) => path.relative(ROOT, f);

describe('the shape of the code', () => {
  const files = productFiles();

  it('has no product file over 500 lines', () => {
    const long = files.map((f) => [rel(f), readFileSync(f, 'utf8').split('\n').length] as const).filter(([, n]) => n > 500);
    expect(long).toEqual([]);
  });

  it('has no class over 300 lines, and a Supervisor of at most 250', () => {
    const big: string[] = [];
    for (const f of files) {
      const src = ts.createSourceFile(f, readFileSync(f, 'utf8'), ts.ScriptTarget.ES2022, true);
      const visit = (node: ts.Node) => {
        if (ts.isClassDeclaration(node)) {
          const lines = src.getLineAndCharacterOfPosition(node.getEnd()).line - src.getLineAndCharacterOfPosition(node.getStart()).line + 1;
          const name = node.name?.text ?? '(anonymous)';
          if (lines > (name === 'Supervisor' ? 250 : 300)) big.push(`${rel(f)}: class ${name}, ${lines} lines`);
        }
        ts.forEachChild(node, visit);
      };
      visit(src);
    }
    expect(big).toEqual([]);
    expect(readFileSync(path.join(ROOT, 'core', 'supervisor', 'supervisor.ts'), 'utf8').split('\n').length).toBeLessThanOrEqual(250);
  });

  it('points at no file outside the repository in its comments', () => {
    const outside = /DESIGN\.md|reference\/|perf-baseline|\.\.\/shared/;
    const hits = files.flatMap((f) => readFileSync(f, 'utf8').split('\n').map((l, i) => [l, i] as const).filter(([l]) => outside.test(l)).map(([l, i]) => `${rel(f)}:${i + 1}: ${l.trim()}`));
    expect(hits).toEqual([]);
  });
});
