/**
 * `--help` as people read it: a command's help starts with what the command does (cac shows the
 * description only in the list of commands), options that are on unless negated (`--no-wait`)
 * are not labelled "(default: true)", and no line ends in stray spaces.
 */
import type { CAC } from 'cac';

type Sections = { title?: string; body: string }[];

export function readableHelp(cli: CAC): (sections: Sections) => Sections {
  return (sections) => {
    const out = sections.map((s) => ({
      ...s,
      body: s.body
        .split('\n')
        .map((line) => (/^\s*--no-/.test(line) ? line.replace(/\s*\(default: true\)\s*$/, '') : line).trimEnd())
        .join('\n'),
    }));
    const cmd = cli.matchedCommand;
    if (cmd && cmd.name !== '' && cmd.description) out[0] = { body: `vai-mcp-cli ${cmd.name}: ${cmd.description}` };
    return out;
  };
}
