/**
 * SSH credentials and host-key pinning.
 *
 * Keys: `ssh_key_path` (passphrase from VAI_SSH_PASSPHRASE), else the first default key that
 * exists, else the ssh agent (SSH_AUTH_SOCK). An encrypted key is decrypted once and kept in
 * memory only, so reconnects do not pay the bcrypt KDF again and the passphrase is not kept.
 *
 * Host keys: pinned on first use per instance and host:port (host-keys.ts).
 */
import { readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import type { AuthHandlerMiddleware, ParsedKey } from 'ssh2';
import { badInput } from '../lib/errors.js';

export const DEFAULT_KEY_NAMES = ['id_ed25519_vastai', 'id_ed25519', 'id_rsa', 'id_ecdsa'];

/** How a tunnel authenticates. Kept per tunnel for its reconnects. */
export type SshAuth =
  | { kind: 'key'; keyPath: string; key: ParsedKey }
  | { kind: 'agent'; agentSocket: string };

export function describeAuth(auth: SshAuth): string {
  return auth.kind === 'key' ? `key ${auth.keyPath}` : `ssh agent at ${auth.agentSocket}`;
}

/** Reads and (if needed) decrypts a private key. Every failure is bad input that says what to do. */
export function loadPrivateKey(keyPath: string, passphrase?: string): ParsedKey {
  let data: Buffer;
  try {
    if (statSync(keyPath).isDirectory()) throw Object.assign(new Error('is a folder'), { code: 'EISDIR' });
    data = readFileSync(keyPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'cannot be read (permission denied)' : code === 'EISDIR' ? 'is a folder' : `cannot be read (${code ?? (err as Error).message})`;
    throw badInput(`SSH key file ${keyPath} ${why}.`,
      'Set instance_config.ssh_key_path to a private key file you can read, or create one with `ssh-keygen -t ed25519`.', 'bad_key');
  }
  const parsed = ssh2.utils.parseKey(data, passphrase || undefined);
  if (parsed instanceof Error) {
    const msg = parsed.message;
    if (/no passphrase given/i.test(msg)) {
      throw badInput(`SSH key ${keyPath} is encrypted and no passphrase was given.`,
        'Set VAI_SSH_PASSPHRASE to its passphrase, or load the key into your ssh agent (ssh-add) and leave ssh_key_path out.', 'key_passphrase');
    }
    if (/bad passphrase|integrity check failed/i.test(msg)) {
      throw badInput(`SSH key ${keyPath} could not be decrypted: the passphrase in VAI_SSH_PASSPHRASE is wrong.`,
        'Set VAI_SSH_PASSPHRASE to the key\'s passphrase.', 'key_passphrase');
    }
    throw badInput(`SSH key ${keyPath} is not a private key ssh2 can read (${msg}).`,
      'Use an OpenSSH private key (ed25519, ecdsa or rsa); FIDO (sk-*) keys are not supported.', 'bad_key');
  }
  const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey) : parsed;
  if (!key.isPrivateKey()) {
    throw badInput(`SSH key ${keyPath} is a public key.`, 'Point ssh_key_path at the private key (the file without .pub).', 'bad_key');
  }
  return key;
}

export interface AuthRequest {
  /** Absolute path from the config, if it names one. */
  keyPath?: string;
  passphrase?: string;
  agentSocket?: string;
  /** The caller's home folder, for the default key names. */
  homeDir?: string;
}

/** The default key files that exist, in the order they are tried. */
export function defaultKeyCandidates(homeDir = os.homedir()): string[] {
  return DEFAULT_KEY_NAMES.map((n) => path.join(homeDir, '.ssh', n));
}

function exists(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Picks and loads the credentials for a request: `ssh_key_path`, else the first default key that exists, else the agent. */
export function resolveAuth(req: AuthRequest): SshAuth {
  if (req.keyPath) return { kind: 'key', keyPath: req.keyPath, key: loadPrivateKey(req.keyPath, req.passphrase) };
  const found = defaultKeyCandidates(req.homeDir).find(exists);
  if (found) return { kind: 'key', keyPath: found, key: loadPrivateKey(found, req.passphrase) };
  if (req.agentSocket) return { kind: 'agent', agentSocket: req.agentSocket };
  throw badInput('No SSH key found: no ssh_key_path in the config, none of ~/.ssh/' + DEFAULT_KEY_NAMES.join(', ~/.ssh/') + ', and no ssh agent (SSH_AUTH_SOCK).',
    'Set instance_config.ssh_key_path, or create a key with `ssh-keygen -t ed25519`.', 'no_key');
}

/** ssh2 connect options for one auth. The parsed key goes through authHandler (see file comment). */
export function authOptions(auth: SshAuth, username: string): { username: string; authHandler?: AuthHandlerMiddleware; agent?: string } {
  if (auth.kind === 'agent') return { username, agent: auth.agentSocket };
  let offered = false;
  return {
    username,
    authHandler: (_methods, _partial, next) => {
      if (offered) return next(false as never); // one key only: no retry loop on refusal
      offered = true;
      next({ type: 'publickey', username, key: auth.key });
    },
  };
}

/** OpenSSH's way of printing a SHA-256 host key digest: `SHA256:<base64 without padding>`. */
export function fingerprint(sha256Hex: string): string {
  return 'SHA256:' + Buffer.from(sha256Hex, 'hex').toString('base64').replace(/=+$/, '');
}

export function hostKeyMismatchHint(instanceId: string): string {
  return `If the box was rebuilt and you trust the new key, run \`vai-mcp-cli tunnel ${instanceId} --reset-host-key\`.`;
}
