/**
 * Durable controller state: a write-behind journal of the JobTable in SQLite (`node:sqlite`,
 * WAL). The in-memory JobTable stays the source of truth for reads; after each controller
 * mutation what it touched is written in one transaction: a job row (spec and job-level state)
 * per changed job and a task row (the task with its attempts) per changed task, so a write grows
 * with what changed, not with the job's replica count. Endpoints, registered workers and the
 * autoscaler's state are rows of their own. On start the rows are loaded back.
 *
 * The state is self-describing: every commit bumps `meta.commit_seq`, and a small manifest file
 * beside the database (`controller.manifest`) records the last commit's sequence number and
 * job/task counts. The database also says whether it is in use (`meta.in_use`, written straight
 * into the main file by a checkpoint when the store opens, cleared on a clean close). A state
 * dir whose database holds fewer commits than its manifest records (the WAL was deleted, is
 * corrupt or was left behind by a copy), or a main file that was in use and comes without its
 * WAL, is refused with a message naming the files. The WAL is checkpointed into the main file
 * periodically and on a clean close.
 *
 * A row that does not parse is named (table, id) in the startup error; `skipCorruptRows` moves
 * it (with the rest of its job) to the `quarantine` table instead.
 *
 * The file carries a schema version in its `meta` table. Older files are migrated in place
 * (v1 → v2 adds the endpoint and autoscaler tables, v2 → v3 the workers table, v3 → v4 splits
 * each job row into a job row and one row per task, v4 → v5 drops the rows of tasks still as
 * submitted); a file written by a newer Iris is refused with an error naming the file and both
 * versions, and is never altered.
 *
 * A task still as submitted (pending, never tried; see {@linkcode isInitialTask}) has no row
 * (v5): its job's row says everything about it, so a million pending tasks cost their jobs' rows
 * to write and to load (#20).
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { EndpointSchema, type JobSpec, JobSpecSchema } from "../rpc/gen/iris/v1/types_pb.ts";
import type { GroupState, SliceState } from "../types.ts";
import {
  type AttemptRecord,
  type JobRecord,
  type JobTable,
  newTask,
  NO_ATTEMPTS,
  NO_PORTS,
  NO_STDERR,
  type TaskRecord,
} from "./state.ts";
import { TaskState } from "../rpc/gen/iris/v1/types_pb.ts";
import type { EndpointTable } from "./endpoints.ts";
import type { PersistedWorker, WorkerTable } from "./workers.ts";
import { type Duration, seconds } from "../time.ts";
import { isJobTerminal } from "./job_rules.ts";
import { describeError } from "../errors.ts";

/**
 * The schema version this code writes and understands.
 * v1: meta, jobs. v2: + endpoints, autoscaler. v3: + workers. v4: + tasks, quarantine (job rows
 * no longer hold their tasks). v5: tasks still as submitted have no row.
 */
export const STATE_SCHEMA_VERSION = 5;

const TASKS_TABLE = "CREATE TABLE IF NOT EXISTS tasks (job_id TEXT NOT NULL, " +
  "task_index INTEGER NOT NULL, row TEXT NOT NULL, PRIMARY KEY (job_id, task_index)) WITHOUT ROWID";
const QUARANTINE_TABLE = "CREATE TABLE IF NOT EXISTS quarantine (id INTEGER PRIMARY KEY, " +
  "table_name TEXT NOT NULL, row_id TEXT NOT NULL, row TEXT, error TEXT NOT NULL, " +
  "quarantined_at_ms INTEGER NOT NULL)";

