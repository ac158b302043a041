/**
 * The node types the `local` simulator knows: their `/object_info` descriptions (ComfyUI's real
 * input names, types, defaults and limits, from its nodes.py) and what each does when a job runs.
 * Nothing is really computed: links carry sizes and a "key" naming what made the picture, and
 * SaveImage renders a cheap image from that key (so seed and prompt change the pixels).
 */
import { createHash, randomInt } from 'node:crypto';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { encodePng } from './png.js';
import type { FileStore, FolderType } from './files.js';
import { imageSize } from './image-size.js';
import { normalRelPath } from './paths.js';
import { pyJsonDumps } from './pyjson.js';
import { renderPixels } from './render.js';
import type { ApiGraph, ComfyFileRef, InputSpec, NodeInfo, ObjectInfo } from '../comfy/types.js';

export const MAX_RESOLUTION = 16384;
/** Past these the simulator fails the node (a real GPU would run out of memory too). */
export const MAX_IMAGE_PIXELS = 4096 * 4096;
export const MAX_BATCH_PIXELS = 64 * 1024 * 1024;

/** comfy/samplers.py: KSAMPLER_NAMES + ["ddim", "uni_pc", "uni_pc_bh2"]. */
export const SAMPLERS = [
  'euler', 'euler_cfg_pp', 'euler_ancestral', 'euler_ancestral_cfg_pp', 'heun', 'heunpp2', 'dpm_2', 'dpm_2_ancestral',
  'lms', 'dpm_fast', 'dpm_adaptive', 'dpmpp_2s_ancestral', 'dpmpp_2s_ancestral_cfg_pp', 'dpmpp_sde', 'dpmpp_sde_gpu',
  'dpmpp_2m', 'dpmpp_2m_cfg_pp', 'dpmpp_2m_sde', 'dpmpp_2m_sde_gpu', 'dpmpp_2m_sde_heun', 'dpmpp_2m_sde_heun_gpu',
  'dpmpp_3m_sde', 'dpmpp_3m_sde_gpu', 'ddpm', 'lcm', 'ipndm', 'ipndm_v', 'deis', 'res_multistep', 'res_multistep_cfg_pp',
  'res_multistep_ancestral', 'res_multistep_ancestral_cfg_pp', 'gradient_estimation', 'gradient_estimation_cfg_pp',
  'er_sde', 'seeds_2', 'seeds_3', 'sa_solver', 'sa_solver_pece', 'ddim', 'uni_pc', 'uni_pc_bh2',
];

/** comfy/samplers.py: SCHEDULER_NAMES. */
export const SCHEDULERS = ['simple', 'sgm_uniform', 'karras', 'exponential', 'ddim_uniform', 'beta', 'normal', 'linear_quadratic', 'kl_optimal'];

const UPSCALE_METHODS = ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos'];
const CROP_METHODS = ['disabled', 'center'];

// ---- What travels along links --------------------------------------------------------------

/** A batch of pictures (IMAGE) or latents (LATENT): their pixel size, count, and what made them. */
export interface Picture {
  width: number;
  height: number;
  batch: number;
  /** Names the picture's origin; its hash chooses the rendered pixels. */
  key: string;
}

interface Model {
  ckpt: string;
}

interface Conditioning {
  text: string;
}

// ---- The node type interface ----------------------------------------------------------------

export interface RunContext {
  nodeId: string;
  /** The (validated) API graph, for the PNG `prompt` chunk. */
  prompt: ApiGraph;
  /** extra_data.extra_pnginfo (e.g. the UI `workflow`), for more PNG text chunks. */
  extraPngInfo: Record<string, unknown> | undefined;
  files: FileStore;
  /** Runs `count` sampler steps: a short wait each, a `progress` message each; throws on interrupt. */
  sample(count: number): Promise<void>;
}

export interface NodeOutput {
  /** One value per output slot. */
  result: unknown[];
  /** What an output node shows (history `outputs` and the `executed` message). */
  ui?: { images: ComfyFileRef[] };
}

/** ComfyUI's INPUT_TYPES(): required/optional inputs, and hidden ones the server fills in. */
export interface NodeInputs {
  required: Record<string, InputSpec>;
  optional?: Record<string, InputSpec>;
  hidden?: Record<string, string>;
}

