/**
 * Where a job's results land and how a finished prompt is read: core/comfy/outputs.ts (file
 * names `<YYYYMMDD_HHMMSS>_<instance>_<file>`, never overwriting), and the pure readers of
 * ComfyUI's answers in core/comfy/run.ts and client.ts (history entry -> outcome and output files,
 * a /prompt refusal -> one readable message). Real files in a temp dir.
 * The last block downloads from a tiny GET /view stand-in, for what the simulator cannot do: a
 * connection cut in the middle of a file.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ComfyClient, describePromptError } from '../../core/comfy/client.js';
import { outputName, reserveOutputPath } from '../../core/comfy/outputs.js';
import { downloadOutputs, outcome, outputFiles } from '../../core/comfy/run.js';
import type { HistoryEntry } from '../../core/comfy/types.js';
import type { VaiError } from '../../core/lib/errors.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'vai-comfy-out-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => path.join(root, `case-${++n}`);

const WHEN = new Date(Date.UTC(2025, 0, 2, 3, 4, 5));

describe('outputName', () => {
  it('is <YYYYMMDD_HHMMSS>_<instance>_<file>, in UTC', () => {
    expect(outputName(WHEN, 'vast-123', 'ComfyUI_00001_.png')).toBe('20250102_030405_vast-123_ComfyUI_00001_.png');
    // 23:59:59 on Dec 31 in UTC is still that day, whatever the local time zone says.
    expect(outputName(new Date(Date.UTC(2024, 11, 31, 23, 59, 59)), 'local-1', 'a.png')).toBe('20241231_235959_local-1_a.png');
  });

  it('keeps a subfolder in the name, with _ for the slashes', () => {
    expect(outputName(WHEN, 'i1', 'portraits/2025/x.png')).toBe('20250102_030405_i1_portraits_2025_x.png');
    expect(outputName(WHEN, 'i1', 'workflows\\a b.json')).toBe('20250102_030405_i1_workflows_a_b.json');
  });

  it('replaces characters that are unsafe in file names, and cannot climb out of the folder', () => {
    expect(outputName(WHEN, 'box:1', 'my image?*<>|"\'.png')).toBe('20250102_030405_box_1_my_image_______.png');
    const climb = outputName(WHEN, '../..', '../../etc/passwd');
    expect(climb).not.toMatch(/[\\/]/);
    expect(climb).toBe('20250102_030405_.._.._.._.._etc_passwd');
    expect(outputName(WHEN, 'i1', 'tab\tnew\nline\u0000.png')).toBe('20250102_030405_i1_tab_new_line_.png');
  });

  it('keeps letters of any script, and shortens long names keeping the extension', () => {
    expect(outputName(WHEN, 'i1', '猫の写真.webp')).toBe('20250102_030405_i1_猫の写真.webp');
    const long = outputName(WHEN, 'i1', `${'x'.repeat(400)}.png`);
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(180);
    expect(long).toMatch(/^20250102_030405_i1_x+\.png$/);
  });
});

describe('reserveOutputPath', () => {
  it('creates the folder and returns the name when it is free', () => {
    const dir = path.join(freshDir(), 'deep', 'outputs');
    const p = reserveOutputPath(dir, 'a.png');
    expect(p).toBe(path.join(dir, 'a.png'));
    expect(statSync(dir).isDirectory()).toBe(true);
    expect(existsSync(p)).toBe(false);
  });

  it('never overwrites: an existing file gets -1, -2, ...', () => {
    const dir = freshDir();
    const taken: string[] = [];
    for (let i = 0; i < 4; i++) {
      const p = reserveOutputPath(dir, '20250102_030405_i1_ComfyUI_00001_.png');
      writeFileSync(p, `file ${i}`, { flag: 'wx' });
      taken.push(path.basename(p));
    }
    expect(taken).toEqual([
      '20250102_030405_i1_ComfyUI_00001_.png',
      '20250102_030405_i1_ComfyUI_00001_-1.png',
      '20250102_030405_i1_ComfyUI_00001_-2.png',
      '20250102_030405_i1_ComfyUI_00001_-3.png',
    ]);
    expect(readFileSync(path.join(dir, taken[0]!), 'utf8')).toBe('file 0');
  });

  it('numbers names without an extension, and a dotted name at its last dot', () => {
    const dir = freshDir();
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'README'), '');
    writeFileSync(path.join(dir, 'out.tar.gz'), '');
    expect(path.basename(reserveOutputPath(dir, 'README'))).toBe('README-1');
    expect(path.basename(reserveOutputPath(dir, 'out.tar.gz'))).toBe('out.tar-1.gz');
  });

  it('counts a dangling symlink as taken', () => {
    const dir = freshDir();
    mkdirSync(dir);
    symlinkSync(path.join(dir, 'nowhere'), path.join(dir, 'a.png'));
    expect(path.basename(reserveOutputPath(dir, 'a.png'))).toBe('a-1.png');
  });

  it('refuses a name that is not a plain file name', () => {
    expect(() => reserveOutputPath(freshDir(), 'sub/a.png')).toThrow(/not a plain file name/);
    expect(() => reserveOutputPath(freshDir(), '..')).toThrow(/not a plain file name/);
  });

  it('says which output folder cannot be made', () => {
    const dir = freshDir();
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'file'), '');
    expect(() => reserveOutputPath(path.join(dir, 'file', 'sub'), 'a.png')).toThrow(/Cannot create the output folder .*file\/sub/);
  });
});

/** A history entry as ComfyUI writes it when a prompt ends. */
function entry(status: HistoryEntry['status'], outputs: HistoryEntry['outputs'] = {}): HistoryEntry {
  return { prompt: [0, 'p1', {}, {}, ['9']], outputs, status, meta: {} };
}

