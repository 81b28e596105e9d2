/**
 * No task outlives its worker. Three layers, each covering what the one before misses:
 *
 * 1. Every task leader starts under `setpriv --pdeathsig KILL`: the kernel kills it the moment the
 *    worker dies, whatever killed the worker (SIGKILL, the OOM killer).
 * 2. A watchdog process (`reaper_main.ts`, in its own session so a group kill of the worker
 *    spares it) holds the read end of a pipe whose write end only the worker holds. When the
 *    pipe reaches EOF without a clean goodbye, it sweeps: every process carrying the worker's
 *    tag in its environment ({@linkcode REAP_TAG_ENV}, inherited through setsid and double
 *    forks), every process of the task uids the worker had handed out, every process of the
 *    task sessions that were running. Then it removes a temporary worker root.
 * 3. A worker starting on a root that already exists sweeps the same way (tag, and the uids and
 *    cgroup the ledger file of its predecessor names) and removes the predecessor's attempt
 *    directories.
 *
 * Where the worker may create a cgroup-v2 directory (root on a cgroup2 hierarchy), every task
 * leader joins `iris-tasks-<tag>` before its program starts (so its first children are born in
 * it), and the sweeps kill its members too: that finds
 * even a process that cleared its environment and left its session.
 *
 * The ledger (`<root>/reap.json`) is the worker's list of task uids and sessions in use (and its
 * cgroup), rewritten (atomically) on every change so it is current at any instant the worker may
 * die: a uid before any process of it starts, a session or a removal at the end of the turn.
 * @module
 */
import { createHash } from "node:crypto";
import { Deadline, type Duration, ms, sleep } from "../time.ts";

/** The environment variable every task process carries: the worker root's tag. */
export const REAP_TAG_ENV = "IRIS_REAP_TAG";

/** The ledger file, under the worker root. */
export const LEDGER_FILE = "reap.json";

/** What a sweep kills. */
export interface ReapTargets {
  /** Every process in this cgroup-v2 directory (killed through `cgroup.kill` where it exists). */
  readonly cgroup?: string;
  /** Processes whose environment holds `IRIS_REAP_TAG=<tag>`. */
  readonly tag?: string;
  /** Processes running under these (effective) uids. */
  readonly uids?: readonly number[];
  /** Processes in these sessions. */
  readonly sids?: readonly number[];
}

/** The ledger's content. */
export interface LedgerState {
  readonly tag: string;
  readonly workerPid: number;
  readonly uids: number[];
  readonly sids: number[];
  /** The worker's task cgroup (cgroup v2), when it has one. */
  readonly cgroup?: string;
}

/** The tag of a worker root: the same root always gets the same tag, distinct roots distinct ones. */
export function reapTag(rootDir: string): string {
  return createHash("sha256").update(rootDir).digest("hex").slice(0, 20);
}

/**
 * The worker's record of task uids and sessions in use, kept in `<root>/reap.json`. The first
 * write is atomic (temp file + rename); later ones rewrite the open file in place with one
 * synchronous write(2) from offset 0, padded with spaces to the longest content so far (JSON
 * ignores them): a process killed at any instant leaves the old or the new content, never a mix,
 * at the cost of one syscall per task start or end instead of an open, a write, a close and a
 * rename (which cost milliseconds on a busy ext4).
 */
export class ReapLedger {
  readonly path: string;
  readonly tag: string;
  readonly #uids = new Set<number>();
  readonly #sids = new Set<number>();
  #broken = false;
  /** The ledger, open for the in-place rewrites. */
  #file?: Deno.FsFile;
  /** Bytes of the longest content written to `#file`. */
  #size = 0;
  /** The last content written, padded; reused by the next write. */
  #buffer = new Uint8Array(0);
  /** A write is queued for the end of the turn (#writeSoon). */
  #writeQueued = false;

  readonly cgroup?: string;

  constructor(rootDir: string, tag: string, cgroup?: string) {
    this.path = `${rootDir}/${LEDGER_FILE}`;
    this.tag = tag;
    this.cgroup = cgroup;
    this.#write();
  }