export interface SimNodeType {
  display_name: string;
  category: string;
  description: string;
  /** Built per request: LoadImage lists the box's current input files. */
  inputs(files: FileStore): NodeInputs;
  output: string[];
  output_name?: string[];
  output_tooltips?: string[];
  output_node?: boolean;
  /**
   * ComfyUI's VALIDATE_INPUTS: checks these inputs instead of their combo lists; returns an
   * error text for a bad value.
   */
  validate?: { inputs: string[]; check(inputs: Record<string, unknown>, files: FileStore): string | undefined };
  run(inputs: Record<string, unknown>, ctx: RunContext): Promise<NodeOutput> | NodeOutput;
}

// ---- Helpers --------------------------------------------------------------------------------

function hash(...parts: unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 32);
}

const intSpec = (options: Record<string, unknown>): InputSpec => ['INT', options];
const floatSpec = (options: Record<string, unknown>): InputSpec => ['FLOAT', options];

/** ComfyUI's `name [input]` / `[output]` / `[temp]` annotation on a LoadImage value. */
export function annotatedFile(value: string): { type: FolderType; rel: string | undefined } {
  const m = /^(.*) \[(input|output|temp)\]$/.exec(value);
  const type = (m?.[2] as FolderType | undefined) ?? 'input';
  return { type, rel: normalRelPath(m ? m[1]! : value) };
}

function checkSize(width: number, height: number, batch: number): void {
  if (width * height > MAX_IMAGE_PIXELS) {
    throw new Error(`the vai-mcp simulator renders at most ${MAX_IMAGE_PIXELS} pixels per image (4096x4096); asked for ${width}x${height}`);
  }
  if (width * height * batch > MAX_BATCH_PIXELS) {
    throw new Error(`the vai-mcp simulator renders at most ${MAX_BATCH_PIXELS} pixels per batch; asked for ${batch} images of ${width}x${height}`);
  }
}

/** ComfyUI's compute_vars: %width%, %height% and the date parts in a filename prefix. */
function expandPrefix(prefix: string, width: number, height: number): string {
  const now = new Date();
  const two = (n: number) => String(n).padStart(2, '0');
  return prefix
    .replaceAll('%width%', String(width))
    .replaceAll('%height%', String(height))
    .replaceAll('%year%', String(now.getFullYear()))
    .replaceAll('%month%', two(now.getMonth() + 1))
    .replaceAll('%day%', two(now.getDate()))
    .replaceAll('%hour%', two(now.getHours()))
    .replaceAll('%minute%', two(now.getMinutes()))
    .replaceAll('%second%', two(now.getSeconds()));
}

/** SaveImage/PreviewImage: one PNG per image of the batch, named as ComfyUI names them. */
async function saveImages(images: Picture, prefix: string, type: FolderType, ctx: RunContext, level: number): Promise<NodeOutput> {
  checkSize(images.width, images.height, images.batch);
  const expanded = normalRelPath(expandPrefix(prefix, images.width, images.height));
  const slash = expanded?.lastIndexOf('/') ?? -1;
  const subfolder = expanded && slash >= 0 ? expanded.slice(0, slash) : '';
  const filename = expanded && slash >= 0 ? expanded.slice(slash + 1) : expanded;
  if (!filename) throw new Error(`**** ERROR: Saving image outside the output folder is not allowed. filename_prefix: ${prefix}`);
  const text: Record<string, string> = { prompt: pyJsonDumps(ctx.prompt) };
  for (const [k, v] of Object.entries(ctx.extraPngInfo ?? {})) text[k] = pyJsonDumps(v);
  let counter = ctx.files.reserveCounters(type, subfolder, filename, images.batch);
  const refs: ComfyFileRef[] = [];
  for (let i = 0; i < images.batch; i++) {
    const name = `${filename.replaceAll('%batch_num%', String(i))}_${String(counter).padStart(5, '0')}_.png`;
    const pixels = renderPixels(`${images.key}#${i}`, images.width, images.height);
    ctx.files.put(type, subfolder ? `${subfolder}/${name}` : name, encodePng(images.width, images.height, pixels, text, { level }));
    refs.push({ filename: name, subfolder, type });
    counter++;
    await yieldToLoop(); // a big batch must not starve the box's HTTP and websocket traffic
  }
  return { result: [], ui: { images: refs } };
}

function picture(v: unknown): Picture {
  return v as Picture;
}

// ---- The node types -------------------------------------------------------------------------

