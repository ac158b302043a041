/** Settings: environment > VAI_HOME/settings.json > defaults; bad values are exit-2 errors. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { vaiErrorOf } from '../helpers/errors.js';
import { loadSettings, requestEnvFrom } from '../../core/settings.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'vai-settings-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function home(name: string, settings?: unknown): string {
  const h = path.join(dir, name);
  mkdirSync(h, { recursive: true });
  if (settings !== undefined) writeFileSync(path.join(h, 'settings.json'), typeof settings === 'string' ? settings : JSON.stringify(settings));
  return h;
}

describe('loadSettings', () => {
  it('has the documented defaults', () => {
    const s = loadSettings({}, home('empty'));
    expect(s).toMatchObject({ basePort: 8188, maxInstances: 4, maxPricePerHour: 1.5, vastUrl: 'https://console.vast.ai' });
    expect(s.vastApiKey).toBeUndefined();
  });

  it('takes the settings file over defaults, and the environment over the file', () => {
    const h = home('file', { vai_base_port: 9100, vai_max_instances: 2, vai_max_price_per_hour: 0.9, vast_url: 'http://127.0.0.1:1/', vast_api_key: 'from-file' });
    expect(loadSettings({}, h)).toMatchObject({ basePort: 9100, maxInstances: 2, maxPricePerHour: 0.9, vastUrl: 'http://127.0.0.1:1', vastApiKey: 'from-file' });
    const env = { VAI_BASE_PORT: '9200', VAI_MAX_INSTANCES: '7', VAI_MAX_PRICE_PER_HOUR: '0.5', VAST_URL: 'http://127.0.0.1:2', VAST_API_KEY: 'from-env' };
    expect(loadSettings(env, h)).toMatchObject({ basePort: 9200, maxInstances: 7, maxPricePerHour: 0.5, vastUrl: 'http://127.0.0.1:2', vastApiKey: 'from-env' });
  });

  it('refuses bad environment values with exit 2, naming the variable', () => {
    for (const [k, v] of [['VAI_BASE_PORT', '80'], ['VAI_BASE_PORT', 'abc'], ['VAI_BASE_PORT', '8188.5'], ['VAI_MAX_INSTANCES', '-1'], ['VAI_MAX_PRICE_PER_HOUR', 'cheap']]) {
      const e = vaiErrorOf(() => loadSettings({ [k!]: v }, home('env')));
      expect(e.exitCode).toBe(2);
      expect(e.message).toContain(`${k}=${v}`);
    }
  });

  it('refuses unknown keys and malformed JSON in the settings file', () => {
    const e = vaiErrorOf(() => loadSettings({}, home('unknown', { base_port: 9000 })));
    expect(e.exitCode).toBe(2);
    expect(e.message).toMatch(/base_port: unknown key/);
    expect(e.hint).toMatch(/vai_base_port/);
    expect(vaiErrorOf(() => loadSettings({}, home('broken', '{ "vai_base_port": '))).message).toMatch(/not valid JSON/);
  });
});

describe('requestEnvFrom', () => {
  it('carries only the variables a request needs, and the working directory', () => {
    const env = requestEnvFrom({ VAST_API_KEY: 'k', VAI_SSH_PASSPHRASE: 'p', SSH_AUTH_SOCK: '/s', VAI_HOME: '/h', PATH: '/bin', EMPTY: '', VAST_URL: '' }, '/work');
    expect(env).toEqual({ cwd: '/work', VAST_API_KEY: 'k', VAI_SSH_PASSPHRASE: 'p', SSH_AUTH_SOCK: '/s' });
  });
});
