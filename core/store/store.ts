/**
 * Persistent state: keyv + @keyv/sqlite, one SQLite file in VAI_HOME (0700 folder, 0600 file).
 * Only the supervisor writes it. Each collection is loaded into memory when the store opens and
 * written through on every change, so reads never wait on SQLite.
 *
 * A state file that cannot be read is moved aside (never overwritten) and reported.
 */
import { chmodSync, closeSync, existsSync, openSync, renameSync } from 'node:fs';
import Keyv from 'keyv';
import KeyvSqlite from '@keyv/sqlite';
import type { WorkflowSpec } from '../api/api.js';
import type { NodeMap } from '../comfy/types.js';
import type { Config } from '../config/config.js';
import { homeWriteError } from '../lib/errors.js';
import { Mutex } from '../lib/mutex.js';
import { homeFiles } from '../lib/paths.js';
import type { JobKind, JobStatus } from '../model/job.js';
import type { ProviderName } from '../model/provider.js';
import type { InstanceStatus, SshEndpoint } from '../model/instance.js';
import type { MoneyAction, LedgerEntry } from '../model/money.js';

export interface InstanceRecord {
  instance_id: string;
  provider: ProviderName;
  label: string;
  status: InstanceStatus;
  /** The latest human-readable progress or failure text. */
  status_message?: string;
  ssh?: SshEndpoint;
  remote_port: number;
  /** The local port its tunnel had last: a reopened tunnel gets it back when it is free (sticky). */
  local_port?: number;
  /** The same for each of its other apps (`instance_config.ports`), by name. */
  app_ports?: Record<string, number>;
  /** The box's PORTAL_CONFIG once read from it (`instance_config.ports: "portal"`). */
  portal_config?: string;
  /** The validated config it was made from (paths absolute). Secrets in it are never shown. */
  config: Config;
  dph_total?: number;
  /** What it bills while stopped ($/h, its storage), where the provider says. */
  storage_dph?: number;
  created_at: string;
  ready_at?: string;
  /** Absolute deadlines (ISO), so a restarted supervisor acts at once when one has passed. */
  ready_deadline?: string;
  lifetime_deadline?: string;
  request_id?: string;
}

export interface TunnelRecord {
  instance_id: string;
  local_port: number;
  remote_port: number;
  ssh: SshEndpoint;
  /** Private key file used, if any (the agent is used otherwise). */
  key_path?: string;
  created_at: string;
  /** Its other apps' forwards, by name (`local_port` / `remote_port` above are ComfyUI's). */
  apps?: Record<string, { local_port: number; remote_port: number }>;
}

/** Kept under the box's id for its main app, under `<id>:<app>` for its other apps. */
export interface PortLease {
  port: number;
  instance_id: string;
  app?: string;
}

/** A create request with an idempotency key (MCP `request_id`). */
export interface RequestRecord {
  request_id: string;
  provider: ProviderName;
  /** A digest of the config and count: the same id with another config is an error. */
  fingerprint: string;
  instance_ids: string[];
  created_at: string;
}

/** A workflow run (core/jobs.ts). Progress lines live in memory; the record changes with the status. */
export interface JobRecord {
  job_id: string;
  instance_id: string;
  status: JobStatus;
  /** Absent on records from before prepare jobs: a workflow job. */
  kind?: JobKind;
  /** For a prepare job: its workflow file, if any, and empty parameters and output_dir. */
  workflow: WorkflowSpec;
  prompt_id?: string;
  /** The websocket client id the graph was queued under (ComfyUI sends its progress there). */
  client_id: string;
  node_count?: number;
  /** What progress lines need of the graph: each node's name and inputs (see comfy/run.ts). */
  nodes?: NodeMap;
  outputs: string[];
  error?: string;
  created_at: string;
  finished_at?: string;
  destroy_box: boolean;
  box_destroyed?: boolean;
  /** Its box's price when it started ($/h), for the job's cost. */
  dph_total?: number;
}

/** The spending budget of this VAI_HOME (one record, key `budget`). */
export interface BudgetRecord {
  /** The most the paid boxes may cost; null: no budget (spend is still counted). */
  limit_usd: number | null;
  /** What happens to the live paid boxes when the spend reaches the limit. */
  action: MoneyAction;
  /** Spend is counted from here (the first use, or `budget --reset`). */
  counted_from_ms: number;
}

export interface HostKeyPin {
  instance_id: string;
  host_port: string;
  /** SHA-256 of the host key, hex. */
  sha256: string;
  pinned_at: string;
}

/**
 * One keyv namespace, mirrored in memory. Writes reach SQLite one at a time, in call order:
 * node-sqlite3 may run a connection's statements in parallel, so two quick writes to one key
 * could otherwise land out of order and an older value survive a restart.
 */
export class Collection<T> {
  private readonly items = new Map<string, T>();
  private readonly writes = new Mutex();
  constructor(
    private readonly keyv: Keyv<T>,
    /** Turns a failed write into the error a user sees (it names VAI_HOME and the cause). */
    private readonly writeError: (err: unknown) => Error,
  ) {}

