/**
 * Job output directories on a worker (`IRIS_OUTPUT_DIR`, docs/python.md#outputs):
 * `<root>/outputs/<job>`, shared by the job's tasks on this worker, kept after its attempts end
 * and removed once unused for the retention period; read back by the ReadJobOutput RPC.
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

  /**
   * `retention`: an output directory unused this long is removed (@default 7 days). Attempt
   * starts sweep at most once per `sweepEvery` (@default the retention, at most 60 s): one sweep
   * stats every directory, so a sweep per start would cost O(jobs) per attempt.
   */
  constructor(
    rootDir: string,
    retention: Duration = seconds(7 * 24 * 3600),
    sweepEvery: Duration = Math.min(retention, OUTPUT_SWEEP_EVERY) as Duration,
  ) {
    this.rootDir = rootDir;
    this.#retention = retention;
    this.#sweepEvery = sweepEvery;
  }

  /** The directory of `jobId` (not created). */
  dirOf(jobId: string): string {
    return join(this.rootDir, encodeURIComponent(jobId));
  }

  /**
   * Creates (or keeps) the job's directory for an attempt, owned by its task user when there is
   * one, and marks it in use until {@linkcode release}. Old unused directories are swept first
   * (at most once per sweep interval).
   */
  async acquire(jobId: string, user?: { uid: number; gid: number }): Promise<string> {
    const held = this.#active.get(jobId);
    if (held) held.holders++;
    else this.#active.set(jobId, { holders: 1, touchedAt: -Infinity });
    if (performance.now() - this.#lastSweep >= this.#sweepEvery) {
      this.#lastSweep = performance.now();
      await this.sweep().catch(() => []);
    }
    const dir = this.dirOf(jobId);
    // Synchronous: a mkdir and a chown of microseconds, cheaper than two trips through Deno's
    // thread pool (#20); an existing directory (another attempt of the job) takes the slow path.
    const created = this.#makeDir(dir, user);
    if (!created) {
      if (user) await chownTree(dir, user.uid, user.gid);
      const now = new Date();
      await Deno.utime(dir, now, now);
    }
    const entry = this.#active.get(jobId);
    if (entry) entry.touchedAt = performance.now();
    return dir;
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
    // A new directory is empty: only it needs the owner.
    if (user) Deno.chownSync(dir, user.uid, user.gid);
    return true;
  }

  #makeRoot(): void {
    Deno.mkdirSync(this.rootDir, { recursive: true, mode: 0o711 });
    Deno.chmodSync(this.rootDir, 0o711);
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
    const slack = Math.min(OUTPUT_MTIME_SLACK, this.#retention / 100);
    const recent = held !== undefined && performance.now() - held.touchedAt < slack;
    if (held && --held.holders <= 0) this.#active.delete(jobId);
    if (recent) return;
    if (held && held.holders > 0) held.touchedAt = performance.now();
    const now = new Date();
    await Deno.utime(this.dirOf(jobId), now, now).catch(() => {});
  }

  /** Removes directories of jobs without a running attempt here, unused past the retention. */
  async sweep(now = Date.now()): Promise<string[]> {
    const removed: string[] = [];
    try {
      for await (const e of Deno.readDir(this.rootDir)) {
        if (!e.isDirectory) continue;
        const jobId = decodeURIComponent(e.name);
        if (this.#active.has(jobId)) continue;
        const path = join(this.rootDir, e.name);
        const st = await Deno.stat(path);
        if (now - (st.mtime?.getTime() ?? 0) > this.#retention) {
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
    const baseReal = await Deno.realPath(base).catch(() => {
      throw new NotFoundError(`No outputs of job ${jobId} on this worker`);
    });
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

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await Deno.chown(dir, uid, gid);
  for await (const e of Deno.readDir(dir)) {
    if (e.isSymlink) continue;
    const p = join(dir, e.name);
    await Deno.chown(p, uid, gid);
    if (e.isDirectory) await chownTree(p, uid, gid);
  }
}
