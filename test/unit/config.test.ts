/**
 * core/config.ts: the config file (DESIGN.md section 2 "Config file", invariant 10).
 * Every bad input is a VaiError with exit code 2 whose message names what is wrong; good configs
 * get their defaults; paths become absolute against the config file's folder.
 * Real files in a temp dir; HOME is pointed at a temp dir where `~` is expanded.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigSchema,
  DEFAULT_READY_TIMEOUT_S,
  DEFAULT_REMOTE_PORT,
  formatIssues,
  loadConfigFile,
  parseConfig,
  resolveConfigPaths,
} from '../../core/config/config.js';
import type { VaiError } from '../../core/lib/errors.js';
import { badInputOf } from '../helpers/errors.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'vai-cfg-unit-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A config folder of its own per test, so relative paths have an unambiguous base. */
let dir: string;
let n = 0;
beforeEach(() => {
  dir = path.join(root, `case-${++n}`);
  mkdirSync(dir, { recursive: true });
});

/** Points `~` (os.homedir(), i.e. $HOME) at a temp folder for one test. */
let savedHome: { value: string | undefined } | undefined;
function fakeHome(): string {
  savedHome ??= { value: process.env.HOME };
  const h = path.join(root, `home-${n}`);
  mkdirSync(h, { recursive: true });
  process.env.HOME = h;
  expect(os.homedir()).toBe(h);
  return h;
}
afterEach(() => {
  if (savedHome) {
    if (savedHome.value === undefined) delete process.env.HOME;
    else process.env.HOME = savedHome.value;
  }
  savedHome = undefined;
});

function writeConfig(name: string, content: unknown): string {
  const p = path.join(dir, name);
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return p;
}


/** A config error: bad input with the generic code (not a port or key code). */
function configErrorOf(fn: () => unknown): VaiError {
  const e = badInputOf(fn);
  expect(e.code).toBe('bad_input');
  return e;
}