  /**
   * A uid handed out: written with the turn's other changes (a batch of attempts shares one
   * write, #20), and in any case before a process of it starts: whoever starts one calls
   * {@linkcode flush} first.
   */
  addUid(uid: number): void {
    this.#uids.add(uid);
    this.#writeSoon();
  }

  /** Writes now what waits for the end of the turn, if anything. */
  flush(): void {
    if (this.#writeQueued) this.#write();
  }

  /** A uid swept and free again; written with the turn's other removals (see #writeSoon). */
  removeUid(uid: number): void {
    if (this.#uids.delete(uid)) this.#writeSoon();
  }

  /**
   * A task leader started (its pid is its session id): recorded, and moved into the cgroup unless
   * `inCgroup` (the spawn joins it before the program starts where it can; this covers a spawn
   * that could not). The move is asynchronous: a cgroup migration waits for the kernel's cgroup
   * lock, milliseconds on a busy host. Written with the turn's other changes (see #writeSoon):
   * its leader runs already, so a write at once would close no window that a write at the end of
   * the turn leaves open, and spawns reported together share one write (#20).
   */
  addSession(sid: number, options: { readonly inCgroup?: boolean } = {}): void {
    if (this.cgroup && !options.inCgroup) void joinCgroupAsync(this.cgroup, sid);
    this.#sids.add(sid);
    this.#writeSoon();
  }

  removeSession(sid: number): void {
    if (this.#sids.delete(sid)) this.#writeSoon();
  }

  /** Removes the file and the cgroup (the worker stopped cleanly: nothing is left to sweep). */
  remove(): void {
    this.#file?.close();
    this.#file = undefined;
    this.#broken = true;
    try {
      Deno.removeSync(this.path);
    } catch {
      // Already gone.
    }
    if (this.cgroup) removeCgroup(this.cgroup);
  }

  /**
   * A removal is written at the end of the current turn, with every other change made in it (a
   * uid sweep frees a whole batch at once): until then the ledger names one more uid or session
   * than runs, which a sweep after the worker's death would only find gone. So is a new session
   * (its leader started before the worker learnt its id), and a new uid (flushed before any
   * process of it starts).
   */
  #writeSoon(): void {
    if (this.#writeQueued) return;
    this.#writeQueued = true;
    queueMicrotask(() => {
      if (this.#writeQueued) this.#write();
    });
  }

  #write(): void {
    this.#writeQueued = false;
    if (this.#broken) return;
    const state: LedgerState = {
      tag: this.tag,
      workerPid: Deno.pid,
      uids: [...this.#uids],
      sids: [...this.#sids],
      ...(this.cgroup ? { cgroup: this.cgroup } : {}),
    };
    const text = JSON.stringify(state);
    try {
      if (!this.#file) {
        const tmp = `${this.path}.tmp`;
        Deno.writeTextFileSync(tmp, text);
        Deno.renameSync(tmp, this.path);
        this.#file = Deno.openSync(this.path, { write: true });
        this.#size = encoder.encode(text).length;
        return;
      }
      // Encoded into a buffer kept between writes (UTF-8 takes at most 3 bytes per UTF-16 unit).
      if (this.#buffer.length < Math.max(3 * text.length, this.#size)) {
        const grown = new Uint8Array(2 * Math.max(3 * text.length, this.#size));
        grown.set(this.#buffer);
        this.#buffer = grown;
      }
      const { written } = encoder.encodeInto(text, this.#buffer);
      this.#size = Math.max(this.#size, written);
      this.#buffer.fill(0x20, written, this.#size);
      const bytes = this.#buffer.subarray(0, this.#size);
      this.#file.seekSync(0, Deno.SeekMode.Start);
      if (this.#file.writeSync(bytes) !== bytes.length) throw new Error("short ledger write");
    } catch {
      this.#broken = true; // e.g. the root was removed under us; the tag sweep still works
      this.#file?.close();
      this.#file = undefined;
    }
  }
}

const encoder = new TextEncoder();

/** Reads a ledger; undefined when there is none or it cannot be parsed. */
export function readLedger(rootDir: string): LedgerState | undefined {
  try {
    const raw = JSON.parse(Deno.readTextFileSync(`${rootDir}/${LEDGER_FILE}`));
    const ints = (v: unknown) =>
      Array.isArray(v) ? v.filter((x): x is number => Number.isInteger(x) && x > 0) : [];
    if (typeof raw?.tag !== "string") return undefined;
    return {
      tag: raw.tag,
      workerPid: Number(raw.workerPid) || 0,
      uids: ints(raw.uids),
      sids: ints(raw.sids),
      ...(typeof raw.cgroup === "string" && raw.cgroup.startsWith("/")
        ? { cgroup: raw.cgroup }
        : {}),
    };
  } catch {
    return undefined;
  }
}

const decoder = new TextDecoder();

/** True when the NUL-separated environment `environ` holds exactly `entry`. */
function environHas(environ: Uint8Array, entry: string): boolean {
  const text = decoder.decode(environ);
  return text.startsWith(entry + "\0") || text.includes("\0" + entry + "\0") ||
    text === entry || text.endsWith("\0" + entry);
}

/** Pids on the host matching `targets` (never this process), zombies excluded. */
export function findTargets(targets: ReapTargets): number[] {
  const uids = new Set(targets.uids ?? []);
  const sids = new Set(targets.sids ?? []);
  const entry = targets.tag ? `${REAP_TAG_ENV}=${targets.tag}` : undefined;
  const found: number[] = [];
  if (targets.cgroup) {
    try {
      for (const line of Deno.readTextFileSync(`${targets.cgroup}/cgroup.procs`).split("\n")) {
        const pid = Number(line);
        if (pid > 0 && pid !== Deno.pid) found.push(pid);
      }
    } catch {
      // No such cgroup (any more).
    }
  }
  let dir: Iterable<Deno.DirEntry>;
  try {
    dir = Deno.readDirSync("/proc");
  } catch {
    return found; // no /proc: nothing can be found (the layers that need none still apply)
  }
  for (const dirent of dir) {
    const c = dirent.name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const pid = Number(dirent.name);
    if (pid === Deno.pid || found.includes(pid)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] === "Z" || fields[0] === "X") continue;
      if (sids.has(Number(fields[3]))) {
        found.push(pid);
        continue;
      }
      if (uids.size > 0) {
        const uid = Deno.statSync(`/proc/${pid}`).uid;
        if (uid !== null && uids.has(uid)) {
          found.push(pid);
          continue;
        }
      }
      if (entry && environHas(Deno.readFileSync(`/proc/${pid}/environ`), entry)) found.push(pid);
    } catch {
      // Exited meanwhile, or not ours to read (another user's process without root).
    }
  }
  return found;
}

/** Options for {@linkcode sweep}. */
export interface SweepOptions {
  /** Give up after this long. @default 4s */
  budget?: Duration;
}

/** The outcome of a sweep. */
export interface SweepResult {
  /** Distinct processes found running and SIGKILLed. */
  readonly killed: number;
  /** Processes still found at the end (0 unless they kept forking past the budget). */
  readonly left: number;
}

/**
 * SIGKILLs every process matching `targets`, in rounds until a scan finds none (processes
 * forking meanwhile are caught by the next round) or the budget is spent.
 */
export async function sweep(
  targets: ReapTargets,
  options: SweepOptions = {},
): Promise<SweepResult> {
  const empty = !targets.tag && !targets.uids?.length && !targets.sids?.length &&
    !targets.cgroup;
  if (empty) return { killed: 0, left: 0 };
  const killed = new Set<number>();
  if (targets.cgroup) {
    // Counted before they are killed: once cgroup.kill took them, no scan finds them any more.
    for (const pid of findTargets({ cgroup: targets.cgroup })) killed.add(pid);
    // Linux ≥ 5.14; without it (or the cgroup) the members are killed one by one below.
    await Deno.writeTextFile(`${targets.cgroup}/cgroup.kill`, "1").catch(() => {});
  }
  const deadline = Deadline.after(options.budget ?? ms(4000));
  let pids = findTargets(targets);
  while (pids.length > 0) {
    for (const pid of pids) {
      killed.add(pid); // found running: killed now, or just before by cgroup.kill
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Gone already.
      }
    }
    if (deadline.expired()) break;
    await sleep(ms(killed.size > 0 ? 20 : 0));
    pids = findTargets(targets);
  }
  if (pids.length === 0 && targets.cgroup) removeCgroup(targets.cgroup);
  return { killed: killed.size, left: pids.length };
}

/**
 * A cgroup (v2) for the worker's tasks: `<this process's cgroup>/iris-tasks-<tag>` on the
 * cgroup2 mount. Every task leader is moved into it right after it starts, and its children
 * are born in it; a task cannot leave it without write access to another cgroup (a task user
 * has none), so a sweep finds even a process that cleared its environment and left its
 * session. Undefined where there is no writable cgroup2 hierarchy (not root, no cgroup2).
 */
export function taskCgroup(tag: string): string | undefined {
  if (Deno.build.os !== "linux") return undefined;
  try {
    const mount = Deno.readTextFileSync("/proc/self/mountinfo").split("\n")
      .map((l) => l.split(" "))
      .find((f) => f[f.indexOf("-") + 1] === "cgroup2")?.[4];
    const own = Deno.readTextFileSync("/proc/self/cgroup").split("\n")
      .find((l) => l.startsWith("0::"))?.slice(3);
    if (!mount || own === undefined) return undefined;
    const dir = `${mount}${own === "/" ? "" : own}/iris-tasks-${tag}`;
    Deno.mkdirSync(dir, { recursive: true });
    // Probe: a cgroup we may create but not move processes into is of no use.
    Deno.statSync(`${dir}/cgroup.procs`);
    return dir;
  } catch {
    return undefined;
  }
}

/** Moves `pid` into `cgroup`; false when it could not (then only the other sweeps find it). */
export function joinCgroup(cgroup: string, pid: number): boolean {
  try {
    Deno.writeTextFileSync(`${cgroup}/cgroup.procs`, String(pid));
    return true;
  } catch {
    return false;
  }
}

/** {@linkcode joinCgroup} off the event loop. */
export async function joinCgroupAsync(cgroup: string, pid: number): Promise<boolean> {
  try {
    await Deno.writeTextFile(`${cgroup}/cgroup.procs`, String(pid));
    return true;
  } catch {
    return false;
  }
}

/** Removes an empty task cgroup; leaves a busy or missing one alone. */
export function removeCgroup(cgroup: string): void {
  try {
    Deno.removeSync(cgroup);
  } catch {
    // Busy (processes left) or gone.
  }
}

/** World-writable directories where a task can leave files outside its own directory. */
export const SHARED_TMP_DIRS: readonly string[] = ["/tmp", "/var/tmp", "/dev/shm"];

/**
 * What one listing of a shared directory found: its identity and mtime before the listing, and
 * the owner of each entry. Lets the next sweep skip a directory nothing was added to since.
 */
interface DirListing {
  readonly dev: number;
  readonly ino: number | null;
  readonly mtimeMs: number;
  /** When the stat before the listing was taken (Date.now()). */
  readonly statAtMs: number;
  readonly owners: Map<string, number | null>;
}

/** Listings of the shared directories kept between sweeps of one worker (see removeFilesOf). */
export type SharedDirCache = Map<string, DirListing>;

/**
 * A listing may be reused only when the directory had been unchanged this long before it was
 * taken: the kernel stamps mtime with a coarse clock, so an entry created in the same tick as
 * the listing's stat would not move the mtime.
 */
const QUIET_BEFORE_LISTING_MS = 1000;

/**
 * Removes what tasks of `uids` left in the shared temporary directories (entries directly in
 * them owned by one of the uids, whole), so a uid handed out again finds nothing of the last
 * task, and the disk is given back. With `cache`, a directory whose mtime did not move since a
 * listing taken while it was quiet is not listed again: its entries' owners are known (a task
 * user cannot give a file to itself, so only new entries can belong to it).
 */
export async function removeFilesOf(
  uids: ReadonlySet<number>,
  dirs: readonly string[] = SHARED_TMP_DIRS,
  cache?: SharedDirCache,
): Promise<void> {
  for (const dir of dirs) {
    let listing: DirListing;
    try {
      const statAtMs = Date.now();
      const st = await Deno.stat(dir);
      const mtimeMs = st.mtime?.getTime() ?? NaN;
      const known = cache?.get(dir);
      if (
        known && known.dev === st.dev && known.ino === st.ino && known.mtimeMs === mtimeMs &&
        known.statAtMs - mtimeMs >= QUIET_BEFORE_LISTING_MS
      ) {
        listing = known;
      } else {
        const owners = st.size <= SYNC_LISTING_MAX_BYTES ? ownersOf(dir) : await ownersOfAsync(dir);
        listing = { dev: st.dev, ino: st.ino, mtimeMs, statAtMs, owners };
      }
    } catch {
      cache?.delete(dir);
      continue;
    }
    let removed = false;
    for (const [name, uid] of listing.owners) {
      if (uid === null || !uids.has(uid)) continue;
      await Deno.remove(`${dir}/${name}`, { recursive: true }).catch(() => {});
      removed = true;
    }
    // A removal moved the mtime: list again next time.
    if (removed) cache?.delete(dir);
    else cache?.set(dir, listing);
  }
}

/**
 * Largest directory (its own size: ~1,000–2,000 entries on ext4) listed synchronously: an lstat
 * is a few microseconds, far less than an async op's trip through Deno's thread pool, and a busy
 * /tmp holds hundreds (#20); a larger one would hold the event loop too long.
 */
const SYNC_LISTING_MAX_BYTES = 64 * 1024;

/** The owner of every entry directly in `dir`, synchronously. */
function ownersOf(dir: string): Map<string, number | null> {
  const owners = new Map<string, number | null>();
  for (const entry of Deno.readDirSync(dir)) {
    try {
      owners.set(entry.name, Deno.lstatSync(`${dir}/${entry.name}`).uid);
    } catch {
      // Gone meanwhile.
    }
  }
  return owners;
}

/** {@linkcode ownersOf} off the event loop, for a large directory. */
async function ownersOfAsync(dir: string): Promise<Map<string, number | null>> {
  const owners = new Map<string, number | null>();
  for await (const entry of Deno.readDir(dir)) {
    try {
      owners.set(entry.name, (await Deno.lstat(`${dir}/${entry.name}`)).uid);
    } catch {
      // Gone meanwhile.
    }
  }
  return owners;
}

/** Options for {@linkcode startReaper}. */
export interface ReaperOptions {
  /** The worker root: holds the ledger. */
  readonly rootDir: string;
  /** Remove this directory after the sweep (a temporary worker root). */
  readonly removeDir?: string;
  /** setsid(1), to put the watchdog in a session of its own. */
  readonly setsid?: string;
}

/** A running watchdog. */
export interface Reaper {
  readonly pid: number;
  /** Tells the watchdog the worker stopped cleanly and waits for it to exit. */
  close(): Promise<void>;
}

/** How the watchdog is started; undefined when the code is not on disk (a compiled binary). */
function reaperArgv(): string[] | undefined {
  const url = new URL("./reaper_main.ts", import.meta.url);
  if (url.protocol !== "file:") return undefined;
  return [Deno.execPath(), "run", "--no-config", "--no-lock", "-A", url.pathname];
}

/**
 * Starts the watchdog. It lives in a new session, holds the read end of a pipe only this process
 * writes to, and sweeps after this process dies (see the module comment).
 * @throws when it cannot be started
 */
export function startReaper(options: ReaperOptions): Reaper {
  const argv = reaperArgv();
  if (!argv) {
    throw new Error("the watchdog needs the worker's source files (not a compiled binary)");
  }
  const args = [...argv.slice(1), "--root", options.rootDir];
  if (options.removeDir) args.push("--remove", options.removeDir);
  const child = new Deno.Command(options.setsid ?? argv[0]!, {
    args: options.setsid ? [argv[0]!, ...args] : args,
    stdin: "piped",
    stdout: "null",
    stderr: "inherit",
    env: { NO_COLOR: "1" },
  }).spawn();
  const writer = child.stdin.getWriter();
  let closing: Promise<void> | undefined;
  return {
    pid: child.pid,
    close() {
      closing ??= (async () => {
        try {
          await writer.write(new TextEncoder().encode("clean\n"));
          await writer.close();
        } catch {
          // The watchdog is gone already.
        }
        await child.status;
      })();
      return closing;
    },
  };
}
