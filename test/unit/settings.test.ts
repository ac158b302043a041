/**
 * core/settings.ts: environment > VAI_HOME/settings.json > defaults (DESIGN.md section 2).
 * Invalid environment values and unknown or ill-typed settings-file keys are exit-2 errors.
 * Real settings files in temp VAI_HOMEs; environments are passed in as plain objects.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { badInputOf } from '../helpers/errors.js';
import { loadSettings, REQUEST_ENV_KEYS, requestEnvFrom } from '../../core/config/settings.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'vai-settings-unit-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let homes = 0;
/** A fresh VAI_HOME (0700), with a settings.json when `settings` is given (an object or raw text). */
function vaiHome(settings?: unknown): string {
  const h = path.join(root, `home-${++homes}`);
  mkdirSync(h, { recursive: true, mode: 0o700 });
  if (settings !== undefined) {
    writeFileSync(path.join(h, 'settings.json'), typeof settings === 'string' ? settings : JSON.stringify(settings));
  }
  return h;
}


const saved = new Map<string, string | undefined>();
function setProcessEnv(name: string, value: string | undefined): void {
  if (!saved.has(name)) saved.set(name, process.env[name]);
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}
afterEach(() => {
  for (const [k, v] of saved) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  saved.clear();
});

describe('loadSettings: precedence', () => {
  it('has the documented defaults when there is no settings file and no environment', () => {
    const h = vaiHome();
    const s = loadSettings({}, h);
    expect(s).toEqual({
      home: h,
      basePort: 8188,
      maxInstances: 4,
      maxPricePerHour: 1.5,
      vastUrl: 'https://console.vast.ai',
      vastApiKey: undefined,
      allowedOrigins: [],
      allowedHosts: [],
      budgetUsd: undefined,
      budgetAction: undefined,
      uiPort: 8187,
    });
  });

  it('takes every value from VAI_HOME/settings.json over the defaults', () => {
    const h = vaiHome({
      vai_base_port: 9100,
      vai_max_instances: 2,
      vai_max_price_per_hour: 0.9,
      vast_url: 'http://127.0.0.1:4100',
      vast_api_key: 'key-from-file',
    });
    expect(loadSettings({}, h)).toMatchObject({
      basePort: 9100,
      maxInstances: 2,
      maxPricePerHour: 0.9,
      vastUrl: 'http://127.0.0.1:4100',
      vastApiKey: 'key-from-file',
    });
  });

  it('takes the environment over the settings file', () => {
    const h = vaiHome({ vai_base_port: 9100, vai_max_instances: 2, vai_max_price_per_hour: 0.9, vast_url: 'http://127.0.0.1:4100', vast_api_key: 'key-from-file' });
    const env = {
      VAI_BASE_PORT: '9200',
      VAI_MAX_INSTANCES: '7',
      VAI_MAX_PRICE_PER_HOUR: '0.55',
      VAST_URL: 'http://127.0.0.1:4200',
      VAST_API_KEY: 'key-from-env',
    };
    expect(loadSettings(env, h)).toMatchObject({
      basePort: 9200,
      maxInstances: 7,
      maxPricePerHour: 0.55,
      vastUrl: 'http://127.0.0.1:4200',
      vastApiKey: 'key-from-env',
    });
  });

  it('resolves each setting on its own: env for one, file for another, default for the rest', () => {
    const h = vaiHome({ vai_max_instances: 9 });
    const s = loadSettings({ VAI_BASE_PORT: '9300' }, h);
    expect(s.basePort).toBe(9300); // env
    expect(s.maxInstances).toBe(9); // file
    expect(s.maxPricePerHour).toBe(1.5); // default
    expect(s.vastUrl).toBe('https://console.vast.ai'); // default
  });

  it('treats empty environment values as unset', () => {
    const h = vaiHome({ vai_base_port: 9400 });
    const s = loadSettings({ VAI_BASE_PORT: '', VAI_MAX_INSTANCES: '', VAI_MAX_PRICE_PER_HOUR: '', VAST_URL: '', VAST_API_KEY: '' }, h);
    expect(s).toMatchObject({ basePort: 9400, maxInstances: 4, maxPricePerHour: 1.5, vastUrl: 'https://console.vast.ai' });
    expect(s.vastApiKey).toBeUndefined();
  });

  it('reads the guard\'s allow lists from VAI_ALLOWED_ORIGINS / _HOSTS over the file, normalised', () => {
    const h = vaiHome({ vai_allowed_origins: ['http://LOCALHOST:3000/'], vai_allowed_hosts: 'a.example:9000, b.example' });
    expect(loadSettings({}, h)).toMatchObject({ allowedOrigins: ['http://localhost:3000'], allowedHosts: ['a.example:9000', 'b.example'] });
    const env = { VAI_ALLOWED_ORIGINS: 'http://127.0.0.1:5173,https://ui.example:443', VAI_ALLOWED_HOSTS: 'c.example:1' };
    expect(loadSettings(env, h)).toMatchObject({ allowedOrigins: ['http://127.0.0.1:5173', 'https://ui.example'], allowedHosts: ['c.example:1'] });
  });

  it('refuses an allow-list entry that is not an origin (or host), naming it and where it came from', () => {
    const e = badInputOf(() => loadSettings({ VAI_ALLOWED_ORIGINS: 'localhost:3000' }, vaiHome()));
    expect(e.message).toBe('VAI_ALLOWED_ORIGINS: "localhost:3000" is not an origin like http://localhost:3000 (scheme, host and port; no path).');
    const h = vaiHome({ vai_allowed_hosts: ['http://x.example'] });
    expect(badInputOf(() => loadSettings({}, h)).message).toContain(`vai_allowed_hosts in ${path.join(h, 'settings.json')}: "http://x.example" is not a host`);
  });

  it('accepts 0 instances (no paid boxes at all) from the environment', () => {
    expect(loadSettings({ VAI_MAX_INSTANCES: '0' }, vaiHome()).maxInstances).toBe(0);
  });

  it('drops a trailing slash from the Vast URL', () => {
    expect(loadSettings({ VAST_URL: 'http://127.0.0.1:4300/' }, vaiHome()).vastUrl).toBe('http://127.0.0.1:4300');
    expect(loadSettings({}, vaiHome({ vast_url: 'http://127.0.0.1:4301//' })).vastUrl).toBe('http://127.0.0.1:4301');
  });

  it('finds the settings file through VAI_HOME when no home is passed', () => {
    const h = vaiHome({ vai_base_port: 9500 });
    const s = loadSettings({ VAI_HOME: h });
    expect(s.home).toBe(h);
    expect(s.basePort).toBe(9500);
  });
});

