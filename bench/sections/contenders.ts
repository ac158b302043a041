/** The contenders measured side by side: no tunnel, OpenSSH `ssh -N -L` (two ciphers), vai-mcp. */

export interface Contender {
  name: string;
  cipher: string;
  /** Local port a client connects to. */
  port: number;
  /** PID of the process that carries the tunnel (for CPU), none for the direct connection. */
  pid?: number;
}

/** The reference the targets are written against: OpenSSH as users run it (default cipher). */
export const OPENSSH_DEFAULT = 'OpenSSH ssh -N -L (default cipher)';
export const OPENSSH_OUR_CIPHER = 'OpenSSH ssh -N -L (our cipher)';
export const OURS = 'vai-mcp tunnel';
export const DIRECT = 'direct (no tunnel)';
