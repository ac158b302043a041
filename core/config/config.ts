/**
 * The config file: what box to rent and what to run on it. Validated with zod;
 * unknown keys are errors that name the key, because a typo must never rent the wrong box.
 * The original `vai` toolkit's own keys are known (accepted, ignored where they mean nothing here).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { badInput } from '../lib/errors.js';
import { parseJsonText } from '../lib/json.js';
import { parseAllowList } from '../model/origins.js';
import { expandHome } from '../lib/paths.js';
import { APP_NAME, MAIN_APP } from '../model/apps.js';
import { PROVIDERS, type ProviderName } from '../model/provider.js';


export const DEFAULT_REMOTE_PORT = 18188;
export const DEFAULT_READY_TIMEOUT_S = 1800;

const port = z.number().int().min(1).max(65535);

/** A list of origins or hosts, each checked; kept as written (the tunnel normalises them). */
function allowList(kind: 'origin' | 'host') {
  return z.array(z.string()).superRefine((list, ctx) => {
    try {
      parseAllowList(list, kind);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  });
}

/** One model file to put on a box: `dir` is a folder under ComfyUI's `models/` (`checkpoints`, `loras`, ...). */
export const ModelEntrySchema = z.strictObject({
  url: z.string().regex(/^https?:\/\/[^\s]+$/, 'an http(s) URL'),
  dir: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*(\/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$/, 'a folder under models/, such as "checkpoints" or "loras"').refine((d) => !d.split('/').includes('..'), 'no ".." in dir'),
  name: z.string().regex(/^[^/\\\0]+$/, 'a plain file name').refine((n) => n !== '.' && n !== '..', 'a plain file name').optional(),
  sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, '64 hex digits').optional(),
});
export type ModelEntry = z.infer<typeof ModelEntrySchema>;