/** Steps that bring a file from version `index + 1` to `index + 2` (inside one transaction). */
const MIGRATIONS: readonly ((db: DatabaseSync) => void)[] = [
  (db) => {
    db.exec(
      "CREATE TABLE IF NOT EXISTS endpoints (endpoint_id TEXT PRIMARY KEY, row TEXT NOT NULL)",
    );
    db.exec("CREATE TABLE IF NOT EXISTS autoscaler (key TEXT PRIMARY KEY, row TEXT NOT NULL)");
  },
  (db) => {
    db.exec("CREATE TABLE IF NOT EXISTS workers (worker_id TEXT PRIMARY KEY, row TEXT NOT NULL)");
  },
  migrateV3ToV4,
  migrateV4ToV5,
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
/** The manifest's name inside the state dir: the last commit's sequence number and counts. */
export const MANIFEST_FILE = "controller.manifest";
/** Every file that is part of the state (SQLite's `-wal` and `-shm` beside the database). */
export const STATE_FILES = [
  STATE_FILE,
  `${STATE_FILE}-wal`,
  `${STATE_FILE}-shm`,
  MANIFEST_FILE,
] as const;

/** A state file written by a newer Iris, an incomplete or corrupt state, or a failed backup. */
export class StateStoreError extends Error {
  override name = "StateStoreError";
}

/** The database holds fewer commits than recorded, or lost its WAL (see acceptStateLoss). */
export class IncompleteStateError extends StateStoreError {
  override name = "IncompleteStateError";
}

/** Options for {@linkcode StateStore.open}. */
export interface StateStoreOptions {
  /**
   * SQLite `synchronous` level. FULL fsyncs the WAL on every commit (survives power loss);
   * NORMAL survives a process crash only. @default "FULL"
   */
  synchronous?: "FULL" | "NORMAL";
  /**
   * Rows that do not parse are moved to the `quarantine` table (with every row of their job)
   * instead of stopping the load. @default false
   */
  skipCorruptRows?: boolean;
  /** How often the WAL is folded into the main file (`wal_checkpoint(TRUNCATE)`). @default 60s */
  checkpointInterval?: Duration;
  /**
   * Start from what the database holds even when it is incomplete (its WAL lost or corrupt):
   * the refusal becomes a warning. @default false
   */
  acceptStateLoss?: boolean;
}

/** What a load found. */
export interface LoadStats {
  readonly jobs: number;
  readonly tasks: number;
  readonly ms: number;
  /** One line per row moved to the quarantine table (with --skip-corrupt-rows). */
  readonly quarantined: readonly string[];
}

/** The manifest's content. */
export interface Manifest {
  readonly seq: number;
  readonly jobs: number;
  readonly tasks: number;
}

/** A job row (v4): the job without its tasks; task ids are `<job id>/<index>`. */
type JobRow = Omit<JobRecord, "spec" | "childIds" | "counts" | "taskIds"> & { spec: JsonValue };
/** A task row of v4: the task without the fields its key holds, as a JSON object. */
type TaskRowV4 = Omit<TaskRecord, "taskId" | "jobId" | "index">;

/** A row that did not parse. */
interface CorruptRow {
  readonly table: string;
  readonly id: string;
  readonly error: string;
  /** The job whose rows go to quarantine with it ("" for non-job tables). */
  readonly jobId: string;
}

const MANIFEST_BYTES = 256;

/** The SQLite-backed journal of a JobTable. */
export class StateStore {
  readonly path: string;
  readonly dir: string;
  readonly #db: DatabaseSync;
  readonly #opts: StateStoreOptions;
  readonly #upsertJob: StatementSync;
  readonly #deleteJob: StatementSync;
  readonly #upsertTask: StatementSync;
  readonly #deleteTasks: StatementSync;
  readonly #deleteTask: StatementSync;
  readonly #upsertEndpoint: StatementSync;
  readonly #deleteEndpoint: StatementSync;
  readonly #upsertWorker: StatementSync;
  readonly #deleteWorker: StatementSync;
  readonly #setMeta: StatementSync;
  readonly #manifest: Deno.FsFile;
  readonly #specJson = new WeakMap<JobSpec, string>();
  /** Each active job's row as last committed, less its spec (terminal jobs are not kept). */
  readonly #jobJson = new WeakMap<JobRecord, string>();
  #seq: number;
  #counts = { jobs: 0, tasks: 0 };
  #lastCheckpoint = performance.now();
  #lastAutoscaler = "";
  #closed = false;
  readonly #warnings: string[] = [];
  /** Rows the last flush wrote (job rows and task rows). */
  lastFlush = { jobRows: 0, taskRows: 0 };
  /** Job and task rows written since the store opened, and their bytes (JSON text). */
  readonly written = { rows: 0, bytes: 0 };

  private constructor(dir: string, path: string, db: DatabaseSync, opts: StateStoreOptions) {
    this.dir = dir;
    this.path = path;
    this.#db = db;
    this.#opts = opts;
    this.#upsertJob = db.prepare(
      "INSERT INTO jobs (job_id, submitted_at, row) VALUES (?, ?, ?) " +
        "ON CONFLICT(job_id) DO UPDATE SET submitted_at = excluded.submitted_at, row = excluded.row",
    );
    this.#deleteJob = db.prepare("DELETE FROM jobs WHERE job_id = ?");
    this.#upsertTask = db.prepare(
      "INSERT INTO tasks (job_id, task_index, row) VALUES (?, ?, ?) " +
        "ON CONFLICT(job_id, task_index) DO UPDATE SET row = excluded.row",
    );
    this.#deleteTasks = db.prepare("DELETE FROM tasks WHERE job_id = ?");
    this.#deleteTask = db.prepare("DELETE FROM tasks WHERE job_id = ? AND task_index = ?");
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
    this.#seq = Number(metaValue(db, "commit_seq") ?? 0);
    this.#counts = {
      jobs: Number(db.prepare("SELECT count(*) AS n FROM jobs").get()!.n),
      tasks: taskCount(db),
    };
    this.#manifest = Deno.openSync(`${dir}/${MANIFEST_FILE}`, {
      read: true,
      write: true,
      create: true,
      mode: 0o600,
    });
  }

  /**
   * Opens (creating if needed) `<dir>/controller.sqlite3`.
   * @throws {StateStoreError} when the file's schema is newer than {@linkcode STATE_SCHEMA_VERSION},
   * or when the state is incomplete (fewer commits than the manifest records, or a main file that
   * was in use and has lost its WAL). Nothing is altered then.
   */
  static open(dir: string, options: StateStoreOptions = {}): StateStore {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    // The state holds every job's spec and env: only the controller's user may enter the dir,
    // also when the operator created it (tasks run as other users; docs/security.md).
    if (Deno.build.os !== "windows") Deno.chmodSync(dir, 0o700);
    dir = dir.replace(/\/+$/, "") || "/";
    const path = `${dir}/${STATE_FILE}`;
    // Checked through a read-only connection: a refused state is left exactly as found.
    let loss: string | undefined;
    try {
      preflight(dir);
    } catch (err) {
      if (!(options.acceptStateLoss && err instanceof IncompleteStateError)) throw err;
      loss = `${err.message.split(". Refusing")[0]}; starting anyway (--accept-state-loss)`;
    }
    const db = new DatabaseSync(path);
    let store: StateStore;
    try {
      db.exec("PRAGMA journal_mode = WAL");
      db.exec(`PRAGMA synchronous = ${options.synchronous ?? "FULL"}`);
      db.exec("BEGIN IMMEDIATE");
      db.exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
      db.exec(
        "CREATE TABLE IF NOT EXISTS jobs " +
          "(job_id TEXT PRIMARY KEY, submitted_at INTEGER NOT NULL, row TEXT NOT NULL)",
      );
      const version = metaValue(db, "schema_version");
      // A new file starts at version 1 and takes every migration, like an old one.
      const from = version ? Number(version) : 1;
      for (let v = from; v < STATE_SCHEMA_VERSION; v++) MIGRATIONS[v - 1]!(db);
      db.exec(QUARANTINE_TABLE);
      const set = db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)");
      set.run("schema_version", String(STATE_SCHEMA_VERSION));
      set.run("commit_seq", String(Number(metaValue(db, "commit_seq") ?? 0) + 1));
      // In use until a clean close: a copy of the main file alone says it needs its WAL.
      set.run("in_use", "1");
      db.exec("COMMIT");
      // ...and the main file itself says so (the checkpoint writes the WAL into it).
      db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      store = new StateStore(dir, path, db, options);
    } catch (err) {
      if (db.isTransaction) db.exec("ROLLBACK");
      db.close();
      throw named(path, err);
    }
    store.#writeManifest();
    if (loss) store.#warnings.push(loss);
    return store;
  }

  /** The number of commits written so far (`meta.commit_seq`). */
  get commitSeq(): number {
    return this.#seq;
  }

  /**
   * Loads every persisted job into `table` (which should be empty).
   * @throws {StateStoreError} naming each corrupt row (table, id), unless `skipCorruptRows`.
   */
  load(table: JobTable): LoadStats {
    try {
      return this.#load(table);
    } catch (err) {
      throw named(this.path, err);
    }
  }

  #load(table: JobTable): LoadStats {
    const t0 = performance.now();
    const corrupt: CorruptRow[] = [];
    const badJobs = new Set<string>();
    const jobRows = rowArrays<[string, string]>(
      this.#db.prepare("SELECT job_id, row FROM jobs ORDER BY submitted_at, rowid"),
    );
    const jobs = new Map<string, { job: JobRecord; tasks: TaskRecord[] }>();
    for (const r of jobRows) {
      const [jobId, text] = r;
      try {
        jobs.set(jobId, { job: parseJobRow(jobId, text), tasks: [] });
      } catch (err) {
        badJobs.add(jobId);
        corrupt.push({ table: "jobs", id: jobId, error: describeError(err), jobId });
      }
    }
    // One row per job: its task rows as one JSON array of index and row pairs (node:sqlite's
    // cost is per row, so this loads a job of many tasks several times faster than a row per
    // task; each row carries its index, so they need no sorting). Tasks still as submitted have
    // no row (v5).
    const grouped = rowArrays<[string, number, string]>(
      this.#db.prepare(
        "SELECT job_id, min(task_index), '[' || group_concat(task_index || ',' || row, ',') || " +
          "']' FROM tasks GROUP BY job_id",
      ),
    );
    const rowsOf = new Map<string, (TaskRecord | undefined)[]>();
    for (const [jobId, min, text] of grouped) {
      const entry = jobs.get(jobId);
      if (!entry) {
        if (!badJobs.has(jobId)) {
          badJobs.add(jobId);
          const id = `${jobId}/${min}`;
          corrupt.push({ table: "tasks", id, error: "no job row for this task", jobId });
        }
        continue;
      }
      const replicas = entry.job.spec.replicas || 1;
      const tasks = parseTaskRows(jobId, replicas, text);
      if (tasks) {
        rowsOf.set(jobId, tasks);
        continue;
      }
      // Something is wrong with this job's task rows: find which one, row by row.
      badJobs.add(jobId);
      corrupt.push(this.#findCorruptTask(jobId, replicas));
    }
    for (const [jobId, entry] of jobs) {
      if (badJobs.has(jobId)) continue;
      const job = entry.job;
      const replicas = job.spec.replicas || 1;
      const rows = rowsOf.get(jobId);
      const initial = initialTaskFields(job);
      const idPrefix = `${jobId}/`;
      for (let i = 0; i < replicas; i++) {
        const task = rows?.[i] ?? newTask(jobId, i, initial, idPrefix);
        entry.tasks.push(task);
        job.taskIds.push(task.taskId);
      }
    }
    const quarantined = this.#handleCorrupt(corrupt, (jobId) => jobs.delete(jobId));
    let tasks = 0;
    for (const { tasks: ts } of jobs.values()) tasks += ts.length;
    table.restore(jobs.values());
    table.clearDirty();
    return { jobs: jobs.size, tasks, ms: performance.now() - t0, quarantined };
  }

  /** The first task row of a job that does not parse or is beyond its replicas. */
  #findCorruptTask(jobId: string, replicas: number): CorruptRow {
    const rows = this.#db.prepare(
      "SELECT task_index, row FROM tasks WHERE job_id = ? ORDER BY task_index",
    ).all(jobId);
    for (const r of rows) {
      const index = Number(r.task_index);
      const id = `${jobId}/${r.task_index}`;
      if (!Number.isInteger(index) || index < 0 || index >= replicas) {
        return {
          table: "tasks",
          id,
          error: `beyond the job's ${replicas} task(s)`,
          jobId,
        };
      }
      try {
        parseTaskRow(jobId, index, String(r.row));
      } catch (err) {
        return { table: "tasks", id, error: describeError(err), jobId };
      }
    }
    return { table: "tasks", id: `${jobId}/?`, error: "unreadable task rows", jobId };
  }

  /**
   * Corrupt rows: a StateStoreError naming them, or (skipCorruptRows) each moved to the
   * quarantine table with every other row of its job; `forget` drops a job from what loads.
   */
  #handleCorrupt(corrupt: CorruptRow[], forget: (jobId: string) => void): string[] {
    if (corrupt.length === 0) return [];
    if (!this.#opts.skipCorruptRows) {
      const shown = corrupt.slice(0, 10).map((c) => `table ${c.table}, id ${c.id}: ${c.error}`);
      if (corrupt.length > shown.length) shown.push(`… and ${corrupt.length - 10} more`);
      throw new StateStoreError(
        `${this.path}: ${corrupt.length} corrupt row(s):\n  ${shown.join("\n  ")}\n` +
          "Restore a backup (docs/durability.md), or start with --skip-corrupt-rows to move " +
          "them (with the rest of their job) to the quarantine table and start without them.",
      );
    }
    const now = Date.now();
    const insert = this.#db.prepare(
      "INSERT INTO quarantine (table_name, row_id, row, error, quarantined_at_ms) " +
        "VALUES (?, ?, ?, ?, ?)",
    );
    const lines: string[] = [];
    this.#commit(() => {
      const jobsDone = new Set<string>();
      for (const c of corrupt) {
        if (c.jobId) {
          if (jobsDone.has(c.jobId)) continue;
          jobsDone.add(c.jobId);
          forget(c.jobId);
          const why = `${c.table} ${c.id}: ${c.error}`;
          const job = this.#db.prepare("SELECT row FROM jobs WHERE job_id = ?").get(c.jobId);
          if (job) insert.run("jobs", c.jobId, String(job.row), why, now);
          const taskRows = this.#db.prepare(
            "SELECT task_index, row FROM tasks WHERE job_id = ? ORDER BY task_index",
          ).all(c.jobId);
          for (const t of taskRows) {
            insert.run("tasks", `${c.jobId}/${t.task_index}`, String(t.row), why, now);
          }
          this.#deleteJob.run(c.jobId);
          this.#deleteTasks.run(c.jobId);
          lines.push(
            `corrupt row (table ${c.table}, id ${c.id}: ${c.error}): job ${c.jobId} skipped; ` +
              `its ${job ? 1 : 0} job row and ${taskRows.length} task row(s) were moved to the ` +
              `quarantine table of ${this.path}`,
          );
        } else {
          const key = c.table === "endpoints" ? "endpoint_id" : "worker_id";
          const row = this.#db.prepare(`SELECT row FROM ${c.table} WHERE ${key} = ?`).get(c.id);
          insert.run(c.table, c.id, row ? String(row.row) : null, c.error, now);
          this.#db.prepare(`DELETE FROM ${c.table} WHERE ${key} = ?`).run(c.id);
          lines.push(
            `corrupt row (table ${c.table}, id ${c.id}: ${c.error}) skipped; ` +
              `moved to the quarantine table of ${this.path}`,
          );
        }
      }
    });
    return lines;
  }

  /**
   * Writes the jobs in `table.dirty` (job and task rows; removal when gone), the tasks in
   * `table.dirtyTasks` (with their job's row), the endpoints in `endpoints.dirty` and the
   * workers in `workers.dirty` in one transaction, then clears them. On failure they stay dirty
   * and the error is thrown.
   */
  flush(table: JobTable, endpoints?: EndpointTable, workers?: WorkerTable): void {
    const endpointIds = endpoints ? [...endpoints.dirty] : [];
    const workerIds = workers ? [...workers.dirty] : [];
    if (
      (table.dirty.size === 0 && table.dirtyTasks.size === 0 && endpointIds.length === 0 &&
        workerIds.length === 0) ||
      this.#closed
    ) return;
    const ids = [...table.dirty];
    const taskIds = [...table.dirtyTasks];
    this.lastFlush = { jobRows: 0, taskRows: 0 };
    const written: [JobRecord, string][] = [];
    this.#commit(() => {
      const whole = new Set(ids);
      for (const id of ids) {
        const job = table.jobs.get(id);
        if (!job) {
          this.#deleteJob.run(id);
          this.#deleteTasks.run(id);
          continue;
        }
        this.#writeJob(job, written);
        // Rows of the job this one replaced (RECREATE) go; tasks as submitted have none.
        if (!table.newJobs.has(id)) this.#deleteTasks.run(id);
        for (const tid of job.taskIds) {
          const task = table.tasks.get(tid);
          if (task && !isInitialTask(task, job)) this.#writeTask(task);
        }
      }
      const jobsOfTasks = new Set<string>();
      for (const tid of taskIds) {
        const task = table.tasks.get(tid);
        if (!task || whole.has(task.jobId)) continue;
        const job = table.jobs.get(task.jobId);
        if (job && isInitialTask(task, job)) this.#deleteTask.run(task.jobId, task.index);
        else this.#writeTask(task);
        jobsOfTasks.add(task.jobId);
      }
      for (const id of jobsOfTasks) {
        const job = table.jobs.get(id);
        if (job) this.#writeJob(job, written, true);
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
    }, { jobs: table.jobs.size, tasks: table.tasks.size });
    for (const [job, json] of written) {
      if (isJobTerminal(job.state)) this.#jobJson.delete(job);
      else this.#jobJson.set(job, json);
    }
    for (const id of ids) {
      table.dirty.delete(id);
      table.newJobs.delete(id);
    }
    for (const id of taskIds) table.dirtyTasks.delete(id);
    for (const id of endpointIds) endpoints!.dirty.delete(id);
    for (const id of workerIds) workers!.dirty.delete(id);
  }

  /**
   * Writes a job's row and notes it in `written` (remembered once committed). With `ifChanged`,
   * a row equal to the last one committed is not written again: a task's transition (say, only
   * assigned) mostly leaves its job's row as it was.
   */
  #writeJob(job: JobRecord, written: [JobRecord, string][], ifChanged = false): void {
    let spec = this.#specJson.get(job.spec);
    if (spec === undefined) {
      spec = JSON.stringify(toJson(JobSpecSchema, job.spec));
      this.#specJson.set(job.spec, spec);
    }
    const {
      spec: _spec,
      childIds: _children,
      counts: _counts,
      taskIds: _taskIds,
      ...rest
    } = job;
    const json = JSON.stringify(rest);
    if (ifChanged && this.#jobJson.get(job) === json) return;
    written.push([job, json]);
    this.lastFlush.jobRows++;
    // `{"spec":…,` + the rest's members (the spec is serialized once per job).
    const row = `{"spec":${spec},${json.slice(1)}`;
    this.#upsertJob.run(job.jobId, job.submittedAtMs, row);
    this.written.rows++;
    this.written.bytes += row.length;
  }

  #writeTask(task: TaskRecord): void {
    this.lastFlush.taskRows++;
    const row = encodeTaskRow(task);
    this.#upsertTask.run(task.jobId, task.index, row);
    this.written.rows++;
    this.written.bytes += row.length;
  }

  /**
   * Runs `write` in a transaction that also bumps the commit sequence number, then records the
   * sequence number (and `counts`) in the manifest and checkpoints when one is due.
   */
  #commit(write: () => void, counts?: { jobs: number; tasks: number }): void {
    this.#db.exec("BEGIN");
    try {
      write();
      this.#setMeta.run("commit_seq", String(this.#seq + 1));
      this.#db.exec("COMMIT");
    } catch (err) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw err;
    }
    this.#seq++;
    if (counts) this.#counts = counts;
    // The commit is durable: what follows must not make it look failed. A manifest left behind
    // is accepted at the next start; a checkpoint is retried at the next interval.
    try {
      this.#writeManifest();
    } catch { /* behind by this commit */ }
    const interval = this.#opts.checkpointInterval ?? seconds(60);
    if (performance.now() - this.#lastCheckpoint >= interval) {
      try {
        this.checkpoint();
      } catch { /* the WAL keeps the commits */ }
    }
  }

  /**
   * Folds the WAL into the main file and truncates it (`wal_checkpoint(TRUNCATE)`). A reader
   * (an online backup) may hold part of it back; the next checkpoint catches up.
   * @returns whether the WAL is empty now.
   */
  checkpoint(): boolean {
    if (this.#closed) return false;
    this.#lastCheckpoint = performance.now();
    const r = this.#db.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get();
    return Number(r?.busy ?? 1) === 0;
  }

  /**
   * Records the last commit in the manifest: one fixed-size write at offset 0, after the
   * commit (a crash in between leaves a manifest one commit behind, which is accepted).
   */
  #writeManifest(): void {
    const text = JSON.stringify({
      format: "iris-controller-state",
      database: STATE_FILE,
      commit_seq: this.#seq,
      jobs: this.#counts.jobs,
      tasks: this.#counts.tasks,
    });
    const bytes = new TextEncoder().encode(text.padEnd(MANIFEST_BYTES - 1, " ") + "\n");
    this.#manifest.seekSync(0, Deno.SeekMode.Start);
    let off = 0;
    while (off < bytes.length) off += this.#manifest.writeSync(bytes.subarray(off));
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
    const rows = this.#db.prepare("SELECT worker_id, row FROM workers ORDER BY rowid").all();
    const out: PersistedWorker[] = [];
    const corrupt: CorruptRow[] = [];
    for (const r of rows) {
      try {
        const w = JSON.parse(String(r.row)) as PersistedWorker;
        if (typeof w?.workerId !== "string" || typeof w.address !== "string") {
          throw new Error("not a worker registration");
        }
        out.push(w);
      } catch (err) {
        corrupt.push({
          table: "workers",
          id: String(r.worker_id),
          error: describeError(err),
          jobId: "",
        });
      }
    }
    this.#warnings.push(...this.#handleCorrupt(corrupt, () => {}));
    return out;
  }

  /**
   * Warnings since the last call (one line each): rows quarantined while loading endpoints and
   * workers, an incomplete state accepted with `acceptStateLoss`.
   */
  takeWarnings(): string[] {
    return this.#warnings.splice(0);
  }

  /** Loads the persisted endpoints into `endpoints` (which should be empty). */
  loadEndpoints(endpoints: EndpointTable): number {
    const rows = this.#db.prepare("SELECT endpoint_id, row FROM endpoints ORDER BY rowid").all();
    const seq = metaValue(this.#db, "endpoint_seq");
    const parsed = [];
    const corrupt: CorruptRow[] = [];
    for (const r of rows) {
      try {
        parsed.push(fromJson(EndpointSchema, JSON.parse(String(r.row)) as JsonValue));
      } catch (err) {
        corrupt.push({
          table: "endpoints",
          id: String(r.endpoint_id),
          error: describeError(err),
          jobId: "",
        });
      }
    }
    this.#warnings.push(...this.#handleCorrupt(corrupt, () => {}));
    endpoints.restore(parsed, Number(seq ?? 0));
    return parsed.length;
  }

  /**
   * Saves the autoscaler's state when it differs from what was last saved (it is small and
   * changes rarely, so it is one row, rewritten whole).
   */
  saveAutoscaler(state: PersistedAutoscaler): void {
    if (this.#closed) return;
    const row = JSON.stringify(state);
    if (row === this.#lastAutoscaler) return;
    this.#commit(() =>
      this.#db.prepare(
        "INSERT INTO autoscaler (key, row) VALUES ('state', ?) " +
          "ON CONFLICT(key) DO UPDATE SET row = excluded.row",
      ).run(row)
    );
    this.#lastAutoscaler = row;
  }

  /** The autoscaler's last saved state, if any. */
  loadAutoscaler(): PersistedAutoscaler | undefined {
    const r = this.#db.prepare("SELECT row FROM autoscaler WHERE key = 'state'").get();
    if (!r) return undefined;
    try {
      const parsed = JSON.parse(String(r.row)) as PersistedAutoscaler;
      this.#lastAutoscaler = String(r.row);
      return parsed;
    } catch (err) {
      const corrupt = [{ table: "autoscaler", id: "state", error: describeError(err), jobId: "" }];
      if (!this.#opts.skipCorruptRows) this.#handleCorrupt(corrupt, () => {});
      // Skipped: the autoscaler starts from the platform's listing alone.
      this.#commit(() => {
        this.#db.prepare(
          "INSERT INTO quarantine (table_name, row_id, row, error, quarantined_at_ms) " +
            "VALUES ('autoscaler', 'state', ?, ?, ?)",
        ).run(String(r.row), describeError(err), Date.now());
        this.#db.exec("DELETE FROM autoscaler WHERE key = 'state'");
      });
      this.#warnings.push(
        `corrupt row (table autoscaler, id state: ${
          describeError(err)
        }) skipped; moved to the quarantine table of ${this.path}`,
      );
      return undefined;
    }
  }

  /**
   * Closes the database cleanly: marks it not in use, folds the WAL into the main file (which
   * is then the whole state) and records the last commit in the manifest.
   */
  close(): void {
    if (this.#closed) return;
    try {
      this.#commit(() => this.#setMeta.run("in_use", "0"));
      this.checkpoint();
    } catch {
      // A failing disk: the WAL (or its absence) is detected at the next start.
    } finally {
      this.#closed = true;
      this.#manifest.close();
      this.#db.close();
    }
  }
}

