/**
 * Job output directories on a worker (`IRIS_OUTPUT_DIR`, docs/python.md#outputs):
 * `<root>/outputs/<job>`, shared by the job's tasks on this worker, kept after its attempts end
 * and removed once unused for the retention period; read back by the ReadJobOutput RPC.
 *
 * Most jobs write nothing there. Making and later removing an inode per job is what such a
 * directory would cost (ext4 scans past recently deleted inodes to allocate one, a scan that
 * grows with the worker's throughput: #20, attempt_dirs.ts). So when the last attempt holding a
 * job's directory releases it, the directory is remembered as a spare, left where it is as it is:
 * the next new job's first attempt locks it (gives it to its own task user, which runs nothing
 * yet; a fresh directory's mode), checks it empty and renames it to its own name (one rename in
 * the same directory), all in one synchronous step; one that holds anything gets its owner and
 * mode back and stays its job's. Until then it is the old job's directory as before, swept with
 * the others; after it, the old job is remembered (in memory, for the retention, at most
 * {@linkcode MAX_EMPTIED_JOBS} of them) so ReadJobOutput still lists its directory as empty.
 * @module
 */
import { join } from "node:path";
import { InvalidArgumentError, NotFoundError } from "../errors.ts";
import type { OutputFile } from "../rpc/gen/iris/v1/worker_pb.ts";
import { type Duration, seconds } from "../time.ts";

/** Most bytes one read returns. */
export const MAX_OUTPUT_READ_BYTES = 16 * 1024 * 1024;

/** What ReadJobOutput answers. */
export interface OutputRead {
  isDir: boolean;
  files: Omit<OutputFile, "$typeName">[];
  data: Uint8Array;
  sizeBytes: number;
}

/** Longest time between two sweeps that attempt starts trigger. */
export const OUTPUT_SWEEP_EVERY: Duration = seconds(60);

/** How recent an mtime this worker set may be for a release to keep it (see `release`). */
export const OUTPUT_MTIME_SLACK: Duration = seconds(60);

/** Spare output directories (empty ones of finished jobs, to rename) kept at most. */
export const MAX_SPARE_OUTPUT_DIRS = 128;

/**
 * Names of spare directories made ahead of demand (`fill`): `+` is never in a job's directory
 * name (`encodeURIComponent` escapes it), so no job's directory can have one.
 */
const MADE_SPARE_PREFIX = "+spare-";

/** Jobs whose empty directory went to another job that ReadJobOutput answers for (oldest go). */
export const MAX_EMPTIED_JOBS = 100_000;

/** The output directories of one worker. */
export class JobOutputs {
  readonly rootDir: string;
  readonly #retention: Duration;
  readonly #sweepEvery: Duration;
  /** Attempts holding each job's directory, and when this worker last set its mtime. */
  readonly #active = new Map<string, { holders: number; touchedAt: number }>();
  /** When an attempt start last swept (performance.now()); -Infinity: never. */
  #lastSweep = -Infinity;
  #rootReady = false;
  /** Set when tasks run as their own users: an empty directory is taken back from one. */
  readonly #owner?: { readonly uid: number; readonly gid: number };
  /** Jobs whose directory is a spare (released by its last attempt, not checked yet), oldest first. */
  readonly #spares = new Set<string>();
  /** Names of spares made ahead (`fill`): no job's yet. */
  readonly #made = new Set<string>();
  #nextMade = 0;
  /** A freshly made directory's mode (set by the first fresh make; until then no spares). */
  #freshMode?: number;
  /** The worker's uid, every spare's owner (read with `#freshMode`; Deno.uid needs --allow-sys). */
  #workerUid?: number | null;
  /** Jobs whose empty directory went to another job, and when (Date.now()), oldest first. */
  readonly #emptied = new Map<string, number>();
  /** How old an mtime this worker set may be for it to be kept (see `release`). */
  readonly #mtimeSlack: number;
  /** When the mtime of the directory `#claim` just took was set (performance.now()), if kept. */
  #touchedAt?: number;

  /**
   * `retention`: an output directory unused this long is removed (@default 7 days). Attempt
   * starts sweep at most once per `sweepEvery` (@default the retention, at most 60 s): one sweep
   * stats every directory, so a sweep per start would cost O(jobs) per attempt. `owner`: the
   * worker's uid and gid when tasks run as their own users (an empty directory goes back to it
   * before it is checked, so its last task can no longer change it).
   */
  constructor(
    rootDir: string,
    retention: Duration = seconds(7 * 24 * 3600),
    sweepEvery: Duration = Math.min(retention, OUTPUT_SWEEP_EVERY) as Duration,
    owner?: { readonly uid: number; readonly gid: number },
  ) {
    this.rootDir = rootDir;
    this.#retention = retention;
    this.#mtimeSlack = Math.min(OUTPUT_MTIME_SLACK, retention / 100);
    this.#sweepEvery = sweepEvery;
    this.#owner = owner;
  }

