/** Small network probes the tests share: a GET through a tunnel, and "is this port free?". */
import http from 'node:http';
import net from 'node:net';

/** GET http://127.0.0.1:<port><path> without pooling; rejects when nothing answers in time. */
export function httpGet(port: number, path = '/', timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET :${port}${path} timed out`)));
    req.on('error', reject);
  });
}

/** The instance id a simulated ComfyUI page names. */
export function instanceIdOfPage(body: string): string | undefined {
  return /id="instance-id">([^<]+)</.exec(body)?.[1];
}

/** True when this process can bind the port on 127.0.0.1 (nobody holds it). */
export function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}