/**
 * The rows of a statement as arrays of column values, one at a time (a row's strings become
 * garbage as soon as it is handled, instead of all rows living at once). node:sqlite builds
 * arrays several times faster than objects (it matters for a million task rows); without
 * setReturnArrays the objects' values are used.
 */
function* rowArrays<T extends unknown[]>(st: StatementSync): Generator<T> {
  const s = st as StatementSync & { setReturnArrays?: (on: boolean) => void };
  if (s.setReturnArrays) {
    s.setReturnArrays(true);
    yield* s.iterate() as unknown as Iterable<T>;
    return;
  }
  for (const r of st.iterate()) yield Object.values(r) as T;
}

/** An error of the state store that names the file (SQLite's own messages do not). */
function named(path: string, err: unknown): unknown {
  if (err instanceof StateStoreError) return err;
  return new StateStoreError(`${path}: ${describeError(err)}`, { cause: err });
}

/** Tasks of every job (their replicas: a task still as submitted has no row). */
function taskCount(db: DatabaseSync): number {
  const r = db.prepare(
    "SELECT coalesce(sum(max(coalesce(json_extract(row, '$.spec.replicas'), 0), 1)), 0) AS n " +
      "FROM jobs WHERE json_valid(row)",
  ).get();
  return Number(r?.n ?? 0);
}

