/**
 * Settings: environment > VAI_HOME/settings.json > defaults. The settings file uses the lowercase
 * names of the environment variables (`vai_base_port`, `vai_max_instances`,
 * `vai_max_price_per_hour`, `vai_allowed_origins`, `vai_allowed_hosts`, `vai_budget_usd`,
 * `vai_budget_action`, `vai_ui_port`, `vast_url`, `vast_api_key`).
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { formatIssues } from './config.js';
import { parseJsonText } from '../lib/json.js';
import { badInput } from '../lib/errors.js';
import { parseAllowList } from '../model/origins.js';
import { MAX_PORT, MIN_PORT } from '../model/limits.js';
import { homeFiles, resolveVaiHome } from '../lib/paths.js';

export const DEFAULT_BASE_PORT = 8188;
export const DEFAULT_MAX_INSTANCES = 4;
export const DEFAULT_MAX_PRICE_PER_HOUR = 1.5;
export const DEFAULT_VAST_URL = 'https://console.vast.ai';
/** The dashboard's port: this one, or the next free one below it. */
export const DEFAULT_UI_PORT = 8187;

const SettingsFileSchema = z.strictObject({
  vai_base_port: z.number().int().min(MIN_PORT).max(MAX_PORT).optional(),
  vai_max_instances: z.number().int().min(0).optional(),
  vai_max_price_per_hour: z.number().positive().optional(),
  /** A list, or one comma-separated string as in the environment variable. */
  vai_allowed_origins: z.union([z.string(), z.array(z.string())]).optional(),
  vai_allowed_hosts: z.union([z.string(), z.array(z.string())]).optional(),
  vai_budget_usd: z.number().positive().optional(),
  vai_budget_action: z.enum(['stop', 'destroy']).optional(),
  vai_ui_port: z.number().int().min(MIN_PORT).max(MAX_PORT).optional(),
  vast_url: z.url().optional(),
  vast_api_key: z.string().min(1).optional(),
});
type SettingsFile = z.infer<typeof SettingsFileSchema>;

export interface Settings {
  home: string;
  basePort: number;
  maxInstances: number;
  maxPricePerHour: number;
  vastUrl: string;
  /** From env or the settings file only; the official CLI's key files are read by the Vast client. */
  vastApiKey?: string;
  /** Origins and hosts every tunnel's guard lets through (normalised); the supervisor reads them at its start. */
  allowedOrigins: string[];
  allowedHosts: string[];
  /** VAI_BUDGET_USD / VAI_BUDGET_ACTION: the budget to keep when the supervisor has none yet. */
  budgetUsd?: number;
  budgetAction?: 'stop' | 'destroy';
  /** VAI_UI_PORT: where the dashboard listens (or the next free port below). */
  uiPort: number;
}

/**
 * The variables a client sends with each request: the supervisor
 * outlives the client that started it, so it uses the caller's values, not its own.
 */
export const REQUEST_ENV_KEYS = [
  'VAST_API_KEY',
  'VAST_URL',
  'VAI_SSH_PASSPHRASE',
  'SSH_AUTH_SOCK',
  'VAI_MAX_INSTANCES',
  'VAI_MAX_PRICE_PER_HOUR',
  'XDG_CONFIG_HOME',
  'HOME',
  // Model downloads: each token goes only to its own hosts (comfy/provision/tokens.ts).
  'HF_TOKEN',
  'CIVITAI_TOKEN',
  'VAI_COMFY_REGISTRY_URL',
  'VAI_TOKEN_HOSTS_FOR_TESTS',
] as const;
export type RequestEnv = Partial<Record<(typeof REQUEST_ENV_KEYS)[number], string>> & { cwd?: string };

export function requestEnvFrom(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): RequestEnv {
  const out: RequestEnv = { cwd };
  for (const k of REQUEST_ENV_KEYS) if (env[k] !== undefined && env[k] !== '') out[k] = env[k];
  return out;
}

function readSettingsFile(file: string): SettingsFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw badInput(`Settings file ${file} cannot be read: ${(err as Error).message}`);
  }
  const parsed = SettingsFileSchema.safeParse(parseJsonText(text, file));
  if (!parsed.success) {
    throw badInput(`Settings file ${file} is not valid:\n${formatIssues(parsed.error.issues)}`,
      'Known keys: vai_base_port, vai_max_instances, vai_max_price_per_hour, vai_allowed_origins, vai_allowed_hosts, vai_budget_usd, vai_budget_action, vai_ui_port, vast_url, vast_api_key.');
  }
  return parsed.data;
}