describe('parseConfig: good configs', () => {
  it('accepts {"provider": "local"} alone, with every default', () => {
    const cfg = parseConfig({ provider: 'local' });
    expect(cfg.provider).toBe('local');
    expect(DEFAULT_REMOTE_PORT).toBe(18188);
    expect(DEFAULT_READY_TIMEOUT_S).toBe(1800);
    expect(cfg.instance_config).toEqual({
      num_gpus: 1,
      gpu_index: 0,
      disk_size: 40,
      env: {},
      remote_port: 18188,
      ready_timeout_s: 1800,
      ssh_port: 22,
      ssh_user: 'root',
    });
    expect(cfg.instance_config.max_lifetime_s).toBeUndefined();
    expect(cfg.instance_config.ssh_key_path).toBeUndefined();
    expect(cfg.workflow).toBeUndefined();
  });

  it('defaults the provider to vast when instance_config.gpu_name is set', () => {
    const cfg = parseConfig({ instance_config: { gpu_name: 'RTX 4090', max_price_per_hour: 0.8 } });
    expect(cfg.provider).toBe('vast');
    expect(cfg.instance_config.gpu_name).toBe('RTX 4090');
    expect(cfg.instance_config.max_price_per_hour).toBe(0.8);
    // An explicit provider wins over the default.
    expect(parseConfig({ provider: 'local', instance_config: { gpu_name: 'RTX 4090' } }).provider).toBe('local');
  });

  it('accepts the full documented example with its values', () => {
    const example = {
      provider: 'vast',
      instance_config: {
        gpu_name: 'RTX 4090',
        num_gpus: 1,
        gpu_index: 0,
        max_price_per_hour: 0.8,
        disk_size: 40,
        image: 'vastai/comfy:@vastai-automatic-tag',
        remote_port: 18188,
        provisioning_script: 'https://example.org/provision.sh',
        ssh_key_path: '~/.ssh/id_ed25519',
        ready_timeout_s: 1800,
        env: { HF_TOKEN_NAME: 'x' },
      },
      workflow: { file: 'workflow_api.json', parameters: { seed: 3 }, output_dir: './outputs' },
    };
    const cfg = parseConfig(example, 'example.json');
    expect(cfg.provider).toBe('vast');
    expect(cfg.instance_config).toMatchObject(example.instance_config);
    expect(cfg.workflow).toEqual(example.workflow);
  });

  it('accepts an ssh config with ssh_host, defaulting ssh_port 22 and ssh_user root', () => {
    const cfg = parseConfig({ provider: 'ssh', instance_config: { ssh_host: 'gpu.example.org' } });
    expect(cfg.provider).toBe('ssh');
    expect(cfg.instance_config).toMatchObject({ ssh_host: 'gpu.example.org', ssh_port: 22, ssh_user: 'root', remote_port: 18188 });
  });

  it('accepts ready_timeout_s of exactly 5 and ports 1 and 65535', () => {
    const cfg = parseConfig({ provider: 'local', instance_config: { ready_timeout_s: 5, remote_port: 65535, ssh_port: 1 } });
    expect(cfg.instance_config.ready_timeout_s).toBe(5);
    expect(cfg.instance_config.remote_port).toBe(65535);
    expect(cfg.instance_config.ssh_port).toBe(1);
  });

  it('accepts a seed config of the original vai toolkit, keeping what has meaning here', () => {
    const seed = {
      workflow_name: 'flux_dev_portrait',
      description: 'Flux portrait generation',
      instance_config: {
        gpu_name: 'RTX 5090',
        gpu_index: 0,
        provisioning_script: 'flux.sh',
        disk_size: 100,
        github_user: 'someone',
        github_branch: 'main',
        note: 'Uses the Flux provisioning script',
        ssh_key_path: '~/.ssh/id_ed25519',
      },
      parameters: {
        '13_Prompt': { node_type: 'CLIPTextEncode', node_id: 13, title: 'Prompt', values: ['a cat in a hat'], note: 'main prompt' },
        '25_Seed': { node_type: 'KSampler', node_id: 25, title: 'Seed', values: [42, 'randomize'], note: '' },
      },
      _internal: {
        original_structure: { workflow_info: { name: 'x' }, instance_config: {}, configurable_parameters: {}, workflow_links: [[1, 2, 0, 3, 0, 'MODEL']] },
      },
    };
    const cfg = parseConfig(seed, 'seed.json');
    expect(cfg.provider).toBe('vast'); // gpu_name set, no provider: vast
    expect(cfg.instance_config).toMatchObject({ gpu_name: 'RTX 5090', gpu_index: 0, disk_size: 100, provisioning_script: 'flux.sh', ssh_key_path: '~/.ssh/id_ed25519' });
    expect(cfg.workflow_name).toBe('flux_dev_portrait');
  });

  it('does not change the object it is given', () => {
    const raw = { provider: 'local', instance_config: { remote_port: 9000 } };
    const copy = structuredClone(raw);
    parseConfig(raw);
    expect(raw).toEqual(copy);
  });
});

