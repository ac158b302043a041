/**
 * The `local` provider's ComfyUI-like app (DESIGN.md section 5). One app per simulated box; it
 * never listens on a port of its own: the box's SSH server hands it each forwarded channel, so
 * "localhost:18188" on box A is a different app than on box B, as on real separate machines.
 */
import http from 'node:http';
import os from 'node:os';
import type { Duplex } from 'node:stream';

export interface ComfyApp {
  /** Serves one connection (a forwarded SSH channel). */
  handle(stream: Duplex): void;
  close(): void;
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function page(instanceId: string): string {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>ComfyUI (simulated) - ${instanceId}</title></head>
<body style="font-family: sans-serif">
<h1>ComfyUI (simulated)</h1>
<p>instance_id: <code id="instance-id">${instanceId}</code></p>
<p>This is vai-mcp's built-in <code>local</code> simulator: a stand-in for a ComfyUI box, reached
through its own SSH tunnel. <a href="/api/system_stats">/api/system_stats</a></p>
</body></html>
`;
}

export function createComfyApp(instanceId: string): ComfyApp {
  const startedAt = Date.now();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method === 'GET' && url.pathname === '/') {
      const body = page(instanceId);
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-instance-id': instanceId });
      res.end(body);
      return;
    }
    if (req.method === 'GET' && url.pathname === '/api/system_stats') {
      json(res, 200, {
        system: {
          os: 'posix',
          python_version: '3.12.0 (simulated)',
          embedded_python: false,
          comfyui_version: '0.3.0-vai-sim',
          argv: ['main.py', '--port', '18188'],
          ram_total: os.totalmem(),
          ram_free: os.freemem(),
          uptime_s: Math.round((Date.now() - startedAt) / 1000),
        },
        devices: [{ name: 'cuda:0 simulated GPU', type: 'cuda', index: 0, vram_total: 25769803776, vram_free: 25000000000 }],
        instance_id: instanceId,
      });
      return;
    }
    json(res, 404, { error: `not found: ${req.method} ${url.pathname}`, instance_id: instanceId });
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  return {
    handle(stream) {
      server.emit('connection', stream);
    },
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}