  /** Spare directories now: released by their jobs (not checked yet) and made ahead. */
  get spares(): number {
    return this.#spares.size + this.#made.size;
  }

  /**
   * Makes spare directories ahead of demand until `target` spares (at most
   * {@linkcode MAX_SPARE_OUTPUT_DIRS}) are ready, or `keepGoing` says stop: a burst of new jobs
   * then renames them instead of waiting on ext4's inode scan in a `mkdir` each. They are named
   * `+spare-<n>` (never a job's name), empty and the worker's, 0700 like a new job's; an earlier
   * run's are taken back when still so. Async (the syscalls run off the event loop); a spare joins
   * the pool only once made. Never throws (a failure stops the fill).
   */
  async fill(target: number, keepGoing: () => boolean = () => true): Promise<void> {
    target = Math.min(target, MAX_SPARE_OUTPUT_DIRS);
    try {
      while (this.spares < target && keepGoing()) {
        if (!this.#rootReady) this.#makeRoot();
        const name = `${MADE_SPARE_PREFIX}${this.#nextMade++}`;
        const dir = join(this.rootDir, name);
        try {
          await Deno.mkdir(dir, { mode: 0o700 });
        } catch (err) {
          if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
          if (!(await this.#isLockedEmpty(dir))) continue; // left for the sweep
        }
        if (this.#freshMode === undefined) {
          const st = await Deno.lstat(dir);
          this.#freshMode = (st.mode ?? 0) & 0o7777;
          this.#workerUid = st.uid;
        }
        this.#made.add(name);
      }
    } catch {
      // Stopped: see above.
    }
  }

  /** An earlier run's spare made ahead: still a directory of the worker's, 0700 and empty? */
  async #isLockedEmpty(dir: string): Promise<boolean> {
    const st = await Deno.lstat(dir);
    const owner = this.#owner;
    if (!st.isDirectory || (owner && (st.uid !== owner.uid || st.gid !== owner.gid))) return false;
    if (((st.mode ?? 0) & 0o7777) !== (this.#freshMode ?? 0o700)) return false;
    for await (const _ of Deno.readDir(dir)) return false;
    return true;
  }

  /**
   * The directory of `jobId` (not created). A job id naming no directory of its own (empty, `.`,
   * `..`: the outputs root or the worker's root) is refused.
   */
  dirOf(jobId: string): string {
    const name = encodeURIComponent(jobId);
    if (name === "" || name === "." || name === "..") {
      throw new InvalidArgumentError("job_id", `must name a job (got ${JSON.stringify(jobId)})`);
    }
    return join(this.rootDir, name);
  }

  /**
   * `dir` is as a spare is kept: a real directory (lstat: nothing followed) of the worker's, with
   * a fresh directory's mode, empty. Anything else was changed since by someone else.
   */
  #isPristine(dir: string): boolean {
    try {
      const st = Deno.lstatSync(dir);
      const uid = this.#owner?.uid ?? this.#workerUid;
      if (!st.isDirectory || uid === undefined || st.uid !== uid) return false;
      if (((st.mode ?? 0) & 0o7777) !== this.#freshMode) return false;
      return isEmptyDirSync(dir);
    } catch {
      return false;
    }
  }

  /** A spare renamed to `dir` was not pristine: removed (a symlink itself, never its target). */
  #dropTaken(dir: string): false {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // Left in place: acquire's slow path refuses anything but a directory.
    }
    return false;
  }

  /**
   * Creates (or keeps) the job's directory for an attempt, owned by its task user when there is
   * one, and marks it in use until {@linkcode release}. Old unused directories are swept then
   * (at most once per sweep interval).
   */
  async acquire(jobId: string, user?: { uid: number; gid: number }): Promise<string> {
    const held = this.#active.get(jobId);
    if (held) held.holders++;
    else this.#active.set(jobId, { holders: 1, touchedAt: -Infinity });
    const dir = this.dirOf(jobId);
    this.#emptied.delete(jobId);
    // Synchronous up to here: a rename (or a mkdir) and a chown of microseconds, cheaper than
    // trips through Deno's thread pool (#20), and no other attempt of the job can come between.
    // An existing directory (another attempt of the job, or kept files) takes the slow path.
    const ownSpare = !held && this.#spares.delete(jobId);
    const created = ownSpare
      ? this.#takeOwnSpare(dir, user)
      : (!held && this.#takeSpare(dir, user)) || this.#makeDir(dir, user);
    if (!created) {
      // Never followed out of the root: the job's directory must be one.
      if (!(await Deno.lstat(dir)).isDirectory) {
        throw new Error(`the output directory ${dir} is not a directory`);
      }
      if (user) await chownTree(dir, user.uid, user.gid);
      const now = new Date();
      await Deno.utime(dir, now, now);
    }
    const entry = this.#active.get(jobId);
    if (entry) entry.touchedAt = this.#touchedAt ?? performance.now();
    this.#touchedAt = undefined;
    if (performance.now() - this.#lastSweep >= this.#sweepEvery) {
      this.#lastSweep = performance.now();
      await this.sweep().catch(() => []);
    }
    return dir;
  }

  /** Gives a spare directory to `dir` (and `user`); false when none was put there. */
  #takeSpare(dir: string, user?: { uid: number; gid: number }): boolean {
    for (const spareJob of this.#spares) {
      this.#spares.delete(spareJob);
      const taken = this.#claim(this.dirOf(spareJob), dir, user);
      if (taken === true) {
        this.#forget(spareJob);
        return true;
      }
      // Kept files of the job (or an odd leftover) were in the way: the spare waits on.
      if (taken === undefined) {
        this.#spares.add(spareJob);
        return false;
      }
    }
    return this.#takeMade(dir, user);
  }

  /**
   * Takes the released directory `spare` for `dir`: locked (given to `user`, which runs nothing
   * yet, else the worker's; a fresh directory's mode: from then on only the worker can add to
   * it), checked empty, renamed to `dir` and handed over. True when taken; false when it held
   * anything (it then has its owner and mode back: still its job's) or was no directory (then
   * removed, never followed); undefined when the rename failed (`dir` is in the way: as it was).
   */
  #claim(spare: string, dir: string, user?: { uid: number; gid: number }): boolean | undefined {
    const mode = this.#freshMode;
    let before: Deno.FileInfo;
    try {
      before = Deno.lstatSync(spare);
    } catch {
      return false; // gone
    }
    if (!before.isDirectory) return this.#dropTaken(spare);
    if (mode === undefined) return false;
    const to = user ?? this.#owner;
    const wasMode = (before.mode ?? 0) & 0o7777;
    const taken = to !== undefined && (before.uid !== to.uid || before.gid !== to.gid);
    let moved: boolean | undefined = false;
    try {
      // Its path is in the outputs root, which only the worker can write: it cannot be swapped.
      if (taken) Deno.chownSync(spare, to.uid, to.gid);
      if (wasMode !== mode) Deno.chmodSync(spare, mode);
      if (isEmptyDirSync(spare)) {
        moved = undefined;
        // Onto an empty leftover too (rename(2) replaces an empty directory, not a full one).
        Deno.renameSync(spare, dir);
        moved = true;
      }
    } catch {
      // Put back as it was, below.
    }
    if (moved) {
      // Its retention starts now, as a new directory's would; an mtime set moments ago (a spare
      // released by a short job) is kept as release keeps one (see there): one syscall less.
      const age = Date.now() - (before.mtime?.getTime() ?? -Infinity);
      if (age >= 0 && age < this.#mtimeSlack) {
        this.#touchedAt = performance.now() - age;
        return true;
      }
      const now = new Date();
      try {
        Deno.utimeSync(dir, now, now);
      } catch {
        // Gone meanwhile: the attempt's later steps fail on it.
      }
      return true;
    }
    try {
      if (taken && before.uid !== null && before.gid !== null) {
        Deno.chownSync(spare, before.uid, before.gid);
      }
      if (wasMode !== mode) Deno.chmodSync(spare, wasMode);
    } catch {
      // Gone meanwhile, or the worker cannot: the sweep and the next acquire cope.
    }
    return moved;
  }

  /** Renames a spare made ahead to `dir` (given to `user`); false when none was put there. */
  #takeMade(dir: string, user?: { uid: number; gid: number }): boolean {
    let name: string | undefined;
    for (name of this.#made) break;
    if (name === undefined) return false;
    this.#made.delete(name);
    const spare = join(this.rootDir, name);
    const moved = this.#moveSpare(spare, dir, user);
    if (moved === undefined && isDirSync(spare)) this.#made.add(name);
    return moved ?? false;
  }

  /**
   * Renames `spare` to `dir` and, when it arrived as it was kept, hands it over: true. False when
   * it was not (then removed); undefined when the rename failed (the spare is where it was).
   */
  #moveSpare(spare: string, dir: string, user?: { uid: number; gid: number }): boolean | undefined {
    try {
      // Onto an empty leftover too (rename(2) replaces an empty directory, not a full one).
      Deno.renameSync(spare, dir);
    } catch {
      return undefined;
    }
    if (!this.#isPristine(dir)) return this.#dropTaken(dir);
    this.#handOver(dir, user);
    return true;
  }

  /**
   * Gives the job's own spare back to it (the next task of a job whose attempts are all over):
   * when empty, only it needs the owner. False when the slow path must see to it (files in it,
   * or gone: then made afresh).
   */
  #takeOwnSpare(dir: string, user?: { uid: number; gid: number }): boolean {
    try {
      const st = Deno.lstatSync(dir);
      if (!st.isDirectory) return this.#dropTaken(dir) || this.#makeDir(dir, user);
      if (!isEmptyDirSync(dir)) return false;
      this.#handOver(dir, user);
      return true;
    } catch {
      return this.#makeDir(dir, user);
    }
  }

