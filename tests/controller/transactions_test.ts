/**
 * The transactions log: memory ring retention, filters, the JSON-lines file with size-based
 * rotation, and reloading after a restart (a torn last line is skipped).
 */
import { TransactionLog, TRANSACTIONS_FILE } from "../../src/controller/transactions.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";

function fill(log: TransactionLog, n: number, action = "submit"): void {
  for (let i = 0; i < n; i++) {
    log.record({ action, entity: `/alice/job-${i}`, user: "alice", details: "x".repeat(50) });
  }
}

function listingHas(dir: string, name: string): boolean {
  return [...Deno.readDirSync(dir)].some((e) => e.name === name);
}

Deno.test("transactions: the entries of a turn are appended at its end", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-tx-" });
  try {
    const log = new TransactionLog({ dir });
    fill(log, 3);
    await Promise.resolve(); // the end of this turn
    const text = await Deno.readTextFile(`${dir}/${TRANSACTIONS_FILE}`);
    assertEquals(text.trim().split("\n").map((l) => JSON.parse(l).entity), [
      "/alice/job-0",
      "/alice/job-1",
      "/alice/job-2",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("transactions: the memory ring keeps the newest entries; filters and limits apply", () => {
  const log = new TransactionLog({ maxInMemory: 10, now: () => 1000 });
  fill(log, 15);
  log.record({ action: "cancel", entity: "/bob/x", user: "bob", details: "by user" });
  const all = log.list();
  assertEquals(all.length, 10);
  assertEquals(all.at(-1)!.seq, 16);
  assertEquals(all[0]!.seq, 7);
  assertEquals(log.list({ actions: ["cancel"] }).map((t) => [t.entity, t.user]), [[
    "/bob/x",
    "bob",
  ]]);
  assertEquals(log.list({ limit: 2 }).map((t) => t.seq), [15, 16]);
  assertEquals(log.list({ afterSeq: 14 }).map((t) => t.seq), [15, 16]);
  assertEquals(log.list({ entityPrefix: "/alice/job-14" }).length, 1);
  assertEquals(log.file, undefined);
});

Deno.test("transactions: the file rotates by size and is reloaded after a restart", () => {
  const dir = Deno.makeTempDirSync({ prefix: "iris-tx-" });
  try {
    const file = `${dir}/${TRANSACTIONS_FILE}`;
    const log = new TransactionLog({ dir, maxFileBytes: 2000 });
    fill(log, 40);
    // Nothing is written before the end of the turn, then all of it, rotated as if line by line.
    assert(!listingHas(dir, TRANSACTIONS_FILE));
    log.flush();
    const size = Deno.statSync(file).size;
    const rotated = Deno.statSync(`${file}.1`).size;
    assert(size <= 2000 && rotated <= 2000, `sizes ${size}, ${rotated}`);
    // Only the current and one rotated file: older entries are gone from disk.
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      TRANSACTIONS_FILE,
      `${TRANSACTIONS_FILE}.1`,
    ]);
    // A crash mid-append leaves a torn line; the reload skips it and numbering continues.
    Deno.writeTextFileSync(file, '{"seq": 41, "act', { append: true });
    const again = new TransactionLog({ dir, maxFileBytes: 2000 });
    const kept = again.list({ limit: 5000 });
    assert(kept.length > 10 && kept.length < 40, `kept ${kept.length}`);
    assertEquals(kept.at(-1)!.seq, 40);
    assertEquals(kept.at(-1)!.entity, "/alice/job-39");
    const next = again.record({ action: "cancel", entity: "/a/b", user: "u", details: "" });
    assertEquals(next.seq, 41);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("transactions: a failed append is logged once and never fails the action", () => {
  const dir = Deno.makeTempDirSync({ prefix: "iris-tx-" });
  try {
    // A directory where the file should be: every append fails.
    Deno.mkdirSync(`${dir}/${TRANSACTIONS_FILE}`);
    const logged: string[] = [];
    const log = new TransactionLog({ dir, log: (l) => logged.push(l) });
    fill(log, 3);
    log.flush();
    assertEquals(log.list().length, 3);
    assertEquals(logged.length, 1, logged.join("\n"));
    assert(logged[0]!.includes(`${dir}/${TRANSACTIONS_FILE}`), logged[0]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
