/**
 * The simulator's stand-in for a box's other apps (the Instance Portal, Jupyter, an app of the
 * user's own): a page that says which app of which box answered, so each local port can be told
 * apart.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';

/** PORTAL_CONFIG as vastai/comfy sets it, with ComfyUI on the box's own port. */
export function simulatedPortalConfig(comfyPort: number): string {
  return [
    'localhost:1111:11111:/:Instance Portal',
    `localhost:8188:${comfyPort}:/:ComfyUI`,
    'localhost:8080:18080:/:Jupyter',
    'localhost:8384:18384:/:Syncthing',
  ].join('|');
}

export class SideApps {
  private readonly server: http.Server;
  private readonly streams = new Set<Duplex>();

  constructor(instanceId: string, private readonly names: ReadonlyMap<number, string>) {
    this.server = http.createServer((req, res) => {
      const port = (req.socket as unknown as { vaiPort: number }).vaiPort; // the SSH channel it came on (handle)
      const name = this.names.get(port) ?? 'app';
      const body = `<!doctype html><title>${name} on ${instanceId}</title><h1>${name}</h1><p>vai-mcp simulator: app "${name}" on ${instanceId}, port ${port}.</p>\n`;
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
  }

  serves(port: number): boolean {
    return this.names.has(port);
  }

  handle(stream: Duplex, port: number): void {
    (stream as unknown as { vaiPort: number }).vaiPort = port;
    this.streams.add(stream);
    stream.once('close', () => this.streams.delete(stream));
    this.server.emit('connection', stream);
  }

  close(): void {
    for (const s of this.streams) s.destroy();
    this.streams.clear();
    this.server.close();
  }
}
