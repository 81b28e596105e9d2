/**
 * The controller state is one self-describing thing (store.ts): a lost or corrupt WAL is
 * detected against the manifest, a copy of the main file alone is refused, a corrupt row is
 * named (table, id) and can be quarantined, and an online backup restores every job.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { DatabaseSync } from "node:sqlite";
import assertStrict from "node:assert/strict";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { JobSpecSchema, TaskState } from "../../src/rpc/mod.ts";
import { JobTable, noEffects } from "../../src/controller/state.ts";
import {
  backupState,
  MANIFEST_FILE,
  readManifest,
  STATE_FILE,
  StateStore,
  StateStoreError,
} from "../../src/controller/store.ts";
import { ms } from "../../src/time.ts";
import { withTempDir } from "../_helpers/temp_dir.ts";

function submit(t: JobTable, name: string, replicas = 1) {
  t.submit(
    create(JobSpecSchema, {
      name,
      user: "alice",
      replicas,
      entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
    } as MessageInitShape<typeof JobSpecSchema>),
    `req-${name}`,
    1,
    noEffects(),
  );
}

function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  return withTempDir("iris-integrity-", fn);
}

/**
 * What a SIGKILL leaves: 50 jobs committed one by one, then every state file copied while the
 * store is still open (nothing is checkpointed or closed).
 */
function crashImage(dir: string): string {
  const t = new JobTable();
  const live = `${dir}/live`;
  const store = StateStore.open(live);
  try {
    for (let i = 0; i < 50; i++) {
      submit(t, `j${i}`);
      store.flush(t);
    }
    const image = `${dir}/image`;
    Deno.mkdirSync(image, { mode: 0o700 });
    for (const f of Deno.readDirSync(live)) {
      Deno.copyFileSync(`${live}/${f.name}`, `${image}/${f.name}`);
    }
    return image;
  } finally {
    store.close();
  }
}

function loadJobs(dir: string, opts = {}): number {
  const store = StateStore.open(dir, opts);
  try {
    const t = new JobTable();
    return store.load(t).jobs;
  } finally {
    store.close();
  }
}

function refused(fn: () => unknown, ...parts: (string | RegExp)[]): string {
  let message = "";
  assertStrict.throws(fn, (e: unknown) => {
    assert(e instanceof StateStoreError, `a StateStoreError, got ${e}`);
    message = e.message;
    for (const p of parts) {
      assert(typeof p === "string" ? e.message.includes(p) : p.test(e.message), e.message);
    }
    return true;
  });
  return message;
}

Deno.test("a crash image with its WAL loads every job; the jobs live in the WAL until a checkpoint", async () => {
  await withDir((dir) => {
    const image = crashImage(dir);
    assert(
      Deno.statSync(`${image}/${STATE_FILE}-wal`).size > 50 * 1000,
      "the commits are in the WAL",
    );
    assertEquals(readManifest(image)?.jobs, 50);
    assertEquals(loadJobs(image), 50);
  });
});

Deno.test("a deleted WAL is refused, naming the files and what is missing, and nothing is altered", async () => {
  await withDir((dir) => {
    const image = crashImage(dir);
    Deno.removeSync(`${image}/${STATE_FILE}-wal`);
    const before = Deno.readFileSync(`${image}/${STATE_FILE}`);
    const message = refused(
      () => StateStore.open(image),
      `${STATE_FILE} holds commits up to`,
      `${MANIFEST_FILE} records commit`,
      "(50 job(s)",
      `${image}/${STATE_FILE}-wal is missing`,
    );
    assert(/holds commits up to \d+ \(0 job\(s\)\)/.test(message), message);
    assertEquals(Deno.readFileSync(`${image}/${STATE_FILE}`), before);
    // Refused again the same way (the check created no WAL).
    refused(() => StateStore.open(image), "-wal is missing");
  });
});

Deno.test("--accept-state-loss starts from what the main file holds, with a warning", async () => {
  await withDir((dir) => {
    const image = crashImage(dir);
    Deno.removeSync(`${image}/${STATE_FILE}-wal`);
    const store = StateStore.open(image, { acceptStateLoss: true });
    try {
      const warnings = store.takeWarnings();
      assertEquals(warnings.length, 1);
      assert(warnings[0]!.includes("-wal is missing"), warnings[0]);
      assert(warnings[0]!.includes("starting anyway (--accept-state-loss)"), warnings[0]);
      assertEquals(store.load(new JobTable()).jobs, 0);
    } finally {
      store.close();
    }
    // From now on the state is consistent again: no flag needed.
    assertEquals(loadJobs(image), 0);
  });
});

