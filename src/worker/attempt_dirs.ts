/**
 * Attempt directories (`<root>/tasks/<attempt>`, with its `tmp`), made and removed without
 * creating and deleting inodes per attempt where it can (#20). A new inode costs a directory
 * mkdir far more than a rename: ext4 skips recently deleted inodes when it allocates one (every
 * one of them, for a minute or more, on a file system without a journal), so a worker that
 * creates and deletes two directories per attempt pays a scan that grows with its own
 * throughput. Instead, an attempt directory that is pruned while it holds nothing but an empty
 * `tmp` (a short task's usual leftover) is locked (owned by the worker, 0700), checked, and
 * renamed into `<root>/spare/`; the next attempt renames it into place and gives it to its task
 * user. Anything else is removed as before, off the event loop. Not seen by the checks (Deno
 * reads no extended attributes, and its ctime has whole seconds): ACL entries or `user.*`
 * attributes the last task set on the directory itself; the 0700 mode masks ACL entries for
 * other uids (docs/security.md).
 *
 * A pruned directory is usually taken by an attempt starting moments later: then it waits where
 * it is (`release`), and that attempt's `make` locks it (to the attempt's own user, which has no
 * process yet), checks it and renames it into place in one synchronous step, with nothing in
 * between (#20: half the syscalls of parking it and checking it again where it lands). One that
 * no attempt took within {@linkcode PRUNED_WAIT}, or past {@linkcode MAX_SPARE_DIRS} waiting, or
 * when the worker falls idle (`settle`), is parked or removed as above.
 *
 * Every step here is a synchronous syscall of a few microseconds: cheaper, in CPU, than an async
 * op's trip through Deno's thread pool.
 * @module
 */
import type { TaskUser } from "./task_users.ts";
import { type Clock, type Duration, seconds, systemClock } from "../time.ts";

/** Spare directories kept at most (each is two empty inodes); pruned ones waiting, as many. */
export const MAX_SPARE_DIRS = 128;

/** How long a pruned directory waits for an attempt to take it before it is parked or removed. */
export const PRUNED_WAIT: Duration = seconds(1);

/** Makes attempt directories, and recycles the clean ones of pruned attempts. */
export class AttemptDirs {
  /** Where spare directories wait (same file system as the attempt directories). */
  readonly spareDir: string;
  /** Set when tasks run as their own users: a recycled directory is taken back from one. */
  readonly #owner?: { readonly uid: number; readonly gid: number };
  readonly #clock: Clock;
  readonly #spares: string[] = [];
  /** Directories of pruned attempts not yet looked at, oldest first, and when each came. */
  readonly #pruned: { readonly dir: string; readonly at: number }[] = [];
  /** Removals under way in the background. */
  readonly #removals = new Set<Promise<void>>();
  #next = 0;
  #spareDirReady = false;
  /**
   * Modes of a freshly made attempt directory and its tmp, and its owner: the worker's uid, which
   * every spare keeps until given to a task (set by the first fresh make).
   */
  #modes?: { dir: number; tmp: number; uid: number | null };

  /**
   * `owner`: the worker's uid and gid when tasks run as their own users (a directory goes back
   * to it before it is checked, so its last task can no longer change it). `clock`: times how
   * long pruned directories wait.
   */
  constructor(
    rootDir: string,
    owner?: { readonly uid: number; readonly gid: number },
    clock: Clock = systemClock,
  ) {
    this.spareDir = `${rootDir}/spare`;
    this.#owner = owner;
    this.#clock = clock;
  }

  /** Spare directories ready now. */
  get spares(): number {
    return this.#spares.length;
  }