describe('a finished prompt', () => {
  const saved = {
    '9': { images: [{ filename: 'ComfyUI_00001_.png', subfolder: '', type: 'output' }, { filename: 'ComfyUI_00002_.png', subfolder: 'sub', type: 'output' }] },
    '12': { images: [{ filename: 'ComfyUI_temp_abcd_00001_.png', subfolder: '', type: 'temp' }] },
    '14': { gifs: [{ filename: 'AnimateDiff_00001.mp4', subfolder: '', type: 'output', format: 'video/h264-mp4' }], text: ['not a file'] },
  };

  it('lists every output file, not the temp previews', () => {
    expect(outputFiles(entry({ status_str: 'success', completed: true, messages: [] }, saved))).toEqual([
      { filename: 'ComfyUI_00001_.png', subfolder: '', type: 'output' },
      { filename: 'ComfyUI_00002_.png', subfolder: 'sub', type: 'output' },
      { filename: 'AnimateDiff_00001.mp4', subfolder: '', type: 'output' },
    ]);
  });

  it('succeeded', () => {
    const r = outcome(entry({ status_str: 'success', completed: true, messages: [['execution_start', { prompt_id: 'p1' }], ['execution_success', { prompt_id: 'p1' }]] }, saved));
    expect(r.status).toBe('succeeded');
    expect(r.error).toBeUndefined();
    expect(r.outputs).toHaveLength(3);
  });

  it('failed, naming the node and ComfyUI\'s message', () => {
    const r = outcome(entry({
      status_str: 'error', completed: false,
      messages: [['execution_start', { prompt_id: 'p1' }], ['execution_error', { prompt_id: 'p1', node_id: '3', node_type: 'KSampler', exception_message: 'CUDA out of memory. Tried to allocate 2.00 GiB\n', exception_type: 'torch.OutOfMemoryError' }]],
    }));
    expect(r).toEqual({ status: 'failed', error: 'node 3 (KSampler): CUDA out of memory. Tried to allocate 2.00 GiB', outputs: [] });
  });

  it('interrupted is cancelled', () => {
    const r = outcome(entry({ status_str: 'error', completed: false, messages: [['execution_interrupted', { prompt_id: 'p1', node_id: '3', node_type: 'KSampler', executed: ['4'] }]] }));
    expect(r.status).toBe('cancelled');
    expect(r.error).toBe('interrupted on the box at node 3 (KSampler)');
  });

  it('an entry without status (older ComfyUI) succeeded', () => {
    expect(outcome(entry(undefined, saved)).status).toBe('succeeded');
  });
});

