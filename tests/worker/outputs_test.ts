/**
 * Job output directories left empty are recycled (outputs.ts): the last release keeps the
 * directory as a spare (as it is, still the job's), the next new job's first attempt locks and
 * checks it and gets the same inode, empty, with a fresh directory's mode and its own owner, and
 * ReadJobOutput still lists the old job as an empty directory. A directory with anything in it is
 * kept as it was; a spare is swept like any job's directory, and a restart leaves spares as the
 * directories they are.
 */
import { JobOutputs, MAX_SPARE_OUTPUT_DIRS } from "../../src/worker/outputs.ts";
import { TaskState } from "../../src/rpc/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { assert, assertEquals, assertRejects } from "../_helpers/assert.ts";
import { commandTask, startHarness } from "./harness.ts";

const linux = Deno.build.os === "linux";
const isRoot = linux && Deno.uid() === 0;
const HOUR = 3600_000;

async function withRoot(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "iris-outputs-" });
  try {
    await fn(`${root}/outputs`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

const stat = (path: string) => Deno.lstatSync(path);
const names = (path: string) => [...Deno.readDirSync(path)].map((e) => e.name).sort();
const write = (path: string) => Deno.writeTextFileSync(path, "x");
const chmod = (path: string, mode: number) => Deno.chmodSync(path, mode);
const mkdir = (path: string) => Deno.mkdirSync(path);
const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);
/** Task users stand-ins (the worker runs as root when it has task users). */
const alice = { uid: 61001, gid: 61001 };
const bob = { uid: 61002, gid: 61002 };
const root = { uid: 0, gid: 0 };

Deno.test({
  name: "JobOutputs: an empty directory is recycled; the next job gets it empty, fresh, its own",
  ignore: !linux,
  fn: () =>
    withRoot(async (dir) => {
      const outputs = new JobOutputs(dir, seconds(3600), undefined, isRoot ? root : undefined);
      const one = await outputs.acquire("/a/one", isRoot ? alice : undefined);
      const fresh = stat(one);
      chmod(one, 0o777); // the task widened it, then wrote nothing
      await outputs.release("/a/one");
      assertEquals(outputs.spares, 1);
      const kept = stat(one); // still the job's, as it was, until a new job takes it
      assertEquals(kept.mode! & 0o7777, 0o777);
      if (isRoot) assertEquals([kept.uid, kept.gid], [alice.uid, alice.gid]);

      const two = await outputs.acquire("/a/two", isRoot ? bob : undefined);
      assertEquals(await exists(one), false);
      const reused = stat(two);
      assertEquals(reused.ino, fresh.ino, "the second job got the first one's directory");
      assertEquals(reused.mode, fresh.mode);
      if (isRoot) assertEquals([reused.uid, reused.gid], [bob.uid, bob.gid]);
      assertEquals(names(two), []);
      assert(reused.mtime!.getTime() > Date.now() - 60_000, "its retention starts now");
      assertEquals(outputs.spares, 0);
      // Read back as the empty directory it was.
      const listed = await outputs.read("/a/one", "");
      assertEquals([listed.isDir, listed.files], [true, []]);
      await assertRejects(() => outputs.read("/a/one", "x.txt"), /No output "x\.txt" of job/);
      await assertRejects(() => outputs.read("/a/never", ""), /No outputs of job/);
      // A new attempt of the old job makes its directory afresh.
      const again = await outputs.acquire("/a/one", isRoot ? alice : undefined);
      assertEquals(names(again), []);
      assert(stat(again).ino !== reused.ino);
    }),
});

Deno.test({
  name: "JobOutputs: a directory holding anything is kept as it was (owner, mode, files)",
  ignore: !linux,
  fn: () =>
    withRoot(async (dir) => {
      const outputs = new JobOutputs(dir, seconds(3600), undefined, isRoot ? root : undefined);
      const files = await outputs.acquire("/a/files", isRoot ? alice : undefined);
      write(`${files}/out.txt`);
      chmod(files, 0o750);
      const nested = await outputs.acquire("/a/nested", isRoot ? alice : undefined);
      mkdir(`${nested}/ckpt`); // an empty subdirectory is something too
      await outputs.release("/a/files");
      await outputs.release("/a/nested");
      assertEquals(outputs.spares, 2, "spares until a new job looks at them");
      const fresh = await outputs.acquire("/a/fresh", isRoot ? bob : undefined);
      assertEquals(outputs.spares, 0, "both were looked at, and refused");
      assert(fresh !== files && fresh !== nested);
      assertEquals(names(fresh), []);
      if (isRoot) assertEquals(stat(fresh).uid, bob.uid);
      assertEquals(names(files), ["out.txt"]);
      assertEquals(stat(files).mode! & 0o7777, 0o750);
      if (isRoot) assertEquals(stat(files).uid, alice.uid);
      assertEquals(names(nested), ["ckpt"]);
      assertEquals((await outputs.read("/a/files", "")).files.map((f) => f.path), ["out.txt"]);
    }),
});

Deno.test({
  name: "JobOutputs: concurrent attempts of a job share one directory; the last release recycles",
  ignore: !linux,
  fn: () =>
    withRoot(async (dir) => {
      const outputs = new JobOutputs(dir, seconds(3600), undefined, isRoot ? root : undefined);
      const seed = await outputs.acquire("/a/seed");
      await outputs.release("/a/seed");
      assertEquals(outputs.spares, 1);
      const [first, second] = await Promise.all([
        outputs.acquire("/a/job"),
        outputs.acquire("/a/job"),
      ]);
      assertEquals(first, second);
      assertEquals(outputs.spares, 0, "one spare served both attempts");
      assertEquals(await exists(seed), false);
      await outputs.release("/a/job");
      assertEquals(outputs.spares, 0, "the other attempt still holds it");
      await outputs.release("/a/job");
      assertEquals(outputs.spares, 1);
      // The next task of a job whose directory is a spare takes its own back, as its user's.
      const user = isRoot ? alice : undefined;
      const inode = stat(first).ino;
      assertEquals(await outputs.acquire("/a/job", user), first);
      assertEquals(outputs.spares, 0);
      assertEquals(stat(first).ino, inode);
      if (isRoot) assertEquals(stat(first).uid, alice.uid);
    }),
});

Deno.test({
  name: "JobOutputs: a spare is swept as its job's directory; a restart keeps spares as such",
  ignore: !linux,
  fn: () =>
    withRoot(async (dir) => {
      const outputs = new JobOutputs(dir, seconds(3600));
      for (const job of ["/a/empty", "/a/gone"]) await outputs.acquire(job);
      for (const job of ["/a/empty", "/a/gone"]) await outputs.release(job);
      const taker = await outputs.acquire("/a/taker"); // takes the oldest spare
      write(`${taker}/out.txt`);
      await outputs.release("/a/taker");
      assertEquals(outputs.spares, 2); // a new job would look at /a/taker's and refuse it
      assertEquals(names(dir), ["%2Fa%2Fgone", "%2Fa%2Ftaker"]);
      // Far past the retention: the spare goes like any job's directory, and out of the pool;
      // the job whose directory was taken is forgotten.
      assertEquals((await outputs.sweep(Date.now() + 2 * HOUR)).sort(), ["/a/gone", "/a/taker"]);
      assertEquals(outputs.spares, 0);
      await assertRejects(() => outputs.read("/a/empty", ""), /No outputs of job/);
      const fresh = await outputs.acquire("/a/fresh"); // made anew, nothing stale handed out
      assertEquals(names(fresh), []);
      await outputs.release("/a/fresh");
      assertEquals(outputs.spares, 1);

      // A restart: the earlier run's spare is its job's empty directory, listed and swept so.
      const restarted = new JobOutputs(dir, seconds(3600));
      assertEquals((await restarted.read("/a/fresh", "")).files, []);
      const next = await restarted.acquire("/a/next");
      assert(next !== fresh && await exists(fresh), "not handed out by the new run");
      assertEquals(await restarted.sweep(Date.now() + 2 * HOUR), ["/a/fresh"]);
    }),
});

Deno.test({
  name: "JobOutputs: spares made ahead go to new jobs, are no job's, and a restart takes them back",
  ignore: !linux,
  fn: () =>
    withRoot(async (dir) => {
      const owner = isRoot ? root : undefined;
      const outputs = new JobOutputs(dir, seconds(3600), undefined, owner);
      const filling = outputs.fill(2);
      // Off the event loop: a job now makes its own directory.
      const early = await outputs.acquire("/a/early", isRoot ? alice : undefined);
      await filling;
      assertEquals(outputs.spares, 2);
      assertEquals(names(dir), ["%2Fa%2Fearly", "+spare-0", "+spare-1"]);
      for (const name of ["+spare-0", "+spare-1"]) {
        assertEquals(stat(`${dir}/${name}`).mode, stat(early).mode);
        if (isRoot) assertEquals(stat(`${dir}/${name}`).uid, 0);
      }
      const inodes = new Set(["+spare-0", "+spare-1"].map((n) => stat(`${dir}/${n}`).ino));
      // Never a job's directory: no job answers with it, and the sweep leaves it.
      await assertRejects(() => outputs.read("+spare-0", ""), /No outputs of job/);
      await outputs.release("/a/early");
      assertEquals(await outputs.sweep(Date.now() + 2 * HOUR), ["/a/early"]);
      assertEquals(outputs.spares, 2);

      const one = await outputs.acquire("/a/one", isRoot ? bob : undefined);
      assert(inodes.has(stat(one).ino), "the new job got a spare made ahead");
      assertEquals(names(one), []);
      if (isRoot) assertEquals(stat(one).uid, bob.uid);
      assert(stat(one).mtime!.getTime() > Date.now() - 60_000, "its retention starts now");
      assertEquals(outputs.spares, 1);

      // A restart takes the earlier run's spare back (no new directory); one not empty is left.
      await outputs.fill(3);
      write(`${dir}/+spare-2/planted`);
      const before = names(dir);
      const restarted = new JobOutputs(dir, seconds(3600), undefined, owner);
      // +spare-0 went to /a/one (made anew now), 1 and 3 are taken back, 2 is left.
      await restarted.fill(3);
      assertEquals(restarted.spares, 3);
      assertEquals(names(dir), [...before, "+spare-0"].sort());
      assertEquals(names(`${dir}/+spare-2`), ["planted"]);
      const two = await restarted.acquire("/a/two");
      assertEquals(names(two), []);
    }),
});

Deno.test({
  name: "JobOutputs: a job's kept files are not replaced by a spare; the pool is bounded",
  ignore: !linux,
  fn: () =>
    withRoot(async (dir) => {
      const outputs = new JobOutputs(dir, seconds(3600));
      const kept = await outputs.acquire("/a/kept");
      write(`${kept}/ckpt`);
      await outputs.release("/a/kept");
      await outputs.acquire("/a/empty");
      await outputs.release("/a/empty");
      assertEquals(outputs.spares, 1);
      assertEquals(await outputs.acquire("/a/kept"), kept); // a retry of the job
      assertEquals(names(kept), ["ckpt"]);
      assertEquals(outputs.spares, 1, "the spare waits for the next new job");
      await outputs.release("/a/kept");

      const jobs = Array.from({ length: MAX_SPARE_OUTPUT_DIRS + 1 }, (_, i) => `/b/${i}`);
      for (const job of jobs) await outputs.acquire(job);
      for (const job of jobs) await outputs.release(job);
      assertEquals(outputs.spares, MAX_SPARE_OUTPUT_DIRS);
      assertEquals(names(dir).length, 2 + MAX_SPARE_OUTPUT_DIRS, "kept, past the pool, spares");
    }),
});

Deno.test({
  name:
    "worker: a job that wrote nothing leaves a spare; the next job's task gets it, lists as empty",
  // As root, tasks run as their own users: a spare is seen taken back from its user.
  ignore: !isRoot,
  fn: async () => {
    // No spares made ahead: a full pool would leave the empty directory nowhere to be kept.
    await using h = await startHarness({ sparesAhead: 0 });
    const probe = (writes: boolean) => [
      "sh",
      "-c",
      `stat -c "%i %u" "$IRIS_OUTPUT_DIR"; echo "[$(ls -A "$IRIS_OUTPUT_DIR")]"` +
      (writes ? '; echo x > "$IRIS_OUTPUT_DIR/out.txt"' : ""),
    ];
    const outputsDir = `${h.worker.rootDir}/outputs`;
    const seen: string[][] = [];
    for (const [i, writes] of [false, true].entries()) {
      const taskId = `/u/out${i}/0`;
      await h.client.runTask(commandTask(taskId, probe(writes)));
      // Its attempt releases the job's directory as it ends: before the controller hears of it.
      await h.fake.waitForState(taskId, TaskState.SUCCEEDED);
      seen.push(h.fake.logsOf(taskId).filter((l) => l.stream === "stdout").map((l) => l.text));
    }
    assertEquals(seen.map((out) => out[1]), ["[]", "[]"]);
    const [first, second] = seen.map((out) => out[0]!.split(" "));
    assertEquals(second![0], first![0], "the second job's directory is the first one's");
    assert(second![1] !== first![1], "each task's directory is its own user's");
    const empty = await h.client.readJobOutput({ jobId: "/u/out0", path: "" });
    assertEquals([empty.isDir, empty.files.length], [true, 0]);
    await waitFor(async () => (await h.client.readJobOutput({ jobId: "/u/out1" })).files.length, {
      timeout: seconds(10),
      what: "the second job's file listed",
    });
    assertEquals(await exists(`${outputsDir}/%2Fu%2Fout0`), false);
  },
});

Deno.test({
  name:
    "JobOutputs: a spare tampered with (symlink, file, mode, owner, content) is never given to a job",
  ignore: !isRoot,
  fn: () =>
    withRoot(async (dir) => {
      const outputs = new JobOutputs(dir, seconds(3600), seconds(3600), root);
      const victim = dir.replace(/outputs$/, "victim");
      mkdir(victim);
      chmod(victim, 0o755);
      const tamper = [
        (spare: string) => (Deno.removeSync(spare), Deno.symlinkSync(victim, spare)),
        (spare: string) => (Deno.removeSync(spare), write(spare)),
        (spare: string) => chmod(spare, 0o777),
        (spare: string) => Deno.chownSync(spare, bob.uid, bob.gid),
        (spare: string) => write(`${spare}/planted`),
      ];
      await outputs.fill(tamper.length);
      assertEquals(outputs.spares, tamper.length);
      for (const [i, fn] of tamper.entries()) fn(`${dir}/+spare-${i}`);
      // A job's own parked spare, then replaced by a symlink.
      await outputs.acquire("/own/job");
      await outputs.release("/own/job");
      const own = outputs.dirOf("/own/job");
      await Deno.remove(own);
      await Deno.symlink(victim, own);
      const jobs = [...tamper.keys()].map((i) => `/t/${i}`);
      for (const job of [...jobs, "/own/job"]) {
        const got = await outputs.acquire(job, alice);
        const st = stat(got);
        assert(st.isDirectory, `${job}: a real directory`);
        assertEquals([st.uid, st.mode! & 0o7777], [alice.uid, 0o700], job);
        assertEquals(names(got), [], job);
      }
      const v = stat(victim);
      assertEquals([v.uid, v.mode! & 0o7777], [0, 0o755], "the symlink's target was not touched");
    }),
});

Deno.test({
  name:
    "JobOutputs: a released directory changed afterwards (file, symlink) never goes to another job",
  ignore: !linux,
  fn: () =>
    withRoot(async (dir) => {
      const outputs = new JobOutputs(dir, seconds(3600), seconds(3600), isRoot ? root : undefined);
      const task = isRoot ? alice : undefined;
      const victim = dir.replace(/outputs$/, "victim");
      mkdir(victim);
      chmod(victim, 0o755);
      const late = await outputs.acquire("/a/late", task);
      const swapped = await outputs.acquire("/a/swapped", task);
      chmod(late, 0o750);
      await outputs.release("/a/late");
      await outputs.release("/a/swapped");
      write(`${late}/written-after`); // a process of the task outlived its attempt
      await Deno.remove(swapped);
      await Deno.symlink(victim, swapped);
      assertEquals(outputs.spares, 2);
      const got = await outputs.acquire("/b/next", isRoot ? bob : undefined);
      assertEquals(outputs.spares, 0);
      assertEquals(names(got), []);
      if (isRoot) assertEquals(stat(got).uid, bob.uid);
      // The job's files stay its own, as they were; the symlink is gone, its target untouched.
      assertEquals(names(late), ["written-after"]);
      assertEquals(stat(late).mode! & 0o7777, 0o750);
      if (isRoot) assertEquals(stat(late).uid, alice.uid);
      assertEquals(await exists(swapped), false);
      const v = stat(victim);
      assertEquals([v.uid, v.mode! & 0o7777], [isRoot ? 0 : v.uid, 0o755]);
      assertEquals((await outputs.read("/a/late", "")).files.map((f) => f.path), ["written-after"]);
    }),
});

Deno.test({
  name: "JobOutputs: a spare's retention starts anew when a job takes it (a recent mtime is kept)",
  ignore: !linux,
  fn: () =>
    withRoot(async (dir) => {
      const outputs = new JobOutputs(dir, seconds(7 * 24 * 3600));
      const old = await outputs.acquire("/a/old");
      const recent = await outputs.acquire("/a/recent");
      await outputs.release("/a/old");
      await outputs.release("/a/recent");
      const hourAgo = new Date(Date.now() - HOUR);
      await Deno.utime(old, hourAgo, hourAgo); // as if released an hour ago
      const recentMtime = stat(recent).mtime!.getTime();
      const oldIno = stat(old).ino;
      const first = await outputs.acquire("/b/first"); // takes the oldest spare
      assertEquals(stat(first).ino, oldIno);
      assert(stat(first).mtime!.getTime() > Date.now() - 60_000, "an old mtime is set anew");
      const second = await outputs.acquire("/b/second");
      assertEquals(stat(second).mtime!.getTime(), recentMtime, "one set moments ago is kept");
      // Its release then sets it only once that mtime is a minute old, as for a new directory.
      await outputs.release("/b/second");
      assertEquals(stat(second).mtime!.getTime(), recentMtime);
    }),
});

Deno.test({
  name: "JobOutputs: a job id naming the outputs root or the worker's root is refused (job_id)",
  ignore: !linux,
  fn: () =>
    withRoot(async (dir) => {
      const outputs = new JobOutputs(dir, seconds(3600));
      await outputs.acquire("/a/job");
      for (const jobId of ["", ".", ".."]) {
        await assertRejects(() => outputs.read(jobId, ""), /job_id/);
        await assertRejects(() => outputs.acquire(jobId), /job_id/);
      }
      // `+spare-<n>` (a name only spares have) is no job's: it encodes to another name.
      await outputs.fill(2);
      await assertRejects(() => outputs.read("+spare-1", ""), /No outputs/);
      // A name that decodes to no job id does not stop the sweep.
      mkdir(`${dir}/%E0`);
      const old = Date.now() + 2 * 3600_000;
      assertEquals(await outputs.sweep(old), []); // "/a/job" is held
      await outputs.release("/a/job");
      assertEquals(await outputs.sweep(old), ["/a/job"]);
    }),
});
