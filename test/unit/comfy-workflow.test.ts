/**
 * core/comfy/workflow.ts: a workflow file plus a config's parameters -> the API graph to queue.
 * Checked against a stock ComfyUI's /object_info (test/fixtures/comfy/object_info.json) and the
 * frontend's default graph as the editor saves it (default_ui.json). Pure: no network; local files
 * named in parameters live in a temp dir.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { ApiGraph, NodeInfo, ObjectInfo } from '../../core/comfy/types.js';
import { applyUploads, isUiWorkflow, loadWorkflowFile, prepareWorkflow } from '../../core/comfy/workflow/prepare.js';
import { badInputOf } from '../helpers/errors.js';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/comfy');
const objectInfo = JSON.parse(readFileSync(path.join(fixtures, 'object_info.json'), 'utf8')) as ObjectInfo;
/** A fresh copy of the default graph (tests change it). */
const defaultUi = (): any => JSON.parse(readFileSync(path.join(fixtures, 'default_ui.json'), 'utf8'));

const dir = mkdtempSync(path.join(os.tmpdir(), 'vai-comfy-wf-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const opts = { baseDir: dir };

function write(name: string, content: string | Buffer): string {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
}

/** What ComfyUI's frontend queues for its default graph ("Export (API)"). */
const DEFAULT_API: ApiGraph = {
  '3': {
    class_type: 'KSampler',
    inputs: {
      seed: 156680208700286, steps: 20, cfg: 8, sampler_name: 'euler', scheduler: 'normal', denoise: 1,
      model: ['4', 0], positive: ['6', 0], negative: ['7', 0], latent_image: ['5', 0],
    },
    _meta: { title: 'KSampler' },
  },
  '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'v1-5-pruned-emaonly.ckpt' }, _meta: { title: 'Load Checkpoint' } },
  '5': { class_type: 'EmptyLatentImage', inputs: { width: 512, height: 512, batch_size: 1 }, _meta: { title: 'Empty Latent Image' } },
  '6': {
    class_type: 'CLIPTextEncode',
    inputs: { text: 'beautiful scenery nature glass bottle landscape, , purple galaxy bottle,', clip: ['4', 1] },
    _meta: { title: 'CLIP Text Encode (Prompt)' },
  },
  '7': { class_type: 'CLIPTextEncode', inputs: { text: 'text, watermark', clip: ['4', 1] }, _meta: { title: 'CLIP Text Encode (Prompt)' } },
  '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] }, _meta: { title: 'VAE Decode' } },
  '9': { class_type: 'SaveImage', inputs: { filename_prefix: 'ComfyUI', images: ['8', 0] }, _meta: { title: 'Save Image' } },
};
const defaultApi = (): ApiGraph => structuredClone(DEFAULT_API);

/** Adds a node and a link to a UI workflow; returns the link id. */
function link(ui: any, from: number, fromSlot: number, to: number, toSlot: number, type: string): number {
  const id = ++ui.last_link_id;
  ui.links.push([id, from, fromSlot, to, toSlot, type]);
  return id;
}

describe('formats', () => {
  it('tells the UI format from the API format', () => {
    expect(isUiWorkflow(defaultUi())).toBe(true);
    expect(isUiWorkflow(DEFAULT_API)).toBe(false);
    expect(isUiWorkflow({ nodes: [] })).toBe(false);
    expect(isUiWorkflow(null)).toBe(false);
  });

  it('converts the default graph to exactly what the frontend queues', () => {
    const ui = defaultUi();
    const p = prepareWorkflow(ui, {}, objectInfo, opts);
    expect(p.graph).toEqual(DEFAULT_API);
    expect(p.node_count).toBe(7);
    expect(p.uploads).toEqual([]);
    expect(p.ui_workflow).toEqual(defaultUi()); // sent as extra_pnginfo.workflow, unchanged
    expect(ui).toEqual(defaultUi()); // the input is not modified
  });

  it('takes an API-format graph as it is', () => {
    const p = prepareWorkflow(defaultApi(), {}, objectInfo, opts);
    expect(p.graph).toEqual(DEFAULT_API);
    expect(p.node_count).toBe(7);
    expect(p.ui_workflow).toBeUndefined();
  });

  it('reads links saved as objects (workflow schema 1.0)', () => {
    const ui = defaultUi();
    ui.links = ui.links.map(([id, o, os_, t, ts, type]: unknown[]) => ({ id, origin_id: o, origin_slot: os_, target_id: t, target_slot: ts, type }));
    expect(prepareWorkflow(ui, {}, objectInfo, opts).graph).toEqual(DEFAULT_API);
  });

  it('names widget values saved as an object, and fills missing ones with defaults', () => {
    const ui = defaultUi();
    ui.nodes.find((n: any) => n.id === 5).widgets_values = { width: 768, height: 640 };
    const g = prepareWorkflow(ui, {}, objectInfo, opts).graph;
    expect(g['5']!.inputs).toEqual({ width: 768, height: 640, batch_size: 1 });
  });

  it('counts only the nodes that an output node depends on', () => {
    const api = defaultApi();
    api['20'] = { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } };
    expect(prepareWorkflow(api, {}, objectInfo, opts).node_count).toBe(7);
  });
});

describe('frontend-only, muted and bypassed nodes', () => {
  /** The default graph with a Reroute on the VAE, a Primitive seed, a Note, a muted preview and a bypassed upscale. */
  function busyGraph(): any {
    const ui = defaultUi();
    const node = (id: number) => ui.nodes.find((n: any) => n.id === id);
    ui.last_node_id = 20;
    // Reroute 10: checkpoint VAE -> reroute -> VAEDecode.vae
    const toReroute = link(ui, 4, 2, 10, 0, 'VAE');
    ui.nodes.push({ id: 10, type: 'Reroute', mode: 0, inputs: [{ name: '', type: '*', link: toReroute }], outputs: [{ name: '', type: 'VAE', links: [] }], properties: { showOutputText: false, horizontal: false } });
    const fromReroute = link(ui, 10, 0, 8, 1, 'VAE');
    node(8).inputs[1].link = fromReroute;
    ui.links = ui.links.filter((l: any[]) => l[0] !== 8);
    // PrimitiveNode 11 -> KSampler seed (a widget turned into an input)
    const seedLink = link(ui, 11, 0, 3, 4, 'INT');
    ui.nodes.push({ id: 11, type: 'PrimitiveNode', mode: 0, outputs: [{ name: 'INT', type: 'INT', links: [seedLink], widget: { name: 'seed' } }], title: 'seed', properties: { 'Run widget replace on values': false }, widgets_values: [424242, 'fixed'] });
    node(3).inputs.push({ name: 'seed', type: 'INT', widget: { name: 'seed' }, link: seedLink });
    // Note 12 and MarkdownNote 13
    ui.nodes.push({ id: 12, type: 'Note', mode: 0, properties: {}, widgets_values: ['remember the seed'] });
    ui.nodes.push({ id: 13, type: 'MarkdownNote', mode: 0, properties: {}, widgets_values: ['# hi'] });
    // Muted PreviewImage 14 fed by VAEDecode
    ui.nodes.push({ id: 14, type: 'PreviewImage', mode: 2, inputs: [{ name: 'images', type: 'IMAGE', link: link(ui, 8, 0, 14, 0, 'IMAGE') }], properties: {} });
    // Bypassed ImageScale 15 between VAEDecode and SaveImage
    ui.links = ui.links.filter((l: any[]) => l[0] !== 9);
    ui.nodes.push({ id: 15, type: 'ImageScale', mode: 4, inputs: [{ name: 'image', type: 'IMAGE', link: link(ui, 8, 0, 15, 0, 'IMAGE') }], outputs: [{ name: 'IMAGE', type: 'IMAGE', links: [] }], properties: {}, widgets_values: ['nearest-exact', 1024, 1024, 'disabled'] });
    node(9).inputs[0].link = link(ui, 15, 0, 9, 0, 'IMAGE');
    return ui;
  }

  it('follows Reroutes, pushes Primitive values, drops Notes and muted nodes, passes bypassed nodes through', () => {
    const p = prepareWorkflow(busyGraph(), {}, objectInfo, opts);
    const expected = defaultApi();
    expected['3']!.inputs.seed = 424242;
    expect(p.graph).toEqual(expected);
    expect(p.node_count).toBe(7);
  });

  it('drops a link from a muted node (a non-widget input is left unset, as in the editor)', () => {
    const ui = defaultUi();
    ui.nodes.find((n: any) => n.id === 5).mode = 2;
    const g = prepareWorkflow(ui, {}, objectInfo, opts).graph;
    expect(g['5']).toBeUndefined();
    expect(g['3']!.inputs).not.toHaveProperty('latent_image');
  });

  it('drops an input when a bypassed node has no input of the type asked for', () => {
    const ui = defaultUi();
    // Bypass the VAEDecode: SaveImage wants an IMAGE, VAEDecode only has LATENT and VAE inputs.
    ui.nodes.find((n: any) => n.id === 8).mode = 4;
    const g = prepareWorkflow(ui, {}, objectInfo, opts).graph;
    expect(g['8']).toBeUndefined();
    expect(g['9']!.inputs).toEqual({ filename_prefix: 'ComfyUI' });
  });

  it('ignores unknown types in muted or bypassed nodes (they never reach the box)', () => {
    const ui = defaultUi();
    ui.nodes.push({ id: 30, type: 'SomeCustomNode', mode: 2, properties: {} });
    ui.nodes.push({ id: 31, type: 'OtherCustomNode', mode: 4, properties: {} });
    expect(prepareWorkflow(ui, {}, objectInfo, opts).graph).toEqual(DEFAULT_API);
  });
});

describe('widget values', () => {
  it('skips the seed\'s control_after_generate value, by position', () => {
    const ui = defaultUi();
    ui.nodes.find((n: any) => n.id === 3).widgets_values = [7, 'randomize', 30, 6.5, 'dpmpp_2m', 'karras', 0.75];
    expect(prepareWorkflow(ui, {}, objectInfo, opts).graph['3']!.inputs).toMatchObject({ seed: 7, steps: 30, cfg: 6.5, sampler_name: 'dpmpp_2m', scheduler: 'karras', denoise: 0.75 });
  });

  it('copes with values saved without the control value', () => {
    const ui = defaultUi();
    ui.nodes.find((n: any) => n.id === 3).widgets_values = [7, 30, 6.5, 'dpmpp_2m', 'karras', 0.75];
    expect(prepareWorkflow(ui, {}, objectInfo, opts).graph['3']!.inputs).toMatchObject({ seed: 7, steps: 30, cfg: 6.5, sampler_name: 'dpmpp_2m', scheduler: 'karras', denoise: 0.75 });
  });

  it('skips the upload button\'s value, which follows the required inputs of a loader', () => {
    write('example.png', 'x');
    write('photo.jpg', 'x');
    const api: ApiGraph = {
      '1': { class_type: 'LoadImageMask', inputs: { image: 'example.png', channel: 'alpha' } },
      '2': { class_type: 'LoadImage', inputs: { image: 'example.png' } },
      '3': { class_type: 'PreviewImage', inputs: { images: ['2', 0] } },
    };
    const p = prepareWorkflow(api, {
      '1_mask': { node_id: 1, values: ['example.png', 'red', 'image'] },
      '2_image': { node_id: 2, values: ['photo.jpg', 'image'] },
    }, objectInfo, opts);
    expect(p.graph['1']!.inputs).toEqual({ image: 'example.png', channel: 'red' });
    expect(p.graph['2']!.inputs).toEqual({ image: 'photo.jpg' });
    expect(p.uploads.map((u) => u.local_path)).toEqual([path.join(dir, 'example.png'), path.join(dir, 'photo.jpg')]);
  });

  it('handles a COMBO with a control widget (and its filter), forceInput inputs and pre-1.16 dummy values', () => {
    const custom: NodeInfo = {
      input: {
        required: {
          image: ['IMAGE'],
          style: ['COMBO', { options: ['a', 'b', 'c'], control_after_generate: true }],
          text: ['STRING', { forceInput: true }],
          strength: ['FLOAT', { default: 1 }],
        },
        optional: { noise_seed: ['INT', { default: 0 }] },
      },
      input_order: { required: ['image', 'style', 'text', 'strength'], optional: ['noise_seed'] },
      output: ['IMAGE'], output_name: ['IMAGE'], name: 'Styler', output_node: false,
    };
    const info = { ...objectInfo, Styler: custom };
    const api = (): ApiGraph => ({ '1': { class_type: 'Styler', inputs: {} }, '2': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } } });
    const now = prepareWorkflow(api(), { '1_s': { node_id: 1, values: ['b', 'fixed', '', 0.5, 99, 'randomize'] } }, info, opts).graph['1']!.inputs;
    expect(now).toEqual({ style: 'b', strength: 0.5, noise_seed: 99 });
    // Saved before frontend 1.16: a dummy value for the forceInput "text".
    const old = prepareWorkflow(api(), { '1_s': { node_id: 1, values: ['c', 'fixed', '', 'dummy', 0.25, 5, 'fixed'] } }, info, opts).graph['1']!.inputs;
    expect(old).toEqual({ style: 'c', strength: 0.25, noise_seed: 5 });
  });
});

