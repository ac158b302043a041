/**
 * The supervisor lock: exactly one supervisor per VAI_HOME. It must die with its holder, so it is
 * an OS file lock, not a pid file or "connect, else spawn" (which races when ten clients start at
 * once). Node has no flock(), but SQLite takes POSIX locks: an exclusive transaction on a lock
 * database is held until the process exits, however it exits (kill -9 included).
 */
import { chmodSync, closeSync, openSync } from 'node:fs';
import sqlite3 from 'sqlite3';

export interface HeldLock {
  release(): Promise<void>;
}

/** Takes the lock, or resolves `undefined` at once when another process holds it. */
export function acquireLock(file: string): Promise<HeldLock | undefined> {
  closeSync(openSync(file, 'a', 0o600));
  chmodSync(file, 0o600);
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(file, (err) => {
      if (err) return reject(err);
      // node-sqlite3 waits 1 s on a busy database by default; a loser must leave at once.
      db.configure('busyTimeout', 0);
      db.exec('PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;', (e) => {
        if (!e) {
          resolve({ release: () => new Promise<void>((r) => db.close(() => r())) });
          return;
        }
        db.close();
        if ((e as NodeJS.ErrnoException).code === 'SQLITE_BUSY' || (e as NodeJS.ErrnoException).code === 'SQLITE_LOCKED') resolve(undefined);
        else reject(e);
      });
    });
  });
}
