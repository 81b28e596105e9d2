/**
 * Per-task OS users: when the worker runs as root, each attempt runs under its own unprivileged
 * uid/gid (through setpriv(1)), so a task cannot read another task's directory, the worker's root
 * or secrets readable only by root — whatever API it uses, `import` and command tasks included.
 * @module
 */
import { dirname } from "node:path";
import { InvalidArgumentError } from "../errors.ts";
import { removeFilesOf, type SharedDirCache } from "./reaper.ts";

/** `off`, `auto` (on when the worker is root and setpriv exists), or `required` (fail otherwise). */
export type TaskUserIsolation = "off" | "auto" | "required";

/** The modes, for validation and help texts. */
export const TASK_USER_ISOLATION_MODES: readonly TaskUserIsolation[] = ["off", "auto", "required"];

/** A range of uids (each also used as the task's gid), inclusive. */
export interface UidRange {
  readonly first: number;
  readonly last: number;
}

/** Uids no host account should use: above the usual login range, below 2^31. */
export const DEFAULT_TASK_UIDS: UidRange = { first: 200_000, last: 265_535 };

/** One task's OS identity. */
export interface TaskUser {
  readonly uid: number;
  readonly gid: number;
}

/** setpriv(1), when present and visible to this thread. */
function findSetpriv(): string | undefined {
  for (const path of ["/usr/bin/setpriv", "/bin/setpriv"]) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Not there, or not allowed to look.
    }
  }
  return undefined;
}

/** The worker's uid; undefined when this thread may not ask (a Deno Worker without sys). */
function currentUid(): number | null | undefined {
  try {
    return Deno.uid();
  } catch {
    return undefined;
  }
}

/** True when every directory from `path` up to "/" lets others through (o+x). */
function traversableByOthers(path: string): boolean {
  let dir = path;
  while (true) {
    try {
      const mode = Deno.statSync(dir).mode;
      if (mode === null || (mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    const up = dirname(dir);
    if (up === dir) return true;
    dir = up;
  }
}

/** The outcome of {@linkcode resolveTaskUsers}. */
export type TaskUsersDecision =
  | { readonly enabled: true; readonly setpriv: string }
  | { readonly enabled: false; readonly reason: string };

/**
 * Decides whether tasks get their own users. Needs Linux, uid 0, setpriv(1) and a worker root
 * whose parent directories others may traverse (the worker itself sets the root to 0711).
 * @throws {InvalidArgumentError} in `required` mode when a condition is not met
 */
export function resolveTaskUsers(mode: TaskUserIsolation, rootDir: string): TaskUsersDecision {
  if (!TASK_USER_ISOLATION_MODES.includes(mode)) {
    throw new InvalidArgumentError(
      "taskUserIsolation",
      `must be one of ${TASK_USER_ISOLATION_MODES.join(", ")}: current value is "${mode}"`,
    );
  }
  if (mode === "off") return { enabled: false, reason: "task user isolation is off" };
  const setpriv = Deno.build.os === "linux" ? findSetpriv() : undefined;
  const uid = currentUid();
  const reason = Deno.build.os !== "linux"
    ? "not on Linux"
    : uid === undefined
    ? "this thread may not read its uid"
    : uid !== 0
    ? `the worker is not root (uid ${uid})`
    : !setpriv
    ? "setpriv(1) was not found in /usr/bin or /bin"
    : !traversableByOthers(dirname(rootDir))
    ? `a parent directory of the worker root ${rootDir} is not traversable by other users (o+x)`
    : undefined;
  if (reason === undefined && setpriv) return { enabled: true, setpriv };
  if (mode === "required") {
    throw new InvalidArgumentError(
      "taskUserIsolation",
      `is "required" but tasks cannot get their own users: ${reason}`,
    );
  }
  return { enabled: false, reason: reason ?? "unknown" };
}

/** Uids handed out by pools of this process (running or being swept), so no two share one. */
const inUse = new Set<number>();

/** How long released uids collect before one /proc scan sweeps them all. */
const SWEEP_DELAY_MS = 500;

/**
 * Hands out one uid per running attempt from a range, in rotation (a uid comes back only after
 * the rest of the range was used), and makes sure nothing of a task outlives its uid: released
 * uids are swept in batches — every process still running under them, even ones that left the
 * task's session, is SIGKILLed — before they can be handed out again. One scan of /proc costs
 * milliseconds, so it is shared by every attempt that ended within {@linkcode SWEEP_DELAY_MS}.
 */
export class TaskUserPool {
  readonly range: UidRange;
  /** setpriv(1)'s path. */
  readonly setpriv: string;
  #next: number;
  readonly #draining = new Set<number>();
  #timer?: ReturnType<typeof setTimeout>;
  #sweeping: Promise<void> = Promise.resolve();
  #closed = false;
  /** Listings of /tmp and co. between sweeps: a directory nothing was added to is not re-read. */
  readonly #sharedDirs: SharedDirCache = new Map();

  /** Told of every uid handed out and every uid freed again (the reaper's ledger). */
  readonly #ledger?: { addUid(uid: number): void; removeUid(uid: number): void };

  constructor(
    range: UidRange,
    setpriv: string,
    ledger?: { addUid(uid: number): void; removeUid(uid: number): void },
  ) {
    this.#ledger = ledger;
    if (
      !Number.isInteger(range.first) || !Number.isInteger(range.last) || range.first < 1 ||
      range.last < range.first || range.last > 2 ** 31 - 2
    ) {
      throw new InvalidArgumentError(
        "taskUids",
        `must be integers with 1 <= first <= last < 2^31-1: current value is ${range.first}-${range.last}`,
      );
    }
    this.range = range;
    this.setpriv = setpriv;
    // Workers of other processes on the host likely start elsewhere in the range.
    this.#next = range.first + Math.floor(Math.random() * (range.last - range.first + 1));
  }

  /** A free uid (gid = uid). @throws {Error} when every uid of the range is taken */
  allocate(): TaskUser {
    const size = this.range.last - this.range.first + 1;
    for (let i = 0; i < size; i++) {
      const uid = this.#next;
      this.#next = uid >= this.range.last ? this.range.first : uid + 1;
      if (!inUse.has(uid)) {
        inUse.add(uid);
        this.#ledger?.addUid(uid);
        return { uid, gid: uid };
      }
    }
    throw new Error(
      `no free task uid in ${this.range.first}-${this.range.last}: all are running or being swept`,
    );
  }

  /** The attempt of `user` is over: its uid is swept, then free again. */
  release(user: TaskUser): void {
    this.#draining.add(user.uid);
    if (this.#closed || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#sweeping = this.#sweeping.then(() => this.#sweep());
    }, SWEEP_DELAY_MS);
  }

  /** Sweeps what was released now and stops sweeping later (the worker is stopping). */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#sweeping;
    await this.#sweep();
  }

  async #sweep(): Promise<void> {
    const uids = new Set(this.#draining);
    this.#draining.clear();
    if (uids.size === 0) return;
    const stubborn = await killUidProcesses(uids);
    const idle = new Set([...uids].filter((uid) => !stubborn.has(uid)));
    if (idle.size > 0) await removeFilesOf(idle, undefined, this.#sharedDirs);
    for (const uid of uids) {
      if (stubborn.has(uid)) this.#draining.add(uid); // still busy: keep it out of rotation
      else {
        inUse.delete(uid);
        this.#ledger?.removeUid(uid);
      }
    }
  }
}

/** Pids whose /proc entry belongs to one of `uids` (their effective uid), by uid. */
function processesOf(uids: ReadonlySet<number>): Map<number, number[]> {
  const found = new Map<number, number[]>();
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      const c = entry.name.charCodeAt(0);
      if (c < 48 || c > 57) continue;
      try {
        const uid = Deno.statSync(`/proc/${entry.name}`).uid;
        if (uid === null || !uids.has(uid)) continue;
        const pids = found.get(uid);
        if (pids) pids.push(Number(entry.name));
        else found.set(uid, [Number(entry.name)]);
      } catch {
        // Gone meanwhile.
      }
    }
  } catch {
    // No /proc: nothing to sweep.
  }
  return found;
}

