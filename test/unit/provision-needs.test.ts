/** What a workflow needs (comfy/provision/needs.ts) against what a box has: the plan, and its refusals. */
import { describe, expect, it } from 'vitest';
import { needsOf, parsePackSpec } from '../../core/comfy/provision/needs.js';
import { planFor } from '../../core/comfy/provision/preparer.js';
import type { BoxContents } from '../../core/comfy/provision/contents.js';

const box = (folders: Record<string, string[]>, nodeTypes: string[] = []): BoxContents => ({
  folders: new Map(Object.entries(folders).map(([k, v]) => [k, new Set(v)])),
  nodeTypes: new Set(nodeTypes),
});

describe('what a workflow needs', () => {
  it('reads loader inputs of an API graph, with their folders (unet is diffusion_models)', () => {
    const needs = needsOf({
      '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sdxl.safetensors' } },
      '2': { class_type: 'LoraLoader', inputs: { lora_name: 'style.safetensors', model: ['1', 0] } },
      '3': { class_type: 'UNETLoader', inputs: { unet_name: 'flux.safetensors' } },
      '4': { class_type: 'UpscaleModelLoader', inputs: { model_name: '4x.pth' } },
      '5': { class_type: 'KSampler', inputs: { seed: 1 } },
    }, {});
    expect(needs.models.map((m) => [m.name, m.dir, m.from])).toEqual([
      ['sdxl.safetensors', 'checkpoints', 'node 1 (CheckpointLoaderSimple)'],
      ['style.safetensors', 'loras', 'node 2 (LoraLoader)'],
      ['flux.safetensors', 'diffusion_models', 'node 3 (UNETLoader)'],
      ['4x.pth', 'upscale_models', 'node 4 (UpscaleModelLoader)'],
    ]);
    const plan = () => planFor(needs, box({ checkpoints: ['sdxl.safetensors'], loras: ['style.safetensors'], diffusion_models: ['flux.safetensors'] }));
    expect(plan).toThrow(/4x\.pth \(named by node 4 \(UpscaleModelLoader\)\) is not on the box and has no URL/);
  });

  it('reads properties.models, cnr_id and aux_id of a UI workflow; the config fills in URLs and checksums', () => {
    const ui = {
      links: [],
      nodes: [
        { id: 4, type: 'CheckpointLoaderSimple', widgets_values: ['a.safetensors'], properties: { models: [{ name: 'a.safetensors', url: 'https://huggingface.co/x/a.safetensors', directory: 'checkpoints' }] } },
        { id: 7, type: 'LoraLoader', widgets_values: ['b.safetensors', 1, 1], properties: {} },
        { id: 8, type: 'Sharpen', properties: { cnr_id: 'sharp-pack', ver: '1.2.0' } },
        { id: 9, type: 'Rembg', properties: { aux_id: 'someone/rembg-nodes', ver: 'abc123' } },
        { id: 10, type: 'KSampler', properties: { cnr_id: 'comfy-core' } },
      ],
    };
    const sha = 'a'.repeat(64);
    const needs = needsOf(ui, { models: [{ url: 'https://civitai.com/api/download/b.safetensors', dir: 'loras', sha256: sha.toUpperCase() }], custom_nodes: ['https://example.org/p.git#v2'] });
    expect(needs.models).toEqual([
      { name: 'a.safetensors', dir: 'checkpoints', url: 'https://huggingface.co/x/a.safetensors', from: 'node 4 (CheckpointLoaderSimple)' },
      { name: 'b.safetensors', dir: 'loras', url: 'https://civitai.com/api/download/b.safetensors', sha256: sha, from: 'node 7 (LoraLoader)' },
    ]);
    expect(needs.packs.map((p) => [p.source, p.nodeType])).toEqual([
      [{ kind: 'registry', id: 'sharp-pack', version: '1.2.0' }, 'Sharpen'],
      [{ kind: 'github', repo: 'someone/rembg-nodes', ref: 'abc123' }, 'Rembg'],
      [{ kind: 'git', url: 'https://example.org/p.git', ref: 'v2' }, undefined],
    ]);
    // The box has the checkpoint and the Sharpen node: only the LoRA and the other packs remain.
    const plan = planFor(needs, box({ checkpoints: ['a.safetensors'] }, ['Sharpen']));
    expect(plan.present).toBe(1);
    expect(plan.downloads.map((d) => `${d.dir}/${d.name}`)).toEqual(['loras/b.safetensors']);
    expect(plan.packs.map((p) => p.source.kind)).toEqual(['github', 'git']);
  });

  it('tells apart the three custom_nodes forms', () => {
    expect(parsePackSpec('comfyui-impact-pack@8.1')).toEqual({ kind: 'registry', id: 'comfyui-impact-pack', version: '8.1' });
    expect(parsePackSpec('ltdrdata/ComfyUI-Impact-Pack')).toEqual({ kind: 'github', repo: 'ltdrdata/ComfyUI-Impact-Pack' });
    expect(parsePackSpec('file:///srv/pack.git#main')).toEqual({ kind: 'git', url: 'file:///srv/pack.git', ref: 'main' });
  });
});
