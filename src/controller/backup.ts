/**
 * Backups of a whole controller state dir in one file. The database copy comes from
 * {@linkcode backupState} (one snapshot, taken while the controller runs); the small files the
 * controller keeps beside it — accounts (budgets, users, API keys, reservation claims, enrolment
 * tokens), the transaction log and gcp's self-made worker token — ride inside that copy in a
 * `backup_files` table. A controller that starts on a state dir whose `controller.sqlite3` still
 * holds that table (a backup copied into an empty dir by hand) writes the files out first, so
 * both restore paths give the same state.
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { ACCOUNTS_FILE } from "./accounts.ts";
import { TRANSACTIONS_FILE } from "./transactions.ts";
import { type BackupResult, backupState, STATE_FILE, StateStoreError } from "./store.ts";
import { describeError } from "../errors.ts";

/** Files beside the database that a backup carries (those present). */
export const BACKUP_SIDE_FILES: readonly string[] = [
  ACCOUNTS_FILE,
  TRANSACTIONS_FILE,
  `${TRANSACTIONS_FILE}.1`,
  "worker.token",
];

const FILES_TABLE = "backup_files";

/** What {@linkcode backupController} wrote. */
export interface ControllerBackupResult extends BackupResult {
  /** Side files carried in the backup (names, in {@linkcode BACKUP_SIDE_FILES} order). */
  readonly files: readonly string[];
}

function readSideFile(path: string, name: string): Uint8Array | undefined {
  let data: Uint8Array;
  try {
    data = Deno.readFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw new StateStoreError(`${path}: cannot read it for the backup: ${describeError(err)}`);
  }
  // The transaction log is appended while we read: keep whole lines only.
  if (name.startsWith(TRANSACTIONS_FILE)) {
    const end = data.lastIndexOf(0x0a);
    data = data.subarray(0, end + 1);
  }
  return data;
}

/**
 * Writes a consistent copy of the controller state in `dir` to `output`: the database as one
 * snapshot plus the side files present ({@linkcode BACKUP_SIDE_FILES}). Nothing is left at
 * `output` when it fails.
 * @throws {StateStoreError} when the state is incomplete, a file can't be read, or `output` exists.
 */
