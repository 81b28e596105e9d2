/**
 * Backups carry the whole state dir's state (#24): `iris controller backup` includes
 * accounts.json (budgets, users, keys, claims, enrolment tokens), the transaction log and
 * gcp's worker token; `iris controller restore` and a backup copied in by hand both give them
 * back. Bad input (a non-backup file, a non-empty dir, a crafted file name) is refused, naming
 * it, with nothing written. Enrolment tokens survive a restart.
 */
import { DatabaseSync } from "node:sqlite";
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { runIris } from "../_helpers/iris_process.ts";
import { Accounts, ACCOUNTS_FILE } from "../../src/controller/accounts.ts";
import { TransactionLog, TRANSACTIONS_FILE } from "../../src/controller/transactions.ts";
import { STATE_FILE, StateStore } from "../../src/controller/store.ts";
import { unpackBackupFiles } from "../../src/controller/backup.ts";

/** A stopped controller's state dir: one job row, a budget, a user, an enrolment token. */
function makeState(dir: string): { token: string } {
  const store = StateStore.open(dir);
  store.close();
  const accounts = new Accounts([], `${dir}/${ACCOUNTS_FILE}`);
  accounts.setBudget("alice", { maxTasks: 7 });
  accounts.createUser("bob", "admin", 1000);
  const token = accounts.enrolments.issue("slice-a", 2, Date.now() + 60_000);
  const log = new TransactionLog({ dir });
  log.record({ action: "submit", entity: "job-1", user: "alice", details: "one" });
  log.flush();
  Deno.writeTextFileSync(`${dir}/worker.token`, "secret-worker-token\n", { mode: 0o600 });
  return { token };
}

function listing(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}

