/**
 * The CLI's one connection to the supervisor (started on demand by core), shared by the commands
 * of one invocation. Handshake warnings go to stderr.
 */
import { SupervisorClient } from '../core/control/client.js';
import { note } from './format.js';

let client: Promise<SupervisorClient> | undefined;

export function supervisor(): Promise<SupervisorClient> {
  client ??= SupervisorClient.connect({ onWarning: (w) => note(`warning: ${w}`) });
  return client;
}

/** Closes the connection so the process can exit (the supervisor keeps running). */
export async function closeSupervisor(): Promise<void> {
  if (!client) return;
  const c = await client.catch(() => undefined);
  c?.close();
  client = undefined;
}
