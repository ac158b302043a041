/**
 * The logger: one line per event on stderr (the supervisor's stderr is its log file in VAI_HOME;
 * the MCP server's stderr is the host's log). Never stdout: that is the MCP protocol channel.
 * Known secrets (API keys, passphrases) are replaced by *** in every line.
 */
const secrets = new Set<string>();

/** Registers a value that must never appear in a log line. */
export function addSecret(value: string | undefined): void {
  if (value && value.length >= 4) secrets.add(value);
}

export function redact(text: string): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join('***');
  return out;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
/** VAI_LOG_LEVEL=debug shows every step (probes, channels); the default is info. */
const minLevel: LogLevel = (process.env.VAI_LOG_LEVEL as LogLevel) in ORDER ? (process.env.VAI_LOG_LEVEL as LogLevel) : 'info';

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  child(scope: string): Logger;
}

/**
 * Where lines go. A log that cannot be written (a full disk, a closed pipe) drops lines: it must
 * never throw, or an 'error' event would become an uncaught exception, whose handler logs, which
 * fails again: a busy loop that once held a supervisor at 100% CPU on a full VAI_HOME.
 */
let sink: (line: string) => void = (line) => {
  try {
    process.stderr.write(line);
  } catch {
    // dropped: see above
  }
};
let stderrGuarded = false;

/** Sends log lines elsewhere (the supervisor writes its log file synchronously, see supervisor-main). */
export function setLogSink(write: (line: string) => void): void {
  sink = write;
}

export function createLogger(scope = 'vai'): Logger {
  if (!stderrGuarded) {
    stderrGuarded = true;
    process.stderr.on('error', () => {}); // see `sink`
  }
  const write = (level: LogLevel, msg: string) => {
    if (ORDER[level] < ORDER[minLevel]) return;
    sink(redact(`${new Date().toISOString()} ${level.padEnd(5)} [${scope}] ${msg}`) + '\n');
  };
  return {
    debug: (m) => write('debug', m),
    info: (m) => write('info', m),
    warn: (m) => write('warn', m),
    error: (m) => write('error', m),
    child: (s) => createLogger(`${scope}:${s}`),
  };
}

/** A logger that drops everything (tests, and code that has none). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
