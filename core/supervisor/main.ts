#!/usr/bin/env node
/**
 * The supervisor process. Started detached by the first client that needs it
 * (`spawnSupervisor` in launcher.ts); its stdout and stderr are VAI_HOME/supervisor.log.
 * Exits at once when another supervisor already holds this VAI_HOME's lock.
 */
import { existsSync, unlinkSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describeError } from '../lib/errors.js';
import { acquireLock } from './lock.js';
import { addSecret, createLogger, setLogSink } from '../lib/log.js';
import { ensurePrivateDir, homeFiles, resolveVaiHome, socketPathFor } from '../lib/paths.js';
import { VERSION } from '../lib/version.js';

// stderr is the log file in VAI_HOME (control.ts opens it). Written directly and synchronously:
// a full disk then costs the lines written meanwhile, never the process (see log.ts `sink`).
setLogSink((line) => {
  try {
    writeSync(2, line);
  } catch {
    // dropped
  }
});
const log = createLogger('supervisor');

/** ssh2's optional native crypto: without it every request pays 44-88 ms and CPU per GiB rises. */
function nativeCryptoWarning(): string | undefined {
  try {
    createRequire(import.meta.url)('ssh2/lib/protocol/crypto/build/Release/sshcrypto.node');
    return undefined;
  } catch {
    return 'ssh2\'s native crypto binding is missing (sshcrypto.node was not built), so tunnels use more CPU. Fix: install a C++ toolchain (python3, make, g++) and run `npm rebuild ssh2`, and make sure your package manager runs its install script (npm: allowScripts).';
  }
}

async function main(): Promise<void> {
  process.umask(0o077); // every file and socket we create is private
  const homeArg = process.argv.find((a) => a.startsWith('--home='))?.slice('--home='.length);
  const home = homeArg ?? resolveVaiHome();
  ensurePrivateDir(home);
  const files = homeFiles(home);
  addSecret(process.env.VAST_API_KEY);
  addSecret(process.env.VAI_SSH_PASSPHRASE);

  const lock = await acquireLock(files.lock);
  if (!lock) {
    log.info(`another supervisor already runs for ${home}; pid ${process.pid} exits`);
    return;
  }
  // Loaded only by the winner: when twenty clients start at once, the losers leave in milliseconds.
  const [{ loadSettings }, { Supervisor }, { serveControl }] = await Promise.all([
    import('../config/settings.js'),
    import('./supervisor.js'),
    import('../control/server.js'),
  ]);
  const settings = loadSettings(process.env, home);
  const socketPath = socketPathFor(home);
  let stopping = false;
  let server: Awaited<ReturnType<typeof serveControl>> | undefined;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`stopping (${why}); tunnels stay recorded and come back at the next start`);
    server?.close();
    await sup.close().catch((err) => log.error(`close: ${describeError(err)}`));
    if (process.platform !== 'win32' && existsSync(socketPath)) unlinkSync(socketPath);
    await lock.release();
    process.exit(0);
  };

  const sup = await Supervisor.start(
    {
      home,
      basePort: settings.basePort,
      uiPort: settings.uiPort,
      socketPath,
      log,
      env: process.env,
      guard: { origins: settings.allowedOrigins, hosts: settings.allowedHosts },
      onShutdown: () => void stop('shutdown requested'),
    },
    nativeCryptoWarning(),
  );
  server = await serveControl(socketPath, sup, log);
  log.info(`vai-mcp ${VERSION} supervisor pid ${process.pid} ready: home ${home}, base port ${settings.basePort}, socket ${socketPath}`);
  if (settings.allowedOrigins.length || settings.allowedHosts.length) {
    log.info(`every tunnel's guard also allows origins [${settings.allowedOrigins.join(', ')}] and hosts [${settings.allowedHosts.join(', ')}]`);
  }

  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGHUP', () => {}); // a closed terminal must not end the tunnels
}

// One broken connection must never take every tunnel down: log and keep serving.
process.on('uncaughtException', (err) => log.error(`uncaught: ${err.stack ?? err.message}`));
process.on('unhandledRejection', (err) => log.error(`unhandled rejection: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`));

main().catch((err) => {
  log.error(`supervisor failed to start: ${describeError(err)}`);
  process.exit(1);
});
