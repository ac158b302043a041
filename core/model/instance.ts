/** A box as users see it: its statuses, its SSH endpoint, and which of them will not change on their own. */

export type InstanceStatus =
  | 'provisioning' // asked for, not yet reachable
  | 'loading' // the provider is starting it
  | 'running' // the provider says it runs; tunnel or app not ready yet
  | 'ready' // tunnel up and ComfyUI answering
  | 'failed' // will not become ready; see its status_message
  | 'stopped'; // paused

/** A status as views show it: a destroyed box is remembered for a while. */
export type InstanceViewStatus = InstanceStatus | 'destroyed';

export interface SshEndpoint {
  host: string;
  port: number;
  user: string;
}

/** Settled: the box will not change on its own any more (ready, failed, stopped, destroyed). */
export function isSettled(status: InstanceViewStatus): boolean {
  return status === 'ready' || status === 'failed' || status === 'destroyed' || status === 'stopped';
}
