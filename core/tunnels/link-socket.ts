/**
 * The TCP socket under an SSH link, tuned for moving bytes cheaply. Per GiB, syscalls cost more
 * CPU than the crypto on small VMs:
 * - Node reads 64 KiB at a time. After a read that fills its buffer the next is 512 KiB, each a
 *   fresh buffer that ssh2 may keep (it decrypts in place and hands out views); a short read goes
 *   back to one idle buffer that every link shares.
 * - ssh2 pushes every 32 KiB packet to its channel, and each is written to the local socket.
 *   Corked for the length of one read, the packets of that read leave in one `writev`.
 * `onread` only works when given to the constructor (`connect()` ignores it).
 */
import net from 'node:net';
import { noteBytesCarried } from './gc-pacing.js';

/**
 * Two read sizes rather than a doubling series, so that the space of a freed transfer buffer
 * always fits the next one (see gc-pacing.ts).
 */
const MIN_READ = 64 * 1024;
const MAX_READ = 512 * 1024;
/**
 * Node holds each socket's next read buffer while it waits, so a buffer of its own would cost
 * every idle link 64 KiB. Reads are one at a time on this thread, and a read into this buffer is
 * copied out (into a buffer of its size, as Node does) before the callback returns.
 */
let idleReadBuffer: Buffer | undefined;

/** A socket for an SSH connection; `localSockets` are corked while each read is handed to ssh2. */
export function linkSocket(localSockets: ReadonlySet<net.Socket>): net.Socket {
  let size = MIN_READ;
  // @types/node lists `onread` for connect() only; Node reads it in the constructor.
  const options: net.SocketConstructorOpts & { onread: net.OnReadOpts } = {
    onread: {
      buffer: () => (size === MIN_READ ? (idleReadBuffer ??= Buffer.allocUnsafe(MIN_READ)) : Buffer.allocUnsafe(size)),
      callback: (n: number, buf: Uint8Array) => {
        const data = buf === idleReadBuffer ? Buffer.from(buf.subarray(0, n)) : Buffer.from(buf.buffer, buf.byteOffset, n);
        size = n === buf.length ? MAX_READ : MIN_READ;
        // The SSH socket too: packets ssh2 sends while it parses (uploads waiting for window,
        // window adjusts) leave together.
        const corked = [sock, ...localSockets];
        for (const s of corked) s.cork();
        try {
          // ssh2 listens for 'data', which Node does not emit for a socket read with `onread`.
          sock.emit('data', data);
        } finally {
          for (const s of corked) s.uncork();
        }
        noteBytesCarried(n);
        return true; // keep reading (false would pause the socket)
      },
    },
  };
  const sock = new net.Socket(options);
  return sock;
}