describe('parameters', () => {
  it('toolkit form on a UI workflow: the values replace the node\'s widgets_values', () => {
    const p = prepareWorkflow(defaultUi(), {
      '3_KSampler': { node_type: 'KSampler', node_id: 3, title: 'KSampler', values: [42, 'fixed', 25, 7, 'euler_ancestral', 'karras', 1], note: 'sampler' },
      '6_CLIP Text Encode (Prompt)': { node_id: '6', values: ['a red fox in the snow'] },
    }, objectInfo, opts);
    expect(p.graph['3']!.inputs).toMatchObject({ seed: 42, steps: 25, cfg: 7, sampler_name: 'euler_ancestral', scheduler: 'karras', denoise: 1, model: ['4', 0] });
    expect(p.graph['6']!.inputs).toEqual({ text: 'a red fox in the snow', clip: ['4', 1] });
    // The saved workflow (PNG metadata) shows the values that ran.
    expect((p.ui_workflow as any).nodes.find((n: any) => n.id === 3).widgets_values).toEqual([42, 'fixed', 25, 7, 'euler_ancestral', 'karras', 1]);
  });

  it('toolkit form on an API workflow: the values map onto the widget inputs; links stay', () => {
    const api = defaultApi();
    api['3']!.inputs.steps = ['50', 0]; // a widget input fed by a link
    api['50'] = { class_type: 'EmptyLatentImage', inputs: { width: 1, height: 1, batch_size: 1 } };
    const g = prepareWorkflow(api, { '3_KSampler': { node_id: 3, values: [42, 'randomize', 25, 7, 'euler', 'karras', 0.5] } }, objectInfo, opts).graph;
    expect(g['3']!.inputs).toEqual({ ...DEFAULT_API['3']!.inputs, seed: 42, steps: ['50', 0], cfg: 7, scheduler: 'karras', denoise: 0.5 });
  });

  it('plain form on both formats, mixed with the toolkit form', () => {
    const params = { '6.text': 'a cat', '3.seed': 7, '5_Empty Latent Image': { node_id: 5, values: [1024, 768, 2] } };
    for (const wf of [defaultUi(), defaultApi()]) {
      const g = prepareWorkflow(wf, params, objectInfo, opts).graph;
      expect(g['6']!.inputs.text).toBe('a cat');
      expect(g['3']!.inputs.seed).toBe(7);
      expect(g['5']!.inputs).toEqual({ width: 1024, height: 768, batch_size: 2 });
    }
  });

  it('wraps a list value so ComfyUI does not read it as a link', () => {
    const g = prepareWorkflow(defaultApi(), { '6.text': ['a', 'b'] }, objectInfo, opts).graph;
    expect(g['6']!.inputs.text).toEqual({ __value__: ['a', 'b'] });
  });

  it('names unknown node ids and inputs, all at once', () => {
    for (const wf of [defaultUi(), defaultApi()]) {
      const e = badInputOf(() => prepareWorkflow(wf, {
        '99.text': 'x',
        '42_Missing': { node_id: 42, values: [1] },
        '3.sed': 1,
      }, objectInfo, opts));
      expect(e.message).toMatch(/node 99 is not in the workflow/);
      expect(e.message).toMatch(/node 42 is not in the workflow/);
      expect(e.message).toMatch(/"3\.sed".*KSampler.*has no input "sed".*seed, steps/);
      expect(e.hint).toMatch(/parameters/);
    }
  });

  it('refuses a toolkit parameter whose node_type does not match the node', () => {
    const e = badInputOf(() => prepareWorkflow(defaultUi(), { '3_x': { node_id: 3, node_type: 'KSamplerAdvanced', values: [] } }, objectInfo, opts));
    expect(e.message).toMatch(/node 3 is a KSampler, not a KSamplerAdvanced/);
  });

  it('refuses parameters of neither form, and toolkit values that are not a list', () => {
    const e = badInputOf(() => prepareWorkflow(defaultApi(), { seed: 5, '3_KSampler': { node_id: 3, values: 'x' } }, objectInfo, opts));
    expect(e.message).toMatch(/parameter "seed": expected "<node id>\.<input>"/);
    expect(e.message).toMatch(/"values" must be a list/);
  });

  it('says a plain parameter on an editor-only node does not reach the box', () => {
    const ui = defaultUi();
    ui.nodes.push({ id: 12, type: 'Note', mode: 0, properties: {}, widgets_values: ['x'] });
    expect(badInputOf(() => prepareWorkflow(ui, { '12.text': 'y' }, objectInfo, opts)).message).toMatch(/node 12 \(Note\) does not run on the box/);
  });
});