Deno.test("a corrupt WAL is refused", async () => {
  await withDir((dir) => {
    const image = crashImage(dir);
    const wal = `${image}/${STATE_FILE}-wal`;
    const bytes = Deno.readFileSync(wal);
    // Damage a frame in the middle: SQLite drops it and every later frame.
    for (let i = 0; i < 64; i++) bytes[Math.floor(bytes.length / 2) + i]! ^= 0xff;
    Deno.writeFileSync(wal, bytes);
    refused(() => StateStore.open(image), "is corrupt or truncated", MANIFEST_FILE, "(50 job(s)");
  });
});

Deno.test("a copy of the main file alone (no WAL, no manifest) of a controller in use is refused", async () => {
  await withDir((dir) => {
    const image = crashImage(dir);
    Deno.removeSync(`${image}/${STATE_FILE}-wal`);
    Deno.removeSync(`${image}/${MANIFEST_FILE}`);
    refused(() => StateStore.open(image), "was in use (not closed cleanly)", "-wal is missing");
    // Deleting the manifest is the documented way to start from what the file holds anyway:
    // with the WAL present it opens.
    const image2 = crashImage(`${dir}/second`);
    Deno.removeSync(`${image2}/${MANIFEST_FILE}`);
    assertEquals(loadJobs(image2), 50);
  });
});

Deno.test("a manifest without its database is refused", async () => {
  await withDir((dir) => {
    const image = crashImage(dir);
    for (const f of ["", "-wal", "-shm"]) Deno.removeSync(`${image}/${STATE_FILE}${f}`);
    refused(() => StateStore.open(image), `${image}/${STATE_FILE} is missing`, "51 commit(s)");
    Deno.writeTextFileSync(`${image}/${MANIFEST_FILE}`, "garbage");
    refused(() => StateStore.open(image), `${image}/${MANIFEST_FILE}: unreadable`);
  });
});

Deno.test("a damaged database file is refused with an error naming it", async () => {
  await withDir((dir) => {
    const t = new JobTable();
    const store = StateStore.open(dir);
    for (let i = 0; i < 200; i++) submit(t, `j${i}`, 5);
    store.flush(t);
    store.close();
    const path = `${dir}/${STATE_FILE}`;
    const bytes = Deno.readFileSync(path);
    // Overwrite every page after the first two (schema and meta stay readable).
    for (let i = 2 * 4096; i < bytes.length; i++) bytes[i] = 0x55;
    Deno.writeFileSync(path, bytes);
    refused(() => loadJobs(dir), `${path}: `);
  });
});

Deno.test("a clean close checkpoints: the main file alone is the whole state", async () => {
  await withDir((dir) => {
    const t = new JobTable();
    const store = StateStore.open(dir);
    for (let i = 0; i < 20; i++) {
      submit(t, `j${i}`);
      store.flush(t);
    }
    store.close();
    assert(
      ![...Deno.readDirSync(dir)].some((f) => f.name.endsWith("-wal")),
      "no WAL after a clean close",
    );
    const copy = `${dir}/copy`;
    Deno.mkdirSync(copy);
    Deno.copyFileSync(`${dir}/${STATE_FILE}`, `${copy}/${STATE_FILE}`);
    assertEquals(loadJobs(copy), 20);
  });
});

Deno.test("the WAL is checkpointed periodically", async () => {
  await withDir((dir) => {
    const t = new JobTable();
    const store = StateStore.open(dir, { checkpointInterval: ms(0) });
    try {
      submit(t, "a", 100);
      store.flush(t);
      assertEquals(Deno.statSync(`${dir}/${STATE_FILE}-wal`).size, 0);
    } finally {
      store.close();
    }
  });
});

function corruptRows(dir: string): void {
  const t = new JobTable();
  for (const name of ["good", "badjob", "badtask"]) submit(t, name, 3);
  // Placed, so every task has a row (a task still as submitted has none).
  for (const id of [...t.tasks.keys()]) t.assign(id, "w1", 2);
  const store = StateStore.open(dir);
  store.flush(t);
  store.close();
  const db = new DatabaseSync(`${dir}/${STATE_FILE}`);
  db.prepare("UPDATE jobs SET row = ? WHERE job_id = ?").run('{"spec":{', "/alice/badjob");
  db.prepare("UPDATE tasks SET row = ? WHERE job_id = ? AND task_index = 1").run(
    "[1,2",
    "/alice/badtask",
  );
  db.close();
}

