/**
 * `extract`: what a box has produced (the outputs in its ComfyUI history and its saved workflows),
 * downloaded into a folder, leaving out what that folder already had from the box (its manifest).
 */
import type { CallOptions, ExtractResult } from '../api/api.js';
import type { ComfyClient } from '../comfy/client.js';
import { ExtractManifest } from '../comfy/extract-manifest.js';
import { outputName, reserveOutputPath } from '../comfy/outputs.js';
import { downloadOutputs } from '../comfy/run.js';
import type { ComfyFileRef } from '../comfy/types.js';

/**
 * Everything the box has produced (the outputs in its history and its saved workflows) that was
 * not downloaded into `outDir` before; with `force`, everything.
 */
export async function extractOutputs(client: ComfyClient, instanceId: string, outDir: string, o: CallOptions = {}, force = false): Promise<ExtractResult> {
  const when = new Date();
  const seen = new Set<string>();
  const outputs: { key: string; ref: ComfyFileRef }[] = [];
  for (const entry of Object.values(await client.history())) {
    for (const node of Object.values(entry.outputs ?? {})) {
      for (const f of node.images ?? []) {
        const key = `${f.type}/${f.subfolder ? `${f.subfolder}/` : ''}${f.filename}`;
        if (f.type !== 'output' || seen.has(key)) continue;
        seen.add(key);
        outputs.push({ key, ref: f });
      }
    }
  }
  const workflows = (await client.listUserData('workflows')).map((wf) => ({ key: `workflows/${wf}`, name: wf }));
  const manifest = new ExtractManifest(outDir);
  const newOutputs = outputs.filter((f) => force || !manifest.has(instanceId, f.key));
  const newWorkflows = workflows.filter((w) => force || !manifest.has(instanceId, w.key));
  const skipped = outputs.length - newOutputs.length + workflows.length - newWorkflows.length;
  const total = newOutputs.length + newWorkflows.length;
  o.onProgress?.({ instance_id: instanceId, message: `${newOutputs.length} output file(s) and ${newWorkflows.length} saved workflow(s) to download${skipped ? ` (${skipped} downloaded here before)` : ''}` });
  const files: string[] = [];
  for (const f of newOutputs) {
    const [dest] = await downloadOutputs(client, [f.ref], { outputDir: outDir, instanceId, when });
    manifest.add(instanceId, f.key, dest!);
    files.push(dest!);
    o.onProgress?.({ instance_id: instanceId, message: `downloaded ${files.length} of ${total}` });
  }
  for (const wf of newWorkflows) {
    const dest = reserveOutputPath(outDir, outputName(when, instanceId, wf.key));
    await client.downloadUserData(wf.key, dest);
    manifest.add(instanceId, wf.key, dest);
    files.push(dest);
    o.onProgress?.({ instance_id: instanceId, message: `downloaded ${files.length} of ${total}` });
  }
  return { instance_id: instanceId, out_dir: outDir, files, skipped };
}