/**
 * SIGKILLs every process of `uids`, a few rounds in case some were forking meanwhile.
 * Returns the uids that still had processes at the end.
 */
async function killUidProcesses(uids: ReadonlySet<number>): Promise<Set<number>> {
  let left = new Set(uids);
  for (let round = 0; round < 5; round++) {
    const found = processesOf(left);
    if (found.size === 0) return new Set();
    for (const pids of found.values()) {
      for (const pid of pids) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
    }
    left = new Set(found.keys());
    await new Promise((r) => setTimeout(r, 20 * (round + 1)));
  }
  return new Set(processesOf(left).keys());
}

/**
 * Makes the worker's root usable by task users and closed to them: the root and its `tasks`
 * directory become 0711 (traversable, not listable); the bundle cache (`bundles`, where the
 * worker's fetchers put it) and `cache` become 0700.
 */
export async function prepareRootForTaskUsers(rootDir: string): Promise<void> {
  await Deno.chmod(rootDir, 0o711);
  await Deno.chmod(`${rootDir}/tasks`, 0o711);
  for (const name of ["bundles", "cache"]) {
    await Deno.mkdir(`${rootDir}/${name}`, { recursive: true });
    await Deno.chmod(`${rootDir}/${name}`, 0o700);
  }
}

/**
 * A deno executable task users may run: `Deno.execPath()` when others can reach it, else a hard
 * link (or, across file systems, a copy) in `binDir` (0755).
 */
export async function taskDenoPath(binDir: string): Promise<string> {
  const exec = Deno.execPath();
  const mode = (await Deno.stat(exec)).mode ?? 0;
  if ((mode & 0o001) !== 0 && traversableByOthers(dirname(exec))) return exec;
  await Deno.mkdir(binDir, { recursive: true, mode: 0o755 });
  await Deno.chmod(binDir, 0o755);
  const target = `${binDir}/deno`;
  await Deno.remove(target).catch(() => {});
  try {
    await Deno.link(exec, target);
  } catch {
    await Deno.copyFile(exec, target);
  }
  await Deno.chmod(target, 0o755);
  return target;
}

/**
 * Gives the files and directories under `dir` to `user`. Symlinks are skipped, never followed
 * (their own owner grants nothing).
 */
export async function chownTree(dir: string, user: TaskUser): Promise<void> {
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isSymlink) continue;
    const path = `${dir}/${entry.name}`;
    await Deno.chown(path, user.uid, user.gid);
    if (entry.isDirectory) await chownTree(path, user);
  }
}