describe('parseConfig: bad input is exit 2 and names what is wrong', () => {
  it('refuses what is not a JSON object', () => {
    for (const v of [null, [], 'local', 3, true]) {
      const e = configErrorOf(() => parseConfig(v, 'cfg.json'));
      expect(e.message).toContain('cfg.json');
    }
  });

  it('names an unknown top-level key', () => {
    const e = configErrorOf(() => parseConfig({ provider: 'local', workflw: { file: 'a.json' } }, 'top.json'));
    expect(e.message).toContain('top.json');
    expect(e.message).toMatch(/^workflw: unknown key$/m);
  });

  it('names an unknown nested key with its full path (instance_config.gpu_nmae)', () => {
    const e = configErrorOf(() => parseConfig({ provider: 'vast', instance_config: { gpu_nmae: 'RTX 4090' } }, 'typo.json'));
    expect(e.message).toContain('typo.json');
    expect(e.message).toMatch(/^instance_config\.gpu_nmae: unknown key$/m);
    // Deeper and in the other sections too.
    expect(configErrorOf(() => parseConfig({ provider: 'local', instance_config: { simulate: { fial: 'boot' } } })).message)
      .toMatch(/^instance_config\.simulate\.fial: unknown key$/m);
    expect(configErrorOf(() => parseConfig({ provider: 'local', workflow: { file: 'w.json', outptu_dir: 'o' } })).message)
      .toMatch(/^workflow\.outptu_dir: unknown key$/m);
  });

  it('names every unknown key when there are several', () => {
    const e = configErrorOf(() => parseConfig({ provider: 'local', foo: 1, instance_config: { gpu_nmae: 'x', remote_prot: 1 } }));
    expect(e.message).toMatch(/^foo: unknown key$/m);
    expect(e.message).toMatch(/^instance_config\.gpu_nmae: unknown key$/m);
    expect(e.message).toMatch(/^instance_config\.remote_prot: unknown key$/m);
  });

  it('names the key and the expected type for a wrong type', () => {
    const cases: [unknown, RegExp][] = [
      [{ provider: 'local', instance_config: { remote_port: '18188' } }, /instance_config\.remote_port: .*expected number, received string/],
      [{ provider: 'local', instance_config: { num_gpus: '1' } }, /instance_config\.num_gpus: .*expected number/],
      [{ provider: 'local', instance_config: 'big' }, /instance_config: .*expected object, received string/],
      [{ provider: 'local', instance_config: { env: { A: 1 } } }, /instance_config\.env\.A: .*expected string/],
      [{ provider: 'local', workflow: { file: 7 } }, /workflow\.file: .*expected string/],
      [{ provider: 3 }, /^provider: /m],
    ];
    for (const [raw, re] of cases) expect(configErrorOf(() => parseConfig(raw)).message).toMatch(re);
  });

  it('refuses an unknown provider, naming the key and the known providers', () => {
    const e = configErrorOf(() => parseConfig({ provider: 'aws' }, 'p.json'));
    expect(e.message).toContain('p.json');
    expect(e.message).toMatch(/^provider: /m);
    for (const known of ['local', 'ssh', 'vast']) expect(e.message).toContain(`"${known}"`);
  });

  it('requires a provider when there is no gpu_name, saying which ones exist', () => {
    for (const raw of [{}, { instance_config: {} }, { instance_config: { remote_port: 9000 } }]) {
      const e = configErrorOf(() => parseConfig(raw, 'noprov.json'));
      expect(e.message).toContain('noprov.json');
      expect(e.message).toContain('"provider" is missing');
      expect(e.hint).toMatch(/local/);
      expect(e.hint).toMatch(/ssh/);
      expect(e.hint).toMatch(/vast/);
    }
  });

  it('requires ssh_host with the ssh provider', () => {
    const e = configErrorOf(() => parseConfig({ provider: 'ssh', instance_config: { ssh_user: 'ubuntu' } }, 'box.json'));
    expect(e.message).toContain('box.json');
    expect(e.message).toContain('instance_config.ssh_host');
    expect(e.message).toMatch(/ssh/);
    expect(e.hint).toMatch(/ssh_host/);
  });

  it('refuses ready_timeout_s below 5', () => {
    for (const v of [4, 4.99, 0, -10]) {
      expect(configErrorOf(() => parseConfig({ provider: 'local', instance_config: { ready_timeout_s: v } })).message)
        .toMatch(/^instance_config\.ready_timeout_s: .*5/m);
    }
  });

  it('refuses ports out of range (remote_port and ssh_port), and non-integer ports', () => {
    const cases: [string, unknown][] = [
      ['remote_port', 0],
      ['remote_port', 65536],
      ['remote_port', -1],
      ['remote_port', 8188.5],
      ['ssh_port', 0],
      ['ssh_port', 70000],
    ];
    for (const [key, value] of cases) {
      const e = configErrorOf(() => parseConfig({ provider: 'local', instance_config: { [key]: value } }));
      expect(e.message).toMatch(new RegExp(`^instance_config\\.${key}: `, 'm'));
    }
  });

  it('takes the guard keys, and refuses a guard mode or an allow-list entry it does not know', () => {
    const ic = parseConfig({ provider: 'local', instance_config: { guard: 'off', allowed_origins: ['http://localhost:3000'], allowed_hosts: ['alias:9000'] } }).instance_config;
    expect(ic).toMatchObject({ guard: 'off', allowed_origins: ['http://localhost:3000'], allowed_hosts: ['alias:9000'] });
    expect(configErrorOf(() => parseConfig({ provider: 'local', instance_config: { guard: 'tcp' } })).message).toMatch(/^instance_config\.guard: /m);
    expect(configErrorOf(() => parseConfig({ provider: 'local', instance_config: { allowed_origins: ['*'] } })).message)
      .toMatch(/^instance_config\.allowed_origins: "\*" is not an origin/m);
    expect(configErrorOf(() => parseConfig({ provider: 'local', instance_config: { allowed_hosts: ['http://alias'] } })).message)
      .toMatch(/^instance_config\.allowed_hosts: "http:\/\/alias" is not a host/m);
  });

  it('refuses other out-of-range values: a negative gpu_index, an unknown simulate.fail', () => {
    expect(configErrorOf(() => parseConfig({ provider: 'local', instance_config: { gpu_index: -1 } })).message).toMatch(/instance_config\.gpu_index/);
    expect(configErrorOf(() => parseConfig({ provider: 'local', instance_config: { simulate: { fail: 'sometimes' } } })).message)
      .toMatch(/instance_config\.simulate\.fail/);
  });
});