/** `custom_nodes` entries: a git URL (`#ref` optional), GitHub `owner/repo`, or a Comfy registry id. */
function isPackSpec(s: string): boolean {
  return /^(https?:\/\/|git@|file:\/\/|\/)\S+$/.test(s) || /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+(#\S+)?$/.test(s) || /^[a-z0-9][a-z0-9_.-]*(@\S+)?$/i.test(s);
}

/** How the `local` simulator misbehaves, to exercise readiness and failsafe paths. */
export const SimulateSchema = z.strictObject({
  start_delay_s: z.number().min(0).max(3600).default(0),
  fail: z.enum(['never', 'boot', 'ssh', 'comfy']).default('never'),
});

export const InstanceConfigSchema = z.strictObject({
  // Offer selection (vast)
  gpu_name: z.string().min(1).optional(),
  num_gpus: z.number().int().min(1).max(16).default(1),
  gpu_index: z.number().int().min(0).default(0),
  max_price_per_hour: z.number().positive().optional(),
  disk_size: z.number().min(8).default(40),
  // Optional offer filters (vast)
  min_reliability: z.number().min(0).max(1).optional(),
  min_inet_down_mbps: z.number().min(0).optional(),
  regions: z.array(z.string().regex(/^[A-Z]{2}$/, 'a two-letter country code such as "US"')).min(1).optional(),
  image: z.string().min(1).optional(),
  provisioning_script: z.string().min(1).optional(),
  env: z.record(z.string(), z.string()).default({}),
  // Reaching ComfyUI
  remote_port: port.default(DEFAULT_REMOTE_PORT),
  ssh_key_path: z.string().min(1).optional(),
  // Ready means ComfyUI answers GET /api/system_stats; false for a main port that is not ComfyUI.
  check_comfy: z.boolean().optional(),
  // The guard on the tunnel's local end: "off" only for a remote port that is not HTTP.
  guard: z.enum(['http', 'off']).optional(),
  allowed_origins: allowList('origin').optional(),
  allowed_hosts: allowList('host').optional(),
  // More apps on the box, each with a local port: name -> remote port, or "portal" (its PORTAL_CONFIG).
  ports: z.union([z.literal('portal'), z.record(z.string().regex(APP_NAME), z.union([port, z.strictObject({ port, guard: z.enum(['http', 'off']).optional() })]))], {
    error: '"portal", or an object from app name (a lowercase letter, then letters, digits, "_" or "-") to a port 1-65535 or {"port": P, "guard": "off"}, e.g. {"portal": 11111}',
  }).optional(),
  // Money guards
  ready_timeout_s: z.number().min(5).default(DEFAULT_READY_TIMEOUT_S),
  max_lifetime_s: z.number().positive().optional(),
  // Idle stop: default 1800 for vast, off for local (unless set) and ssh; 0 turns it off.
  idle_timeout_s: z.number().int().refine((v) => v === 0 || v >= 10, 'at least 10 (seconds), or 0 to turn idle stops off').optional(),
  idle_action: z.enum(['stop', 'destroy']).optional(),
  // The box's own watchdog (vast): it stops itself when the supervisor has not reached it this long.
  deadman_s: z.number().int().refine((v) => v === 0 || v >= 300, 'at least 300 (seconds), or 0 to turn the dead man\'s switch off').optional(),
  deadman_action: z.enum(['stop', 'destroy']).optional(),
  // What the box needs before it is ready: models downloaded on the box, node packs installed.
  models: z.array(ModelEntrySchema).optional(),
  custom_nodes: z.array(z.string().min(1).refine(isPackSpec, 'a git URL (https://..., optionally #<ref>), a GitHub "owner/repo", or a Comfy registry id')).optional(),
  comfy_dir: z.string().regex(/^\//, 'an absolute path on the box, such as "/workspace/ComfyUI"').optional(),
  comfy_restart: z.string().min(1).optional(),
  // `ssh` provider: a box you already have
  ssh_host: z.string().min(1).optional(),
  ssh_port: port.default(22),
  ssh_user: z.string().min(1).default('root'),
  // `local` provider
  simulate: SimulateSchema.optional(),
  // The original toolkit's keys: known, without meaning here.
  github_user: z.string().optional(),
  github_branch: z.string().optional(),
  note: z.string().optional(),
});

export const WorkflowSchema = z.strictObject({
  file: z.string().min(1),
  parameters: z.record(z.string(), z.unknown()).default({}),
  output_dir: z.string().min(1).default('./outputs'),
});

export const ConfigSchema = z.strictObject({
  provider: z.enum(PROVIDERS).optional(),
  instance_config: InstanceConfigSchema.default(InstanceConfigSchema.parse({})),
  workflow: WorkflowSchema.optional(),
  // The original toolkit's top-level keys.
  workflow_name: z.string().optional(),
  description: z.string().optional(),
  parameters: z.unknown().optional(),
  _internal: z.unknown().optional(),
});

export type Config = z.infer<typeof ConfigSchema> & { provider: ProviderName };

/** Formats zod issues as `where: key path: what is wrong`, one per line. */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .map((issue) => {
      const at = issue.path.map(String).join('.');
      if (issue.code === 'unrecognized_keys') {
        return issue.keys
          .map((k) => `${at ? `${at}.` : ''}${k}: unknown key`)
          .join('\n');
      }
      return `${at || '(top level)'}: ${issue.message}`;
    })
    .join('\n');
}

/**
 * Validates a parsed config object. `source` names where it came from (a file path, or
 * "config" for an MCP argument) so that errors say where to look.
 */
export function parseConfig(raw: unknown, source = 'config', opts: { needProvider?: boolean } = {}): Config {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw badInput(`${source}: expected a JSON object like {"provider": "local"}.`);
  }
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) {
    throw badInput(
      `${source} is not a valid config:\n${formatIssues(result.error.issues)}`,
      'See the config file section of the README for the keys and their types.',
    );
  }
  const cfg = result.data;
  const provider = cfg.provider ?? (cfg.instance_config.gpu_name ? 'vast' : opts.needProvider === false ? 'local' : undefined);
  if (!provider) {
    throw badInput(
      `${source}: "provider" is missing.`,
      'Set "provider" to "local" (the built-in simulator), "ssh" (a box you already have) or "vast".',
    );
  }
  if (provider === 'ssh' && !cfg.instance_config.ssh_host && opts.needProvider !== false) {
    throw badInput(
      `${source}: instance_config.ssh_host is required with provider "ssh".`,
      'Name the machine to reach, e.g. "instance_config": {"ssh_host": "gpu.example.org", "ssh_user": "root"}.',
    );
  }
  // `ports.comfyui` is the main port: one number for it, wherever it was written.
  const ports = cfg.instance_config.ports;
  const main = typeof ports === 'object' ? ports[MAIN_APP] : undefined;
  if (main !== undefined) {
    const mainPort = typeof main === 'number' ? main : main.port;
    const rawPort = (raw as { instance_config?: { remote_port?: unknown } }).instance_config?.remote_port;
    if (rawPort !== undefined && rawPort !== mainPort) {
      throw badInput(`${source}: instance_config.remote_port (${String(rawPort)}) and instance_config.ports.comfyui (${mainPort}) disagree.`, 'ComfyUI has one port: keep one of the two.');
    }
    cfg.instance_config.remote_port = mainPort;
  }
  return { ...cfg, provider };
}