  /**
   * Makes spare directories ahead of demand until `target` (at most {@linkcode MAX_SPARE_DIRS})
   * are ready, or `keepGoing` says stop: a burst of attempts then renames them into place instead
   * of waiting on ext4's inode scan in its `mkdir`s. Async (the syscalls run off the event loop);
   * each spare joins the pool only once made, so an attempt never sees one half made. Never
   * throws (a failure stops the fill: attempts make their own directories, as without it).
   */
  async fill(target: number, keepGoing: () => boolean = () => true): Promise<void> {
    target = Math.min(target, MAX_SPARE_DIRS);
    try {
      while (this.#spares.length < target && keepGoing()) {
        if (!this.#spareDirReady) {
          await Deno.mkdir(this.spareDir, { recursive: true, mode: 0o700 });
          this.#spareDirReady = true;
        }
        const spare = `${this.spareDir}/${this.#next++}`;
        // As `make` would make an attempt's (0700 when tasks have their own users), the worker's.
        await Deno.mkdir(spare, { mode: this.#owner ? 0o700 : undefined });
        await Deno.mkdir(`${spare}/tmp`);
        if (!this.#modes) {
          const st = await Deno.lstat(spare);
          const tmpMode = ((await Deno.lstat(`${spare}/tmp`)).mode ?? 0) & 0o7777;
          this.#modes ??= { dir: (st.mode ?? 0) & 0o7777, tmp: tmpMode, uid: st.uid };
        }
        this.#spares.push(spare);
      }
    } catch {
      // Stopped: see above.
    }
  }

  /**
   * Makes `dir` and `dir/tmp` empty, owned by `user` when given (then `dir` is 0700). A leftover
   * at `dir` (an earlier worker run's) is replaced.
   */
  make(dir: string, user?: TaskUser): void {
    for (let old = this.#pruned.shift(); old; old = this.#pruned.shift()) {
      if (this.#reuse(old.dir, dir, user)) return;
    }
    const spare = this.#spares.pop();
    if (spare !== undefined) {
      let moved = false;
      try {
        // Onto an empty leftover too (rename(2) replaces an empty directory).
        Deno.renameSync(spare, dir);
        moved = true;
        // Checked where it now is, before anything follows it: a spare that someone replaced
        // (a symlink, a file) or changed since it was made is not given to a task.
        if (this.#isPristine(dir)) {
          if (user) {
            Deno.chownSync(dir, user.uid, user.gid);
            Deno.chownSync(`${dir}/tmp`, user.uid, user.gid);
          }
          return;
        }
      } catch {
        // Made afresh below.
      }
      // A spare moved to `dir` is a leftover that freshDirSync removes (never follows).
      if (!moved) void this.#discard(spare);
    }
    freshDirSync(dir, user ? 0o700 : undefined);
    Deno.mkdirSync(`${dir}/tmp`);
    if (!this.#modes) {
      const st = Deno.lstatSync(dir); // still the worker's
      this.#modes = {
        dir: (st.mode ?? 0) & 0o7777,
        tmp: (Deno.lstatSync(`${dir}/tmp`).mode ?? 0) & 0o7777,
        uid: st.uid,
      };
    }
    if (user) {
      Deno.chownSync(dir, user.uid, user.gid);
      Deno.chownSync(`${dir}/tmp`, user.uid, user.gid);
    }
  }

  /**
   * `dir` and its `tmp` are real directories of the worker's with a fresh directory's modes, and
   * hold nothing else: as a spare was made or parked. lstat only: nothing is followed.
   */
  #isPristine(dir: string): boolean {
    const modes = this.#modes;
    // Spares exist only once a directory was made (fill, or a make before a recycle).
    if (!modes) return false;
    const uid = this.#owner?.uid ?? modes.uid;
    const ok = (st: Deno.FileInfo, mode: number) =>
      st.isDirectory && st.uid === uid && ((st.mode ?? 0) & 0o7777) === mode;
    if (!ok(Deno.lstatSync(dir), modes.dir)) return false;
    if (!ok(Deno.lstatSync(`${dir}/tmp`), modes.tmp)) return false;
    const entries = [...Deno.readDirSync(dir)];
    if (entries.length !== 1) return false;
    for (const _ of Deno.readDirSync(`${dir}/tmp`)) return false;
    return true;
  }

  /** Pruned directories waiting for an attempt to take them (`release`). */
  get pruned(): number {
    return this.#pruned.length;
  }

  /**
   * The attempt's directory is no longer wanted: it waits where it is for the next `make` (see
   * the module comment), at most {@linkcode PRUNED_WAIT}; older ones and those past
   * {@linkcode MAX_SPARE_DIRS} are parked or removed now. Never throws.
   */
  release(dir: string): void {
    const now = this.#clock.monotonic();
    this.#pruned.push({ dir, at: now });
    this.settle(now - PRUNED_WAIT, this.#pruned.length - MAX_SPARE_DIRS);
  }

  /**
   * Parks or removes (as `remove` does) the pruned directories that came before `before`
   * (the clock's monotonic time; default: all), and at least the `count` oldest.
   */
  settle(before = Infinity, count = 0): void {
    while (this.#pruned.length > 0 && (count-- > 0 || this.#pruned[0]!.at < before)) {
      void this.remove(this.#pruned.shift()!.dir);
    }
  }

  /** Resolves once every removal started so far (in the background) ended. */
  async drained(): Promise<void> {
    while (this.#removals.size > 0) await Promise.all(this.#removals);
  }

  /**
   * The attempt's directory is no longer wanted: kept as a spare when it holds only an empty
   * `tmp` (and the pool has room), else removed in the background. Never throws.
   */
  remove(dir: string): Promise<void> {
    if (this.#spares.length < MAX_SPARE_DIRS && this.#recycle(dir)) return Promise.resolve();
    return this.#discard(dir);
  }

  /**
   * Takes the pruned directory `old` for the attempt at `dir`: locked (given to `user`, which
   * runs nothing yet, else kept the worker's), checked, renamed to `dir`. False when it is not
   * clean (it is then the worker's again, and removed) or cannot be moved.
   */
  #reuse(old: string, dir: string, user?: TaskUser): boolean {
    const owner = this.#owner;
    try {
      if (this.#claim(old, user ?? owner)) {
        Deno.renameSync(old, dir);
        return true;
      }
    } catch {
      // Removed below.
    }
    try {
      // Out of reach of `user` before anything else: it may hold the last task's files.
      if (user && owner) Deno.chownSync(old, owner.uid, owner.gid);
    } catch {
      return false; // gone
    }
    void this.#discard(old);
    return false;
  }

  /** Locks, checks and parks `dir` as a spare; false (nothing moved) when it is not clean. */
  #recycle(dir: string): boolean {
    try {
      if (!this.#claim(dir, this.#owner)) return false;
      if (!this.#spareDirReady) {
        Deno.mkdirSync(this.spareDir, { recursive: true, mode: 0o700 });
        this.#spareDirReady = true;
      }
      const spare = `${this.spareDir}/${this.#next++}`;
      Deno.renameSync(dir, spare);
      this.#spares.push(spare);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Gives `dir` to `to` (else leaves its owner) with a fresh directory's modes, then checks that
   * it holds an empty `tmp` and nothing else: true when clean. `to` runs nothing (the worker, or
   * a task user before its task starts): once it owns them, the last task can no longer change
   * `dir` or its `tmp` (`dir`'s path is in the worker's `tasks`, which task users cannot write:
   * it cannot be swapped). May throw.
   */
  #claim(dir: string, to?: { readonly uid: number; readonly gid: number }): boolean {
    const modes = this.#modes;
    if (!modes) return false;
    if (to) Deno.chownSync(dir, to.uid, to.gid);
    const st = Deno.lstatSync(dir);
    if (!st.isDirectory || (to && st.uid !== to.uid)) return false;
    if (((st.mode ?? 0) & 0o7777) !== modes.dir) Deno.chmodSync(dir, modes.dir);
    const entries = [...Deno.readDirSync(dir)];
    const tmp = entries[0];
    if (entries.length !== 1 || tmp?.name !== "tmp" || !tmp.isDirectory) return false;
    // A real directory (not a symlink: d_type), which nobody but `to` can replace now.
    if (to) Deno.chownSync(`${dir}/tmp`, to.uid, to.gid);
    Deno.chmodSync(`${dir}/tmp`, modes.tmp);
    for (const _ of Deno.readDirSync(`${dir}/tmp`)) return false;
    return true;
  }

  /** Removes `dir` in the background (see `drained`). */
  #discard(dir: string): Promise<void> {
    const removal = Deno.remove(dir, { recursive: true }).catch(() => {});
    this.#removals.add(removal);
    return removal.finally(() => this.#removals.delete(removal));
  }
}

/**
 * Creates `dir` empty. The usual case (it does not exist, its parent does) is one mkdir; a
 * leftover from an earlier worker run is removed first.
 */
function freshDirSync(dir: string, mode?: number): void {
  try {
    Deno.mkdirSync(dir, { mode });
    return;
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) {
      Deno.removeSync(dir, { recursive: true });
    } else if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  Deno.mkdirSync(dir, { recursive: true });
  if (mode !== undefined) Deno.chmodSync(dir, mode);
}