export function backupController(dir: string, output: string): ControllerBackupResult {
  dir = dir.replace(/\/+$/, "") || "/";
  const result = backupState(dir, output);
  const files: string[] = [];
  try {
    const db = new DatabaseSync(output);
    try {
      db.exec(`CREATE TABLE ${FILES_TABLE} (name TEXT PRIMARY KEY, mode INTEGER, content BLOB)`);
      const put = db.prepare(`INSERT INTO ${FILES_TABLE} (name, mode, content) VALUES (?, ?, ?)`);
      for (const name of BACKUP_SIDE_FILES) {
        const path = `${dir}/${name}`;
        const content = readSideFile(path, name);
        if (content === undefined) continue;
        put.run(name, Deno.statSync(path).mode ?? 0o600, content);
        files.push(name);
      }
    } finally {
      db.close();
    }
  } catch (err) {
    Deno.removeSync(output);
    throw err instanceof StateStoreError
      ? err
      : new StateStoreError(`backup to ${output} failed: ${describeError(err)}`);
  }
  return { ...result, bytes: Deno.statSync(output).size, files };
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function hasFilesTable(db: DatabaseSync): boolean {
  return db.prepare("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = ?")
    .get(FILES_TABLE) !== undefined;
}

/**
 * Writes the side files a restored backup carries into `dir` (skipping any already there) and
 * drops them from the database. A no-op for a state dir that is not a fresh restore.
 * @returns the names written.
 */
export function unpackBackupFiles(dir: string): string[] {
  dir = dir.replace(/\/+$/, "") || "/";
  const path = `${dir}/${STATE_FILE}`;
  // A backup is written in journal mode DELETE: a state with a WAL (or an index) is not one.
  // Checked before opening, as even a read-only connection may create them.
  if (exists(`${path}-wal`) || exists(`${path}-shm`) || !exists(path)) return [];
  try {
    const probe = new DatabaseSync(path, { readOnly: true });
    try {
      if (!hasFilesTable(probe)) return [];
    } finally {
      probe.close();
    }
  } catch {
    return []; // not a database: the store's own checks name it
  } finally {
    // Leave the dir as found for the store's checks (neither file was there before).
    for (const f of [`${path}-wal`, `${path}-shm`]) if (exists(f)) Deno.removeSync(f);
  }
  const db = new DatabaseSync(path);
  const written: string[] = [];
  try {
    const rows = db.prepare(`SELECT name, mode, content FROM ${FILES_TABLE}`).all();
    for (const row of rows) {
      const name = String(row.name);
      // Only names a backup writes: a crafted file can't write outside the state dir.
      if (!BACKUP_SIDE_FILES.includes(name)) {
        throw new StateStoreError(
          `${path}: backup holds an unexpected file ${JSON.stringify(name)}`,
        );
      }
      const target = `${dir}/${name}`;
      try {
        Deno.statSync(target);
        continue; // the operator put one there: theirs wins
      } catch { /* missing: write it */ }
      const content = row.content as Uint8Array;
      Deno.writeFileSync(`${target}.tmp`, content, { mode: 0o600 });
      Deno.chmodSync(`${target}.tmp`, Number(row.mode) & 0o600 || 0o600);
      Deno.renameSync(`${target}.tmp`, target);
      written.push(name);
    }
    db.exec(`DROP TABLE ${FILES_TABLE}`);
  } finally {
    db.close();
  }
  return written;
}

/** What {@linkcode restoreController} restored. */
export interface RestoreResult {
  readonly dir: string;
  readonly seq: number;
  readonly jobs: number;
  readonly tasks: number;
  readonly files: readonly string[];
}

/**
 * Restores a backup made by {@linkcode backupController} (or a plain database backup) into
 * `dir`, which must be missing or empty. Checks the backup before writing anything.
 * @throws {StateStoreError} naming the backup or the dir.
 */
export function restoreController(backup: string, dir: string): RestoreResult {
  dir = dir.replace(/\/+$/, "") || "/";
  let info: { seq: number; jobs: number; tasks: number };
  try {
    const db = new DatabaseSync(backup, { readOnly: true });
    try {
      const meta = (key: string) =>
        db.prepare("SELECT value FROM meta WHERE key = ?").get(key)?.value as string | undefined;
      if (meta("schema_version") === undefined) throw new Error("no schema_version in its meta");
      const check = db.prepare("PRAGMA quick_check").get();
      if (String(check?.quick_check) !== "ok") {
        throw new Error(`check failed: ${check?.quick_check}`);
      }
      const count = (t: string) => Number(db.prepare(`SELECT count(*) AS n FROM ${t}`).get()!.n);
      info = { seq: Number(meta("commit_seq") ?? 0), jobs: count("jobs"), tasks: count("tasks") };
    } finally {
      db.close();
    }
  } catch (err) {
    throw new StateStoreError(
      `${backup}: not a controller backup (${describeError(err)}); make one with ` +
        "'iris controller backup'",
    );
  }
  let entries: string[] = [];
  try {
    entries = [...Deno.readDirSync(dir)].map((e) => e.name);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) {
      throw new StateStoreError(`${dir}: ${describeError(err)}`);
    }
  }
  if (entries.length > 0) {
    throw new StateStoreError(
      `${dir}: not empty (${entries.slice(0, 3).join(", ")}${entries.length > 3 ? ", …" : ""}); ` +
        "restore into a new or empty state dir (move the old one away first)",
    );
  }
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  Deno.chmodSync(dir, 0o700);
  const target = `${dir}/${STATE_FILE}`;
  try {
    Deno.copyFileSync(backup, `${target}.tmp`);
    Deno.chmodSync(`${target}.tmp`, 0o600);
    Deno.renameSync(`${target}.tmp`, target);
    const files = unpackBackupFiles(dir);
    return { dir, ...info, files };
  } catch (err) {
    // Leave the dir as found (empty): nothing half-restored.
    for (const e of Deno.readDirSync(dir)) Deno.removeSync(`${dir}/${e.name}`, { recursive: true });
    throw err instanceof StateStoreError
      ? err
      : new StateStoreError(`restore of ${backup} into ${dir} failed: ${describeError(err)}`);
  }
}
