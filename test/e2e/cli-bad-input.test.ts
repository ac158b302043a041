/**
 * Bad input through the built CLI (DESIGN.md invariant 10): each case gets a clear message naming
 * what is wrong, exit code 2, and changes no state.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSandbox, type Sandbox } from '../helpers/cli.js';

interface Snapshot {
  instances: string[];
  tunnels: string[];
}

describe('bad input: clear message, exit 2, state unchanged', () => {
  let sb: Sandbox;
  let before: Snapshot;

  async function snapshot(): Promise<Snapshot> {
    const instances = await sb.json<{ instance_id: string; status: string }[]>(['list', '--json']);
    const tunnels = await sb.json<{ instance_id: string; local_port: number; state: string }[]>(['tunnel', '--list', '--json']);
    return {
      instances: instances.map((i) => `${i.instance_id}:${i.status}`),
      tunnels: tunnels.map((t) => `${t.instance_id}:${t.local_port}:${t.state}`),
    };
  }

  /** Runs a command that must be refused as bad input, and checks nothing changed. */
  async function refused(args: string[], message: RegExp, env?: NodeJS.ProcessEnv): Promise<string> {
    const r = await sb.cli(args, { env });
    expect(r.code, `${args.join(' ')}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/^error: /);
    if (args.includes('--json')) expect(r.stdout).toBe('');
    expect(await snapshot()).toEqual(before);
    return r.stderr;
  }

  beforeAll(async () => {
    sb = makeSandbox();
    const made = await sb.cli(['create', '--count', '2', sb.writeFile('local.json', { provider: 'local' })]);
    expect(made.code, made.stderr).toBe(0);
    before = await snapshot();
    expect(before.tunnels).toHaveLength(2);
  });
  afterAll(async () => {
    await sb.cleanup();
  });

  it('malformed JSON names the file and the line', async () => {
    const file = sb.writeFile('broken.json', '{\n  "provider": "local",\n  "instance_config": {\n}');
    await refused(['create', file, '--json'], new RegExp(`${file.replace(/[.]/g, '\\.')} is not valid JSON \\(line \\d+, column \\d+\\)`));
  });

  it('an unknown config key is named with its path', async () => {
    const stderr = await refused(['create', sb.writeFile('typo.json', { provider: 'local', instance_config: { gpu_nmae: 'RTX 4090' } })], /instance_config\.gpu_nmae: unknown key/);
    expect(stderr).toContain('typo.json');
    await refused(['create', sb.writeFile('typo2.json', { provider: 'local', workflw: {} })], /workflw: unknown key/);
  });

  it('a wrong type names the key and what was expected', async () => {
    await refused(['create', sb.writeFile('type.json', { provider: 'local', instance_config: { remote_port: '18188' } })], /instance_config\.remote_port: .*expected number/i);
    await refused(['create', sb.writeFile('type2.json', { provider: 'local', instance_config: { ready_timeout_s: 1 } })], /ready_timeout_s/);
  });

  it('an unknown or missing provider is refused', async () => {
    await refused(['create', sb.writeFile('prov.json', { provider: 'aws' })], /provider: .*"local"/);
    await refused(['create', sb.writeFile('noprov.json', { instance_config: {} })], /"provider" is missing/);
  });

  it('a missing config file', async () => {
    await refused(['create', path.join(sb.home, 'nope.json')], /does not exist/);
  });

  it('an unknown instance id', async () => {
    await refused(['tunnel', 'local-99'], /Unknown instance id "local-99"/);
    await refused(['tunnel', '--stop', 'local-99', '--json'], /Unknown instance id "local-99"/);
    await refused(['destroy', 'local-99', '--yes'], /Unknown instance id "local-99"/);
  });

  it('--port outside 1024-65535 or not a number', async () => {
    await refused(['tunnel', 'local-1', '--port', '80'], /Port 80 is out of range/);
    await refused(['tunnel', 'local-1', '--port', '65536'], /Port 65536 is out of range/);
    await refused(['tunnel', 'local-1', '--port', 'abc'], /--port must be a whole number/);
  });

  it('--port taken by another program or by another tunnel', async () => {
    const squatter = net.createServer();
    const port = sb.basePort + 30;
    await new Promise<void>((r) => squatter.listen(port, '127.0.0.1', () => r()));
    try {
      await refused(['tunnel', 'local-1', '--port', String(port)], new RegExp(`Port ${port} is taken by another program`));
    } finally {
      squatter.close();
    }
    const other = Number(before.tunnels[1]!.split(':')[1]);
    await refused(['tunnel', 'local-1', '--port', String(other)], new RegExp(`Port ${other} is already used by the tunnel of local-2`));
  });

  it('a missing, unreadable or encrypted key file (ssh provider)', async () => {
    const cfg = (key: string) => sb.writeFile(`ssh-${path.basename(key)}.json`, { provider: 'ssh', instance_config: { ssh_host: '127.0.0.1', ssh_key_path: key } });
    await refused(['create', cfg('./no-such-key')], /SSH key file .*no-such-key does not exist/);
    const folder = path.join(path.dirname(sb.home), 'a-folder');
    mkdirSync(folder, { recursive: true });
    await refused(['create', cfg(folder)], /is a folder/);
    const garbage = path.join(path.dirname(sb.home), 'garbage_key');
    writeFileSync(garbage, 'not a key at all\n');
    await refused(['create', cfg(garbage)], /not a private key/);
    const encrypted = path.join(path.dirname(sb.home), 'enc_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'sesame', '-f', encrypted]);
    const stderr = await refused(['create', cfg(encrypted)], /is encrypted and no passphrase was given/);
    expect(stderr).toMatch(/VAI_SSH_PASSPHRASE/);
    const wrong = await refused(['create', cfg(encrypted)], /passphrase .* is wrong/, { VAI_SSH_PASSPHRASE: 'open-barley' });
    expect(wrong).not.toContain('open-barley'); // never echo a secret
  });

  it('destroy without --yes and without a terminal', async () => {
    await refused(['destroy', 'local-1'], /needs --yes/);
    await refused(['destroy', '--all'], /needs --yes/);
  });

  it('bad usage: unknown command, unknown option, bad --count, conflicting modes', async () => {
    await refused(['frobnicate'], /Unknown command "frobnicate"/);
    await refused(['list', '--colour'], /Unknown option `--colour`/);
    await refused(['create', sb.writeFile('c.json', { provider: 'local' }), '--count', '0'], /--count must be from 1 to 10/);
    await refused(['create', sb.writeFile('c.json', { provider: 'local' }), '--count', '11'], /--count must be from 1 to 10/);
    await refused(['tunnel', '--list', '--stop-all'], /exactly one of/);
    await refused(['tunnel', 'local-1', '--stop', 'local-2'], /exactly one of/);
  });

  it('a config with the original toolkit\'s own keys is accepted', async () => {
    const seed = sb.writeFile('seed.json', {
      workflow_name: 'flux_portrait',
      description: 'from the original vai toolkit',
      provider: 'local',
      instance_config: { gpu_index: 0, disk_size: 100, github_user: 'someone', github_branch: 'main', note: 'seed', provisioning_script: 'x.sh' },
      parameters: { '13_Prompt': { node_type: 'CLIPTextEncode', node_id: 13, title: 'Prompt', values: ['a cat'] } },
      _internal: { original_structure: { workflow_info: {}, instance_config: {}, configurable_parameters: {}, workflow_links: [] } },
    });
    const r = await sb.cli(['create', seed, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const [inst] = JSON.parse(r.stdout) as { instance_id: string; status: string }[];
    expect(inst!.status).toBe('ready');
    const d = await sb.cli(['destroy', inst!.instance_id, '--yes']);
    expect(d.code).toBe(0);
    expect(await snapshot()).toEqual(before);
  });
});
