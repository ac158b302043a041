/** `ui`: the dashboard in a browser. */
import { spawn } from 'node:child_process';
import type { CAC } from 'cac';
import { supervisor } from '../client.js';
import { note, printJson, printLine } from '../format.js';

/** How long an opener may take to fail before it counts as having opened the page. */
const OPENER_GRACE_MS = 3_000;

/** The desktop's own opener; false when there is none or it failed (a server, a container, no display). */
function openInBrowser(url: string): Promise<boolean> {
  if (process.platform === 'linux' && !process.env.DISPLAY && !process.env.WAYLAND_DISPLAY) return Promise.resolve(false);
  const [cmd, args] = process.platform === 'darwin' ? ['open', [url]] : process.platform === 'win32' ? ['cmd', ['/c', 'start', '', url]] : ['xdg-open', [url]];
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { detached: true, stdio: 'ignore' });
    const timer = setTimeout(() => {
      child.unref();
      resolve(true);
    }, OPENER_GRACE_MS);
    child.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code === 0);
    });
  });
}

export function registerUiCommands(cli: CAC): void {
  cli
    .command('ui', 'Open the dashboard: every box, its apps and money, and the jobs, live in a browser (served by the supervisor on 127.0.0.1)')
    .option('--no-open', 'Print the URL only; do not start a browser')
    .option('--json', 'Print {url, port} as JSON')
    .example('vai-mcp-cli ui')
    .example('vai-mcp-cli ui --no-open')
    .action(async (opts: { open?: boolean; json?: boolean }) => {
      const d = await (await supervisor()).openDashboard({});
      if (opts.json) printJson(d);
      else printLine(d.url);
      if (opts.open === false) return;
      if (!(await openInBrowser(d.url))) note('No browser could be started here: open the URL above yourself (it carries the token; keep it to yourself).');
    });
}
