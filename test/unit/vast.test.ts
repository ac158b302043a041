/** The Vast provider's pure parts: status mapping, SSH endpoint choice, the offer query and ranking. */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../core/config/config.js';
import { boxStatusOf, offerQuery, rankingPrice, sshEndpointOf } from '../../core/providers/vast/provider.js';
import type { VastInstance } from '../../core/providers/vast/api.js';

const running: VastInstance = {
  id: 904123,
  label: 'vai-mcp:r:1',
  actual_status: 'running',
  intended_status: 'running',
  status_msg: 'success, running vastai/comfy',
  ssh_host: 'ssh5.vast.ai',
  ssh_port: 20882,
  public_ipaddr: '203.0.113.7',
  ports: { '22/tcp': [{ HostIp: '0.0.0.0', HostPort: '41022' }], '8188/tcp': [{ HostIp: '0.0.0.0', HostPort: '41188' }] },
};

describe('sshEndpointOf', () => {
  it('prefers direct 22/tcp on the public address, HostPort being a string', () => {
    expect(sshEndpointOf(running)).toEqual({ host: '203.0.113.7', port: 41022, user: 'root' });
  });
  it('falls back to the proxy host and port, one port up for jupyter runtypes', () => {
    expect(sshEndpointOf({ ...running, ports: null })).toEqual({ host: 'ssh5.vast.ai', port: 20882, user: 'root' });
    expect(sshEndpointOf({ ...running, ports: null, image_runtype: 'jupyter_direc ssh_direc ssh_proxy' })).toEqual({ host: 'ssh5.vast.ai', port: 20883, user: 'root' });
    expect(sshEndpointOf({ ...running, ports: null, ssh_host: null })).toBeUndefined();
  });
});

describe('boxStatusOf', () => {
  it('maps the life of a box', () => {
    expect(boxStatusOf({ ...running, actual_status: null, status_msg: null }).status).toBe('provisioning');
    expect(boxStatusOf({ ...running, actual_status: 'loading', status_msg: 'Pulling image vastai/comfy' })).toEqual({ status: 'loading', message: 'loading: Pulling image vastai/comfy' });
    expect(boxStatusOf(running)).toMatchObject({ status: 'running', ssh: { host: '203.0.113.7', port: 41022 } });
    expect(boxStatusOf({ ...running, ports: null, ssh_host: null }).status).toBe('loading'); // running, no endpoint yet
    expect(boxStatusOf({ ...running, actual_status: 'exited', intended_status: 'stopped' }).status).toBe('stopped');
  });
  it('fails fast on exited, offline, unknown, an error status_msg, and a box that is gone', () => {
    expect(boxStatusOf({ ...running, actual_status: 'exited' })).toMatchObject({ status: 'failed', message: expect.stringMatching(/exited/) });
    expect(boxStatusOf({ ...running, actual_status: 'offline' })).toMatchObject({ status: 'failed', message: expect.stringMatching(/offline/) });
    expect(boxStatusOf({ ...running, actual_status: 'unknown' }).status).toBe('failed');
    expect(boxStatusOf({ ...running, actual_status: 'loading', status_msg: 'Error response from daemon: pull access denied' })).toMatchObject({ status: 'failed', message: expect.stringMatching(/Error response from daemon/) });
    expect(boxStatusOf(null)).toEqual({ status: 'failed', message: 'the box no longer exists on Vast.ai' });
  });
});

describe('offerQuery and ranking', () => {
  it('asks for the GPU, count, disk and price cap, with allocated_storage so dph_total is the billed price', () => {
    const cfg = parseConfig({ instance_config: { gpu_name: 'RTX 4090', num_gpus: 2, disk_size: 60 } });
    const q = offerQuery(cfg, 0.8);
    expect(q).toMatchObject({
      gpu_name: { in: ['RTX 4090'] },
      num_gpus: { eq: 2 },
      disk_space: { gte: 60 },
      dph_total: { lte: 0.8 },
      allocated_storage: 60,
      rentable: { eq: true },
      rented: { eq: false },
      verified: { eq: true },
      order: [['dph_total', 'asc']],
    });
  });
  it('ranks by the hourly price plus a one-off model download at the offer\'s bandwidth price', () => {
    const cheapButSlow = { id: 1, gpu_name: 'RTX 4090', num_gpus: 1, dph_total: 0.40, inet_down_cost: 0.02 };
    const dearerButFree = { id: 2, gpu_name: 'RTX 4090', num_gpus: 1, dph_total: 0.45, inet_down_cost: 0 };
    expect(rankingPrice(cheapButSlow)).toBeCloseTo(0.6);
    expect(rankingPrice(dearerButFree)).toBeCloseTo(0.45);
    expect([cheapButSlow, dearerButFree].sort((a, b) => rankingPrice(a) - rankingPrice(b)).map((o) => o.id)).toEqual([2, 1]);
  });
});
