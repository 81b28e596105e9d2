/**
 * ExecuteRawQuery: a read-only SQL query on the controller's state file. The query runs in a child
 * process (raw_query_main.ts) on a read-only connection with `query_only` on, no attached
 * databases and read permission for the state file only; it is killed at its time limit and
 * returns at most `maxRows` rows (and 16 MiB of JSON).
 * @module
 */
import { DeadlineExceededError, FailedPreconditionError, InvalidArgumentError } from "../errors.ts";
import { type Duration, ms, seconds } from "../time.ts";

/** Rows returned when the request names no cap. */
export const DEFAULT_QUERY_ROWS = 1000;
/** The largest row cap a request may ask for. */
export const MAX_QUERY_ROWS = 10_000;
/** Time limit when the request names none. */
export const DEFAULT_QUERY_TIMEOUT: Duration = seconds(10);
/** The longest time limit a request may ask for. */
export const MAX_QUERY_TIMEOUT: Duration = seconds(60);
/** Most JSON bytes of rows returned. */
export const MAX_QUERY_BYTES = 16 * 1024 * 1024;
/** Longest accepted SQL text. */
export const MAX_SQL_LENGTH = 100_000;

/** A query's answer. */
export interface RawQueryResult {
  readonly columns: string[];
  readonly rowsJson: string;
  readonly truncated: boolean;
}

/** What a query may start with: reads only. */
const READ_ONLY_START = /^\s*(select|with|values|explain)\b/i;

/** The query's limits, checked and defaulted. */
export function queryLimits(
  sql: string,
  maxRows: number,
  timeoutMs: number,
): { maxRows: number; timeout: Duration } {
  if (sql.trim() === "") throw new InvalidArgumentError("sql", "must not be empty");
  if (sql.length > MAX_SQL_LENGTH) {
    throw new InvalidArgumentError("sql", `at most ${MAX_SQL_LENGTH} characters`);
  }
  if (!READ_ONLY_START.test(sql)) {
    throw new InvalidArgumentError(
      "sql",
      "only read-only queries (SELECT, WITH, VALUES, EXPLAIN) are allowed",
    );
  }
  if (!Number.isInteger(maxRows) || maxRows < 0 || maxRows > MAX_QUERY_ROWS) {
    throw new InvalidArgumentError("max_rows", `must be 0..${MAX_QUERY_ROWS} (got ${maxRows})`);
  }
  if (!Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > MAX_QUERY_TIMEOUT) {
    throw new InvalidArgumentError(
      "timeout_ms",
      `must be 0..${MAX_QUERY_TIMEOUT} (got ${timeoutMs})`,
    );
  }
  return {
    maxRows: maxRows || DEFAULT_QUERY_ROWS,
    timeout: timeoutMs ? ms(timeoutMs) : DEFAULT_QUERY_TIMEOUT,
  };
}

/**
 * Runs `sql` on the SQLite file `dbPath` read-only, in a child process killed after `timeout`.
 * @throws InvalidArgumentError for SQL SQLite rejects, DeadlineExceededError past the limit
 */
export async function runRawQuery(
  dbPath: string,
  sql: string,
  limits: { maxRows: number; timeout: Duration },
): Promise<RawQueryResult> {
  const main = new URL("./raw_query_main.ts", import.meta.url);
  let onDisk = main.protocol === "file:";
  try {
    onDisk &&= (await Deno.stat(main)).isFile;
  } catch {
    onDisk = false;
  }
  if (!onDisk) {
    throw new FailedPreconditionError(
      `iris query needs the controller's source files (${main.pathname} is missing)`,
    );
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-config",
      "--no-lock",
      "--no-prompt",
      `--allow-read=${dbPath}`,
      "--v8-flags=--max-old-space-size=512",
      main.pathname,
      dbPath,
      String(limits.maxRows),
      String(MAX_QUERY_BYTES),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    clearEnv: true,
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, limits.timeout);
  try {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(sql)).catch(() => {});
    await writer.close().catch(() => {});
    const out = await child.output();
    if (timedOut) {
      throw new DeadlineExceededError(
        `sql: the query ran past its time limit of ${limits.timeout / 1000}s and was stopped`,
      );
    }
    if (!out.success) {
      const message = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1) ||
        `the query process exited with ${out.code}`;
      throw new InvalidArgumentError("sql", message.slice(0, 2000));
    }
    const parsed = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      columns: string[];
      rows: unknown[][];
      truncated: boolean;
    };
    return {
      columns: parsed.columns,
      rowsJson: JSON.stringify(parsed.rows),
      truncated: parsed.truncated,
    };
  } finally {
    clearTimeout(timer);
  }
}