const HIDDEN_PNGINFO = { prompt: 'PROMPT', extra_pnginfo: 'EXTRA_PNGINFO' };

export const NODE_TYPES: Record<string, SimNodeType> = {
  KSampler: {
    display_name: 'KSampler',
    category: 'sampling',
    description: 'Uses the provided model, positive and negative conditioning to denoise the latent image.',
    inputs: () => ({
      required: {
        model: ['MODEL', { tooltip: 'The model used for denoising the input latent.' }],
        seed: intSpec({ default: 0, min: 0, max: 0xffffffffffffffff, control_after_generate: true, tooltip: 'The random seed used for creating the noise.' }),
        steps: intSpec({ default: 20, min: 1, max: 10000, tooltip: 'The number of steps used in the denoising process.' }),
        cfg: floatSpec({ default: 8.0, min: 0.0, max: 100.0, step: 0.1, round: 0.01, tooltip: 'The Classifier-Free Guidance scale balances creativity and adherence to the prompt. Higher values result in images more closely matching the prompt however too high values will negatively impact quality.' }),
        sampler_name: [SAMPLERS, { tooltip: 'The algorithm used when sampling, this can affect the quality, speed, and style of the generated output.' }],
        scheduler: [SCHEDULERS, { tooltip: 'The scheduler controls how noise is gradually removed to form the image.' }],
        positive: ['CONDITIONING', { tooltip: 'The conditioning describing the attributes you want to include in the image.' }],
        negative: ['CONDITIONING', { tooltip: 'The conditioning describing the attributes you want to exclude from the image.' }],
        latent_image: ['LATENT', { tooltip: 'The latent image to denoise.' }],
        denoise: floatSpec({ default: 1.0, min: 0.0, max: 1.0, step: 0.01, tooltip: 'The amount of denoising applied, lower values will maintain the structure of the initial image allowing for image to image sampling.' }),
      },
    }),
    output: ['LATENT'],
    output_tooltips: ['The denoised latent.'],
    async run(i, ctx) {
      const latent = picture(i.latent_image);
      await ctx.sample(i.steps as number);
      const key = hash('KSampler', i.seed, (i.positive as Conditioning).text, (i.negative as Conditioning).text, (i.model as Model).ckpt, i.cfg, i.sampler_name, i.scheduler, i.denoise, i.steps, latent.key);
      return { result: [{ ...latent, key }] };
    },
  },

  KSamplerAdvanced: {
    display_name: 'KSampler (Advanced)',
    category: 'sampling',
    description: '',
    inputs: () => ({
      required: {
        model: ['MODEL', {}],
        add_noise: [['enable', 'disable'], {}],
        noise_seed: intSpec({ default: 0, min: 0, max: 0xffffffffffffffff, control_after_generate: true }),
        steps: intSpec({ default: 20, min: 1, max: 10000 }),
        cfg: floatSpec({ default: 8.0, min: 0.0, max: 100.0, step: 0.1, round: 0.01 }),
        sampler_name: [SAMPLERS, {}],
        scheduler: [SCHEDULERS, {}],
        positive: ['CONDITIONING', {}],
        negative: ['CONDITIONING', {}],
        latent_image: ['LATENT', {}],
        start_at_step: intSpec({ default: 0, min: 0, max: 10000 }),
        end_at_step: intSpec({ default: 10000, min: 0, max: 10000 }),
        return_with_leftover_noise: [['disable', 'enable'], {}],
      },
    }),
    output: ['LATENT'],
    async run(i, ctx) {
      const latent = picture(i.latent_image);
      const steps = i.steps as number;
      await ctx.sample(Math.max(0, Math.min(steps, i.end_at_step as number) - (i.start_at_step as number)));
      const key = hash('KSamplerAdvanced', i.add_noise, i.noise_seed, (i.positive as Conditioning).text, (i.negative as Conditioning).text, (i.model as Model).ckpt, i.cfg, i.sampler_name, i.scheduler, steps, i.start_at_step, i.end_at_step, latent.key);
      return { result: [{ ...latent, key }] };
    },
  },

  CheckpointLoaderSimple: {
    display_name: 'Load Checkpoint',
    category: 'loaders',
    description: 'Loads a diffusion model checkpoint, diffusion models are used to denoise latents.',
    inputs: (files) => ({ required: { ckpt_name: [files.shelf.list('checkpoints') ?? [], { tooltip: 'The name of the checkpoint (model) to load.' }] } }),
    output: ['MODEL', 'CLIP', 'VAE'],
    output_tooltips: ['The model used for denoising latents.', 'The CLIP model used for encoding text prompts.', 'The VAE model used for encoding and decoding images to and from latent space.'],
    run(i) {
      const m: Model = { ckpt: String(i.ckpt_name) };
      return { result: [m, m, m] };
    },
  },

  CLIPTextEncode: {
    display_name: 'CLIP Text Encode (Prompt)',
    category: 'conditioning',
    description: 'Encodes a text prompt using a CLIP model into an embedding that can be used to guide the diffusion model towards generating specific images.',
    inputs: () => ({
      required: {
        text: ['STRING', { multiline: true, dynamicPrompts: true, tooltip: 'The text to be encoded.' }],
        clip: ['CLIP', { tooltip: 'The CLIP model used for encoding the text.' }],
      },
    }),
    output: ['CONDITIONING'],
    output_tooltips: ['A conditioning containing the embedded text used to guide the diffusion model.'],
    run(i) {
      const c: Conditioning = { text: String(i.text) };
      return { result: [c] };
    },
  },

  EmptyLatentImage: {
    display_name: 'Empty Latent Image',
    category: 'latent',
    description: 'Create a new batch of empty latent images to be denoised via sampling.',
    inputs: () => ({
      required: {
        width: intSpec({ default: 512, min: 16, max: MAX_RESOLUTION, step: 8, tooltip: 'The width of the latent images in pixels.' }),
        height: intSpec({ default: 512, min: 16, max: MAX_RESOLUTION, step: 8, tooltip: 'The height of the latent images in pixels.' }),
        batch_size: intSpec({ default: 1, min: 1, max: 4096, tooltip: 'The number of latent images in the batch.' }),
      },
    }),
    output: ['LATENT'],
    output_tooltips: ['The empty latent image batch.'],
    run(i) {
      // A latent is 1/8 of the image size, so a decoded image is a multiple of 8 like on a real box.
      const latent: Picture = { width: Math.floor((i.width as number) / 8) * 8, height: Math.floor((i.height as number) / 8) * 8, batch: i.batch_size as number, key: 'empty' };
      return { result: [latent] };
    },
  },

  VAEDecode: {
    display_name: 'VAE Decode',
    category: 'latent',
    description: 'Decodes latent images back into pixel space images.',
    inputs: () => ({
      required: {
        samples: ['LATENT', { tooltip: 'The latent to be decoded.' }],
        vae: ['VAE', { tooltip: 'The VAE model used for decoding the latent.' }],
      },
    }),
    output: ['IMAGE'],
    output_tooltips: ['The decoded image.'],
    run(i) {
      return { result: [{ ...picture(i.samples) }] };
    },
  },

  VAEEncode: {
    display_name: 'VAE Encode',
    category: 'latent',
    description: '',
    inputs: () => ({ required: { pixels: ['IMAGE', {}], vae: ['VAE', {}] } }),
    output: ['LATENT'],
    run(i) {
      const image = picture(i.pixels);
      // The VAE works on multiples of 8 pixels: ComfyUI crops the rest.
      const latent: Picture = { width: Math.floor(image.width / 8) * 8, height: Math.floor(image.height / 8) * 8, batch: image.batch, key: hash('VAEEncode', image.key) };
      return { result: [latent] };
    },
  },

  SaveImage: {
    display_name: 'Save Image',
    category: 'image',
    description: 'Saves the input images to your ComfyUI output directory.',
    inputs: () => ({
      required: {
        images: ['IMAGE', { tooltip: 'The images to save.' }],
        filename_prefix: ['STRING', { default: 'ComfyUI', tooltip: 'The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.' }],
      },
      hidden: HIDDEN_PNGINFO,
    }),
    output: [],
    output_node: true,
    run(i, ctx) {
      return saveImages(picture(i.images), String(i.filename_prefix), 'output', ctx, 4);
    },
  },

  PreviewImage: {
    display_name: 'Preview Image',
    category: 'image',
    description: 'Saves the input images to your ComfyUI output directory.',
    inputs: () => ({ required: { images: ['IMAGE', {}] }, hidden: HIDDEN_PNGINFO }),
    output: [],
    output_node: true,
    run(i, ctx) {
      const letters = 'abcdefghijklmnopqrstupvxyz'; // sic: ComfyUI's own alphabet
      const suffix = Array.from({ length: 5 }, () => letters[randomInt(letters.length)]).join('');
      return saveImages(picture(i.images), `ComfyUI_temp_${suffix}`, 'temp', ctx, 1);
    },
  },

  LoadImage: {
    display_name: 'Load Image',
    category: 'image',
    description: '',
    inputs: (files) => ({ required: { image: [files.listTop('input'), { image_upload: true }] } }),
    output: ['IMAGE', 'MASK'],
    validate: {
      inputs: ['image'],
      check(i, files) {
        const { type, rel } = annotatedFile(String(i.image));
        return rel && files.has(type, rel) ? undefined : `Invalid image file: ${String(i.image)}`;
      },
    },
    run(i, ctx) {
      const { type, rel } = annotatedFile(String(i.image));
      const file = rel ? ctx.files.get(type, rel) : undefined;
      if (!file) throw new Error(`[Errno 2] No such file or directory: '${String(i.image)}'`);
      const size = imageSize(file.data);
      const image: Picture = { ...size, batch: 1, key: hash('LoadImage', createHash('sha256').update(file.data).digest('hex')) };
      return { result: [image, { width: size.width, height: size.height }] };
    },
  },

  ImageScale: {
    display_name: 'Upscale Image',
    category: 'image/upscaling',
    description: '',
    inputs: () => ({
      required: {
        image: ['IMAGE', {}],
        upscale_method: [UPSCALE_METHODS, {}],
        width: intSpec({ default: 512, min: 0, max: MAX_RESOLUTION, step: 1 }),
        height: intSpec({ default: 512, min: 0, max: MAX_RESOLUTION, step: 1 }),
        crop: [CROP_METHODS, {}],
      },
    }),
    output: ['IMAGE'],
    run(i) {
      const image = picture(i.image);
      let width = i.width as number;
      let height = i.height as number;
      if (width === 0 && height === 0) return { result: [image] };
      // One side 0 keeps the aspect ratio, as ComfyUI does.
      if (width === 0) width = Math.max(1, Math.round((image.width * height) / image.height));
      else if (height === 0) height = Math.max(1, Math.round((image.height * width) / image.width));
      return { result: [{ ...image, width, height }] };
    },
  },
};

