/** The config file: every bad-input case is a clear exit-2 error; good configs get their defaults. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfigFile, parseConfig } from '../../core/config.js';
import { vaiErrorOf } from '../helpers/errors.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'vai-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('parseConfig', () => {
  it('accepts {"provider": "local"} alone, with every default', () => {
    const cfg = parseConfig({ provider: 'local' });
    expect(cfg.provider).toBe('local');
    expect(cfg.instance_config).toMatchObject({ remote_port: 18188, ready_timeout_s: 1800, num_gpus: 1, gpu_index: 0, ssh_port: 22, ssh_user: 'root', env: {} });
    expect(cfg.instance_config.max_lifetime_s).toBeUndefined();
  });

  it('defaults the provider to vast when gpu_name is set, and requires it otherwise', () => {
    expect(parseConfig({ instance_config: { gpu_name: 'RTX 4090' } }).provider).toBe('vast');
    const e = vaiErrorOf(() => parseConfig({ instance_config: {} }, 'my.json'));
    expect(e.exitCode).toBe(2);
    expect(e.message).toBe('my.json: "provider" is missing.');
    expect(e.hint).toMatch(/local.*ssh.*vast/);
  });

  it('names unknown keys with their path, at the top level and nested', () => {
    const e = vaiErrorOf(() => parseConfig({ provider: 'local', instance_config: { gpu_nmae: 'x' }, workflw: {} }, 'c.json'));
    expect(e.exitCode).toBe(2);
    expect(e.message).toContain('c.json is not a valid config');
    expect(e.message).toContain('instance_config.gpu_nmae: unknown key');
    expect(e.message).toMatch(/^workflw: unknown key$/m);
    const nested = vaiErrorOf(() => parseConfig({ provider: 'local', instance_config: { simulate: { fial: 'boot' } } }));
    expect(nested.message).toContain('instance_config.simulate.fial: unknown key');
  });

  it('names the key and the expected type for a wrong type', () => {
    const e = vaiErrorOf(() => parseConfig({ provider: 'local', instance_config: { remote_port: '18188', env: { A: 1 } } }));
    expect(e.exitCode).toBe(2);
    expect(e.message).toMatch(/instance_config\.remote_port: .*expected number, received string/);
    expect(e.message).toMatch(/instance_config\.env\.A: .*expected string/);
  });

  it('refuses an unknown provider, listing the known ones', () => {
    const e = vaiErrorOf(() => parseConfig({ provider: 'aws' }));
    expect(e.message).toMatch(/provider: .*"local".*"ssh".*"vast"/);
  });

  it('refuses out-of-range numbers: ports, ready_timeout_s below 5, negative counts', () => {
    expect(vaiErrorOf(() => parseConfig({ provider: 'local', instance_config: { remote_port: 70000 } })).message).toMatch(/remote_port/);
    expect(vaiErrorOf(() => parseConfig({ provider: 'local', instance_config: { remote_port: 0 } })).message).toMatch(/remote_port/);
    expect(vaiErrorOf(() => parseConfig({ provider: 'local', instance_config: { ready_timeout_s: 4 } })).message).toMatch(/ready_timeout_s: .*>=5/);
    expect(parseConfig({ provider: 'local', instance_config: { ready_timeout_s: 5 } }).instance_config.ready_timeout_s).toBe(5);
    expect(vaiErrorOf(() => parseConfig({ provider: 'local', instance_config: { gpu_index: -1 } })).message).toMatch(/gpu_index/);
    expect(vaiErrorOf(() => parseConfig({ provider: 'local', instance_config: { simulate: { fail: 'sometimes' } } })).message).toMatch(/simulate\.fail/);
  });

  it('requires ssh_host with the ssh provider', () => {
    const e = vaiErrorOf(() => parseConfig({ provider: 'ssh' }, 'box.json'));
    expect(e.message).toBe('box.json: instance_config.ssh_host is required with provider "ssh".');
  });

  it('refuses what is not a JSON object', () => {
    for (const v of [null, [], 'local', 3]) expect(vaiErrorOf(() => parseConfig(v)).exitCode).toBe(2);
  });

  it('accepts a seed config of the original vai toolkit', () => {
    const seed = {
      workflow_name: 'flux_dev',
      description: 'Flux portrait',
      instance_config: {
        gpu_name: 'RTX 5090', gpu_index: 0, provisioning_script: 'flux.sh', disk_size: 100,
        github_user: 'someone', github_branch: 'main', note: 'seed note', ssh_key_path: '~/.ssh/id_ed25519',
      },
      parameters: { '13_Prompt': { node_type: 'CLIPTextEncode', node_id: 13, title: 'Prompt', values: ['a cat'], note: '' } },
      _internal: { original_structure: { workflow_info: {}, instance_config: {}, configurable_parameters: {}, workflow_links: [] } },
    };
    const cfg = parseConfig(seed);
    expect(cfg.provider).toBe('vast');
    expect(cfg.instance_config.gpu_name).toBe('RTX 5090');
    expect(cfg.instance_config.disk_size).toBe(100);
  });
});

describe('loadConfigFile', () => {
  it('names the file, line and column of malformed JSON', () => {
    const p = file('broken.json', '{\n  "provider": "local",\n  "instance_config": {,\n}');
    const e = vaiErrorOf(() => loadConfigFile(p));
    expect(e.exitCode).toBe(2);
    expect(e.message).toMatch(new RegExp(`^${p.replace(/[.]/g, '\\.')} is not valid JSON \\(line 3, column \\d+\\)`));
  });

  it('reports a missing file and a folder', () => {
    expect(vaiErrorOf(() => loadConfigFile(path.join(dir, 'nope.json'))).message).toMatch(/nope\.json does not exist/);
    expect(vaiErrorOf(() => loadConfigFile(dir)).message).toMatch(/is a folder/);
  });

  it('makes paths absolute against the config file\'s folder and expands ~', () => {
    const p = file('paths.json', JSON.stringify({
      provider: 'ssh',
      instance_config: { ssh_host: 'h', ssh_key_path: 'keys/id', provisioning_script: 'scripts/p.sh' },
      workflow: { file: 'wf/api.json', output_dir: '../out' },
    }));
    const cfg = loadConfigFile(p);
    expect(cfg.instance_config.ssh_key_path).toBe(path.join(dir, 'keys', 'id'));
    expect(cfg.instance_config.provisioning_script).toBe(path.join(dir, 'scripts', 'p.sh'));
    expect(cfg.workflow!.file).toBe(path.join(dir, 'wf', 'api.json'));
    expect(cfg.workflow!.output_dir).toBe(path.resolve(dir, '..', 'out'));
    const home = file('home.json', JSON.stringify({ provider: 'ssh', instance_config: { ssh_host: 'h', ssh_key_path: '~/.ssh/k', provisioning_script: 'https://example.org/p.sh' } }));
    const c2 = loadConfigFile(home);
    expect(c2.instance_config.ssh_key_path).toBe(path.join(os.homedir(), '.ssh', 'k'));
    expect(c2.instance_config.provisioning_script).toBe('https://example.org/p.sh'); // URLs stay as they are
  });
});
