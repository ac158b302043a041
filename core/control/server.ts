/** The supervisor's end of the control socket: serves an API, one request at a time per frame id. */
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { CallOptions, VaiApi } from '../api/api.js';
import { API_METHODS, type ApiMethod } from '../api/methods.js';
import { failure, toVaiError, VaiError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { ensurePrivateDir } from '../lib/paths.js';
import { onFrames, send, type ClientFrame } from './protocol.js';

/**
 * Serves an API on the control socket. The caller holds the supervisor lock, so a socket file
 * that is already there is stale and can be replaced.
 */
export async function serveControl(socketPath: string, api: VaiApi, log: Logger): Promise<net.Server> {
  if (process.platform !== 'win32') {
    ensurePrivateDir(path.dirname(socketPath), 'the control socket folder');
    if (existsSync(socketPath)) unlinkSync(socketPath);
  }
  const server = net.createServer((sock) => {
    sock.on('error', () => {});
    const waits = new Map<number, AbortController>();
    sock.on('close', () => {
      for (const ac of waits.values()) ac.abort(); // the caller is gone: end its waits, not the work
    });
    onFrames(
      sock,
      (raw) => {
        const frame = raw as ClientFrame;
        if (frame?.t === 'cancel') return waits.get(frame.id)?.abort();
        if (frame?.t !== 'req' || typeof frame.id !== 'number') return;
        const method = frame.method as ApiMethod;
        if (!API_METHODS.includes(method)) {
          send(sock, { t: 'err', id: frame.id, error: failure(`Unknown control method "${frame.method}".`, {
            cli: 'Client and supervisor versions differ: run `vai-mcp-cli daemon stop` and retry.',
            agent: 'Client and supervisor versions differ: ask the user to run `vai-mcp-cli daemon stop`, then retry.',
          }).toJSON() });
          return;
        }
        const ac = new AbortController();
        waits.set(frame.id, ac);
        const opts: CallOptions = {
          env: frame.env ?? {},
          signal: ac.signal,
          onProgress: (progress) => send(sock, { t: 'progress', id: frame.id, progress }),
        };
        const call = api[method] as (p: unknown, o: CallOptions) => Promise<unknown>;
        Promise.resolve()
          .then(() => call.call(api, frame.params ?? {}, opts))
          .then(
            (result) => send(sock, { t: 'res', id: frame.id, result }),
            (err) => {
              const e = toVaiError(err);
              if (!(err instanceof VaiError)) log.error(`${method} failed: ${(err as Error)?.stack ?? e.message}`);
              send(sock, { t: 'err', id: frame.id, error: e.toJSON() });
            },
          )
          .finally(() => waits.delete(frame.id));
      },
      (why) => {
        log.warn(`dropping a control connection: ${why}`);
        sock.destroy();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  if (process.platform !== 'win32') chmodSync(socketPath, 0o600);
  server.on('error', (err) => log.error(`control socket error: ${err.message}`));
  return server;
}
