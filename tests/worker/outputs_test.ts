/**
 * Job output directories left empty are recycled (outputs.ts): the last release parks the
 * directory as a spare, the next job's first attempt gets the same inode, empty, with a fresh
 * directory's mode and its own owner, and ReadJobOutput still lists the emptied job as an empty
 * directory. A directory with anything in it is kept as it was; spares are never a job's, never
 * swept as one, and a restart drops them.
 */
import { JobOutputs, MAX_SPARE_OUTPUT_DIRS, SPARE_OUTPUT_DIRS } from "../../src/worker/outputs.ts";
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
      assertEquals(await exists(one), false);
      assertEquals(outputs.spares, 1);
      assertEquals(names(dir), [SPARE_OUTPUT_DIRS]);
      // Read back as the empty directory it was.
      const listed = await outputs.read("/a/one", "");
      assertEquals([listed.isDir, listed.files], [true, []]);
      await assertRejects(() => outputs.read("/a/one", "x.txt"), /No output "x\.txt" of job/);
      await assertRejects(() => outputs.read("/a/never", ""), /No outputs of job/);

      const two = await outputs.acquire("/a/two", isRoot ? bob : undefined);
      const reused = stat(two);
      assertEquals(reused.ino, fresh.ino, "the second job got the first one's directory");
      assertEquals(reused.mode, fresh.mode);
      if (isRoot) assertEquals([reused.uid, reused.gid], [bob.uid, bob.gid]);
      assertEquals(names(two), []);
      assert(reused.mtime!.getTime() > Date.now() - 60_000, "its retention starts now");
      assertEquals(outputs.spares, 0);
      assertEquals((await outputs.read("/a/one", "")).files, []);
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
      assertEquals(outputs.spares, 0);
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
      const outputs = new JobOutputs(dir, seconds(3600));
      const seed = await outputs.acquire("/a/seed");
      await outputs.release("/a/seed");
      assertEquals(outputs.spares, 1);
      const [first, second] = await Promise.all([
        outputs.acquire("/a/job"),
        outputs.acquire("/a/job"),
      ]);
      assertEquals(first, second);
      assertEquals(outputs.spares, 0, "one spare served both attempts");
      await outputs.release("/a/job");
      assertEquals(await exists(first), true, "the other attempt still holds it");
      await outputs.release("/a/job");
      assertEquals(await exists(first), false);
      assertEquals(outputs.spares, 1);
      assert(seed !== first);
    }),
});

Deno.test({
  name: "JobOutputs: a spare is never swept or listed as a job; a restart drops leftover spares",
  ignore: !linux,
  fn: () =>
    withRoot(async (dir) => {
      const outputs = new JobOutputs(dir, seconds(3600));
      const kept = await outputs.acquire("/a/kept");
      write(`${kept}/out.txt`);
      await outputs.release("/a/kept");
      await outputs.acquire("/a/empty");
      await outputs.release("/a/empty");
      assertEquals(outputs.spares, 1);
      // Far past the retention: the kept job goes, the spare stays, the emptied job is forgotten.
      assertEquals(await outputs.sweep(Date.now() + 2 * HOUR), ["/a/kept"]);
      assertEquals(names(dir), [SPARE_OUTPUT_DIRS]);
      assertEquals(names(outputs.spareDir).length, 1);
      await assertRejects(() => outputs.read("/a/empty", ""), /No outputs of job/);

      // A restart: the earlier run's spare (here with something in it) is not handed out.
      const [leftover] = names(outputs.spareDir);
      write(`${outputs.spareDir}/${leftover}/junk`);
      const before = outputs.dirOf("/a/before"); // the earlier run's job
      mkdir(before);
      write(`${before}/out.txt`);
      const restarted = new JobOutputs(dir, seconds(3600));
      const next = await restarted.acquire("/a/next");
      assertEquals(names(next), []);
      assertEquals(await exists(outputs.spareDir), false);
      assertEquals(names(before), ["out.txt"], "job directories outlive the restart");
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
      assertEquals(names(dir).length, 3, "kept, the one past the pool's room, the spares");
    }),
});

Deno.test({
  name:
    "worker: a job that wrote nothing leaves a spare; the next job's task gets it, lists as empty",
  ignore: !linux,
  fn: async () => {
    await using h = await startHarness();
    const probe = (writes: boolean) => [
      "sh",
      "-c",
      `stat -c "%i %u" "$IRIS_OUTPUT_DIR"; echo "[$(ls -A "$IRIS_OUTPUT_DIR")]"` +
      (writes ? '; echo x > "$IRIS_OUTPUT_DIR/out.txt"' : ""),
    ];
    const spareDir = `${h.worker.rootDir}/outputs/${SPARE_OUTPUT_DIRS}`;
    const spares = () => {
      try {
        return names(spareDir).length;
      } catch {
        return 0;
      }
    };
    const seen: string[][] = [];
    for (const [i, writes] of [false, true].entries()) {
      const taskId = `/u/out${i}/0`;
      await h.client.runTask(commandTask(taskId, probe(writes)));
      await h.fake.waitForState(taskId, TaskState.SUCCEEDED);
      seen.push(h.fake.logsOf(taskId).filter((l) => l.stream === "stdout").map((l) => l.text));
      if (i === 0) {
        await waitFor(() => spares() === 1, { timeout: seconds(10), what: "a spare output dir" });
      }
    }
    assertEquals(seen.map((out) => out[1]), ["[]", "[]"]);
    const [first, second] = seen.map((out) => out[0]!.split(" "));
    assertEquals(second![0], first![0], "the second job's directory is the first one's");
    if (isRoot) assert(second![1] !== first![1], "each task's directory is its own user's");
    const empty = await h.client.readJobOutput({ jobId: "/u/out0", path: "" });
    assertEquals([empty.isDir, empty.files.length], [true, 0]);
    await waitFor(async () => (await h.client.readJobOutput({ jobId: "/u/out1" })).files.length, {
      timeout: seconds(10),
      what: "the second job's file listed",
    });
    assertEquals(spares(), 0);
  },
});
