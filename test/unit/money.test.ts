/**
 * The money settings and arithmetic: per-provider defaults of the idle stop and the dead man's
 * switch, their bounds, the budget settings, what a box accrues as it runs and stops, and the
 * watchdog's fit in Vast's onstart and env limits.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../core/config/config.js';
import { deadmanOf, idleActionOf, idleTimeoutOf } from '../../core/config/money.js';
import { loadSettings } from '../../core/config/settings.js';
import { accruedAt, lifetimeCostAt, rateOf, type LedgerEntry } from '../../core/model/money.js';
import { MAX_ENV_VALUE_CHARS, MAX_ONSTART_CHARS, onstartFor, watchdogEnv } from '../../core/providers/vast/watchdog.js';
import { SshProvider } from '../../core/providers/ssh.js';
import { silentLogger } from '../../core/lib/log.js';
import { badInputOf } from '../helpers/errors.js';

const home = mkdtempSync(path.join(os.tmpdir(), 'vai-money-unit-'));
afterAll(() => rmSync(home, { recursive: true, force: true }));

const vast = (ic: Record<string, unknown> = {}) => parseConfig({ provider: 'vast', instance_config: { gpu_name: 'RTX 4090', ...ic } });

describe('money settings', () => {
  it('idle stops: 30 min for vast, off for local unless set, never for ssh; stop unless destroy is asked', () => {
    expect(idleTimeoutOf(vast())).toBe(1800);
    expect(idleTimeoutOf(vast({ idle_timeout_s: 0 }))).toBe(0);
    expect(idleTimeoutOf(parseConfig({ provider: 'local' }))).toBe(0);
    expect(idleTimeoutOf(parseConfig({ provider: 'local', instance_config: { idle_timeout_s: 60 } }))).toBe(60);
    expect(idleTimeoutOf(parseConfig({ provider: 'ssh', instance_config: { ssh_host: 'h', idle_timeout_s: 60 } }))).toBe(0);
    expect(idleActionOf(vast())).toBe('stop');
    expect(idleActionOf(vast({ idle_action: 'destroy' }))).toBe('destroy');
  });

  it("the dead man's switch: 30 min on vast boxes only, 0 turns it off", () => {
    expect(deadmanOf(vast())).toBe(1800);
    expect(deadmanOf(vast({ deadman_s: 0 }))).toBe(0);
    expect(deadmanOf(parseConfig({ provider: 'local' }))).toBe(0);
    expect(onstartFor(vast({ deadman_s: 0 }), 'entrypoint.sh')).toBe('entrypoint.sh');
    expect(watchdogEnv(vast({ deadman_s: 0 }), 'https://console.vast.ai')).toEqual({});
  });

  it('refuses an idle stop for an ssh box: the machine is not ours to stop', () => {
    const ssh = new SshProvider(async () => 'ssh-1');
    const ctx = { env: {}, settings: loadSettings({}, home), log: silentLogger };
    const config = parseConfig({ provider: 'ssh', instance_config: { ssh_host: 'gpu.example.org', idle_timeout_s: 600 } });
    expect(badInputOf(() => ssh.validate(config, ctx)).message).toContain('idle_timeout_s does not apply to "ssh" boxes');
  });

  it('refuses windows too short to mean anything, naming the key and the way out', () => {
    expect(badInputOf(() => vast({ idle_timeout_s: 5 })).message).toMatch(/idle_timeout_s.*at least 10 \(seconds\), or 0/s);
    expect(badInputOf(() => vast({ deadman_s: 120 })).message).toMatch(/deadman_s.*at least 300 \(seconds\), or 0/s);
    expect(badInputOf(() => vast({ idle_action: 'pause' })).message).toMatch(/idle_action/);
  });

  it('VAI_BUDGET_USD and VAI_BUDGET_ACTION come from the environment or settings.json, and bad values are refused', () => {
    expect(loadSettings({ VAI_BUDGET_USD: '25', VAI_BUDGET_ACTION: 'destroy' }, home)).toMatchObject({ budgetUsd: 25, budgetAction: 'destroy' });
    expect(loadSettings({}, home).budgetUsd).toBeUndefined();
    expect(badInputOf(() => loadSettings({ VAI_BUDGET_USD: 'lots' }, home)).message).toMatch(/^VAI_BUDGET_USD=lots is not valid/);
    expect(badInputOf(() => loadSettings({ VAI_BUDGET_USD: '-1' }, home)).message).toMatch(/^VAI_BUDGET_USD=-1 is not valid/);
    expect(badInputOf(() => loadSettings({ VAI_BUDGET_ACTION: 'pause' }, home)).message).toMatch(/^VAI_BUDGET_ACTION=pause is not valid/);
  });
});

describe('what a box costs', () => {
  const entry = (patch: Partial<LedgerEntry> = {}): LedgerEntry => ({ instance_id: '1', dph_total: 0.72, storage_dph: 0.036, billing: 'running', accrued_usd: 0.5, since_ms: 0, ...patch });

  it('its price while it runs, its storage while stopped, nothing once destroyed', () => {
    expect(rateOf(entry())).toBe(0.72);
    expect(rateOf(entry({ billing: 'stopped' }))).toBe(0.036);
    expect(rateOf(entry({ billing: 'ended' }))).toBe(0);
    expect(accruedAt(entry(), 3_600_000)).toBeCloseTo(1.22, 10);
    expect(accruedAt(entry({ billing: 'stopped' }), 3_600_000)).toBeCloseTo(0.536, 10);
    expect(accruedAt(entry({ billing: 'ended' }), 3_600_000)).toBe(0.5);
    expect(accruedAt(entry({ since_ms: 10_000 }), 5_000)).toBe(0.5); // never negative time
    expect(lifetimeCostAt(entry({ earlier_usd: 2 }), 0)).toBe(2.5);
  });
});

describe("the watchdog in Vast's limits", () => {
  it('fits onstart in 4,096 characters and each env value in 256, and starts the entrypoint last', () => {
    const config = vast({ deadman_s: 86_400, ready_timeout_s: 7_200, deadman_action: 'destroy' });
    const onstart = onstartFor(config, 'entrypoint.sh');
    expect(onstart.length).toBeLessThanOrEqual(MAX_ONSTART_CHARS);
    expect(onstart.trimEnd().endsWith('entrypoint.sh')).toBe(true);
    const env = watchdogEnv(config, 'https://console.vast.ai');
    expect(env).toEqual({
      VAI_VAST_URL: 'https://console.vast.ai',
      VAI_DEADMAN_S: '86400',
      VAI_DEADMAN_MIN_S: '86400',
      VAI_DEADMAN_TICK_S: '30',
      VAI_DEADMAN_ACTION: 'destroy',
      VAI_COMFY_PORT: '18188',
    });
    for (const v of Object.values(env)) expect(v.length).toBeLessThanOrEqual(MAX_ENV_VALUE_CHARS);
    // Never earlier than ready_timeout_s after boot.
    expect(watchdogEnv(vast({ deadman_s: 300, ready_timeout_s: 1800 }), 'x').VAI_DEADMAN_MIN_S).toBe('1800');
  });
});