describe('files named in parameters', () => {
  it('replaces a .txt value with the file\'s text, less one trailing newline, relative to baseDir', () => {
    write('prompt.txt', 'a red fox\nin the snow\n\n');
    const g = prepareWorkflow(defaultUi(), { '6.text': 'prompt.txt', '7_neg': { node_id: 7, values: [path.join(dir, 'prompt.txt')] } }, objectInfo, opts).graph;
    expect(g['6']!.inputs.text).toBe('a red fox\nin the snow\n');
    expect(g['7']!.inputs.text).toBe('a red fox\nin the snow\n');
  });

  it('turns an image value into an upload, and applyUploads fills in the stored name', () => {
    const cat = write('cat.png', Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    const ui = defaultUi();
    ui.last_node_id = 11;
    // LoadImage 10 -> VAEEncode 11 -> KSampler latent_image
    const img = link(ui, 10, 0, 11, 0, 'IMAGE');
    const vae = link(ui, 4, 2, 11, 1, 'VAE');
    ui.nodes.push({ id: 10, type: 'LoadImage', mode: 0, outputs: [{ name: 'IMAGE', type: 'IMAGE', links: [img] }, { name: 'MASK', type: 'MASK', links: [] }], properties: {}, widgets_values: ['example.png', 'image'] });
    ui.nodes.push({ id: 11, type: 'VAEEncode', mode: 0, inputs: [{ name: 'pixels', type: 'IMAGE', link: img }, { name: 'vae', type: 'VAE', link: vae }], outputs: [{ name: 'LATENT', type: 'LATENT', links: [] }], properties: {} });
    ui.nodes.find((n: any) => n.id === 3).inputs[3].link = link(ui, 11, 0, 3, 3, 'LATENT');

    const p = prepareWorkflow(ui, { '10_Load Image': { node_id: 10, values: ['cat.png', 'image'] } }, objectInfo, opts);
    expect(p.uploads).toEqual([{ node_id: '10', input: 'image', local_path: cat }]);
    expect(p.graph['10']).toEqual({ class_type: 'LoadImage', inputs: { image: 'cat.png' }, _meta: { title: 'Load Image' } });
    expect(p.graph['3']!.inputs.latent_image).toEqual(['11', 0]);
    expect(p.node_count).toBe(8); // the EmptyLatentImage no longer feeds anything
    expect((p.ui_workflow as any).nodes.find((n: any) => n.id === 10).widgets_values).toEqual(['cat.png', 'image']);

    const g = applyUploads(p, new Map([[cat, { filename: 'cat (1).png', subfolder: 'vai', type: 'input' }]]));
    expect(g['10']!.inputs.image).toBe('vai/cat (1).png');
    expect(p.graph['10']!.inputs.image).toBe('cat.png'); // the prepared graph is unchanged
  });

  it('lists one upload per input, for .jpg/.jpeg/.webp too, in both forms', () => {
    const a = write('a.JPG', 'x');
    const b = write('b.webp', 'x');
    const api: ApiGraph = {
      '1': { class_type: 'LoadImage', inputs: { image: 'example.png' } },
      '2': { class_type: 'LoadImage', inputs: { image: 'example.png' } },
      '3': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } },
    };
    const p = prepareWorkflow(api, { '1.image': 'a.JPG', '2_Load': { node_id: 2, values: [b, 'image'] } }, objectInfo, opts);
    expect(p.uploads).toEqual([{ node_id: '1', input: 'image', local_path: a }, { node_id: '2', input: 'image', local_path: b }]);
  });

  it('leaves URLs alone', () => {
    const g = prepareWorkflow(defaultApi(), { '6.text': 'https://example.org/cat.png' }, objectInfo, opts).graph;
    expect(g['6']!.inputs.text).toBe('https://example.org/cat.png');
  });

  it('names every missing file', () => {
    const e = badInputOf(() => prepareWorkflow(defaultUi(), { '6.text': 'nope.txt', '3_x': { node_id: 3, values: ['gone/dog.png'] } }, objectInfo, opts));
    expect(e.message).toContain(path.join(dir, 'nope.txt'));
    expect(e.message).toContain(path.join(dir, 'gone/dog.png'));
    expect(e.message).toMatch(/does not exist/);
  });
});

