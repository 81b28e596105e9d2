/**
 * Runs one read-only query for `iris query` in a process of its own, so the controller can kill it
 * at its time limit (SQLite cannot be interrupted from JavaScript): `raw_query_main.ts DB MAX_ROWS
 * MAX_BYTES` with the SQL on stdin. Prints `{columns, rows, truncated}` as JSON on stdout, or an
 * error line on stderr with exit code 1.
 * @module
 */
import { DatabaseSync, type SQLOutputValue } from "node:sqlite";

function cell(v: SQLOutputValue): unknown {
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : String(v);
  if (v instanceof Uint8Array) {
    const hex = [...v.subarray(0, 64)].map((b) => b.toString(16).padStart(2, "0")).join("");
    return `x'${hex}${v.length > 64 ? "…" : ""}' (${v.length} bytes)`;
  }
  return v;
}

async function main(): Promise<void> {
  const [path, maxRowsText, maxBytesText] = Deno.args;
  const maxRows = Number(maxRowsText);
  const maxBytes = Number(maxBytesText);
  const sql = await new Response(Deno.stdin.readable).text();
  const db = new DatabaseSync(path!, { readOnly: true });
  try {
    db.exec("PRAGMA query_only = ON");
    // A select runs as a subquery with a LIMIT, so SQLite stops after the cap (and anything that
    // is not a query fails to parse). `all()`, unlike `iterate()`, reports errors of every step.
    const body = sql.trim().replace(/;\s*$/, "");
    const wrapped = /^explain\b/i.test(body)
      ? body
      : `SELECT * FROM (${body}\n) LIMIT ${maxRows + 1}`;
    const stmt = db.prepare(wrapped);
    // Rows as arrays keep columns of the same name apart (the method is missing from the types).
    (stmt as unknown as { setReturnArrays(on: boolean): void }).setReturnArrays(true);
    stmt.setReadBigInts(true);
    const columns = stmt.columns().map((c) => c.name);
    const rows: unknown[][] = [];
    let bytes = 0;
    let truncated = false;
    for (const row of stmt.all() as unknown as SQLOutputValue[][]) {
      if (rows.length >= maxRows) {
        truncated = true;
        break;
      }
      const out = row.map(cell);
      bytes += JSON.stringify(out).length;
      if (bytes > maxBytes) {
        truncated = true;
        break;
      }
      rows.push(out);
    }
    Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify({ columns, rows, truncated })));
  } finally {
    db.close();
  }
}

try {
  await main();
} catch (err) {
  console.error(err instanceof Error ? err.message : String(err));
  Deno.exit(1);
}
