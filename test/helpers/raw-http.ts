/**
 * A raw TCP client for HTTP/1.1: sends exactly the bytes a test writes (malformed, pipelined,
 * smuggling-shaped) and reads answers one by one, so a test sees what a tunnel's guard answered
 * and whether it closed the connection.
 */
import net from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export class RawConnection {
  private buf = Buffer.alloc(0);
  private ended = false;
  private readonly sock: net.Socket;
  private readonly waiters = new Set<() => void>();
  private readonly connected: Promise<void>;

  constructor(port: number, host = '127.0.0.1') {
    this.sock = net.connect({ port, host });
    this.connected = new Promise((resolve, reject) => {
      this.sock.once('connect', () => resolve());
      this.sock.once('error', reject);
    });
    this.sock.on('error', () => {});
    this.sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    this.sock.on('close', () => {
      this.ended = true;
      this.wake();
    });
  }

  private wake(): void {
    for (const w of this.waiters) w();
  }

  private until<T>(what: string, ready: () => T | undefined, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const v = ready();
        if (v === undefined) return false;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve(v);
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`${what}: nothing within ${timeoutMs} ms (received so far: ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))})`));
      }, timeoutMs);
      if (!check()) this.waiters.add(check);
    });
  }

  async send(bytes: string | Buffer): Promise<void> {
    await this.connected;
    await new Promise<void>((resolve) => this.sock.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes, () => resolve()));
  }

  /**
   * The next complete answer (its body by Content-Length; none for 101 and 1xx), or null once
   * the connection has closed without one.
   */
  next(timeoutMs = 10_000): Promise<RawResponse | null> {
    return this.until<RawResponse | null>('an HTTP answer', () => {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return this.ended ? null : undefined;
      const head = this.buf.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0]!)?.[1]);
      const headers: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const i = line.indexOf(':');
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      const length = status < 200 ? 0 : Number(headers['content-length'] ?? 0);
      if (this.buf.length < end + 4 + length) return this.ended ? null : undefined;
      const body = this.buf.subarray(end + 4, end + 4 + length).toString('utf8');
      this.buf = this.buf.subarray(end + 4 + length);
      return { status, headers, body };
    }, timeoutMs);
  }

  /** Resolves once the other side closed the connection (rejects if it stays open). */
  closed(timeoutMs = 10_000): Promise<true> {
    return this.until('the connection to close', () => (this.ended ? true : undefined), timeoutMs);
  }

  /** Bytes received and not yet read as an answer. */
  rest(): string {
    return this.buf.toString('latin1');
  }

  destroy(): void {
    this.sock.destroy();
  }
}

/** Opens a connection, sends `bytes`, and returns every answer until the other side closes. */
export async function exchange(port: number, bytes: string, timeoutMs = 10_000): Promise<{ answers: RawResponse[]; rest: string }> {
  const c = new RawConnection(port);
  try {
    await c.send(bytes);
    const answers: RawResponse[] = [];
    for (let r = await c.next(timeoutMs); r; r = await c.next(timeoutMs)) answers.push(r);
    return { answers, rest: c.rest() };
  } finally {
    c.destroy();
  }
}