  /**
   * An empty directory of the worker's becomes the attempt's: owned by its task user, and its
   * retention starts now, as a new directory's would (release may leave the mtime alone).
   */
  #handOver(dir: string, user?: { uid: number; gid: number }): void {
    if (user) Deno.chownSync(dir, user.uid, user.gid);
    const now = new Date();
    Deno.utimeSync(dir, now, now);
  }

  /** Makes `dir` (0700, owned by `user`); false when it existed already. */
  #makeDir(dir: string, user?: { uid: number; gid: number }): boolean {
    if (!this.#rootReady) this.#makeRoot();
    try {
      Deno.mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists) return false;
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      this.#makeRoot(); // the root went away meanwhile
      Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    }
    if (this.#freshMode === undefined) {
      const st = Deno.lstatSync(dir); // still the worker's
      this.#freshMode = (st.mode ?? 0) & 0o7777;
      this.#workerUid = st.uid;
    }
    // A new directory is empty: only it needs the owner.
    if (user) Deno.chownSync(dir, user.uid, user.gid);
    return true;
  }

  #makeRoot(): void {
    Deno.mkdirSync(this.rootDir, { recursive: true, mode: 0o711 });
    Deno.chmodSync(this.rootDir, 0o711);
    this.#spares.clear(); // gone with the root, if it went away
    this.#made.clear();
    this.#rootReady = true;
  }

  /**
   * The attempt ended: the directory's retention period starts now. Its mtime (which the sweep
   * reads, after a restart too) is left alone when this worker set it less than
   * {@linkcode OUTPUT_MTIME_SLACK} ago (a hundredth of the retention at most): one fs op less per
   * short attempt (#20), for a retention that starts that much earlier.
   */
  async release(jobId: string): Promise<void> {
    const held = this.#active.get(jobId);
    const recent = held !== undefined && performance.now() - held.touchedAt < this.#mtimeSlack;
    if (held && --held.holders <= 0) {
      this.#active.delete(jobId);
      // The last holder: the directory becomes a spare (the module comment says why), its mtime
      // set as any other's: it is the job's directory until a new job takes it.
      if (this.#freshMode !== undefined && this.#spares.size < MAX_SPARE_OUTPUT_DIRS) {
        this.#spares.add(jobId);
      }
    }
    if (recent) return;
    if (held && held.holders > 0) held.touchedAt = performance.now();
    const now = new Date();
    await Deno.utime(this.dirOf(jobId), now, now).catch(() => {});
  }

  /** Remembers a job whose empty directory went to another job (ReadJobOutput lists it empty). */
  #forget(jobId: string): void {
    this.#emptied.set(jobId, Date.now());
    if (this.#emptied.size > MAX_EMPTIED_JOBS) {
      for (const oldest of this.#emptied.keys()) {
        this.#emptied.delete(oldest);
        break;
      }
    }
  }

  /**
   * Removes directories of jobs without a running attempt here, unused past the retention (spares
   * too), and forgets emptied (reused) jobs as old.
   */
  async sweep(now = Date.now()): Promise<string[]> {
    for (const [jobId, at] of this.#emptied) {
      if (now - at <= this.#retention) break;
      this.#emptied.delete(jobId);
    }
    const removed: string[] = [];
    try {
      for await (const e of Deno.readDir(this.rootDir)) {
        if (!e.isDirectory || this.#made.has(e.name)) continue;
        let jobId: string;
        try {
          jobId = decodeURIComponent(e.name);
        } catch {
          continue; // no job's name (someone else's): not the sweep's to remove
        }
        if (this.#active.has(jobId)) continue;
        const path = join(this.rootDir, e.name);
        // Reused by another job (or removed) since it was listed: nothing to sweep.
        const st = await Deno.stat(path).catch(() => undefined);
        if (this.#active.has(jobId)) continue; // an attempt started meanwhile
        if (st && now - (st.mtime?.getTime() ?? 0) > this.#retention) {
          this.#spares.delete(jobId);
          await Deno.remove(path, { recursive: true }).catch(() => {});
          removed.push(jobId);
        }
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    return removed;
  }

  /**
   * Lists a directory (recursively) or reads a file of the job's outputs. `path` is relative;
   * `..`, absolute paths and symlinks leaving the directory are refused.
   */
  async read(jobId: string, path: string, offset = 0, length = 0): Promise<OutputRead> {
    const base = this.dirOf(jobId);
    const clean = path.replace(/^\.?\/+/, "").replace(/\/+$/, "");
    if (path.startsWith("/") || clean.split("/").includes("..") || clean.includes("\0")) {
      throw new InvalidArgumentError("path", `must be relative inside the output directory`);
    }
    const baseReal = await Deno.realPath(base).catch(() => undefined);
    if (baseReal === undefined) {
      // Its directory went empty to another job: answered as that empty directory would be.
      const emptiedAt = this.#emptied.get(jobId);
      if (emptiedAt !== undefined && Date.now() - emptiedAt <= this.#retention) {
        if (!clean) return { isDir: true, files: [], data: new Uint8Array(), sizeBytes: 0 };
        throw new NotFoundError(
          `No output ${JSON.stringify(clean)} of job ${jobId} on this worker`,
        );
      }
      throw new NotFoundError(`No outputs of job ${jobId} on this worker`);
    }
    const target = clean ? join(base, clean) : base;
    const real = await Deno.realPath(target).catch(() => {
      throw new NotFoundError(`No output ${JSON.stringify(clean)} of job ${jobId} on this worker`);
    });
    if (real !== baseReal && !real.startsWith(baseReal + "/")) {
      throw new InvalidArgumentError("path", `${clean} leaves the output directory`);
    }
    const st = await Deno.stat(real);
    if (st.isDirectory) {
      const files: OutputRead["files"] = [];
      await list(real, clean, files);
      return { isDir: true, files, data: new Uint8Array(), sizeBytes: 0 };
    }
    const want = Math.min(length > 0 ? length : MAX_OUTPUT_READ_BYTES, MAX_OUTPUT_READ_BYTES);
    using f = await Deno.open(real, { read: true });
    await f.seek(offset, Deno.SeekMode.Start);
    const buf = new Uint8Array(Math.max(0, Math.min(want, st.size - offset)));
    let got = 0;
    while (got < buf.length) {
      const n = await f.read(buf.subarray(got));
      if (n === null) break;
      got += n;
    }
    return { isDir: false, files: [], data: buf.subarray(0, got), sizeBytes: st.size };
  }
}

async function list(dir: string, rel: string, out: OutputRead["files"]): Promise<void> {
  const names: Deno.DirEntry[] = await Array.fromAsync(Deno.readDir(dir));
  names.sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const e of names) {
    const path = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) await list(join(dir, e.name), path, out);
    else if (e.isFile) {
      const st = await Deno.stat(join(dir, e.name));
      out.push({ path, sizeBytes: st.size, modifiedMs: st.mtime?.getTime() ?? 0 });
    }
  }
}

function isDirSync(path: string): boolean {
  try {
    return Deno.lstatSync(path).isDirectory;
  } catch {
    return false;
  }
}

function isEmptyDirSync(dir: string): boolean {
  for (const _ of Deno.readDirSync(dir)) return false;
  return true;
}

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await Deno.chown(dir, uid, gid);
  for await (const e of Deno.readDir(dir)) {
    if (e.isSymlink) continue;
    const p = join(dir, e.name);
    await Deno.chown(p, uid, gid);
    if (e.isDirectory) await chownTree(p, uid, gid);
  }
}
