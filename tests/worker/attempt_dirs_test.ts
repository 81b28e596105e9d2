/**
 * Attempt directories are recycled only when clean (an empty `tmp` and nothing else): the next
 * attempt gets the same inodes, empty, with a fresh directory's modes and its own owner; anything
 * else (files, a symlink for `tmp`, a full `tmp`) is removed, never followed or reused.
 */
import { AttemptDirs, MAX_SPARE_DIRS, PRUNED_WAIT } from "../../src/worker/attempt_dirs.ts";
import { TaskState } from "../../src/rpc/mod.ts";
import { FakeClock, ms, seconds, waitFor } from "../../src/time.ts";
import { assert, assertEquals, assertRejects } from "../_helpers/assert.ts";
import { commandTask, startHarness } from "./harness.ts";

const linux = Deno.build.os === "linux";
const isRoot = linux && Deno.uid() === 0;

async function withRoot(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "iris-attempt-dirs-" });
  try {
    await Deno.mkdir(`${root}/tasks`);
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

// Synchronous helpers (the steps under test are synchronous too).
const stat = (path: string) => Deno.lstatSync(path);
const inode = (path: string) => stat(path).ino;
const names = (path: string) => [...Deno.readDirSync(path)].map((e) => e.name);
const write = (path: string) => Deno.writeTextFileSync(path, "x");
const chmod = (path: string, mode: number) => Deno.chmodSync(path, mode);
const rm = (path: string) => Deno.removeSync(path, { recursive: true });
const symlink = (target: string, path: string) => Deno.symlinkSync(target, path);
const sparesIn = (root: string) => {
  try {
    return names(`${root}/spare`).length;
  } catch {
    return 0;
  }
};
const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

Deno.test({
  name: "AttemptDirs: a clean directory is reused, empty, by the next attempt",
  ignore: !linux,
  fn: () =>
    withRoot(async (root) => {
      const dirs = new AttemptDirs(root);
      const a = `${root}/tasks/a`;
      dirs.make(a);
      const fresh = { dir: stat(a).mode, tmp: stat(`${a}/tmp`).mode };
      write(`${a}/tmp/scratch`); // a full tmp is not clean...
      await dirs.remove(a);
      assertEquals(dirs.spares, 0);
      assert(!(await exists(a)), "a dirty directory is removed");

      const b = `${root}/tasks/b`;
      dirs.make(b);
      chmod(b, 0o777); // ...a changed mode is put back
      const inoB = inode(b);
      await dirs.remove(b);
      assertEquals(dirs.spares, 1);
      assert(!(await exists(b)), "a recycled directory leaves its attempt's path");

      const c = `${root}/tasks/c`;
      dirs.make(c);
      assertEquals(dirs.spares, 0);
      assertEquals(inode(c), inoB);
      assertEquals(names(c), ["tmp"]);
      assertEquals(names(`${c}/tmp`), []);
      assertEquals(stat(c).mode, fresh.dir);
      assertEquals(stat(`${c}/tmp`).mode, fresh.tmp);
    }),
});

Deno.test({
  name: "AttemptDirs: files, a symlinked tmp or a replaced directory are removed, not reused",
  ignore: !linux,
  fn: () =>
    withRoot(async (root) => {
      const dirs = new AttemptDirs(root);
      const outside = `${root}/outside`;
      await Deno.mkdir(outside);
      write(`${outside}/keep`);
      const outsideMode = stat(outside).mode;

      const withFile = `${root}/tasks/file`;
      dirs.make(withFile);
      write(`${withFile}/out.txt`);
      await dirs.remove(withFile);

      const symTmp = `${root}/tasks/symlink-tmp`;
      dirs.make(symTmp);
      rm(`${symTmp}/tmp`);
      symlink(outside, `${symTmp}/tmp`);
      await dirs.remove(symTmp);

      const replaced = `${root}/tasks/replaced`;
      dirs.make(replaced);
      rm(replaced);
      symlink(outside, replaced);
      await dirs.remove(replaced);

      assertEquals(dirs.spares, 0);
      assertEquals(names(`${root}/tasks`), []);
      assertEquals(names(outside), ["keep"]);
      assertEquals(stat(outside).mode, outsideMode);
    }),
});

Deno.test({
  name:
    "AttemptDirs: a recycled directory is taken back from its task user, then given to the next",
  ignore: !isRoot,
  fn: () =>
    withRoot(async (root) => {
      const dirs = new AttemptDirs(root, { uid: 0, gid: 0 });
      const first = { uid: 231_001, gid: 231_001 };
      const next = { uid: 231_002, gid: 231_002 };
      const a = `${root}/tasks/a`;
      dirs.make(a, first);
      assertEquals(stat(a).mode! & 0o7777, 0o700);
      assertEquals([stat(a).uid, stat(`${a}/tmp`).uid], [first.uid, first.uid]);
      chmod(`${a}/tmp`, 0o777); // as the task could have
      await dirs.remove(a);
      assertEquals(dirs.spares, 1);
      // Parked: the worker's alone, closed to everyone else.
      const spare = names(dirs.spareDir)[0]!;
      const parked = `${dirs.spareDir}/${spare}`;
      assertEquals([stat(parked).uid, stat(`${parked}/tmp`).uid], [0, 0]);
      assertEquals(stat(parked).mode! & 0o7777, 0o700);
      assertEquals(stat(`${parked}/tmp`).mode! & 0o002, 0);
      assertEquals(stat(dirs.spareDir).mode! & 0o077, 0);

      const b = `${root}/tasks/b`;
      dirs.make(b, next);
      assertEquals([stat(b).uid, stat(`${b}/tmp`).uid], [next.uid, next.uid]);
      assertEquals(stat(b).mode! & 0o7777, 0o700);
    }),
});

Deno.test({
  name: "AttemptDirs: a pruned directory is taken in place by the next attempt, as its own",
  ignore: !linux,
  fn: () =>
    withRoot(async (root) => {
      const owner = isRoot ? { uid: 0, gid: 0 } : undefined;
      const first = isRoot ? { uid: 231_004, gid: 231_004 } : undefined;
      const next = isRoot ? { uid: 231_005, gid: 231_005 } : undefined;
      const dirs = new AttemptDirs(root, owner);
      const a = `${root}/tasks/a`;
      dirs.make(a, first);
      const fresh = { dir: stat(a).mode, tmp: stat(`${a}/tmp`).mode };
      const inoA = inode(a);
      chmod(a, 0o777); // as the task could have
      chmod(`${a}/tmp`, 0o777);
      dirs.release(a);
      assertEquals([dirs.pruned, dirs.spares, sparesIn(root)], [1, 0, 0]);
      assertEquals(names(`${root}/tasks`), ["a"], "it waits where it is");

      const b = `${root}/tasks/b`;
      dirs.make(b, next);
      assertEquals(dirs.pruned, 0);
      assertEquals(inode(b), inoA);
      assertEquals(names(`${root}/tasks`), ["b"]);
      assertEquals([names(b), names(`${b}/tmp`)], [["tmp"], []]);
      assertEquals([stat(b).mode, stat(`${b}/tmp`).mode], [fresh.dir, fresh.tmp]);
      if (next) assertEquals([stat(b).uid, stat(`${b}/tmp`).uid], [next.uid, next.uid]);
      await dirs.drained(); // nothing was removed: nothing to wait for
      assertEquals(names(`${root}/tasks`), ["b"]);
    }),
});

Deno.test({
  name:
    "AttemptDirs: a pruned directory its last task changed (file, symlink, replaced) is never given to the next",
  ignore: !linux,
  fn: () =>
    withRoot(async (root) => {
      const owner = isRoot ? { uid: 0, gid: 0 } : undefined;
      const last = isRoot ? { uid: 231_006, gid: 231_006 } : undefined;
      const next = isRoot ? { uid: 231_007, gid: 231_007 } : undefined;
      const dirs = new AttemptDirs(root, owner);
      const victim = `${root}/victim`;
      await Deno.mkdir(`${victim}/tmp`, { recursive: true });
      write(`${victim}/keep`);
      const victimMode = stat(victim).mode;
      const changes = [
        (dir: string) => write(`${dir}/out.txt`),
        (dir: string) => write(`${dir}/tmp/planted`),
        (dir: string) => (rm(`${dir}/tmp`), symlink(victim, `${dir}/tmp`)),
        (dir: string) => (rm(`${dir}/tmp`), write(`${dir}/tmp`)),
        (dir: string) => (rm(dir), symlink(victim, dir)),
      ];
      const olds = changes.map((_, i) => `${root}/tasks/old${i}`);
      for (const dir of olds) dirs.make(dir, last);
      for (const [i, change] of changes.entries()) change(olds[i]!);
      for (const dir of olds) dirs.release(dir);
      assertEquals(dirs.pruned, changes.length);
      const fresh = `${root}/tasks/fresh`;
      dirs.make(fresh, next);
      assertEquals(dirs.pruned, 0, "every pruned one was looked at, and refused");
      await dirs.drained();
      assertEquals(names(`${root}/tasks`), ["fresh"], "the changed ones are removed");
      assertEquals([names(fresh), names(`${fresh}/tmp`)], [["tmp"], []]);
      if (next) assertEquals([stat(fresh).uid, stat(`${fresh}/tmp`).uid], [next.uid, next.uid]);
      assertEquals(names(victim).sort(), ["keep", "tmp"]);
      assertEquals(stat(victim).mode, victimMode, "a symlink's target is never touched");
      if (isRoot) assertEquals(stat(`${victim}/tmp`).uid, 0);
    }),
});

Deno.test({
  name: "AttemptDirs: a pruned directory no attempt took soon, or past the bound, is parked",
  ignore: !linux,
  fn: () =>
    withRoot(async (root) => {
      const clock = new FakeClock();
      const dirs = new AttemptDirs(root, undefined, clock);
      const paths = Array.from({ length: MAX_SPARE_DIRS + 3 }, (_, i) => `${root}/tasks/${i}`);
      for (const p of paths) dirs.make(p);
      dirs.release(paths[0]!);
      clock.jump(ms(PRUNED_WAIT - 1));
      dirs.release(paths[1]!);
      assertEquals([dirs.pruned, dirs.spares], [2, 0]);
      clock.jump(ms(2));
      dirs.release(paths[2]!); // the first waited too long
      assertEquals([dirs.pruned, dirs.spares], [2, 1]);
      for (const p of paths.slice(3)) dirs.release(p);
      assertEquals([dirs.pruned, dirs.spares], [MAX_SPARE_DIRS, 3]);
      dirs.settle(); // the worker is idle
      assertEquals([dirs.pruned, dirs.spares], [0, MAX_SPARE_DIRS]);
      await dirs.drained();
      assertEquals(names(`${root}/tasks`), []);
    }),
});

Deno.test({
  name: "AttemptDirs: spares made ahead are used as a fresh directory would be; a fill never races",
  ignore: !linux,
  fn: () =>
    withRoot(async (root) => {
      const owner = isRoot ? { uid: 0, gid: 0 } : undefined;
      const user = isRoot ? { uid: 231_003, gid: 231_003 } : undefined;
      const dirs = new AttemptDirs(root, owner);
      const filling = dirs.fill(3);
      // The fill runs off the event loop: an attempt now makes its own directory, and never
      // gets one half made.
      const early = `${root}/tasks/early`;
      dirs.make(early, user);
      assertEquals(names(early), ["tmp"]);
      await filling;
      assertEquals([dirs.spares, names(dirs.spareDir).length], [3, 3]);
      const fresh = { dir: stat(early).mode, tmp: stat(`${early}/tmp`).mode };
      const made = new Set(names(dirs.spareDir).map((n) => inode(`${dirs.spareDir}/${n}`)));

      const a = `${root}/tasks/a`;
      dirs.make(a, user);
      assert(made.has(inode(a)), "the attempt got a spare made ahead");
      assertEquals(dirs.spares, 2);
      assertEquals(names(a), ["tmp"]);
      assertEquals(names(`${a}/tmp`), []);
      assertEquals([stat(a).mode, stat(`${a}/tmp`).mode], [fresh.dir, fresh.tmp]);
      if (user) assertEquals([stat(a).uid, stat(`${a}/tmp`).uid], [user.uid, user.uid]);

      // Topped up to the mark again, never past it; a stopped fill makes nothing.
      await dirs.fill(3);
      assertEquals(dirs.spares, 3);
      await dirs.fill(MAX_SPARE_DIRS + 10, () => false);
      assertEquals([dirs.spares, names(dirs.spareDir).length], [3, 3]);
      await dirs.fill(MAX_SPARE_DIRS + 10);
      assertEquals(dirs.spares, MAX_SPARE_DIRS);
    }),
});

Deno.test({
  name: "worker: makes spare directories ahead at start; its first attempts use them",
  ignore: !linux,
  fn: async () => {
    await using h = await startHarness({ sparesAhead: 4 });
    const root = h.worker.rootDir;
    const outputsDir = `${root}/outputs`;
    const made = () => names(outputsDir).filter((n) => n.startsWith("+spare-")).length;
    await waitFor(() => sparesIn(root) === 4 && made() === 4, {
      timeout: seconds(10),
      what: "four spares of each kind made ahead",
    });
    const spareInodes = new Set(names(`${root}/spare`).map((n) => inode(`${root}/spare/${n}`)));
    const outputInodes = new Set(names(outputsDir).map((n) => inode(`${outputsDir}/${n}`)));
    const probe = ["sh", "-c", 'stat -c "%i" . "$IRIS_OUTPUT_DIR"; echo "[$(ls -A)]"'];
    await h.client.runTask(commandTask("/u/ahead/0", probe));
    await h.fake.waitForState("/u/ahead/0", TaskState.SUCCEEDED);
    const out = h.fake.logsOf("/u/ahead/0").filter((l) => l.stream === "stdout").map((l) => l.text);
    assertEquals(out[2], "[tmp]");
    assert(spareInodes.has(Number(out[0])), "the attempt's directory was made ahead");
    assert(outputInodes.has(Number(out[1])), "the job's output directory was made ahead");
    // Not a job's: nothing answers for it.
    await assertRejects(() => h.client.readJobOutput({ jobId: "+spare-0", path: "" }));
  },
});

Deno.test({
  name: "worker: tops its spares up once idle when an attempt's directory was not clean",
  ignore: !linux,
  fn: async () => {
    await using h = await startHarness({ sparesAhead: 2, keepFinishedDirs: 0 });
    const spareDir = `${h.worker.rootDir}/spare`;
    await waitFor(() => sparesIn(h.worker.rootDir) === 2, {
      timeout: seconds(10),
      what: "two spares made ahead",
    });
    await h.client.runTask(commandTask("/u/dirty/0", ["sh", "-c", "echo x > left.txt"]));
    await h.fake.waitForState("/u/dirty/0", TaskState.SUCCEEDED);
    // Its directory is removed, not recycled: a third spare is made to take its place. Which of
    // the first two the attempt took varies: the wait above sees a spare's directory before the
    // fill adds it to the pool.
    const topped = () => {
      const now = names(spareDir);
      return now.length === 2 && now.includes("2");
    };
    await waitFor(topped, { timeout: seconds(10), what: "the pool topped up with a new spare" });
  },
});

Deno.test({
  name: "AttemptDirs: at most MAX_SPARE_DIRS spares; past that, directories are removed",
  ignore: !linux,
  fn: () =>
    withRoot(async (root) => {
      const dirs = new AttemptDirs(root);
      const paths = Array.from({ length: MAX_SPARE_DIRS + 3 }, (_, i) => `${root}/tasks/${i}`);
      for (const p of paths) dirs.make(p);
      for (const p of paths) await dirs.remove(p);
      assertEquals(dirs.spares, MAX_SPARE_DIRS);
      assertEquals(names(`${root}/tasks`), []);
      assertEquals(names(dirs.spareDir).length, MAX_SPARE_DIRS);
    }),
});

Deno.test({
  name: "worker: a later attempt gets a pruned attempt's directory back, empty, as its own",
  ignore: !linux,
  fn: async () => {
    // No spares made ahead: the one spare seen is the pruned attempt's.
    await using h = await startHarness({ keepFinishedDirs: 1, sparesAhead: 0 });
    // Each task prints its directory's inode, its entries, its tmp's entries, and its owner.
    const probe = ["sh", "-c", 'stat -c "%i %u %a" .; echo "[$(ls -A)]"; echo "[$(ls -A tmp)]"'];
    const seen: string[][] = [];
    for (let i = 0; i < 3; i++) {
      const taskId = `/u/recycle/${i}`;
      await h.client.runTask(commandTask(taskId, probe));
      await h.fake.waitForState(taskId, TaskState.SUCCEEDED);
      seen.push(h.fake.logsOf(taskId).filter((l) => l.stream === "stdout").map((l) => l.text));
      if (i === 1) {
        // Task 0's directory was pruned (one finished directory is kept): it is a spare now.
        await waitFor(() => sparesIn(h.worker.rootDir) === 1, {
          timeout: seconds(10),
          what: "the first attempt's directory parked as a spare",
        });
      }
    }
    for (const out of seen) assertEquals(out.slice(1), ["[tmp]", "[]"]);
    const [first, , third] = seen.map((out) => out[0]!.split(" "));
    assertEquals(third![0], first![0], "the third attempt reused the first one's directory");
    assertEquals(third![2], first![2]);
    if (isRoot) assert(third![1] !== first![1], "each attempt's directory is its own user's");
  },
});

Deno.test({
  name:
    "AttemptDirs: a spare tampered with after it was made (symlink, file, mode, owner, content) is never given to a task",
  ignore: !isRoot,
  fn: () =>
    withRoot(async (root) => {
      const owner = { uid: 0, gid: 0 };
      const alice = { uid: 61001, gid: 61001 };
      const dirs = new AttemptDirs(root, owner);
      const victim = `${root}/victim`;
      await Deno.mkdir(`${victim}/tmp`, { recursive: true });
      chmod(victim, 0o755);
      const tamper = [
        (spare: string) => (rm(spare), symlink(victim, spare)),
        (spare: string) => (rm(spare), write(spare)),
        (spare: string) => chmod(spare, 0o777),
        (spare: string) => Deno.chownSync(spare, 61002, 61002),
        (spare: string) => write(`${spare}/tmp/planted`),
        (spare: string) => (rm(`${spare}/tmp`), symlink(victim, `${spare}/tmp`)),
      ];
      await dirs.fill(tamper.length);
      assertEquals(dirs.spares, tamper.length);
      for (const [i, fn] of tamper.entries()) fn(`${dirs.spareDir}/${i}`);
      for (let i = tamper.length - 1; i >= 0; i--) {
        const dir = `${root}/tasks/t${i}`;
        dirs.make(dir, alice);
        const st = stat(dir);
        assert(st.isDirectory, `case ${i}: a real directory`);
        assertEquals([st.uid, st.mode! & 0o7777], [alice.uid, 0o700], `case ${i}`);
        assertEquals(names(dir), ["tmp"], `case ${i}`);
        assert(stat(`${dir}/tmp`).isDirectory, `case ${i}: tmp is a real directory`);
        assertEquals(names(`${dir}/tmp`), [], `case ${i}`);
      }
      const v = stat(victim);
      assertEquals([v.uid, v.mode! & 0o7777], [0, 0o755], "the symlink's target was not touched");
      assertEquals(stat(`${victim}/tmp`).uid, 0);
    }),
});
