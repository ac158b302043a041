/**
 * A model put on a box before a run: the time from `vai-mcp-cli exec` on a box that lacks the
 * workflow's checkpoint to the job queued on it, for a 256 MiB model served by a local HTTP
 * server throttled to 50 MB/s (so the download, not process start-up, dominates), against a
 * plain `curl` of the same file from the same server in the same run.
 */
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { SupervisorClient } from '../../core/control/client.js';
import type { InstanceView } from '../../core/api/api.js';
import { CLI, ROOT } from '../../test/helpers/cli.js';
import { startModelServer } from '../../test/helpers/model-server.js';
import { until } from '../lib/http.js';
import { fmt, type Report } from '../lib/report.js';
import { median } from '../lib/stats.js';
import type { Vai } from '../lib/vai.js';

const MODEL_BYTES = 256 * 1024 * 1024;
const RATE = 50_000_000;
const QUEUED = new Set(['queued', 'running', 'downloading', 'succeeded']);

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, cwd: ROOT, stdio: 'ignore' });
    child.on('exit', (code) => resolve(code ?? -1));
    child.on('error', () => resolve(-1));
  });
}

export async function measureModelPrep(report: Report, vai: Vai, tmp: string, rounds: number): Promise<void> {
  const server = await startModelServer({ rateBytesPerS: RATE });
  const [box] = await vai.sb.json<InstanceView[]>(['create', vai.sb.writeFile('models-local.json', { provider: 'local' }), '--json']);
  const id = box!.instance_id;
  const client = await SupervisorClient.connect({ env: vai.sb.env, start: false });
  const ours: number[] = [];
  const curl: number[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      const name = `bench-model-${r}.safetensors`;
      server.files.set(name, { size: MODEL_BYTES });

      // The reference: a plain curl of the file, from the same server, to a file on the same disk.
      const out = path.join(tmp, name);
      let t0 = performance.now();
      if ((await run('curl', ['-sS', '-f', '-o', out, server.url(name)], process.env)) !== 0) throw new Error('curl of the model failed');
      curl.push(performance.now() - t0);
      rmSync(out, { force: true });

      // Ours: a template workflow naming the model with its URL, on a box without it.
      const wf = JSON.parse(readFileSync(path.join(ROOT, 'examples', 'template_ui.json'), 'utf8')) as { nodes: { type: string; widgets_values: unknown[]; properties: Record<string, unknown> }[] };
      const loader = wf.nodes.find((n) => n.type === 'CheckpointLoaderSimple')!;
      loader.widgets_values = [name];
      loader.properties.models = [{ name, url: server.url(name), directory: 'checkpoints' }];
      const job = vai.sb.writeFile(`models-job-${r}.json`, { workflow: { file: vai.sb.writeFile(`models-wf-${r}.json`, wf), output_dir: path.join(tmp, 'model-outputs') } });
      const before = (await client.listJobs({ instance_id: id })).length;
      t0 = performance.now();
      const exited = run(process.execPath, [CLI, 'exec', id, job, '--no-wait'], vai.sb.env);
      await until('the job queued', async () => {
        const jobs = await client.listJobs({ instance_id: id });
        const mine = jobs[before];
        if (mine?.status === 'failed') throw new Error(`the job failed: ${mine.error}`);
        return !!mine && QUEUED.has(mine.status);
      }, 120_000, 5);
      ours.push(performance.now() - t0);
      if ((await exited) !== 0) throw new Error('exec --no-wait failed');
    }
  } finally {
    client.close();
    await server.close();
  }
  const ratio = median(ours) / median(curl);
  report.table({
    title: 'A model put on a box before a run (256 MiB at 50 MB/s)',
    note: `\`vai-mcp-cli exec\` on a \`local\` box that lacks the workflow's checkpoint (named with its URL in properties.models), from the spawn to the job queued; against \`curl -o\` of the same file from the same throttled server. ${rounds} rounds, a new model file each.`,
    columns: ['', 'median ms', 'all ms'],
    rows: [
      ['exec -> job queued', fmt.ms(median(ours)), ours.map(fmt.ms).join(', ')],
      ['curl of the file', fmt.ms(median(curl)), curl.map(fmt.ms).join(', ')],
    ],
  });
  report.target('exec on a box without the model -> job queued, vs curl of the model', `${ratio.toFixed(2)}x`, '<= 1.2x', ratio <= 1.2);
  report.figures.model_prep_ms = { ours, curl, ratio };
}