  async load(): Promise<void> {
    if (!this.keyv.iterator) throw new Error('the keyv store cannot iterate');
    for await (const [key, value] of this.keyv.iterator(this.keyv.namespace)) {
      if (value !== undefined) this.items.set(String(key), value as T);
    }
  }
  get(key: string): T | undefined {
    return this.items.get(key);
  }
  has(key: string): boolean {
    return this.items.has(key);
  }
  values(): T[] {
    return [...this.items.values()];
  }
  entries(): [string, T][] {
    return [...this.items.entries()];
  }
  /**
   * Memory changes at once (readers never wait); when the write fails (a full disk) memory goes
   * back to what is on disk and the caller gets the error: nothing is reported done that a
   * restart would lose.
   */
  async set(key: string, value: T): Promise<void> {
    const before = this.items.get(key);
    this.items.set(key, value);
    await this.persist(key, before, () => this.keyv.set(key, value));
  }
  async delete(key: string): Promise<void> {
    const before = this.items.get(key);
    this.items.delete(key);
    await this.persist(key, before, () => this.keyv.delete(key));
  }
  private async persist(key: string, before: T | undefined, write: () => Promise<unknown>): Promise<void> {
    try {
      await this.writes.run(write);
    } catch (err) {
      if (before === undefined) this.items.delete(key);
      else this.items.set(key, before);
      throw this.writeError(err);
    }
  }
}

function isWriteFailure(err: unknown): boolean {
  const e = err as NodeJS.ErrnoException;
  return /ENOSPC|EROFS|EACCES|EDQUOT|SQLITE_FULL|SQLITE_READONLY|SQLITE_CANTOPEN|SQLITE_IOERR/.test(`${e?.code ?? ''} ${e?.message ?? ''}`);
}

export interface OpenedState {
  store: StateStore;
  /** Set when the previous state file could not be read and was moved aside. */
  warning?: string;
}

export class StateStore {
  readonly instances: Collection<InstanceRecord>;
  readonly tunnels: Collection<TunnelRecord>;
  readonly ports: Collection<PortLease>;
  readonly hostKeys: Collection<HostKeyPin>;
  readonly requests: Collection<RequestRecord>;
  readonly jobs: Collection<JobRecord>;
  /** What each paid box has cost (money/ledger.ts), and the budget. */
  readonly ledger: Collection<LedgerEntry>;
  readonly budget: Collection<BudgetRecord>;
  /** Counters for ids (`local-1`, `ssh-1`, ...). */
  readonly counters: Collection<number>;
  private readonly stores: KeyvSqlite[] = [];
  private readonly keyvs: Keyv[] = [];

  private constructor(file: string, home: string) {
    const make = <T>(namespace: string): Collection<T> => {
      const store = new KeyvSqlite({ uri: `sqlite://${file}`, busyTimeout: 5000 });
      store.on('error', () => {}); // surfaced through the rejected promise of the call instead
      // throwOnErrors: without it keyv 5 swallows a failed write (SQLITE_FULL) and resolves false.
      const keyv = new Keyv<T>({ store, namespace, throwOnErrors: true });
      keyv.on('error', () => {});
      this.stores.push(store);
      this.keyvs.push(keyv);
      return new Collection<T>(keyv, (err) => homeWriteError(err, home, `the state file ${file}`));
    };
    this.instances = make('instances');
    this.tunnels = make('tunnels');
    this.ports = make('ports');
    this.hostKeys = make('hostkeys');
    this.requests = make('requests');
    this.jobs = make('jobs');
    this.ledger = make('ledger');
    this.budget = make('budget');
    this.counters = make('counters');
  }

  private async loadAll(): Promise<void> {
    // All at once: each collection has its own connection, and each must have a handler
    // attached before a broken file rejects them (else they surface as unhandled rejections).
    const collections = [this.instances, this.tunnels, this.ports, this.hostKeys, this.requests, this.jobs, this.ledger, this.budget, this.counters] as Collection<unknown>[];
    const results = await Promise.allSettled(collections.map((c) => c.load()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.stores.map((s) => s.disconnect()));
  }

  /** Next id for a provider's own numbering: `local-1`, `local-2`, ... never reused. */
  async nextId(prefix: string): Promise<string> {
    const n = (this.counters.get(prefix) ?? 0) + 1;
    await this.counters.set(prefix, n);
    return `${prefix}-${n}`;
  }

  /**
   * Opens the state file of a VAI_HOME (which must exist, 0700). An unreadable file is renamed
   * to `state.sqlite.unreadable-<time>` and a fresh one is started; the warning says so.
   */
  static async open(home: string): Promise<OpenedState> {
    const file = homeFiles(home).state;
    try {
      // Create the file ourselves so that it is 0600 from the first byte.
      if (!existsSync(file)) closeSync(openSync(file, 'a', 0o600));
      chmodSync(file, 0o600);
    } catch (err) {
      throw homeWriteError(err, home, `the state file ${file}`);
    }
    const first = new StateStore(file, home);
    try {
      await first.loadAll();
      return { store: first };
    } catch (err) {
      await first.close();
      // A full disk or a read-only mount is not a broken file: keep it where it is.
      if (isWriteFailure(err)) throw homeWriteError(err, home, `the state file ${file}`);
      const aside = `${file}.unreadable-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      renameSync(file, aside);
      closeSync(openSync(file, 'a', 0o600));
      const fresh = new StateStore(file, home);
      await fresh.loadAll();
      const reason = err instanceof Error ? err.message : String(err);
      return {
        store: fresh,
        warning: `The state file ${file} could not be read (${reason}). It was moved to ${aside} and a new one was started; instances recorded only there are no longer tracked (check your provider's console for boxes still running).`,
      };
    }
  }
}
