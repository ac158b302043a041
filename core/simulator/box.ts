/**
 * A simulated box: a real SSH server (ssh2 `Server`) on 127.0.0.1 with its own host key, that
 * accepts one user key and routes `direct-tcpip` for its remote port to its own ComfyUI-like app
 * (app.ts), so "localhost:18188" on box A is a different app than on box B, as on real machines.
 * Its other apps (`instance_config.ports`) answer with a page naming them (side-app.ts).
 * `simulate` makes it misbehave: `ssh` drops every connection, `comfy` starts no app.
 */
import { timingSafeEqual } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import ssh2 from 'ssh2';
import type { Connection, ParsedKey, Server as SshServer } from 'ssh2';
import type { Logger } from '../lib/log.js';
import type { ComfyApp } from './app.js';
import type { SideApps } from './side-app.js';

export interface Simulate {
  start_delay_s: number;
  fail: 'never' | 'boot' | 'ssh' | 'comfy';
}

/**
 * An ed25519 key pair in OpenSSH format that ssh2 itself can read back. ssh2 1.17's
 * generateKeyPairSync writes a private key its own parser rejects ("Malformed OpenSSH private
 * key") about 4 times in 1000, which would leave a box that never boots: check, and make another.
 */
export function generateKeyPair(comment: string): { private: string; public: string } {
  for (let attempt = 0; attempt < 20; attempt++) {
    const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment });
    if (!(ssh2.utils.parseKey(pair.private) instanceof Error)) return pair;
  }
  throw new Error('could not generate an ed25519 key pair that ssh2 can read');
}

/** Writes a key pair once (0600) and returns the private key path. */
export function ensureKeyPair(privatePath: string, comment: string): string {
  if (!existsSync(privatePath)) {
    const pair = generateKeyPair(comment);
    writeFileSync(privatePath, pair.private, { mode: 0o600 });
    writeFileSync(`${privatePath}.pub`, pair.public + '\n', { mode: 0o600 });
  }
  return privatePath;
}

function isLoopbackName(host: string): boolean {
  return host === 'localhost' || host === '127.0.0.1' || host === '::1';
}

/** One simulated box: its SSH server and its app. */
export class SimulatedBox {
  private server: SshServer | undefined;
  private app: ComfyApp | undefined;
  private readonly conns = new Set<Connection>();

  constructor(
    readonly instanceId: string,
    private readonly hostKey: Buffer,
    private readonly userKey: ParsedKey,
    private readonly remotePort: number,
    private readonly sim: Simulate,
    private readonly log: Logger,
    /** Its ComfyUI folder on disk: models and custom node packs (none: only the preinstalled checkpoint). */
    readonly comfyDir?: string,
    /** Its other apps: remote port -> name. */
    private readonly side?: SideApps,
  ) {}

  /** Starts the SSH server, on `preferredPort` when it is free. Returns the port. */
  async start(preferredPort = 0): Promise<number> {
    // Loaded on first use: a supervisor without local boxes never pays for the simulator.
    if (this.sim.fail !== 'comfy') this.app = (await import('./app.js')).createComfyApp(this.instanceId, { comfyDir: this.comfyDir });
    const server = new ssh2.Server({ hostKeys: [this.hostKey] }, (conn) => this.onConnection(conn));
    this.server = server;
    const listen = (port: number) =>
      new Promise<number>((resolve, reject) => {
        const onError = (err: Error) => reject(err);
        server.once('error', onError);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', onError);
          resolve((server.address() as net.AddressInfo).port);
        });
      });
    let port: number;
    try {
      port = await listen(preferredPort);
    } catch {
      port = await listen(0); // the old port was taken meanwhile: the box moves, its host key stays
    }
    server.on('error', (err: Error) => this.log.warn(`ssh server error: ${err.message}`));
    return port;
  }

  private onConnection(conn: Connection): void {
    conn.on('error', () => {});
    if (this.sim.fail === 'ssh') {
      conn.end();
      return;
    }
    this.conns.add(conn);
    conn.on('close', () => this.conns.delete(conn));
    conn.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
      const offered = ctx.key;
      const expected = this.userKey.getPublicSSH();
      const same = offered.algo === this.userKey.type && offered.data.length === expected.length && timingSafeEqual(offered.data, expected);
      if (!same) return ctx.reject(['publickey']);
      if (!ctx.signature) return ctx.accept(); // the client asks whether this key would do
      const ok = ctx.blob !== undefined && this.userKey.verify(ctx.blob, ctx.signature, ctx.hashAlgo) === true;
      return ok ? ctx.accept() : ctx.reject(['publickey']);
    });
    conn.on('ready', () => {
      conn.on('tcpip', (accept, reject, info) => {
        if (this.side?.serves(info.destPort) && isLoopbackName(info.destIP)) {
          const channel = accept();
          channel.on('error', () => {});
          return this.side.handle(channel, info.destPort);
        }
        if (!this.app || info.destPort !== this.remotePort || !isLoopbackName(info.destIP)) return reject();
        const channel = accept();
        channel.on('error', () => {});
        this.app.handle(channel);
      });
      conn.on('session', (_accept, reject) => reject());
    });
  }

  /** A ComfyUI restart: connections and the queue end, the files stay, node packs are read again. */
  async restartComfy(): Promise<void> {
    const old = this.app;
    if (!old) return;
    this.app = undefined; // while it "starts", nothing answers on the port
    old.close();
    old.files.shelf.load();
    await new Promise((r) => setTimeout(r, 300));
    this.app = (await import('./app.js')).createComfyApp(this.instanceId, { files: old.files });
  }

  async stop(): Promise<void> {
    this.app?.close();
    this.side?.close();
    for (const c of this.conns) c.end();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

