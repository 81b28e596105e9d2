/**
 * Durable controller state: a write-behind journal of the JobTable in SQLite (`node:sqlite`,
 * WAL). The in-memory JobTable stays the source of truth for reads; after each controller
 * mutation the jobs it touched (JobTable.dirty) are upserted as one JSON row per job, with their
 * tasks and attempts, in one transaction, together with the endpoints that changed. On start the
 * rows are loaded back into a JobTable and an EndpointTable. The autoscaler's scale-group and
 * slice state is one more row, written when it changes. Registered workers are one row each
 * (their registration: address, resources, attributes, slice), written in the same transaction
 * when a worker registers or is removed; heartbeats are not written. On start they are loaded as
 * reconnecting until they re-register.
 *
 * The file carries a schema version in its `meta` table. Older files are migrated in place
 * (v1 → v2 adds the endpoint and autoscaler tables, v2 → v3 the workers table); a file written by a newer Iris is refused
 * with an error naming the file and both versions, and is never altered.
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { EndpointSchema, JobSpecSchema } from "../rpc/gen/iris/v1/types_pb.ts";
import type { GroupState, SliceState } from "../types.ts";
import type { JobRecord, JobTable, TaskRecord } from "./state.ts";
import type { EndpointTable } from "./endpoints.ts";
import type { PersistedWorker, WorkerTable } from "./workers.ts";

/**
 * The schema version this code writes and understands.
 * v1: meta, jobs. v2: + endpoints, autoscaler. v3: + workers.
 */
export const STATE_SCHEMA_VERSION = 3;

/** Statements that bring a file from version `index + 1` to `index + 2`. */
const MIGRATIONS: readonly (readonly string[])[] = [
  [
    "CREATE TABLE IF NOT EXISTS endpoints (endpoint_id TEXT PRIMARY KEY, row TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS autoscaler (key TEXT PRIMARY KEY, row TEXT NOT NULL)",
  ],
  ["CREATE TABLE IF NOT EXISTS workers (worker_id TEXT PRIMARY KEY, row TEXT NOT NULL)"],
];

/** A slice as the autoscaler last knew it. */
export interface PersistedSlice {
  readonly state: SliceState;
  readonly workerIds: readonly string[];
  readonly error?: string;
}

/** The autoscaler's memory: slices it created or adopted, and per-group timing state. */
export interface PersistedAutoscaler {
  readonly slices: readonly PersistedSlice[];
  readonly groups: readonly GroupState[];
}

/** The state file's name inside the state dir. */
export const STATE_FILE = "controller.sqlite3";

/** A state file written by a newer Iris (or otherwise unusable). */
export class StateStoreError extends Error {
  override name = "StateStoreError";
}

/** Options for {@linkcode StateStore.open}. */
export interface StateStoreOptions {
  /**
   * SQLite `synchronous` level. FULL fsyncs the WAL on every commit (survives power loss);
   * NORMAL survives a process crash only. @default "FULL"
   */
  synchronous?: "FULL" | "NORMAL";
}

/** What a load found. */
export interface LoadStats {
  readonly jobs: number;
  readonly tasks: number;
  readonly ms: number;
}

interface JobRow {
  readonly job: Omit<JobRecord, "spec" | "childIds" | "counts"> & { spec: JsonValue };
  readonly tasks: TaskRecord[];
}

/** The SQLite-backed journal of a JobTable. */
export class StateStore {
  readonly path: string;
  readonly #db: DatabaseSync;
  readonly #upsert: StatementSync;
  readonly #delete: StatementSync;
  readonly #upsertEndpoint: StatementSync;
  readonly #deleteEndpoint: StatementSync;
  readonly #upsertWorker: StatementSync;
  readonly #deleteWorker: StatementSync;
  readonly #setMeta: StatementSync;
  #lastAutoscaler = "";
  #closed = false;

