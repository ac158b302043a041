/**
 * A box's apps: `instance_config.ports` (names, ports, per-app guards, ComfyUI's port in one
 * place), PORTAL_CONFIG read as vastai/comfy writes it, and the guard taking the dashboard's
 * cookie off every request head it forwards.
 */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../core/config/config.js';
import { appsOf, portalApps } from '../../core/model/apps.js';
import { RequestFramer } from '../../core/tunnels/http-framing.js';

const VASTAI_COMFY = 'localhost:1111:11111:/:Instance Portal|localhost:8188:18188:/:ComfyUI|localhost:8080:18080:/:Jupyter|localhost:8080:8080:/terminals/1:Jupyter Terminal|localhost:8384:18384:/:Syncthing';

describe('instance_config.ports', () => {
  it('is ComfyUI alone without it, and ComfyUI first with it; each app keeps its own guard', () => {
    const none = parseConfig({ provider: 'local' }).instance_config;
    expect(appsOf(none)).toEqual([{ name: 'comfyui', remote_port: 18188, guard: 'http' }]);
    const ic = parseConfig({ provider: 'local', instance_config: { ports: { portal: 11111, comfyui: 18200, agent: { port: 9000, guard: 'off' } } } }).instance_config;
    expect(ic.remote_port).toBe(18200); // ComfyUI's port is one number, wherever it was written
    expect(appsOf(ic)).toEqual([
      { name: 'comfyui', remote_port: 18200, guard: 'http' },
      { name: 'portal', remote_port: 11111, guard: 'http' },
      { name: 'agent', remote_port: 9000, guard: 'off' },
    ]);
  });

  it('refuses bad names and ports, and two ComfyUI ports that disagree', () => {
    expect(() => parseConfig({ provider: 'local', instance_config: { ports: { Portal: 11111 } } })).toThrow(/instance_config\.ports: "portal", or an object from app name/);
    expect(() => parseConfig({ provider: 'local', instance_config: { ports: { portal: 70000 } } })).toThrow(/instance_config\.ports\.portal/);
    expect(() => parseConfig({ provider: 'local', instance_config: { ports: 'all' } })).toThrow(/instance_config\.ports/);
    expect(() => parseConfig({ provider: 'local', instance_config: { remote_port: 18188, ports: { comfyui: 18200 } } })).toThrow(/remote_port \(18188\) and instance_config\.ports\.comfyui \(18200\) disagree/);
  });

  it('"portal" takes PORTAL_CONFIG by inner ports, one name per port, ComfyUI as comfyui', () => {
    expect(portalApps(VASTAI_COMFY, 18188)).toEqual({ instance_portal: 11111, comfyui: 18188, jupyter: 18080, jupyter_terminal: 8080, syncthing: 18384 });
    expect(portalApps('', 18188)).toEqual({});
    expect(portalApps('garbage|localhost:1:x:/:Bad|localhost:2:3000:/:9lives', 18188)).toEqual({ app_3000: 3000 });
    const ic = parseConfig({ provider: 'local', instance_config: { ports: 'portal' } }).instance_config;
    expect(appsOf(ic).map((a) => a.name)).toEqual(['comfyui']); // until PORTAL_CONFIG is known
    expect(appsOf(ic, VASTAI_COMFY).map((a) => `${a.name}:${a.remote_port}`)).toEqual(['comfyui:18188', 'instance_portal:11111', 'jupyter:18080', 'jupyter_terminal:8080', 'syncthing:18384']);
  });
});

describe("the dashboard's cookie", () => {
  const pass = (head: string) => {
    let out = '';
    new RequestFramer(() => undefined).feed(Buffer.from(head, 'latin1'), (b) => (out += b.toString('latin1')));
    return out;
  };

  it('never reaches a box: the guard takes it off the Cookie line, and drops a line left empty', () => {
    expect(pass('GET / HTTP/1.1\r\nHost: localhost:8188\r\nCookie: a=1; vai_mcp_ui=SECRET; b=2\r\n\r\n')).toBe('GET / HTTP/1.1\r\nHost: localhost:8188\r\nCookie: a=1; b=2\r\n\r\n');
    expect(pass('GET / HTTP/1.1\r\nHost: localhost:8188\r\ncookie: vai_mcp_ui=SECRET\r\nAccept: */*\r\n\r\n')).toBe('GET / HTTP/1.1\r\nHost: localhost:8188\r\nAccept: */*\r\n\r\n');
    const other = 'GET / HTTP/1.1\r\nHost: localhost:8188\r\nCookie: not_vai_mcp_ui=1\r\n\r\n';
    expect(pass(other)).toBe(other);
  });
});