describe('formatIssues', () => {
  function issuesOf(raw: unknown) {
    const r = ConfigSchema.safeParse(raw);
    expect(r.success).toBe(false);
    return r.error!.issues;
  }

  it('prints unknown keys one per line, with their path, and no leading dot at the top level', () => {
    const text = formatIssues(issuesOf({ provider: 'local', zap: 1, zip: 2, instance_config: { gpu_nmae: 'x' } }));
    const lines = text.split('\n').sort();
    expect(lines).toEqual(['instance_config.gpu_nmae: unknown key', 'zap: unknown key', 'zip: unknown key']);
  });

  it('prints other issues as "path: message", and "(top level)" for the root', () => {
    const text = formatIssues(issuesOf({ provider: 'local', instance_config: { remote_port: 'x' } }));
    expect(text).toMatch(/^instance_config\.remote_port: .+/);
    expect(text.split('\n')).toHaveLength(1);
    expect(formatIssues(issuesOf('not an object'))).toMatch(/^\(top level\): .+/);
  });
});

describe('loadConfigFile', () => {
  it('loads a good file', () => {
    const p = writeConfig('local.json', { provider: 'local' });
    const cfg = loadConfigFile(p);
    expect(cfg.provider).toBe('local');
    expect(cfg.instance_config.remote_port).toBe(18188);
  });

  it('reports a missing file, naming it', () => {
    const missing = path.join(dir, 'nope.json');
    const e = configErrorOf(() => loadConfigFile(missing));
    expect(e.message).toContain(missing);
    expect(e.message).toMatch(/does not exist/);
    expect(e.hint).toBeTruthy();
  });

  it('reports a folder given as the config file', () => {
    const e = configErrorOf(() => loadConfigFile(dir));
    expect(e.message).toContain(dir);
    expect(e.message).toMatch(/folder/);
  });

  it('reports validation errors with the absolute file name', () => {
    const p = writeConfig('typo.json', { provider: 'vast', instance_config: { gpu_nmae: 'RTX 4090' } });
    const e = configErrorOf(() => loadConfigFile(p));
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/^instance_config\.gpu_nmae: unknown key$/m);
  });

  describe('malformed JSON names the file, the line and the column', () => {
    it('a trailing comma', () => {
      const p = writeConfig('trailing.json', '{\n  "provider": "local",\n}\n');
      const e = configErrorOf(() => loadConfigFile(p));
      expect(e.message).toContain(p);
      expect(e.message).toMatch(/not valid JSON/);
      expect(e.message).toContain('line 3, column 1');
    });

    it('a missing comma between properties', () => {
      const p = writeConfig('comma.json', '{\n  "provider": "local"\n  "instance_config": {}\n}\n');
      const e = configErrorOf(() => loadConfigFile(p));
      expect(e.message).toContain(p);
      expect(e.message).toContain('line 3, column 3');
    });

    it('an unquoted value ("provider": local)', () => {
      // The bad token `local` starts at line 2, column 15.
      const p = writeConfig('unquoted.json', '{\n  "provider": local\n}\n');
      const e = configErrorOf(() => loadConfigFile(p));
      expect(e.message).toContain(p);
      expect(e.message).toMatch(/not valid JSON/);
      expect(e.message).toContain('line 2, column 15');
    });

    it('a file that ends right after a key', () => {
      // JSON.parse says only "Unexpected end of JSON input" here: the location is the end, line 2.
      const p = writeConfig('ends.json', '{\n  "provider":');
      const e = configErrorOf(() => loadConfigFile(p));
      expect(e.message).toContain(p);
      expect(e.message).toMatch(/not valid JSON/);
      expect(e.message).toMatch(/line 2, column \d+/);
    });

    it('an empty file', () => {
      const p = writeConfig('empty.json', '');
      const e = configErrorOf(() => loadConfigFile(p));
      expect(e.message).toContain(p);
      expect(e.message).toMatch(/not valid JSON/);
    });

    it('a file cut short', () => {
      const p = writeConfig('cut.json', '{\n  "provider": "local",\n  "instance_config": {');
      const e = configErrorOf(() => loadConfigFile(p));
      expect(e.message).toContain(p);
      expect(e.message).toMatch(/not valid JSON/);
      expect(e.message).toMatch(/line 3, column \d+/);
    });
  });

  it('makes relative paths absolute against the config file\'s folder, not the working directory', () => {
    const p = writeConfig('sub/box.json', {
      provider: 'ssh',
      instance_config: { ssh_host: 'h', ssh_key_path: 'keys/id_test', provisioning_script: 'scripts/provision.sh' },
      workflow: { file: 'wf/api.json', output_dir: '../out' },
    });
    const base = path.join(dir, 'sub');
    expect(process.cwd()).not.toBe(base);
    const cfg = loadConfigFile(p);
    expect(cfg.instance_config.ssh_key_path).toBe(path.join(base, 'keys', 'id_test'));
    expect(cfg.instance_config.provisioning_script).toBe(path.join(base, 'scripts', 'provision.sh'));
    expect(cfg.workflow!.file).toBe(path.join(base, 'wf', 'api.json'));
    expect(cfg.workflow!.output_dir).toBe(path.join(dir, 'out'));
  });

  it('resolves the default output_dir against the config file\'s folder', () => {
    const p = writeConfig('wf.json', { provider: 'local', workflow: { file: 'api.json' } });
    const cfg = loadConfigFile(p);
    expect(cfg.workflow!.output_dir).toBe(path.join(dir, 'outputs'));
    expect(cfg.workflow!.file).toBe(path.join(dir, 'api.json'));
  });

  it('expands ~ in paths inside the file and in the file name itself, and keeps URLs and absolute paths', () => {
    const home = fakeHome();
    writeFileSync(path.join(home, 'cfg.json'), JSON.stringify({
      provider: 'vast',
      instance_config: { gpu_name: 'RTX 4090', ssh_key_path: '~/.ssh/id_ed25519', provisioning_script: 'https://example.org/p.sh' },
      workflow: { file: '~/wf/api.json', output_dir: '/abs/out' },
    }));
    const cfg = loadConfigFile('~/cfg.json');
    expect(cfg.instance_config.ssh_key_path).toBe(path.join(home, '.ssh', 'id_ed25519'));
    expect(cfg.instance_config.provisioning_script).toBe('https://example.org/p.sh');
    expect(cfg.workflow!.file).toBe(path.join(home, 'wf', 'api.json'));
    expect(cfg.workflow!.output_dir).toBe('/abs/out');
  });
});

