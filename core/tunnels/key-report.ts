/** Which SSH key a new box would use and whether each candidate loads (`ssh-key`). */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { SshKeyReport } from '../api/api.js';
import type { RequestEnv } from '../config/settings.js';
import { badInput, toVaiError } from '../lib/errors.js';
import { defaultKeyCandidates, describeAuth, loadPrivateKey, resolveAuth } from './ssh-auth.js';

export function sshKeyReport(keyPath: string | undefined, env: RequestEnv): SshKeyReport {
  const paths = keyPath ? [path.resolve(env.cwd ?? process.cwd(), keyPath)] : defaultKeyCandidates(env.HOME);
  // A key file named on purpose that is not there is bad input, like a config naming one.
  if (keyPath && !existsSync(paths[0]!)) throw badInput(`Key file ${paths[0]} does not exist.`, 'Pass the path of a private key file, e.g. ~/.ssh/id_ed25519.', 'missing_key');
  const candidates = paths.map((kp) => {
    try {
      loadPrivateKey(kp, env.VAI_SSH_PASSPHRASE);
      return { path: kp, exists: true, loads: true, error: null };
    } catch (err) {
      const e = toVaiError(err);
      return { path: kp, exists: !/does not exist/.test(e.message), loads: false, error: e.message };
    }
  });
  let used: string | null = null;
  let error: string | null = null;
  try {
    used = describeAuth(resolveAuth({ keyPath: keyPath ? paths[0] : undefined, passphrase: env.VAI_SSH_PASSPHRASE, agentSocket: env.SSH_AUTH_SOCK, homeDir: env.HOME }));
  } catch (err) {
    error = toVaiError(err).message;
  }
  return { used, candidates, agent: { socket: env.SSH_AUTH_SOCK ?? null }, error };
}
