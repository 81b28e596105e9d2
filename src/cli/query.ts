/**
 * `iris query "SELECT …"`: a read-only SQL query on the controller's state (ExecuteRawQuery;
 * admin only). Prints a table, or JSON with --json.
 * @module
 */
import { controllerClient } from "../rpc/mod.ts";
import { bool, type CommandSpec, num, table, UsageError } from "./args.ts";
import { cliToken, CONTROLLER_OPTION, controllerUrl, TOKEN_FILE_OPTION } from "./job.ts";
import { MAX_QUERY_ROWS, MAX_QUERY_TIMEOUT } from "../controller/mod.ts";
import { parseDuration } from "../time.ts";

function text(v: unknown): string {
  if (v === null || v === undefined) return "NULL";
  return typeof v === "string" ? v.replace(/\s+/g, " ").slice(0, 200) : JSON.stringify(v);
}

const queryCommand: CommandSpec = {
  name: "query",
  summary: "Run a read-only SQL query on the controller's state (admin only).",
  usage: 'query "SELECT …" [--json] [--max-rows N] [--timeout 10s]',
  description: "The query runs on a read-only connection to the controller's state file, in a " +
    "process that is stopped at the time limit, and returns at most --max-rows rows. A " +
    "controller without a state dir has no database and says so. See docs/operations.md.",
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    json: { type: "boolean", description: "Print {columns, rows, truncated} as JSON" },
    "max-rows": {
      type: "string",
      value: "N",
      description: `Most rows returned, 1..${MAX_QUERY_ROWS}`,
      default: "1000",
    },
    timeout: {
      type: "string",
      value: "DURATION",
      description: `Time limit, at most ${MAX_QUERY_TIMEOUT / 1000}s`,
      default: "10s",
    },
  },
  positionals: { min: 1, max: 1, names: "SQL" },
  examples: [
    "iris query \"SELECT name FROM sqlite_master WHERE type = 'table'\"",
    'iris query --json "SELECT count(*) AS n FROM jobs"',
  ],
  async run(p, io, signal) {
    const maxRows = num(p, "max-rows", { min: 1, max: MAX_QUERY_ROWS, integer: true })!;
    const timeout = parseDuration(String(p.values.timeout));
    if (timeout === undefined || timeout <= 0 || timeout > MAX_QUERY_TIMEOUT) {
      throw new UsageError(
        `--timeout must be a duration up to ${MAX_QUERY_TIMEOUT / 1000}s (got ${
          JSON.stringify(p.values.timeout)
        })`,
      );
    }
    const client = controllerClient(controllerUrl(p), { token: cliToken(p) });
    const res = await client.executeRawQuery(
      { sql: p.positionals[0]!, maxRows, timeoutMs: Math.round(timeout) },
      { signal },
    );
    const rows = JSON.parse(res.rowsJson) as unknown[][];
    if (bool(p, "json")) {
      io.out(
        JSON.stringify({ columns: res.columns, rows, truncated: res.truncated }, null, 2) + "\n",
      );
      return 0;
    }
    io.out(table(res.columns, rows.map((r) => r.map(text))));
    io.out(
      `(${rows.length} row${rows.length === 1 ? "" : "s"}${
        res.truncated ? `; truncated at --max-rows ${maxRows}` : ""
      })\n`,
    );
    return 0;
  },
};

/** `iris query`. */
export const queryCommands: readonly CommandSpec[] = [queryCommand];