function metaValue(db: DatabaseSync, key: string): string | undefined {
  const r = db.prepare("SELECT value FROM meta WHERE key = ?").get(key);
  return r === undefined ? undefined : String(r.value);
}

function parseJobRow(jobId: string, text: string): JobRecord {
  const parsed = JSON.parse(text) as JobRow;
  if (typeof parsed !== "object" || parsed === null || parsed.jobId !== jobId) {
    throw new Error(`not the row of job ${jobId}`);
  }
  if (typeof parsed.state !== "number" || typeof parsed.submittedAtMs !== "number") {
    throw new Error("missing job state");
  }
  return {
    ...parsed,
    spec: fromJson(JobSpecSchema, parsed.spec),
    taskIds: [],
    childIds: new Set(),
    counts: {},
  };
}

function isTaskRowV4(row: unknown): row is TaskRowV4 {
  const r = row as TaskRowV4 | null;
  return typeof r === "object" && r !== null && typeof r.state === "number" &&
    Array.isArray(r.attempts);
}

/** A task from its v4 row, absent fields at their default. */
function taskFromRowV4(jobId: string, index: number, row: TaskRowV4): TaskRecord {
  return newTask(jobId, index, {
    state: row.state,
    attempts: row.attempts,
    attemptBase: row.attemptBase ?? 0,
    failureCount: row.failureCount ?? 0,
    preemptionCount: row.preemptionCount ?? 0,
    pendingSinceMs: row.pendingSinceMs ?? 0,
    ports: row.ports ?? NO_PORTS,
    stderrTail: row.stderrTail ?? NO_STDERR,
    error: row.error ?? "",
  });
}

