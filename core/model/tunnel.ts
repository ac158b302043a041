/**
 * A tunnel's state: `up` when traffic flows; `connecting` / `reconnecting` while the SSH link is
 * being made; `remote_down` when the link works but nothing answers on the remote port;
 * `failed` (authentication, host key: the user acts); `port_conflict` while another program holds
 * the local port; `stopped` once closed. Views add `closed`: its box stopped or went away.
 */
export const TUNNEL_STATES = ['connecting', 'up', 'remote_down', 'reconnecting', 'failed', 'port_conflict', 'stopped'] as const;
export type TunnelState = (typeof TUNNEL_STATES)[number];
export type TunnelViewState = TunnelState | 'closed';

/**
 * A request header the supervisor's own requests to a box carry (job following, health and queue
 * checks): they pass the guard like any other, but do not count as someone using the box.
 */
export const INTERNAL_REQUEST_HEADER = 'x-vai-internal';

/** `http`: every request head is checked; `off`: bytes pass as they come (a port that is not HTTP). */
export type GuardMode = 'http' | 'off';

/** The dashboard's session cookie: the guard takes it off every request it forwards to a box. */
export const DASHBOARD_COOKIE = 'vai_mcp_ui';