// ---- /object_info ---------------------------------------------------------------------------

/** One node type as `GET /object_info` describes it, in ComfyUI's format. */
/** A node type from an installed pack: the simulator runs none of their code, so it passes an image through. */
const PACK_NODE: SimNodeType = {
  display_name: '',
  category: 'custom',
  description: 'A node from a custom node pack (simulated: passes its image through).',
  inputs: () => ({ required: { image: ['IMAGE', {}] } }),
  output: ['IMAGE'],
  run(i) {
    return { result: [i.image] };
  },
};

/** The built-in node type of that name, or one a pack installed on the box adds. */
export function nodeType(name: string, files: FileStore): SimNodeType | undefined {
  if (Object.hasOwn(NODE_TYPES, name)) return NODE_TYPES[name];
  return files.shelf.hasPackType(name) ? { ...PACK_NODE, display_name: name } : undefined;
}

export function nodeInfo(name: string, files: FileStore): NodeInfo | undefined {
  const t = nodeType(name, files);
  if (!t) return undefined;
  const input = t.inputs(files);
  const inputOrder: Record<string, string[]> = {};
  for (const [section, specs] of Object.entries(input)) inputOrder[section] = Object.keys(specs as object);
  const info: NodeInfo & { output_tooltips?: string[] } = {
    input,
    input_order: inputOrder,
    output: t.output,
    output_is_list: t.output.map(() => false),
    output_name: t.output_name ?? t.output,
    name,
    display_name: t.display_name,
    description: t.description,
    python_module: 'nodes',
    category: t.category,
    output_node: t.output_node ?? false,
  };
  if (t.output_tooltips) info.output_tooltips = t.output_tooltips;
  return info;
}

export function objectInfo(files: FileStore): ObjectInfo {
  const all: ObjectInfo = {};
  for (const name of [...Object.keys(NODE_TYPES), ...files.shelf.packTypeNames()]) all[name] = nodeInfo(name, files)!;
  return all;
}