/**
 * A task's row (v5): one flat JSON array by position, so a million rows are a fifth of the bytes
 * of objects with their keys to read and parse at a restart, and parse into one array each (#20):
 * `[state, attemptBase, failureCount, preemptionCount, pendingSinceMs, error, ports (0: none),
 * stderrTail (0: none)]`, then for each attempt its `ATTEMPT_FIELDS` values (isWorkerFailure as
 * 0/1).
 */
function encodeTaskRow(t: TaskRecord): string {
  const row: unknown[] = [
    t.state,
    t.attemptBase,
    t.failureCount,
    t.preemptionCount,
    t.pendingSinceMs,
    t.error,
    Object.keys(t.ports).length ? t.ports : 0,
    t.stderrTail.length ? t.stderrTail : 0,
  ];
  for (const a of t.attempts) {
    row.push(
      a.attemptId,
      a.workerId,
      a.state,
      a.exitCode,
      a.signal,
      a.error,
      a.assignedAtMs,
      a.startedAtMs,
      a.finishedAtMs,
      a.isWorkerFailure ? 1 : 0,
      a.peakMemoryBytes,
    );
  }
  return JSON.stringify(row);
}

/** Values per attempt in a task row ({@linkcode encodeTaskRow}), after the task's own 8. */
const ATTEMPT_FIELDS = 11;
const TASK_FIELDS = 8;