/**
 * Reads and validates a config file, and makes every path inside it absolute against the file's
 * folder (clients send absolute paths: the supervisor runs elsewhere). Runs in the client, before a request leaves it.
 */
export function loadConfigFile(file: string, opts: { needProvider?: boolean } = {}): Config {
  const abs = path.resolve(expandHome(file));
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EISDIR' ? 'is a folder' : `cannot be read (${code})`;
    // Never suggest the path that just failed.
    const example = path.join('examples', 'local.json');
    const hint = abs.endsWith(example) ? `Relative paths start in the current folder (${process.cwd()}): pass the full path of a JSON config file.` : `Pass the path of a JSON config file, e.g. ${example}.`;
    throw badInput(`Config file ${abs} ${why}.`, hint);
  }
  const cfg = parseConfig(parseJsonText(text, abs), abs, opts);
  return resolveConfigPaths(cfg, path.dirname(abs));
}

function isUrl(s: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(s);
}

/** Makes the config's paths absolute: `~` expands, relative paths resolve against `baseDir`. */
export function resolveConfigPaths(cfg: Config, baseDir: string): Config {
  const abs = (p: string) => path.resolve(baseDir, expandHome(p));
  const ic = { ...cfg.instance_config };
  if (ic.ssh_key_path) ic.ssh_key_path = abs(ic.ssh_key_path);
  if (ic.provisioning_script && !isUrl(ic.provisioning_script)) ic.provisioning_script = abs(ic.provisioning_script);
  const out: Config = { ...cfg, instance_config: ic };
  if (cfg.workflow) {
    out.workflow = { file: abs(cfg.workflow.file), parameters: resolveParameterPaths(cfg.workflow.parameters, abs), output_dir: abs(cfg.workflow.output_dir) };
  }
  return out;
}

/** Parameter values that name local files: images are uploaded, .txt files are read. */
const FILE_VALUE = /\.(png|jpe?g|webp|txt)$/i;

/**
 * Makes the file names among workflow parameter values absolute, in both forms:
 * `{"6.text": "prompt.txt"}` and the original toolkit's `{"10_Load": {"node_id": 10, "values": ["in.png"]}}`.
 */
export function resolveParameterPaths(params: Record<string, unknown>, abs: (p: string) => string): Record<string, unknown> {
  const file = (v: unknown) => (typeof v === 'string' && FILE_VALUE.test(v) && !isUrl(v) ? abs(v) : v);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(params)) {
    const values = (value as { values?: unknown })?.values;
    out[key] = value && typeof value === 'object' && Array.isArray(values) ? { ...value, values: values.map(file) } : file(value);
  }
  return out;
}

/** What a job config asks for: its workflow section, and the models and node packs it lists. */
export interface JobSpec {
  workflow?: NonNullable<Config['workflow']>;
  models?: ModelEntry[];
  custom_nodes?: string[];
}

/** A job config file for `exec` / run_workflow: the workflow section (required) and the box lists. */
export function loadJobSpec(file: string, opts: { needWorkflow?: boolean } = {}): JobSpec {
  const cfg = loadConfigFile(path.resolve(expandHome(file)), { needProvider: false });
  const { models, custom_nodes } = cfg.instance_config;
  const workflow = opts.needWorkflow === false ? cfg.workflow : loadJobWorkflow(file);
  return { ...(workflow ? { workflow } : {}), ...(models ? { models } : {}), ...(custom_nodes ? { custom_nodes } : {}) };
}

/**
 * The `workflow` section of a job config file, paths absolute (`exec` uses nothing else, so the
 * rest of the file needs no provider). Unknown keys anywhere are still errors.
 */
export function loadJobWorkflow(file: string): NonNullable<Config['workflow']> {
  const abs = path.resolve(expandHome(file));
  const cfg = loadConfigFile(abs, { needProvider: false });
  if (!cfg.workflow) {
    throw badInput(`${abs} has no "workflow" section.`, 'Add "workflow": {"file": "workflow_api.json", "parameters": {}, "output_dir": "./outputs"} (see examples/job.json).');
  }
  return cfg.workflow;
}
