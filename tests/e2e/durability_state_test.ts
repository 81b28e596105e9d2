/**
 * The controller state dir with real processes (issue #15): 50 submits then SIGKILL leave the
 * jobs in the WAL; the intact dir restarts with all 50, a copy without its WAL or with a corrupt
 * WAL is refused with a message naming the files; `iris controller backup` copies the state
 * while submits go on, and the copy, restored into a new state dir, starts a controller with
 * every job it holds; a corrupt row stops the start naming (table, id) until
 * --skip-corrupt-rows quarantines it.
 */
import { DatabaseSync } from "node:sqlite";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { IrisClient } from "../../mod.ts";
import { type IrisProcess, runIris, spawnIris } from "../_helpers/iris_process.ts";
import { seconds } from "../../src/time.ts";

const STATE = "controller.sqlite3";

function serve(dir: string, ...extra: string[]): IrisProcess {
  return spawnIris(["controller", "serve", "--port", "0", "--state-dir", dir, ...extra]);
}

async function started(p: IrisProcess): Promise<IrisClient> {
  const url = (await p.waitForLine(/Controller started at (\S+)/))[1]!;
  return new IrisClient(url, { retryFor: seconds(10) });
}

/** Copies a state dir (its files and, recursively, its task log dirs). */
function copyDir(from: string, to: string): void {
  Deno.mkdirSync(to, { mode: 0o700 });
  for (const f of Deno.readDirSync(from)) {
    if (f.isDirectory) copyDir(`${from}/${f.name}`, `${to}/${f.name}`);
    else Deno.copyFileSync(`${from}/${f.name}`, `${to}/${f.name}`);
  }
}

async function refusedStart(dir: string, ...expected: string[]): Promise<string> {
  const r = await runIris(["controller", "serve", "--port", "0", "--state-dir", dir]);
  assert(r.code !== 0, `refused: ${r.stdout}${r.stderr}`);
  assert(!r.stdout.includes("Controller started"), r.stdout);
  for (const e of expected) assert(r.stderr.includes(e), `"${e}" in:\n${r.stderr}`);
  return r.stderr;
}

Deno.test("a SIGKILLed controller's state: intact it restarts with every job, without or with a corrupt WAL it is refused", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-state-e2e-" });
  try {
    const dir = `${root}/state`;
    {
      const p = serve(dir);
      try {
        const client = await started(p);
        for (let i = 0; i < 50; i++) {
          await client.submit({ name: `job-${i}`, command: ["true"], cpu: 0.01 });
        }
      } finally {
        p.child.kill("SIGKILL");
        await p.status;
      }
    }
    const main = (await Deno.stat(`${dir}/${STATE}`)).size;
    const wal = (await Deno.stat(`${dir}/${STATE}-wal`)).size;
    assert(wal > main, `the jobs are in the WAL: main ${main} B, WAL ${wal} B`);

    copyDir(dir, `${root}/no-wal`);
    await Deno.remove(`${root}/no-wal/${STATE}-wal`);
    await refusedStart(
      `${root}/no-wal`,
      `${STATE}-wal is missing`,
      "controller.manifest records commit",
      "(50 job(s)",
    );

    copyDir(dir, `${root}/bad-wal`);
    const bytes = await Deno.readFile(`${root}/bad-wal/${STATE}-wal`);
    for (let i = 0; i < 64; i++) bytes[Math.floor(bytes.length / 3) + i]! ^= 0x5a;
    await Deno.writeFile(`${root}/bad-wal/${STATE}-wal`, bytes);
    await refusedStart(`${root}/bad-wal`, "is corrupt or truncated", "controller.manifest");

    // Intact: every job is back; a clean stop folds the WAL into the main file.
    {
      await using p = serve(dir);
      const client = await started(p);
      assertEquals((await client.list({ limit: 1000 })).total, 50);
      await p.stop();
    }
    await Deno.stat(`${dir}/${STATE}-wal`).then(
      () => assert(false, "no WAL after a clean stop"),
      (err) => assert(err instanceof Deno.errors.NotFound, String(err)),
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("iris controller backup during submits; the restored copy starts with every job; a corrupt row is named, then skipped with --skip-corrupt-rows", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-backup-e2e-" });
  try {
    const dir = `${root}/state`;
    const output = `${root}/backup.sqlite3`;
    let jobsInBackup = 0;
    {
      await using p = serve(dir);
      const client = await started(p);
      for (let i = 0; i < 20; i++) await client.submit({ name: `before-${i}`, command: ["true"] });
      let stop = false;
      let submitted = 20;
      const writer = (async () => {
        while (!stop) {
          await client.submit({ name: `during-${submitted++}`, command: ["true"] });
        }
      })();
      try {
        const r = await runIris(["controller", "backup", "--state-dir", dir, "--output", output]);
        assertEquals(r.code, 0, r.stderr);
        const m = r.stdout.match(/commit \d+: (\d+) job\(s\)/);
        assert(m, r.stdout);
        jobsInBackup = Number(m[1]);
      } finally {
        stop = true;
        await writer;
      }
      assert(jobsInBackup >= 20 && jobsInBackup <= submitted, `${jobsInBackup} of ${submitted}`);
      // The output must be a new file.
      const again = await runIris(["controller", "backup", "--state-dir", dir, "--output", output]);
      assert(again.code !== 0 && again.stderr.includes("already exists"), again.stderr);
    }

    // Restore: the backup file as controller.sqlite3 of an empty state dir.
    const restored = `${root}/restored`;
    await Deno.mkdir(restored, { mode: 0o700 });
    await Deno.copyFile(output, `${restored}/${STATE}`);
    let victim = "";
    {
      await using p = serve(restored);
      const client = await started(p);
      const { jobs, total } = await client.list({ limit: 1000 });
      assertEquals(total, jobsInBackup);
      victim = jobs[0]!.jobId;
    }

    const db = new DatabaseSync(`${restored}/${STATE}`);
    db.prepare("UPDATE jobs SET row = '{not json' WHERE job_id = ?").run(victim);
    db.close();
    await refusedStart(
      restored,
      `${restored}/${STATE}: 1 corrupt row(s)`,
      `table jobs, id ${victim}`,
    );
    {
      await using p = serve(restored, "--skip-corrupt-rows");
      const client = await started(p);
      await p.waitForLine(/moved to the quarantine table/);
      assertEquals((await client.list({ limit: 1000 })).total, jobsInBackup - 1);
    }
    const check = new DatabaseSync(`${restored}/${STATE}`, { readOnly: true });
    try {
      const q = check.prepare("SELECT table_name, row_id, row FROM quarantine").all();
      assertEquals(q[0]?.row_id, victim);
      assertEquals(q[0]?.row, "{not json");
    } finally {
      check.close();
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