/** A task from its v5 row ({@linkcode encodeTaskRow}); undefined when it is not one. */
function decodeTaskRow(
  jobId: string,
  index: number,
  row: unknown,
  idPrefix = `${jobId}/`,
): TaskRecord | undefined {
  if (
    !Array.isArray(row) || row.length < TASK_FIELDS ||
    (row.length - TASK_FIELDS) % ATTEMPT_FIELDS !== 0 || typeof row[0] !== "number" ||
    typeof row[5] !== "string"
  ) return undefined;
  const ports = row[6] === 0 ? NO_PORTS : row[6];
  const tail = row[7] === 0 ? NO_STDERR : row[7];
  if (typeof ports !== "object" || ports === null || !Array.isArray(tail)) return undefined;
  // Sized up front: an array grown by push keeps room for 17 (a million tasks of one attempt
  // would hold 16 empty slots each).
  const attempts: AttemptRecord[] = new Array((row.length - TASK_FIELDS) / ATTEMPT_FIELDS);
  for (let k = TASK_FIELDS, n = 0; k < row.length; k += ATTEMPT_FIELDS, n++) {
    attempts[n] = {
      attemptId: row[k],
      workerId: row[k + 1],
      state: row[k + 2],
      exitCode: row[k + 3],
      signal: row[k + 4],
      error: row[k + 5],
      assignedAtMs: row[k + 6],
      startedAtMs: row[k + 7],
      finishedAtMs: row[k + 8],
      isWorkerFailure: row[k + 9] === 1,
      peakMemoryBytes: row[k + 10],
    };
  }
  return newTask(jobId, index, {
    state: row[0],
    attempts,
    attemptBase: row[1],
    failureCount: row[2],
    preemptionCount: row[3],
    pendingSinceMs: row[4],
    ports,
    stderrTail: tail,
    error: row[5],
  }, idPrefix);
}

function parseTaskRow(jobId: string, index: number, text: string): TaskRecord {
  const task = decodeTaskRow(jobId, index, JSON.parse(text));
  if (!task) throw new Error("not a task row");
  return task;
}

/**
 * A job's task rows (`[index, row, index, row, …]` as one JSON text) as tasks by index, or
 * undefined when one does not parse or is beyond the job's replicas.
 */