describe('what is refused', () => {
  it('names every unknown node type, in both formats', () => {
    const ui = defaultUi();
    ui.nodes.push({ id: 12, type: 'FaceDetailer', mode: 0, properties: {} });
    ui.nodes.push({ id: 15, type: 'UltimateSDUpscale', mode: 0, properties: {} });
    const e = badInputOf(() => prepareWorkflow(ui, {}, objectInfo, opts));
    expect(e.message).toBe('The box does not know these node types: FaceDetailer (node 12), UltimateSDUpscale (node 15); install the custom nodes or remove them.');
    expect(e.code).toBe('unknown_node_types');
    expect(e.hint).toMatch(/provisioning script/);

    const api = defaultApi();
    api['12'] = { class_type: 'FaceDetailer', inputs: {} };
    api['13'] = { class_type: 'FaceDetailer', inputs: {} };
    expect(badInputOf(() => prepareWorkflow(api, {}, objectInfo, opts)).message).toMatch(/FaceDetailer \(nodes 12, 13\)/);
  });

  it('refuses malformed links', () => {
    const ui = defaultUi();
    ui.links.push([10, 4, 0]);
    expect(badInputOf(() => prepareWorkflow(ui, {}, objectInfo, opts)).message).toMatch(/links\[9\] is malformed/);

    const notList = defaultUi();
    notList.links = { 1: [1, 4, 0, 3, 0, 'MODEL'] };
    expect(badInputOf(() => prepareWorkflow(notList, {}, objectInfo, opts)).message).toMatch(/"links" is not a list/);

    const dangling = defaultUi();
    dangling.links = dangling.links.filter((l: any[]) => l[0] !== 7);
    expect(badInputOf(() => prepareWorkflow(dangling, {}, objectInfo, opts)).message).toMatch(/node 8 \(VAEDecode\) input "samples" uses link 7, which is not in "links"/);

    const noOrigin = defaultUi();
    noOrigin.links.find((l: any[]) => l[0] === 7)[1] = 77;
    expect(badInputOf(() => prepareWorkflow(noOrigin, {}, objectInfo, opts)).message).toMatch(/link 7 comes from node 77, which is not in the workflow/);
  });

  it('refuses API links to missing nodes or outputs, and malformed ones', () => {
    const api = defaultApi();
    api['8']!.inputs.samples = ['33', 0];
    api['8']!.inputs.vae = ['4', 3];
    api['6']!.inputs.clip = ['4'];
    const e = badInputOf(() => prepareWorkflow(api, {}, objectInfo, opts));
    expect(e.message).toMatch(/node 8 \(VAEDecode\) input "samples" links to node 33, which is not in the workflow/);
    expect(e.message).toMatch(/"vae" links to output 3 of node 4 \(CheckpointLoaderSimple\), which has 3 outputs/);
    expect(e.message).toMatch(/node 6 \(CLIPTextEncode\) input "clip": \["4"\] is not a link/);
  });

  it('refuses a graph without an output node', () => {
    const api = defaultApi();
    delete api['9'];
    const e = badInputOf(() => prepareWorkflow(api, {}, objectInfo, opts));
    expect(e.message).toMatch(/no output node/);
    const ui = defaultUi();
    ui.nodes.find((n: any) => n.id === 9).mode = 2;
    expect(badInputOf(() => prepareWorkflow(ui, {}, objectInfo, opts)).hint).toMatch(/un-mute/);
  });

  it('says subgraphs are not supported yet', () => {
    const ui = defaultUi();
    ui.definitions = { subgraphs: [{ id: '7b9c', nodes: [], links: [] }] };
    const e = badInputOf(() => prepareWorkflow(ui, {}, objectInfo, opts));
    expect(e.message).toMatch(/subgraphs.*not support yet/);
    expect(e.hint).toMatch(/Export \(API\)/);
  });

  it('refuses JSON that is no workflow', () => {
    for (const w of [{}, [], { a: 1 }, 'x', { '1': { inputs: {} } }]) {
      expect(badInputOf(() => prepareWorkflow(w, {}, objectInfo, opts)).message).toMatch(/not a ComfyUI workflow/);
    }
  });

  it('loadWorkflowFile names the file when it is missing or not JSON', () => {
    expect(badInputOf(() => loadWorkflowFile(path.join(dir, 'none.json'))).message).toBe(`Workflow file ${path.join(dir, 'none.json')} does not exist.`);
    const bad = write('bad.json', '{"3": {"class_type": "KSampler",}}');
    const e = badInputOf(() => loadWorkflowFile(bad));
    expect(e.message).toContain(bad);
    expect(e.message).toMatch(/not valid JSON \(line 1, column 33\)/);
    expect(loadWorkflowFile(write('ok.json', JSON.stringify(DEFAULT_API)))).toEqual(DEFAULT_API);
  });
});
