/**
 * What a client hears when it connects: where its settings differ from those the supervisor
 * runs with (they apply after a restart), and when the supervisor is newer than the client.
 */
import type { HelloParams } from '../api/api.js';
import { compareVersions, VERSION } from '../lib/version.js';
import type { GuardAllowances } from '../tunnels/guard.js';

export function handshakeWarnings(basePort: number, uiPort: number, allowances: GuardAllowances, p: HelloParams): string[] {
  const warnings: string[] = [];
  const later = '(tunnels come back on their ports)';
  if (p.base_port !== basePort) warnings.push(`The supervisor runs with VAI_BASE_PORT=${basePort}; your ${p.base_port} applies after \`vai-mcp-cli daemon stop\` ${later}.`);
  if (p.ui_port !== undefined && p.ui_port !== uiPort) warnings.push(`The supervisor runs with VAI_UI_PORT=${uiPort}; your ${p.ui_port} applies after \`vai-mcp-cli daemon stop\` ${later}.`);
  for (const [name, ours, theirs] of [
    ['VAI_ALLOWED_ORIGINS', allowances.origins, p.allowed_origins],
    ['VAI_ALLOWED_HOSTS', allowances.hosts, p.allowed_hosts],
  ] as const) {
    if (theirs !== undefined && [...theirs].sort().join(',') !== [...ours].sort().join(',')) {
      warnings.push(`The supervisor runs with ${name}=${ours.join(',') || '(none)'}; your ${theirs.join(',') || '(none)'} applies after \`vai-mcp-cli daemon stop\` ${later}.`);
    }
  }
  if (compareVersions(VERSION, p.version) > 0) warnings.push(`The supervisor (vai-mcp ${VERSION}) is newer than this client (${p.version}).`);
  return warnings;
}