function parseTaskRows(
  jobId: string,
  replicas: number,
  text: string,
): (TaskRecord | undefined)[] | undefined {
  let flat: unknown;
  try {
    flat = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(flat) || flat.length % 2 !== 0) return undefined;
  const tasks: (TaskRecord | undefined)[] = new Array(replicas);
  const idPrefix = `${jobId}/`;
  for (let k = 0; k < flat.length; k += 2) {
    const index = flat[k] as number;
    if (!Number.isInteger(index) || index < 0 || index >= replicas) return undefined;
    const task = decodeTaskRow(jobId, index, flat[k + 1], idPrefix);
    if (!task) return undefined;
    tasks[index] = task;
  }
  return tasks;
}

/** The fields of a task of `job` still as submitted (as {@linkcode isInitialTask} tells). */
function initialTaskFields(job: JobRecord) {
  return {
    state: TaskState.PENDING,
    attempts: NO_ATTEMPTS,
    attemptBase: 0,
    failureCount: 0,
    preemptionCount: 0,
    pendingSinceMs: job.submittedAtMs,
    ports: NO_PORTS,
    stderrTail: NO_STDERR,
    error: "",
  };
}

/**
 * Whether a task is still as its job's submit made it (pending since the submit, never tried,
 * nothing recorded): such a task has no row (v5), its job's row says all of it. A recreated job's
 * tasks (attempt numbers continuing the old job's) have rows.
 */
export function isInitialTask(
  task: Omit<TaskRecord, "taskId" | "jobId" | "index">,
  job: Pick<JobRecord, "submittedAtMs">,
): boolean {
  return task.state === TaskState.PENDING && task.attempts.length === 0 &&
    task.attemptBase === 0 && task.failureCount === 0 && task.preemptionCount === 0 &&
    task.pendingSinceMs === job.submittedAtMs && task.error === "" &&
    task.stderrTail.length === 0 && Object.keys(task.ports).length === 0;
}

/**
 * v4 → v5: the rows of tasks still as submitted go (their job's row says all of them); the others
 * become arrays ({@linkcode encodeTaskRow}).
 */
function migrateV4ToV5(db: DatabaseSync): void {
  const submittedAt = new Map<string, number>();
  for (const r of db.prepare("SELECT job_id, submitted_at FROM jobs").all()) {
    submittedAt.set(String(r.job_id), Number(r.submitted_at));
  }
  const drop = db.prepare("DELETE FROM tasks WHERE job_id = ? AND task_index = ?");
  const update = db.prepare("UPDATE tasks SET row = ? WHERE job_id = ? AND task_index = ?");
  for (const r of db.prepare("SELECT job_id, task_index, row FROM tasks").all()) {
    const at = submittedAt.get(String(r.job_id));
    let row: unknown;
    try {
      row = JSON.parse(String(r.row));
    } catch {
      continue; // left as it is: the load names it like any corrupt row
    }
    if (at === undefined || !isTaskRowV4(row)) continue;
    const task = taskFromRowV4(String(r.job_id), Number(r.task_index), row);
    if (isInitialTask(task, { submittedAtMs: at })) drop.run(task.jobId, task.index);
    else update.run(encodeTaskRow(task), task.jobId, task.index);
  }
}

/** v3 → v4: each job row (with its tasks) becomes a job row and one row per task. */
function migrateV3ToV4(db: DatabaseSync): void {
  db.exec(TASKS_TABLE);
  const rows = db.prepare("SELECT job_id, row FROM jobs").all();
  const setJob = db.prepare("UPDATE jobs SET row = ? WHERE job_id = ?");
  const insertTask = db.prepare(
    "INSERT OR REPLACE INTO tasks (job_id, task_index, row) VALUES (?, ?, ?)",
  );
  for (const r of rows) {
    const jobId = String(r.job_id);
    let old: { job: Record<string, unknown>; tasks: TaskRecord[] };
    try {
      old = JSON.parse(String(r.row));
      if (!old?.job || !Array.isArray(old.tasks)) throw new Error("not a version 3 job row");
    } catch {
      // Left as it is: the load names it (table jobs) like any corrupt row.
      continue;
    }
    const { taskIds: _taskIds, ...job } = old.job;
    setJob.run(JSON.stringify(job), jobId);
    for (const t of old.tasks) {
      const { taskId: _id, jobId: _job, index, ...rest } = t;
      insertTask.run(jobId, index, JSON.stringify(rest));
    }
  }
}

/** What the files of a state dir hold, read without altering them. */
interface Inspection {
  readonly version?: string;
  readonly seq: number;
  readonly inUse: boolean;
  readonly jobs: number;
}