/** The same rules for a variable and its settings-file key, so both refuse the same values. */
const ENV_RULES = {
  VAI_BASE_PORT: SettingsFileSchema.shape.vai_base_port,
  VAI_MAX_INSTANCES: SettingsFileSchema.shape.vai_max_instances,
  VAI_MAX_PRICE_PER_HOUR: SettingsFileSchema.shape.vai_max_price_per_hour,
  VAI_BUDGET_USD: SettingsFileSchema.shape.vai_budget_usd,
  VAI_BUDGET_ACTION: SettingsFileSchema.shape.vai_budget_action,
  VAI_UI_PORT: SettingsFileSchema.shape.vai_ui_port,
  VAST_URL: SettingsFileSchema.shape.vast_url,
} as const;

function fromEnv<K extends keyof typeof ENV_RULES>(env: Record<string, string | undefined>, name: K): z.infer<(typeof ENV_RULES)[K]> | undefined {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return undefined;
  const value = name === 'VAST_URL' || name === 'VAI_BUDGET_ACTION' ? raw : Number(raw);
  const parsed = ENV_RULES[name].safeParse(value);
  if (!parsed.success) {
    throw badInput(`${name}=${raw} is not valid: ${parsed.error.issues[0]?.message ?? 'bad value'}.`, `Fix or unset ${name}.`);
  }
  return parsed.data as z.infer<(typeof ENV_RULES)[K]>;
}

/** An allow list from its variable, else its settings-file key; an entry that is not an origin (or host) is bad input. */
function allowListSetting(env: Record<string, string | undefined>, name: 'VAI_ALLOWED_ORIGINS' | 'VAI_ALLOWED_HOSTS', fileValue: string | string[] | undefined, file: string): string[] {
  const raw = env[name]?.trim();
  const kind = name === 'VAI_ALLOWED_ORIGINS' ? 'origin' : 'host';
  const key = name.toLowerCase();
  try {
    return parseAllowList(raw ? raw : fileValue, kind);
  } catch (err) {
    const where = raw ? name : `${key} in ${file}`;
    throw badInput(`${where}: ${(err as Error).message}.`, `Fix or remove it, e.g. ${name}=${kind === 'origin' ? 'http://localhost:3000' : 'myhost:8188'}.`);
  }
}

/** Effective settings for an environment (the process env, or a request's env). */
export function loadSettings(env: Record<string, string | undefined> = process.env, home = resolveVaiHome(env)): Settings {
  const path = homeFiles(home).settings;
  const file = readSettingsFile(path);
  return {
    home,
    basePort: fromEnv(env, 'VAI_BASE_PORT') ?? file.vai_base_port ?? DEFAULT_BASE_PORT,
    maxInstances: fromEnv(env, 'VAI_MAX_INSTANCES') ?? file.vai_max_instances ?? DEFAULT_MAX_INSTANCES,
    maxPricePerHour: fromEnv(env, 'VAI_MAX_PRICE_PER_HOUR') ?? file.vai_max_price_per_hour ?? DEFAULT_MAX_PRICE_PER_HOUR,
    vastUrl: (fromEnv(env, 'VAST_URL') ?? file.vast_url ?? DEFAULT_VAST_URL).replace(/\/+$/, ''),
    vastApiKey: env.VAST_API_KEY?.trim() || file.vast_api_key,
    allowedOrigins: allowListSetting(env, 'VAI_ALLOWED_ORIGINS', file.vai_allowed_origins, path),
    allowedHosts: allowListSetting(env, 'VAI_ALLOWED_HOSTS', file.vai_allowed_hosts, path),
    budgetUsd: fromEnv(env, 'VAI_BUDGET_USD') ?? file.vai_budget_usd,
    budgetAction: fromEnv(env, 'VAI_BUDGET_ACTION') ?? file.vai_budget_action,
    uiPort: fromEnv(env, 'VAI_UI_PORT') ?? file.vai_ui_port ?? DEFAULT_UI_PORT,
  };
}
