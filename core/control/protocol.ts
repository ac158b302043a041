/**
 * The control protocol between clients (CLI, MCP server) and the supervisor: newline-delimited
 * JSON over a private unix socket.
 *
 *   client -> supervisor   {"t":"req","id":1,"method":"openTunnel","params":{...},"env":{...}}
 *                          {"t":"cancel","id":1}          ends a wait early (never the work)
 *   supervisor -> client   {"t":"res","id":1,"result":...}
 *                          {"t":"err","id":1,"error":{"message","hint","agentHint","exitCode","code"}}
 *                          {"t":"progress","id":1,"progress":{"message":...}}
 *
 * Each request carries the caller's environment (keys, passphrase, agent socket, cwd): the
 * supervisor outlives the client that started it and must use each caller's own values.
 */
import type net from 'node:net';
import type { Progress } from '../api/api.js';
import type { RequestEnv } from '../config/settings.js';
import type { ErrorPayload } from '../lib/errors.js';

export type ClientFrame =
  | { t: 'req'; id: number; method: string; params: unknown; env?: RequestEnv }
  | { t: 'cancel'; id: number };
export type ServerFrame =
  | { t: 'res'; id: number; result: unknown }
  | { t: 'err'; id: number; error: ErrorPayload }
  | { t: 'progress'; id: number; progress: Progress };

const MAX_FRAME_BYTES = 16 * 1024 * 1024;

/** Splits a byte stream into JSON frames, one per line. */
export function onFrames(sock: net.Socket, handle: (frame: unknown) => void, onBad: (why: string) => void): void {
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    buf += chunk;
    if (buf.length > MAX_FRAME_BYTES) {
      onBad('frame too large');
      return;
    }
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.trim()) continue;
      let frame: unknown;
      try {
        frame = JSON.parse(line);
      } catch {
        onBad('a frame is not JSON');
        return;
      }
      handle(frame);
    }
  });
}

export function send(sock: net.Socket, frame: ClientFrame | ServerFrame): void {
  if (!sock.destroyed && sock.writable) sock.write(JSON.stringify(frame) + '\n');
}

