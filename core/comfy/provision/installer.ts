/**
 * How models and node packs get onto a box. Each provider gives one: boxes with a shell run the
 * work themselves over their SSH link (shell-installer.ts); the simulator, which has no shell,
 * has the supervisor write into its tree.
 */
import type { DownloadToken } from './tokens.js';
import type { ResolvedPack } from './registry.js';

/** One model file to fetch into `models/<dir>/<name>`. */
export interface Transfer {
  name: string;
  dir: string;
  url: string;
  sha256?: string;
  token?: DownloadToken;
}

export interface TransferProgress {
  /** Bytes of the file on the box so far (a resumed download starts above 0). */
  done: number;
  total: number | null;
}

/** A failed download: `retryable` ones resume from what arrived; a stalled one fails the wait. */
export class DownloadError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly stalled = false,
  ) {
    super(message);
  }
}

/** No byte for this long is a stalled download. */
export const STALL_MS = 120_000;

export interface BoxInstaller {
  /** ComfyUI's folder on the box, for messages. */
  readonly comfyDir: string;
  /** Fetches one file (resuming a partial one), checks its sha256, and renames it into place. */
  download(t: Transfer, onBytes: (p: TransferProgress) => void, signal: AbortSignal): Promise<void>;
  /** Clones a pack into `custom_nodes/` and installs its requirements; `present` when it was there. */
  installPack(p: ResolvedPack, onLine: (line: string) => void, signal: AbortSignal): Promise<'installed' | 'present'>;
  /** Restarts ComfyUI so that new node packs load (the caller waits for it to answer). */
  restartComfy(signal: AbortSignal): Promise<void>;
}
