/**
 * A simulated box's `/ws` endpoint: ComfyUI's websocket, where a client (`?clientId=X`) hears
 * about the queue and its own jobs as `{type, data}` JSON messages. As in ComfyUI, one socket per
 * client id (the newest wins) and a client without an id gets a fresh one, told in the first
 * `status` message's `sid`.
 */
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';

export type Greeting = (sid: string) => [string, Record<string, unknown>][];

export class WsHub {
  private readonly wss = new WebSocketServer({ noServer: true });
  private readonly sockets = new Map<string, WebSocket>();

  /** `greet` gives the messages a new socket gets first (status, and the running node on reconnect). */
  constructor(private readonly greet: Greeting) {}

  upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const sid = url.searchParams.get('clientId') || randomUUID().replaceAll('-', '');
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.sockets.set(sid, ws);
      ws.on('error', () => {});
      ws.on('close', () => {
        if (this.sockets.get(sid) === ws) this.sockets.delete(sid);
      });
      for (const [type, data] of this.greet(sid)) this.write(ws, type, data);
    });
  }

  private write(ws: WebSocket, type: string, data: Record<string, unknown>): void {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type, data }));
  }

  /** To the socket of client `sid`, or to every client when `sid` is undefined. */
  send(type: string, data: Record<string, unknown>, sid?: string): void {
    if (sid === undefined) for (const ws of this.sockets.values()) this.write(ws, type, data);
    else {
      const ws = this.sockets.get(sid);
      if (ws) this.write(ws, type, data);
    }
  }

  close(): void {
    for (const ws of this.wss.clients) ws.terminate();
    this.sockets.clear();
    this.wss.close();
  }
}
