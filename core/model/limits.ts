/** Limits both faces check the same way. */

/** Local ports a tunnel may use. */
export const MIN_PORT = 1024;
export const MAX_PORT = 65535;

export function isUsablePort(port: number): boolean {
  return Number.isInteger(port) && port >= MIN_PORT && port <= MAX_PORT;
}

/** Boxes one create may ask for. */
export const MAX_BOXES_PER_CREATE = 10;

/** The longest an MCP tool call waits (hosts give up at ~60 s). */
export const MAX_TOOL_WAIT_S = 45;