function stat(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.statSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/** Reads the manifest; undefined when absent. @throws {StateStoreError} when unreadable. */
export function readManifest(dir: string): Manifest | undefined {
  const path = `${dir}/${MANIFEST_FILE}`;
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  if (text.trim() === "") return undefined; // created, never written (crash at first open)
  try {
    const m = JSON.parse(text) as Record<string, unknown>;
    if (m.format !== "iris-controller-state" || typeof m.commit_seq !== "number") {
      throw new Error("not an Iris controller state manifest");
    }
    return { seq: m.commit_seq, jobs: Number(m.jobs ?? 0), tasks: Number(m.tasks ?? 0) };
  } catch (err) {
    throw new StateStoreError(
      `${path}: unreadable (${describeError(err)}); it records how many commits ` +
        `${dir}/${STATE_FILE} must hold. Restore the state dir from a backup, or delete ` +
        `${MANIFEST_FILE} to start from what ${STATE_FILE} holds without that check.`,
    );
  }
}

/**
 * Checks a state dir before anything writes to it: the schema version, and that the database
 * holds every commit the manifest records (else its WAL was lost or is corrupt).
 */
function preflight(dir: string): void {
  const path = `${dir}/${STATE_FILE}`;
  const walPath = `${path}-wal`;
  const manifest = readManifest(dir);
  const main = stat(path);
  const wal = stat(walPath);
  const shm = stat(`${path}-shm`);
  if (!main || main.size === 0) {
    if (manifest && manifest.seq > 0) {
      throw new StateStoreError(
        `${path} is missing, but ${dir}/${MANIFEST_FILE} records ${manifest.seq} commit(s) ` +
          `(${manifest.jobs} job(s), ${manifest.tasks} task(s)). Restore the state dir from a ` +
          `backup (docs/durability.md), or use another --state-dir.`,
      );
    }
    return;
  }
  const found = inspect(path);
  // The read-only connection may have created an empty WAL (and index) where none was.
  for (const [file, before] of [[walPath, wal], [`${path}-shm`, shm]] as const) {
    if (!before && stat(file)?.size === 0) Deno.removeSync(file);
  }
  if (found.version !== undefined) {
    const version = Number(found.version);
    if (!Number.isInteger(version) || version > STATE_SCHEMA_VERSION) {
      throw new StateStoreError(
        `${path}: controller state has schema version ${found.version}, but this Iris ` +
          `understands only up to version ${STATE_SCHEMA_VERSION}; refusing to open it ` +
          "(upgrade Iris, or use another --state-dir)",
      );
    }
  }
  const walState = !wal
    ? `${walPath} is missing`
    : wal.size === 0
    ? `${walPath} is empty`
    : `${walPath} (${wal.size} bytes) is corrupt or truncated: SQLite ignores its frames ` +
      "from the first one whose checksum fails";
  if (manifest && found.seq < manifest.seq) {
    throw new IncompleteStateError(
      `incomplete controller state in ${dir}: ${STATE_FILE} holds commits up to ` +
        `${found.seq} (${found.jobs} job(s)), but ${MANIFEST_FILE} records commit ` +
        `${manifest.seq} (${manifest.jobs} job(s), ${manifest.tasks} task(s)); ${walState}. ` +
        "Refusing to start with lost jobs. Restore the whole state dir (every file: " +
        `${STATE_FILES.join(", ")}) or a backup made by 'iris controller backup' ` +
        `(docs/durability.md); to start anyway from what ${STATE_FILE} holds, start with ` +
        "--accept-state-loss.",
    );
  }
  // An empty WAL is what a checkpoint leaves (the main file is complete then); a missing one
  // is what a copy of the main file alone, or a deleted WAL, looks like.
  if (!manifest && found.inUse && !wal) {
    throw new IncompleteStateError(
      `incomplete controller state in ${dir}: ${STATE_FILE} was in use (not closed cleanly) ` +
        `and ${walState}, and ${MANIFEST_FILE} is missing, so the commits after ${found.seq} ` +
        `(${found.jobs} job(s) found) may be lost. A copy of the main file alone is not a ` +
        "backup: copy every state file of a stopped controller, or use 'iris controller " +
        "backup' (docs/durability.md); to start anyway from what it holds, start with " +
        "--accept-state-loss.",
    );
  }
}

function inspect(path: string): Inspection {
  let db: DatabaseSync;
  try {
    // Read-only: it neither checkpoints nor removes the WAL on close.
    db = new DatabaseSync(path, { readOnly: true });
  } catch (err) {
    throw new StateStoreError(`${path}: cannot open the controller state: ${describeError(err)}`);
  }
  try {
    const has = (name: string) =>
      db.prepare("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !==
        undefined;
    if (!has("meta")) return { seq: 0, inUse: false, jobs: 0 };
    return {
      version: metaValue(db, "schema_version"),
      seq: Number(metaValue(db, "commit_seq") ?? 0),
      inUse: metaValue(db, "in_use") === "1",
      jobs: has("jobs") ? Number(db.prepare("SELECT count(*) AS n FROM jobs").get()!.n) : 0,
    };
  } catch (err) {
    throw new StateStoreError(`${path}: unreadable controller state: ${describeError(err)}`);
  } finally {
    db.close();
  }
}

/** What {@linkcode backupState} wrote. */
export interface BackupResult {
  readonly output: string;
  readonly bytes: number;
  readonly seq: number;
  readonly jobs: number;
  readonly tasks: number;
}

/**
 * Writes a consistent copy of the state in `dir` to `output` (one self-contained SQLite file),
 * while a controller may be running and writing: `VACUUM INTO` through a read-only connection
 * sees one snapshot. The copy is marked as cleanly closed, so it starts a controller when it is
 * placed as `controller.sqlite3` in an empty state dir.
 * @throws {StateStoreError} when the state is incomplete or `output` exists.
 */
export function backupState(dir: string, output: string): BackupResult {
  dir = dir.replace(/\/+$/, "") || "/";
  const path = `${dir}/${STATE_FILE}`;
  if (!stat(path)) throw new StateStoreError(`${path}: no controller state to back up`);
  if (stat(output)) {
    throw new StateStoreError(`${output}: already exists; choose a new file for the backup`);
  }
  preflight(dir);
  const src = new DatabaseSync(path, { readOnly: true });
  try {
    src.prepare("VACUUM INTO ?").run(output);
  } catch (err) {
    throw new StateStoreError(`backup of ${path} to ${output} failed: ${describeError(err)}`);
  } finally {
    src.close();
  }
  const out = new DatabaseSync(output);
  try {
    out.exec("PRAGMA journal_mode = DELETE");
    const set = out.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)");
    set.run("in_use", "0");
    set.run("backup_of", path);
    set.run("backup_at", new Date().toISOString());
    const check = out.prepare("PRAGMA quick_check").get();
    if (String(check?.quick_check) !== "ok") {
      throw new StateStoreError(`${output}: the copy fails its check: ${check?.quick_check}`);
    }
    const count = (t: string) =>
      out.prepare(`SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = ?`).get(t)
        ? Number(out.prepare(`SELECT count(*) AS n FROM ${t}`).get()!.n)
        : 0;
    const seq = Number(metaValue(out, "commit_seq") ?? 0);
    const result = { jobs: count("jobs"), tasks: taskCount(out), seq };
    out.close();
    Deno.chmodSync(output, 0o600);
    return { output, bytes: Deno.statSync(output).size, ...result };
  } catch (err) {
    if (out.isOpen) out.close();
    throw err;
  }
}