describe('loadSettings: bad values are exit-2 errors naming what is wrong', () => {
  const badEnv: [string, string][] = [
    ['VAI_BASE_PORT', 'abc'],
    ['VAI_BASE_PORT', '80'],
    ['VAI_BASE_PORT', '1023'],
    ['VAI_BASE_PORT', '65536'],
    ['VAI_BASE_PORT', '8188.5'],
    ['VAI_MAX_INSTANCES', '-1'],
    ['VAI_MAX_INSTANCES', '2.5'],
    ['VAI_MAX_INSTANCES', 'four'],
    ['VAI_MAX_PRICE_PER_HOUR', 'cheap'],
    ['VAI_MAX_PRICE_PER_HOUR', '-0.5'],
  ];
  for (const [name, value] of badEnv) {
    it(`refuses ${name}=${value}`, () => {
      const e = badInputOf(() => loadSettings({ [name]: value }, vaiHome()));
      expect(e.message).toContain(`${name}=${value}`);
    });
  }

  it('refuses a VAST_URL that is not a URL (the settings file refuses the same value)', () => {
    // The file's vast_url must be a URL; the same value from the environment must not slip through
    // and turn into a request to a relative path later.
    badInputOf(() => loadSettings({}, vaiHome({ vast_url: 'console dot vast' })));
    const e = badInputOf(() => loadSettings({ VAST_URL: 'console dot vast' }, vaiHome()));
    expect(e.message).toContain('VAST_URL');
  });

  it('does not fall back to the file when an environment value is bad', () => {
    // A bad env value is an error, not a silent fallback to the file.
    badInputOf(() => loadSettings({ VAI_BASE_PORT: 'x' }, vaiHome({ vai_base_port: 9100 })));
  });

  it('refuses an unknown key in the settings file, naming it and listing the known keys', () => {
    const h = vaiHome({ base_port: 9000 });
    const e = badInputOf(() => loadSettings({}, h));
    expect(e.message).toContain(path.join(h, 'settings.json'));
    expect(e.message).toMatch(/^base_port: unknown key$/m);
    expect(e.hint).toContain('vai_base_port');
  });

  it('refuses an environment-style (uppercase) key in the settings file', () => {
    const e = badInputOf(() => loadSettings({}, vaiHome({ VAI_BASE_PORT: 9000 })));
    expect(e.message).toMatch(/^VAI_BASE_PORT: unknown key$/m);
  });

  it('refuses wrong types and out-of-range values in the settings file, naming the key', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ vai_base_port: '9000' }, 'vai_base_port'],
      [{ vai_base_port: 80 }, 'vai_base_port'],
      [{ vai_max_instances: -1 }, 'vai_max_instances'],
      [{ vai_max_price_per_hour: 0 }, 'vai_max_price_per_hour'],
      [{ vast_url: 'not a url' }, 'vast_url'],
    ];
    for (const [file, key] of cases) {
      expect(badInputOf(() => loadSettings({}, vaiHome(file))).message).toMatch(new RegExp(`^${key}: `, 'm'));
    }
  });

  it('refuses a malformed settings file, naming it', () => {
    const h = vaiHome('{ "vai_base_port": 9000,, }');
    const e = badInputOf(() => loadSettings({}, h));
    expect(e.message).toContain(path.join(h, 'settings.json'));
    expect(e.message).toMatch(/not valid JSON/);
  });

  it('refuses a settings.json that is a folder', () => {
    const h = vaiHome();
    mkdirSync(path.join(h, 'settings.json'));
    const e = badInputOf(() => loadSettings({}, h));
    expect(e.message).toContain(path.join(h, 'settings.json'));
  });
});