describe('resolveConfigPaths', () => {
  it('makes every path absolute against the base folder and expands ~', () => {
    const home = fakeHome();
    const cfg = parseConfig({
      provider: 'ssh',
      instance_config: { ssh_host: 'h', ssh_key_path: '~/k/id', provisioning_script: './p.sh' },
      workflow: { file: 'a/w.json', output_dir: '~/outs' },
    });
    const base = path.join(dir, 'base');
    const out = resolveConfigPaths(cfg, base);
    expect(out.instance_config.ssh_key_path).toBe(path.join(home, 'k', 'id'));
    expect(out.instance_config.provisioning_script).toBe(path.join(base, 'p.sh'));
    expect(out.workflow!.file).toBe(path.join(base, 'a', 'w.json'));
    expect(out.workflow!.output_dir).toBe(path.join(home, 'outs'));
    // The input is left as it was.
    expect(cfg.instance_config.ssh_key_path).toBe('~/k/id');
    expect(cfg.workflow!.file).toBe('a/w.json');
  });

  it('leaves a provisioning_script URL as it is, and resolves one that is a file name', () => {
    for (const url of ['https://example.org/provision.sh', 'http://10.0.0.1:8000/p.sh']) {
      const cfg = parseConfig({ provider: 'local', instance_config: { provisioning_script: url } });
      expect(resolveConfigPaths(cfg, dir).instance_config.provisioning_script).toBe(url);
    }
    const file = parseConfig({ provider: 'local', instance_config: { provisioning_script: 'flux.sh' } });
    expect(resolveConfigPaths(file, dir).instance_config.provisioning_script).toBe(path.join(dir, 'flux.sh'));
  });

  it('leaves absent paths absent', () => {
    const out = resolveConfigPaths(parseConfig({ provider: 'local' }), dir);
    expect(out.instance_config.ssh_key_path).toBeUndefined();
    expect(out.instance_config.provisioning_script).toBeUndefined();
    expect(out.workflow).toBeUndefined();
  });
});