Deno.test("a corrupt row stops the load with an error naming the file, table and id", async () => {
  await withDir((dir) => {
    corruptRows(dir);
    refused(
      () => loadJobs(dir),
      `${dir}/${STATE_FILE}: 2 corrupt row(s)`,
      "table jobs, id /alice/badjob",
      "table tasks, id /alice/badtask/1",
      "--skip-corrupt-rows",
    );
  });
});

Deno.test("--skip-corrupt-rows moves a corrupt row's job to the quarantine table and says so", async () => {
  await withDir((dir) => {
    corruptRows(dir);
    const store = StateStore.open(dir, { skipCorruptRows: true });
    const t = new JobTable();
    try {
      const stats = store.load(t);
      assertEquals([...t.jobs.keys()], ["/alice/good"]);
      assertEquals(stats.quarantined.length, 2);
      assert(stats.quarantined[0]!.includes("table jobs, id /alice/badjob"), stats.quarantined[0]);
      assert(stats.quarantined[1]!.includes("job /alice/badtask skipped"), stats.quarantined[1]);
      assert(stats.quarantined[1]!.includes("quarantine table"), stats.quarantined[1]);
    } finally {
      store.close();
    }
    const db = new DatabaseSync(`${dir}/${STATE_FILE}`, { readOnly: true });
    try {
      const rows = db.prepare("SELECT table_name, row_id, row FROM quarantine ORDER BY id").all();
      assertEquals(rows.map((r) => `${r.table_name} ${r.row_id}`), [
        "jobs /alice/badjob",
        "tasks /alice/badjob/0",
        "tasks /alice/badjob/1",
        "tasks /alice/badjob/2",
        "jobs /alice/badtask",
        "tasks /alice/badtask/0",
        "tasks /alice/badtask/1",
        "tasks /alice/badtask/2",
      ]);
      assertEquals(rows[0]!.row, '{"spec":{', "the corrupt row is kept as it was");
    } finally {
      db.close();
    }
    // The next start needs no flag.
    assertEquals(loadJobs(dir), 1);
  });
});

Deno.test("backupState copies a consistent state while it is written; the copy restores every job", async () => {
  await withDir((dir) => {
    const live = `${dir}/live`;
    const t = new JobTable();
    const store = StateStore.open(live);
    try {
      for (let i = 0; i < 30; i++) {
        submit(t, `j${i}`, 10);
        store.flush(t);
      }
      const reader = new DatabaseSync(`${live}/${STATE_FILE}`, { readOnly: true });
      // A reader in the middle of a read transaction while writes and a checkpoint go on.
      reader.exec("BEGIN");
      reader.prepare("SELECT count(*) AS n FROM jobs").get();
      submit(t, "during", 10);
      store.flush(t);
      store.checkpoint();
      const result = backupState(live, `${dir}/backup.sqlite3`);
      reader.exec("COMMIT");
      reader.close();
      assertEquals([result.jobs, result.tasks], [31, 310]);
      const again = t.task("/alice/during/0");
      t.assign(again.taskId, "w1", 2);
      store.flush(t);
      refused(() => backupState(live, `${dir}/backup.sqlite3`), "already exists");
    } finally {
      store.close();
    }
    const restored = `${dir}/restored`;
    Deno.mkdirSync(restored);
    Deno.copyFileSync(`${dir}/backup.sqlite3`, `${restored}/${STATE_FILE}`);
    const back = StateStore.open(restored);
    try {
      const loaded = new JobTable();
      assertEquals(back.load(loaded).jobs, 31);
      assertEquals(loaded.task("/alice/during/0").state, TaskState.PENDING, "as of the backup");
    } finally {
      back.close();
    }
  });
});

Deno.test("a restored backup next to a newer manifest is refused (restore into an empty state dir)", async () => {
  await withDir((dir) => {
    const t = new JobTable();
    const store = StateStore.open(dir);
    submit(t, "a");
    store.flush(t);
    backupState(dir, `${dir}/backup.sqlite3`);
    submit(t, "b");
    store.flush(t);
    store.close();
    Deno.copyFileSync(`${dir}/backup.sqlite3`, `${dir}/${STATE_FILE}`);
    refused(() => StateStore.open(dir), `${MANIFEST_FILE} records commit`);
  });
});