describe('requestEnvFrom', () => {
  it('carries exactly the variables a request needs, and the working directory', () => {
    const env = {
      VAST_API_KEY: 'k',
      VAST_URL: 'http://127.0.0.1:1',
      VAI_SSH_PASSPHRASE: 'p',
      SSH_AUTH_SOCK: '/run/agent.sock',
      VAI_MAX_INSTANCES: '3',
      VAI_MAX_PRICE_PER_HOUR: '0.7',
      XDG_CONFIG_HOME: '/cfg',
      HOME: '/home/u',
      // Not carried: fixed at the supervisor's start, or unrelated.
      VAI_HOME: '/h',
      VAI_BASE_PORT: '9000',
      PATH: '/bin',
      SECRET_OTHER: 'x',
    };
    expect(requestEnvFrom(env, '/work/dir')).toEqual({
      cwd: '/work/dir',
      VAST_API_KEY: 'k',
      VAST_URL: 'http://127.0.0.1:1',
      VAI_SSH_PASSPHRASE: 'p',
      SSH_AUTH_SOCK: '/run/agent.sock',
      VAI_MAX_INSTANCES: '3',
      VAI_MAX_PRICE_PER_HOUR: '0.7',
      XDG_CONFIG_HOME: '/cfg',
      HOME: '/home/u',
    });
    expect([...REQUEST_ENV_KEYS].sort()).toEqual(
      ['CIVITAI_TOKEN', 'HF_TOKEN', 'HOME', 'SSH_AUTH_SOCK', 'VAI_COMFY_REGISTRY_URL', 'VAI_MAX_INSTANCES', 'VAI_MAX_PRICE_PER_HOUR', 'VAI_SSH_PASSPHRASE', 'VAI_TOKEN_HOSTS_FOR_TESTS', 'VAST_API_KEY', 'VAST_URL', 'XDG_CONFIG_HOME'],
    );
  });

  it('leaves out unset and empty variables', () => {
    expect(requestEnvFrom({ VAST_API_KEY: '', SSH_AUTH_SOCK: undefined }, '/w')).toEqual({ cwd: '/w' });
  });

  it('reads the process environment and working directory by default', () => {
    setProcessEnv('VAI_SSH_PASSPHRASE', 'from-process');
    setProcessEnv('VAST_API_KEY', undefined);
    const env = requestEnvFrom();
    expect(env.cwd).toBe(process.cwd());
    expect(env.VAI_SSH_PASSPHRASE).toBe('from-process');
    expect('VAST_API_KEY' in env).toBe(false);
  });

  it('gives loadSettings what it needs to apply the caller\'s values', () => {
    const h = vaiHome({ vai_max_instances: 2 });
    const req = requestEnvFrom({ VAI_MAX_INSTANCES: '6', VAST_API_KEY: 'caller-key' }, '/w');
    expect(loadSettings(req, h)).toMatchObject({ maxInstances: 6, vastApiKey: 'caller-key' });
  });
});