Deno.test("backup and restore carry accounts, enrolment tokens, transactions and the worker token", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-backup-" });
  try {
    const dir = `${root}/state`;
    const { token } = makeState(dir);
    const output = `${root}/b.sqlite3`;
    const b = await runIris(["controller", "backup", "--state-dir", dir, "--output", output]);
    assertEquals(b.code, 0, b.stderr);
    assertMatch(b.stdout, /with accounts\.json, transactions\.jsonl, worker\.token\)/);

    const restored = `${root}/restored`;
    const r = await runIris(["controller", "restore", "--backup", output, "--state-dir", restored]);
    assertEquals(r.code, 0, r.stderr);
    assertMatch(r.stdout, /Restored .* into .*restored/);
    assertEquals(listing(restored), [ACCOUNTS_FILE, STATE_FILE, TRANSACTIONS_FILE, "worker.token"]);
    assertEquals(((await Deno.stat(`${restored}/${ACCOUNTS_FILE}`)).mode ?? 0) & 0o777, 0o600);
    assertEquals(await Deno.readTextFile(`${restored}/worker.token`), "secret-worker-token\n");
    assertEquals(
      await Deno.readTextFile(`${restored}/${TRANSACTIONS_FILE}`),
      await Deno.readTextFile(`${dir}/${TRANSACTIONS_FILE}`),
    );
    const accounts = new Accounts([], `${restored}/${ACCOUNTS_FILE}`);
    assertEquals(accounts.get("alice")?.budget.maxTasks, 7);
    assertEquals(accounts.user("bob")?.role, "admin");
    assertEquals(accounts.enrolments.sliceOf(token, Date.now()), "slice-a");
    // The restored database no longer carries the files, and opens as a controller state.
    const db = new DatabaseSync(`${restored}/${STATE_FILE}`, { readOnly: true });
    const t = db.prepare("SELECT name FROM sqlite_master WHERE name = 'backup_files'").get();
    db.close();
    assertEquals(t, undefined);
    StateStore.open(restored).close();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a backup copied in by hand as controller.sqlite3 gives its files back on start", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-backup-" });
  try {
    const dir = `${root}/state`;
    makeState(dir);
    const output = `${root}/b.sqlite3`;
    assertEquals(
      (await runIris(["controller", "backup", "--state-dir", dir, "--output", output])).code,
      0,
    );
    const copy = `${root}/copy`;
    await Deno.mkdir(copy, { mode: 0o700 });
    await Deno.copyFile(output, `${copy}/${STATE_FILE}`);
    // An operator's own accounts.json wins over the backup's.
    await Deno.writeTextFile(`${copy}/${ACCOUNTS_FILE}`, '{"version":1,"budgets":{}}\n');
    assertEquals(unpackBackupFiles(copy), [TRANSACTIONS_FILE, "worker.token"]);
    assertEquals(
      await Deno.readTextFile(`${copy}/${ACCOUNTS_FILE}`),
      '{"version":1,"budgets":{}}\n',
    );
    assertEquals(unpackBackupFiles(copy), [], "only once");
    assertEquals(unpackBackupFiles(`${root}/nowhere`), []);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("restore refuses a non-backup, a non-empty dir and a crafted file name, writing nothing", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-backup-" });
  try {
    const dir = `${root}/state`;
    makeState(dir);
    const output = `${root}/b.sqlite3`;
    assertEquals(
      (await runIris(["controller", "backup", "--state-dir", dir, "--output", output])).code,
      0,
    );

    const junk = `${root}/junk.sqlite3`;
    await Deno.writeTextFile(junk, "not a database");
    const r1 = await runIris([
      "controller",
      "restore",
      "--backup",
      junk,
      "--state-dir",
      `${root}/a`,
    ]);
    assert(r1.code !== 0);
    assertMatch(r1.stderr, /junk\.sqlite3: not a controller backup/);
    assertEquals(listing(`${root}/a`), []);

    const busy = `${root}/busy`;
    await Deno.mkdir(busy);
    await Deno.writeTextFile(`${busy}/keep.txt`, "mine");
    const r2 = await runIris(["controller", "restore", "--backup", output, "--state-dir", busy]);
    assert(r2.code !== 0);
    assertMatch(r2.stderr, /busy: not empty \(keep\.txt\)/);
    assertEquals(listing(busy), ["keep.txt"]);

    const missing = await runIris(["controller", "restore", "--state-dir", `${root}/b`]);
    assertEquals(missing.code, 2);
    assertMatch(missing.stderr, /--backup is required/);

    // A crafted backup naming a path outside the state dir: refused, dir left empty.
    const crafted = `${root}/crafted.sqlite3`;
    await Deno.copyFile(output, crafted);
    const db = new DatabaseSync(crafted);
    db.prepare("INSERT INTO backup_files (name, mode, content) VALUES (?, ?, ?)").run(
      "../escape",
      0o600,
      new Uint8Array([1]),
    );
    db.close();
    const r3 = await runIris([
      "controller",
      "restore",
      "--backup",
      crafted,
      "--state-dir",
      `${root}/c`,
    ]);
    assert(r3.code !== 0);
    assertMatch(r3.stderr, /unexpected file "\.\.\/escape"/);
    assertEquals(listing(`${root}/c`), []);
    assertEquals(listing(root).includes("escape"), false);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("enrolment tokens are saved with the accounts: usable after a restart, once per worker", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-enrol-" });
  try {
    const file = `${root}/${ACCOUNTS_FILE}`;
    const now = Date.now();
    const first = new Accounts([], file);
    const token = first.enrolments.issue("slice-a", 2, now + 60_000, now);
    const expired = first.enrolments.issue("slice-b", 1, now + 10, now);
    assertEquals(first.enrolments.redeem(token, "slice-a-w0", now), undefined);
    const text = await Deno.readTextFile(file);
    assert(!text.includes(token), "only the hash is saved");

    const second = new Accounts([], file);
    assertMatch(second.enrolments.redeem(token, "slice-a-w0", now) ?? "", /enrolled already/);
    assertEquals(second.enrolments.redeem(token, "slice-a-w1", now), undefined);
    assertMatch(second.enrolments.redeem(token, "slice-a-w2", now) ?? "", /unknown, used/);
    assertEquals(second.enrolments.sliceOf(expired, now + 20), undefined);
    // Issuing drops expired tokens from the file.
    second.enrolments.issue("slice-c", 1, now + 60_000, now + 20);
    assertEquals(new Accounts([], file).enrolments.records().map((r) => r.sliceId), ["slice-c"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