describe('a refused /prompt', () => {
  it('lists ComfyUI\'s error and every node error', () => {
    const body = {
      error: { type: 'prompt_outputs_failed_validation', message: 'Prompt outputs failed validation', details: '', extra_info: {} },
      node_errors: {
        '4': { errors: [{ type: 'value_not_in_list', message: 'Value not in list', details: "ckpt_name: 'v1-5-pruned-emaonly.ckpt' not in ['sd_xl_base_1.0.safetensors']", extra_info: {} }], dependent_outputs: ['9'], class_type: 'CheckpointLoaderSimple' },
        '3': { errors: [{ type: 'value_smaller_than_min', message: 'Value -1 smaller than min of 0', details: 'seed', extra_info: {} }, { type: 'required_input_missing', message: 'Required input is missing', details: 'model', extra_info: {} }], dependent_outputs: ['9'], class_type: 'KSampler' },
      },
    };
    expect(describePromptError(body)).toBe([
      'Prompt outputs failed validation',
      'node 3 (KSampler): Value -1 smaller than min of 0: seed',
      'node 3 (KSampler): Required input is missing: model',
      "node 4 (CheckpointLoaderSimple): Value not in list: ckpt_name: 'v1-5-pruned-emaonly.ckpt' not in ['sd_xl_base_1.0.safetensors']",
    ].join('\n  ')); // in node id order (JSON objects with numeric keys come out that way)
  });

  it('reads the older string error, and cuts very long details', () => {
    expect(describePromptError({ error: 'no prompt', node_errors: [] })).toBe('no prompt');
    const long = describePromptError({ error: { message: 'Prompt outputs failed validation' }, node_errors: { '4': { class_type: 'CheckpointLoaderSimple', errors: [{ message: 'Value not in list', details: `ckpt_name: 'x' not in [${"'m.safetensors', ".repeat(200)}]` }] } } });
    expect(long.length).toBeLessThan(500);
    expect(long).toMatch(/node 4 \(CheckpointLoaderSimple\): Value not in list: ckpt_name: 'x' not in \[.*\.\.\.$/);
  });
});

describe('downloading outputs', () => {
  /** GET /view: `cut.png` stops after 5000 of 100000 bytes; anything else is "<subfolder>/<name>". */
  async function viewServer(): Promise<{ url: string; close: () => void }> {
    const server = http.createServer((req, res) => {
      const q = new URL(req.url ?? '/', 'http://x').searchParams;
      if (q.get('filename') === 'cut.png') {
        res.writeHead(200, { 'content-length': 100000 });
        res.write(Buffer.alloc(5000));
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      res.end(`${q.get('type')}:${q.get('subfolder')}/${q.get('filename')}`);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => { server.closeAllConnections(); server.close(); } };
  }

  it('names files by time, box and file, and never overwrites one from an earlier run', async () => {
    const box = await viewServer();
    try {
      const client = new ComfyClient(box.url, { timeoutMs: 2000 });
      const dir = freshDir();
      const files = [{ filename: 'ComfyUI_00001_.png', subfolder: '', type: 'output' }, { filename: 'a.png', subfolder: 'portraits', type: 'output' }];
      const first = await downloadOutputs(client, files, { outputDir: dir, instanceId: 'local-1', when: WHEN });
      const second = await downloadOutputs(client, files, { outputDir: dir, instanceId: 'local-1', when: WHEN });
      expect(first.map((f) => path.basename(f))).toEqual(['20250102_030405_local-1_ComfyUI_00001_.png', '20250102_030405_local-1_portraits_a.png']);
      expect(second.map((f) => path.basename(f))).toEqual(['20250102_030405_local-1_ComfyUI_00001_-1.png', '20250102_030405_local-1_portraits_a-1.png']);
      expect(readFileSync(first[1]!, 'utf8')).toBe('output:portraits/a.png');
      expect(first.every((f) => path.isAbsolute(f))).toBe(true);
    } finally {
      box.close();
    }
  });

  it('leaves no partial file when the connection is cut, and still saves the others', async () => {
    const box = await viewServer();
    try {
      const client = new ComfyClient(box.url, { timeoutMs: 2000 });
      const dir = freshDir();
      const files = [{ filename: 'cut.png', subfolder: '', type: 'output' }, { filename: 'ok.png', subfolder: '', type: 'output' }];
      const err = await downloadOutputs(client, files, { outputDir: dir, instanceId: 'i1', when: WHEN }).then(
        () => { throw new Error('expected the download to fail'); },
        (e: unknown) => e as VaiError,
      );
      expect(err.message).toMatch(/^Downloaded 1 of 2 output file\(s\) to .*; failed: cut\.png \(.*after 5000 bytes/);
      expect(err.hint).toContain('20250102_030405_i1_ok.png');
      expect(readdirSync(dir)).toEqual(['20250102_030405_i1_ok.png']);
      // An existing file is never written to, even when asked to directly.
      const kept = path.join(dir, 'kept.png');
      writeFileSync(kept, 'mine');
      await expect(client.download(files[1]!, kept)).rejects.toMatchObject({ code: 'file_exists' });
      expect(readFileSync(kept, 'utf8')).toBe('mine');
    } finally {
      box.close();
    }
  });
});