  private constructor(path: string, db: DatabaseSync) {
    this.path = path;
    this.#db = db;
    this.#upsert = db.prepare(
      "INSERT INTO jobs (job_id, submitted_at, row) VALUES (?, ?, ?) " +
        "ON CONFLICT(job_id) DO UPDATE SET submitted_at = excluded.submitted_at, row = excluded.row",
    );
    this.#delete = db.prepare("DELETE FROM jobs WHERE job_id = ?");
    this.#upsertEndpoint = db.prepare(
      "INSERT INTO endpoints (endpoint_id, row) VALUES (?, ?) " +
        "ON CONFLICT(endpoint_id) DO UPDATE SET row = excluded.row",
    );
    this.#deleteEndpoint = db.prepare("DELETE FROM endpoints WHERE endpoint_id = ?");
    this.#upsertWorker = db.prepare(
      "INSERT INTO workers (worker_id, row) VALUES (?, ?) " +
        "ON CONFLICT(worker_id) DO UPDATE SET row = excluded.row",
    );
    this.#deleteWorker = db.prepare("DELETE FROM workers WHERE worker_id = ?");
    this.#setMeta = db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)");
  }

  /**
   * Opens (creating if needed) `<dir>/controller.sqlite3`.
   * @throws {StateStoreError} when the file's schema is newer than {@linkcode STATE_SCHEMA_VERSION}.
   */
  static open(dir: string, options: StateStoreOptions = {}): StateStore {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    // The state holds every job's spec and env: only the controller's user may enter the dir,
    // also when the operator created it (tasks run as other users; docs/security.md).
    if (Deno.build.os !== "windows") Deno.chmodSync(dir, 0o700);
    const path = `${dir.replace(/\/+$/, "")}/${STATE_FILE}`;
    const db = new DatabaseSync(path);
    try {
      // Check the version before touching anything (journal mode included).
      const hasMeta = db.prepare(
        "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
      ).get();
      if (hasMeta) {
        const row = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get();
        const version = Number(row?.value ?? 0);
        if (!Number.isInteger(version) || version > STATE_SCHEMA_VERSION) {
          throw new StateStoreError(
            `${path}: controller state has schema version ${
              row?.value ?? "?"
            }, but this Iris understands only up to version ${STATE_SCHEMA_VERSION}; ` +
              "refusing to open it (upgrade Iris, or use another --state-dir)",
          );
        }
      }
      db.exec("PRAGMA journal_mode = WAL");
      db.exec(`PRAGMA synchronous = ${options.synchronous ?? "FULL"}`);
      db.exec("BEGIN IMMEDIATE");
      db.exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
      db.exec(
        "CREATE TABLE IF NOT EXISTS jobs " +
          "(job_id TEXT PRIMARY KEY, submitted_at INTEGER NOT NULL, row TEXT NOT NULL)",
      );
      const row = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get();
      // A new file starts at version 1 and takes every migration, like an old one.
      const from = row ? Number(row.value) : 1;
      for (let v = from; v < STATE_SCHEMA_VERSION; v++) {
        for (const sql of MIGRATIONS[v - 1]!) db.exec(sql);
      }
      db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)").run(
        String(STATE_SCHEMA_VERSION),
      );
      db.exec("COMMIT");
    } catch (err) {
      if (db.isTransaction) db.exec("ROLLBACK");
      db.close();
      throw err;
    }
    return new StateStore(path, db);
  }

  /** Loads every persisted job into `table` (which should be empty). */
  load(table: JobTable): LoadStats {
    const t0 = performance.now();
    const rows = this.#db.prepare("SELECT row FROM jobs ORDER BY submitted_at, rowid").all();
    let tasks = 0;
    const entries: { job: JobRecord; tasks: TaskRecord[] }[] = [];
    for (const r of rows) {
      const parsed = JSON.parse(String(r.row)) as JobRow;
      const job: JobRecord = {
        ...parsed.job,
        spec: fromJson(JobSpecSchema, parsed.job.spec),
        childIds: new Set(),
        counts: {},
      };
      tasks += parsed.tasks.length;
      entries.push({ job, tasks: parsed.tasks });
    }
    table.restore(entries);
    table.dirty.clear();
    return { jobs: entries.length, tasks, ms: performance.now() - t0 };
  }

  /**
   * Writes the jobs in `table.dirty` (upsert, or delete when gone), the endpoints in
   * `endpoints.dirty` and the workers in `workers.dirty` in one transaction, then clears them.
   * On failure the ids stay dirty and the error is thrown.
   */
  flush(table: JobTable, endpoints?: EndpointTable, workers?: WorkerTable): void {
    const endpointIds = endpoints ? [...endpoints.dirty] : [];
    const workerIds = workers ? [...workers.dirty] : [];
    if (
      (table.dirty.size === 0 && endpointIds.length === 0 && workerIds.length === 0) ||
      this.#closed
    ) return;
    const ids = [...table.dirty];
    this.#db.exec("BEGIN");
    try {
      for (const id of ids) {
        const job = table.jobs.get(id);
        if (!job) {
          this.#delete.run(id);
          continue;
        }
        const tasks = job.taskIds.map((tid) => table.tasks.get(tid)).filter((t) => t !== undefined);
        this.#upsert.run(id, job.submittedAtMs, JSON.stringify(serializeJob(job, tasks)));
      }
      if (endpoints && endpointIds.length) {
        for (const id of endpointIds) {
          const e = endpoints.get(id);
          if (e) this.#upsertEndpoint.run(id, JSON.stringify(toJson(EndpointSchema, e)));
          else this.#deleteEndpoint.run(id);
        }
        this.#setMeta.run("endpoint_seq", String(endpoints.sequence));
      }
      for (const id of workerIds) {
        const w = workers!.persisted(id);
        if (w) this.#upsertWorker.run(id, JSON.stringify(w));
        else this.#deleteWorker.run(id);
      }
      this.#db.exec("COMMIT");
    } catch (err) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw err;
    }
    for (const id of ids) table.dirty.delete(id);
    for (const id of endpointIds) endpoints!.dirty.delete(id);
    for (const id of workerIds) workers!.dirty.delete(id);
  }

  /**
   * Commits one small write (the time, in `meta`): throws when the state cannot be written, e.g.
   * on a full or failing disk. The controller probes with it while it refuses writes.
   */
  probe(): void {
    if (this.#closed) return;
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      this.#setMeta.run("last_probe_ms", String(Date.now()));
      this.#db.exec("COMMIT");
    } catch (err) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw err;
    }
  }

  /** The persisted workers' registrations, in registration order. */
  loadWorkers(): PersistedWorker[] {
    return this.#db.prepare("SELECT row FROM workers ORDER BY rowid").all()
      .map((r) => JSON.parse(String(r.row)) as PersistedWorker);
  }

  /** Loads the persisted endpoints into `endpoints` (which should be empty). */
  loadEndpoints(endpoints: EndpointTable): number {
    const rows = this.#db.prepare("SELECT row FROM endpoints ORDER BY rowid").all();
    const seq = this.#db.prepare("SELECT value FROM meta WHERE key = 'endpoint_seq'").get();
    endpoints.restore(
      rows.map((r) => fromJson(EndpointSchema, JSON.parse(String(r.row)) as JsonValue)),
      Number(seq?.value ?? 0),
    );
    return rows.length;
  }

  /**
   * Saves the autoscaler's state when it differs from what was last saved (it is small and
   * changes rarely, so it is one row, rewritten whole).
   */
  saveAutoscaler(state: PersistedAutoscaler): void {
    if (this.#closed) return;
    const row = JSON.stringify(state);
    if (row === this.#lastAutoscaler) return;
    this.#db.prepare(
      "INSERT INTO autoscaler (key, row) VALUES ('state', ?) " +
        "ON CONFLICT(key) DO UPDATE SET row = excluded.row",
    ).run(row);
    this.#lastAutoscaler = row;
  }

  /** The autoscaler's last saved state, if any. */
  loadAutoscaler(): PersistedAutoscaler | undefined {
    const r = this.#db.prepare("SELECT row FROM autoscaler WHERE key = 'state'").get();
    if (!r) return undefined;
    this.#lastAutoscaler = String(r.row);
    return JSON.parse(this.#lastAutoscaler) as PersistedAutoscaler;
  }

  /** Closes the database. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }
}

function serializeJob(job: JobRecord, tasks: TaskRecord[]): JobRow {
  const { spec: _spec, childIds: _children, counts: _counts, ...rest } = job;
  return {
    job: { ...rest, spec: toJson(JobSpecSchema, job.spec) },
    tasks,
  };
}
