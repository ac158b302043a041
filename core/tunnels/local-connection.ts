/**
 * Carrying one local TCP connection over its SSH channel, both ways: as it comes (`carry`), or
 * with every request head checked first (`carryGuarded`, see guard.ts). The box-to-client
 * direction is never parsed, so downloads take the same path either way.
 */
import type net from 'node:net';
import type { Logger } from '../lib/log.js';
import type { ClientChannel } from 'ssh2';
import { noteBytesCarried } from './gc-pacing.js';
import { INTERNAL_REQUEST_HEADER } from '../model/tunnel.js';
import { refusalResponse, type GuardPolicy } from './guard.js';
import { RequestFramer, type HeadCheck, type Refusal } from './http-framing.js';

/**
 * After a refusal on a connection whose earlier requests went through, their answers may still be
 * coming (a pipelining client): the refusal follows once the box has sent nothing this long.
 * Half-closing the channel instead would make many servers drop the answers they owe.
 */
const QUIET_MS = 500;
const QUIET_POLL_MS = 100;

/**
 * Uploads: ssh2 writes each 32 KiB packet of a local read on its own; corked until the read has
 * been handled, they leave in one `writev` (nextTick: uncorks even if a listener throws, so the
 * link cannot stay corked).
 */
function corkPerRead(link: net.Socket | undefined, bytes: number): void {
  noteBytesCarried(bytes);
  if (!link) return;
  link.cork();
  process.nextTick(() => link.uncork());
}

/** A local reset closes the channel; a channel closed without EOF resets the local side. */
function closeTogether(sock: net.Socket, ch: ClientChannel): void {
  sock.once('close', () => ch.close());
  // After a normal EOF the socket has been ended already: let it flush.
  ch.once('close', () => {
    if (!sock.writableEnded) sock.destroy();
  });
}

/** Both directions as they come; `onClientData` hears of every read from the client. */
export function carry(sock: net.Socket, ch: ClientChannel, link: net.Socket | undefined, onClientData: () => void = () => {}): void {
  sock.prependListener('data', (chunk: Buffer) => {
    corkPerRead(link, chunk.length);
    onClientData();
  });
  sock.pipe(ch).pipe(sock);
  closeTogether(sock, ch);
  sock.resume();
}

/**
 * Client to box through the guard; box to client as it comes. A refused request is answered
 * here and ends the connection; nothing of it, nor anything after it, reaches the box.
 */
export function carryGuarded(sock: net.Socket, ch: ClientChannel, link: net.Socket | undefined, check: HeadCheck, onRefused: (r: Refusal) => void): void {
  const framer = new RequestFramer(check);
  let sent = false;
  let blocked = false;
  /** The refusal, once the box has finished the answers it owes. */
  let answer: Buffer | undefined;
  let quietTimer: NodeJS.Timeout | undefined;

  ch.pipe(sock, { end: false });
  ch.once('end', () => {
    clearInterval(quietTimer);
    if (sock.writableEnded) return;
    if (answer) sock.end(answer);
    else sock.end();
  });
  closeTogether(sock, ch);
  sock.once('close', () => clearInterval(quietTimer));

  const pass = (bytes: Buffer) => {
    sent = true;
    if (!ch.write(bytes)) blocked = true;
  };
  const refuse = (r: Refusal) => {
    sock.off('data', onData);
    sock.pause();
    onRefused(r);
    const response = refusalResponse(r);
    answer = response;
    const finish = () => {
      clearInterval(quietTimer);
      ch.unpipe(sock);
      if (!sock.writableEnded) sock.end(response);
      ch.close();
    };
    if (!sent) return finish();
    // Quiet: nothing new from the box for QUIET_MS and nothing of it still waiting to be written.
    let seen = sock.bytesWritten;
    let quietSince = Date.now();
    quietTimer = setInterval(() => {
      if (sock.bytesWritten !== seen || sock.writableLength > 0 || ch.readableLength > 0) {
        seen = sock.bytesWritten;
        quietSince = Date.now();
      } else if (Date.now() - quietSince >= QUIET_MS) finish();
    }, QUIET_POLL_MS);
  };
  const onData = (chunk: Buffer) => {
    corkPerRead(link, chunk.length);
    const refusal = framer.feed(chunk, pass);
    if (refusal) return refuse(refusal);
    if (blocked) {
      blocked = false;
      sock.pause();
      ch.once('drain', () => sock.resume());
    }
  };
  sock.on('data', onData);
  sock.once('end', () => {
    if (!answer) ch.end();
  });
  sock.resume();
}

/** The log names a refused origin (or host) at most this often. */
const REFUSAL_LOG_MS = 60_000;

/** A forward's refusals: counted, and each refused origin (or host) named in the log at most once a minute. */
/**
 * Whether a local client used the box since the last look: a request the guard passed that is not
 * the supervisor's own, or (unguarded) any bytes. An open websocket that sends nothing is not use.
 */
export class ClientUse {
  private used = false;
  /** The guard's check of each request head, noting use; none when the guard is off. */
  readonly check: HeadCheck | undefined;

  constructor(guard: GuardPolicy | undefined) {
    this.check = guard && ((head) => {
      const refusal = guard.check(head);
      if (!refusal && !head.fields.has(INTERNAL_REQUEST_HEADER)) this.used = true;
      return refusal;
    });
  }

  readonly mark = (): void => {
    this.used = true;
  };

  take(): boolean {
    const used = this.used;
    this.used = false;
    return used;
  }
}

export class RefusalLog {
  count = 0;
  private readonly loggedAt = new Map<string, number>();

  constructor(
    private readonly port: number,
    private readonly log: Logger,
  ) {}

  note(r: Refusal): void {
    this.count++;
    const now = Date.now();
    if (now - (this.loggedAt.get(r.subject) ?? -Infinity) < REFUSAL_LOG_MS) return;
    if (this.loggedAt.size > 1000) this.loggedAt.clear();
    this.loggedAt.set(r.subject, now);
    this.log.warn(`guard refused a request to localhost:${this.port} (${r.status}): ${r.subject}; ${this.count} refused so far`);
  }
}
