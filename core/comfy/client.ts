/**
 * ComfyUI's HTTP API, as far as vai-mcp needs it. Readiness: `GET /api/system_stats` answers 200.
 */
import http from 'node:http';

export interface SystemStats {
  system?: { comfyui_version?: string };
  devices?: { name: string }[];
}

/** A GET without connection pooling (a health check must not leave a socket open in the tunnel). */
export function httpGetJson<T>(url: string, timeoutMs = 5000): Promise<{ status: number; body: T }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve({ status: res.statusCode ?? 0, body: (text ? JSON.parse(text) : undefined) as T });
        } catch {
          reject(new Error(`GET ${url} answered ${res.statusCode} with a body that is not JSON`));
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** ComfyUI's health check through a tunnel's URL; throws when it does not answer 200 in time. */
export async function getSystemStats(baseUrl: string, timeoutMs = 5000): Promise<SystemStats> {
  const { status, body } = await httpGetJson<SystemStats>(new URL('/api/system_stats', baseUrl).toString(), timeoutMs);
  if (status !== 200) throw new Error(`ComfyUI answered ${status} to GET /api/system_stats`);
  return body;
}
