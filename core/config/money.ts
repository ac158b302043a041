/**
 * The money settings of a box's config with their defaults, which depend on the provider: a
 * rented box (`vast`) stops after 30 idle minutes and carries a dead man's switch; a simulated
 * one (`local`) only when its config asks; a machine you already have (`ssh`) is never stopped.
 */
import type { MoneyAction } from '../model/money.js';
import type { Config } from './config.js';

export const DEFAULT_IDLE_TIMEOUT_S = 1800;
export const DEFAULT_DEADMAN_S = 1800;

/** Seconds without use before the idle action; 0: never. */
export function idleTimeoutOf(config: Config): number {
  if (config.provider === 'ssh') return 0;
  return config.instance_config.idle_timeout_s ?? (config.provider === 'vast' ? DEFAULT_IDLE_TIMEOUT_S : 0);
}

export function idleActionOf(config: Config): MoneyAction {
  return config.instance_config.idle_action ?? 'stop';
}

/** Seconds without the supervisor before a box stops itself; 0: never (only `vast` boxes carry the switch). */
export function deadmanOf(config: Config): number {
  if (config.provider !== 'vast') return 0;
  return config.instance_config.deadman_s ?? DEFAULT_DEADMAN_S;
}

export function deadmanActionOf(config: Config): MoneyAction {
  return config.instance_config.deadman_action ?? 'stop';
}
