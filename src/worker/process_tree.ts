/**
 * Starting, observing and signalling a task's process tree (its session).
 *
 * Process creation is the worker's biggest cost, so this module spawns nothing it can avoid:
 * tasks start through `setsid(1)` on Deno's posix_spawn path instead of `detached: true` (which
 * forks the whole worker: ~7 ms of event-loop time per task against ~0.3 ms), and the process
 * table is read from /proc in-process, shared by every task of a worker. Reading /proc needs
 * --allow-all in Deno, so a permission-restricted thread falls back to one shared `ps -e`; `kill`
 * is the fallback when the thread may run programs but not call Deno.kill on arbitrary pids.
 * @module
 */
import { resolve } from "node:path";
import { Deadline, type Duration, ms, sleep } from "../time.ts";
import type { SpawnRequest } from "./spawner.ts";

/** One process of a task's session. */
export interface ProcessEntry {
  readonly sid: number;
  readonly pid: number;
  readonly ppid: number;
  readonly pgid: number;
  /** Exited but not yet reaped by its parent. */
  readonly zombie: boolean;
  readonly rssBytes: number;
  /** User + system CPU time used so far. */
  readonly cpuSeconds: number;
}

/** Totals over a process tree. */
export interface TreeSample {
  readonly processCount: number;
  readonly rssBytes: number;
  readonly cpuSeconds: number;
}

/** POSIX signals the worker sends. */
export type TaskSignal = "SIGTERM" | "SIGKILL";

/** Every process on the host, by session id; undefined when the table cannot be read. */
type ProcessScan = Map<number, ProcessEntry[]> | undefined;

const decoder = new TextDecoder();
const PS_FORMAT = "sid=,pid=,ppid=,pgid=,stat=,rss=,times=";
/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat on every Linux ABI. */
const CLOCK_TICKS_PER_S = 100;

/** Runs `ps -e` and groups it by session; undefined when `ps` cannot be run. */
async function scanPs(): Promise<ProcessScan> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("ps", {
      args: ["-e", "-o", PS_FORMAT],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
  } catch {
    return undefined;
  }
  return bySession(parsePs(decoder.decode(out.stdout)));
}

function bySession(entries: Iterable<ProcessEntry>): Map<number, ProcessEntry[]> {
  const map = new Map<number, ProcessEntry[]>();
  for (const e of entries) {
    const list = map.get(e.sid);
    if (list) list.push(e);
    else map.set(e.sid, [e]);
  }
  return map;
}

/** Parses `ps -o sid=,pid=,ppid=,pgid=,stat=,rss=,times=` output. */
export function parsePs(text: string): ProcessEntry[] {
  const entries: ProcessEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 7) continue;
    const [sid, pid, ppid, pgid, stat, rss, times] = f as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    entries.push({
      sid: Number(sid),
      pid: Number(pid),
      ppid: Number(ppid),
      pgid: Number(pgid),
      zombie: stat.startsWith("Z"),
      rssBytes: (Number(rss) || 0) * 1024,
      cpuSeconds: Number(times) || 0,
    });
  }
  return entries;
}

/**
 * Parses one `/proc/<pid>/stat` line (proc(5)); undefined when it is malformed.
 * The command name may hold spaces and parentheses, so fields are counted after the last ")".
 */
export function parseProcStat(text: string, pageBytes: number): ProcessEntry | undefined {
  const close = text.lastIndexOf(")");
  if (close < 0) return undefined;
  // Fields from 3 (state) on: state ppid pgrp session … utime(14) stime(15) … rss(24).
  const f = text.slice(close + 2).split(" ");
  if (f.length < 22) return undefined;
  const state = f[0]!;
  return {
    pid: Number(text.slice(0, text.indexOf(" "))),
    ppid: Number(f[1]),
    pgid: Number(f[2]),
    sid: Number(f[3]),
    zombie: state === "Z" || state === "X",
    cpuSeconds: (Number(f[11]) + Number(f[12])) / CLOCK_TICKS_PER_S,
    rssBytes: Number(f[21]) * pageBytes,
  };
}

/** The kernel's page size, from this process's own RSS in pages and in KiB. */
function pageBytes(): number {
  const pages = Number(Deno.readTextFileSync("/proc/self/statm").split(" ")[1]);
  const kib = Number(Deno.readTextFileSync("/proc/self/status").match(/^VmRSS:\s*(\d+)/m)?.[1]);
  const ratio = (kib * 1024) / pages;
  // RSS moves between the two reads; snap to the page sizes Linux uses.
  return [4096, 16384, 65536].reduce((best, size) =>
    Math.abs(size - ratio) < Math.abs(best - ratio) ? size : best
  );
}

/**
 * Reads every process from /proc, synchronously (≈ 10–20 µs per process: far cheaper than
 * spawning `ps`). Throws when /proc cannot be read at all.
 */
function scanProc(page: number): Map<number, ProcessEntry[]> {
  const entries: ProcessEntry[] = [];
  for (const dirent of Deno.readDirSync("/proc")) {
    const first = dirent.name.charCodeAt(0);
    if (first < 48 || first > 57) continue; // not a pid
    let text: string;
    try {
      text = Deno.readTextFileSync(`/proc/${dirent.name}/stat`);
    } catch {
      continue; // exited since the directory was listed
    }
    const entry = parseProcStat(text, page);
    if (entry) entries.push(entry);
  }
  return bySession(entries);
}

/**
 * The host's process table, shared by every task of a worker. `session()` serves samples up to
 * `maxAge` old; `fresh()` gives a scan taken after the call, and callers that ask while one is
 * pending share it, so finishing 1 task or 50 at once costs one scan.
 */
export class ProcessTable {
  readonly #maxAge: Duration;
  #cache?: { at: number; bySid: Map<number, ProcessEntry[]> };
  #loading?: Promise<ProcessScan>;
  #fresh?: Promise<ProcessScan>;
  #freshRunning: Promise<unknown> = Promise.resolve();
  /** Earliest start of the next fresh scan. */
  #nextScanAt = 0;
  /** How long the last scan took. */
  #lastScanMs = 0;
  /** Bytes per page when /proc is readable, null when it is not, undefined before the first try. */
  #page?: number | null;

  /** A table refreshed at most every `maxAge`. @param maxAge @default 200ms */
  constructor(maxAge: Duration = ms(200)) {
    this.#maxAge = maxAge;
  }

  /**
   * The processes of session `sid`, at most `maxAge` old (or three scans long, when scans are
   * slow); undefined when nothing can be read.
   */
  async session(sid: number): Promise<ProcessEntry[] | undefined> {
    const cache = this.#cache;
    // A scan blocks the worker's event loop: when scans get slow (a busy host), samples are
    // served older, so scanning takes at most a third of the time.
    const maxAge = Math.max(this.#maxAge, 3 * this.#lastScanMs);
    if (cache && performance.now() - cache.at < maxAge) return cache.bySid.get(sid) ?? [];
    this.#loading ??= this.#scan().finally(() => this.#loading = undefined);
    const bySid = await this.#loading;
    return bySid ? bySid.get(sid) ?? [] : undefined;
  }

  /** The processes of session `sid` in a scan that starts after this call. */
  async freshSession(sid: number): Promise<ProcessEntry[] | undefined> {
    const bySid = await this.fresh();
    return bySid ? bySid.get(sid) ?? [] : undefined;
  }

  /**
   * A scan of every session that starts after this call (shared by concurrent callers). Scans
   * cost ~10–20 µs per process on the host, so under a stream of requests they are spaced to
   * take at most a third of the time: callers wait a little longer and share more.
   */
  fresh(): Promise<ProcessScan> {
    this.#fresh ??= this.#freshRunning.then(() =>
      sleep(ms(Math.max(0, this.#nextScanAt - performance.now())))
    ).then(() => {
      this.#fresh = undefined;
      const scan = this.#scan();
      this.#freshRunning = scan;
      return scan;
    });
    return this.#fresh;
  }

  async #scan(): Promise<ProcessScan> {
    const at = performance.now();
    try {
      return await this.#read(at);
    } finally {
      const end = performance.now();
      this.#lastScanMs = end - at;
      this.#nextScanAt = end + 2 * (end - at);
    }
  }

  async #read(at: number): Promise<ProcessScan> {
    let bySid: ProcessScan;
    if (this.#page !== null) {
      try {
        this.#page ??= pageBytes();
        bySid = scanProc(this.#page);
      } catch {
        this.#page = null; // no /proc, or not allowed to read it: use ps from now on
      }
    }
    bySid ??= await scanPs();
    if (bySid) this.#cache = { at, bySid };
    return bySid;
  }
}

/** Sums a list of processes. */
export function summarize(entries: readonly ProcessEntry[]): TreeSample {
  let rssBytes = 0;
  let cpuSeconds = 0;
  let processCount = 0;
  for (const e of entries) {
    if (e.zombie) continue;
    processCount++;
    rssBytes += e.rssBytes;
    cpuSeconds += e.cpuSeconds;
  }
  return { processCount, rssBytes, cpuSeconds };
}

/**
 * Sends `signal` to a pid, or to a process group when `target` is negative.
 * A target that no longer exists is not an error. When this thread may not call Deno.kill on
 * arbitrary pids (a Worker with a path-limited `run`), falls back to the `kill` program.
 */
export async function sendSignal(target: number, signal: TaskSignal): Promise<void> {
  try {
    Deno.kill(target, signal);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    if (!(err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied)) {
      throw err;
    }
    try {
      await new Deno.Command("kill", {
        args: ["-s", signal.slice(3), "--", String(target)],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).output();
    } catch {
      // Nothing more we can do; the caller still awaits the child's exit.
    }
  }
}

/** Options for {@linkcode signalTreeBottomUp}. */
export interface BottomUpOptions {
  /** Stop once this returns true (e.g. the leader has exited). */
  isDone: () => boolean;
  /** Total time for the walk. */
  budget: Duration;
  /** How long to wait for one round of signalled processes to be reaped. @default 200ms */
  roundWait?: Duration;
  /** Where the session's processes are looked up. @default a private table */
  table?: ProcessTable;
}

/**
 * Signals the session's processes leaves first, waiting after each round for their parents to
 * reap them, then moves up. Killing a whole group at once orphans the children of every dying
 * parent, and without a reaping init (a container, this sandbox) they stay zombies forever.
 * Done only once no process but `leader` is left, zombies included: a zombie whose parent still
 * runs is waited for, since signalling that parent (or the group) before it reaps would orphan
 * the zombie. Does not signal `leader`; the caller signals the group afterwards.
 * Returns false when the process table cannot be read (the caller then relies on the group
 * signal alone).
 */
export async function signalTreeBottomUp(
  sid: number,
  leader: number,
  signal: TaskSignal,
  options: BottomUpOptions,
): Promise<boolean> {
  const deadline = Deadline.after(options.budget);
  const roundWait = options.roundWait ?? ms(200);
  const table = options.table ?? new ProcessTable();
  while (!options.isDone() && !deadline.expired()) {
    const entries = await table.freshSession(sid);
    if (!entries) return false;
    const live = entries.filter((e) => !e.zombie && e.pid !== leader);
    const running = new Set(entries.filter((e) => !e.zombie).map((e) => e.pid));
    // Exited, and its parent still runs: reaped soon, unless that parent is killed first.
    const unreaped = entries.filter((e) => e.zombie && running.has(e.ppid)).map((e) => e.pid);
    if (live.length === 0 && unreaped.length === 0) return true;
    // A parent of an unreaped zombie is no leaf yet: killed now, it would orphan the zombie.
    const parents = new Set(entries.map((e) => e.ppid));
    const leaves = live.filter((e) => !parents.has(e.pid)).map((e) => e.pid);
    for (const pid of leaves) await sendSignal(pid, signal);
    const awaited = [...leaves, ...unreaped];
    const round = Deadline.after(Math.min(roundWait, deadline.remaining()) as Duration);
    while (!options.isDone() && !round.expired()) {
      const now = await table.freshSession(sid);
      if (!now) return false;
      const present = new Set(now.map((e) => e.pid));
      if (!awaited.some((pid) => present.has(pid))) break;
      await sleep(ms(10));
    }
  }
  return true;
}

/**
 * True when no process (zombies included) is left in process group `pgid`: one kill(2), where a
 * scan of /proc reads every process of the host. A task's children stay in its group unless they
 * call setpgid or setsid, so this settles the usual end of a task.
 */
export function groupIsEmpty(pgid: number): boolean {
  try {
    // SIGCONT: the one signal that harms nothing (every member of a non-empty group is killed
    // right after anyway).
    Deno.kill(-pgid, "SIGCONT");
    return false;
  } catch (err) {
    return err instanceof Deno.errors.NotFound;
  }
}

/** How long {@linkcode killLeftovers} waits for SIGKILLed leftovers to die. */
const LEFTOVER_DEATH_WAIT = ms(2000);

/**
 * Kills whatever is left of a session after its leader exited (daemons, stragglers) and waits
 * (up to {@linkcode LEFTOVER_DEATH_WAIT}) until none of it runs: a SIGKILLed process takes a
 * moment to die, and callers free the task's resources once this returns. The usual case, an
 * empty session, costs one shared scan of the process table and sends no signal.
 * `emptyGroupIsEnough` (tasks running as their own user): an empty process group ends it without
 * the scan. What left the group but not the session still runs under the task's uid, and the uid
 * pool sweeps every process of a released uid before reusing it (task_users.ts).
 */
export async function killLeftovers(
  sid: number,
  table = new ProcessTable(),
  options: { readonly emptyGroupIsEnough?: boolean } = {},
): Promise<void> {
  if (options.emptyGroupIsEnough && groupIsEmpty(sid)) return;
  const running = (entries: ProcessEntry[] | undefined) => (entries ?? []).filter((e) => !e.zombie);
  const first = await table.freshSession(sid);
  if (first && running(first).length === 0) return;
  await signalTreeBottomUp(sid, -1, "SIGKILL", {
    isDone: () => false,
    budget: ms(500),
    roundWait: ms(50),
    table,
  });
  await sendSignal(-sid, "SIGKILL");
  const deadline = Deadline.after(LEFTOVER_DEATH_WAIT);
  let left = running(await table.freshSession(sid));
  for (const e of left) await sendSignal(e.pid, "SIGKILL");
  while (left.length > 0 && !deadline.expired()) {
    await sleep(ms(10));
    left = running(await table.freshSession(sid));
  }
}

/** Options for {@linkcode spawnSessionLeader}. */
export interface SpawnOptions {
  readonly cwd: string;
  /** The complete environment (nothing is inherited); its PATH finds the program. */
  readonly env: Record<string, string>;
  /**
   * Run as this unprivileged user through setpriv(1) (needs root and setsid(1)); never falls
   * back to the worker's own user. @default the worker's user
   */
  readonly user?: { readonly uid: number; readonly gid: number; readonly setpriv: string };
  /**
   * Resource limits set before the program starts, by the wrapper shell's `ulimit` (prlimit(1)
   * where the shell cannot; skipped when neither can). `processes` is RLIMIT_NPROC, counted per real uid: only meaningful for a task user.
   */
  readonly limits?: {
    readonly processes?: number;
    readonly openFiles?: number;
    /** RLIMIT_FSIZE: the largest file the task may write (SIGXFSZ past it). */
    readonly fileBytes?: number;
  };
  /**
   * A cgroup-v2 directory the program joins before it starts (best effort), so even its first
   * children are born in it: a join after the spawn races the program's own forks.
   * @default none
   */
  readonly cgroup?: string;
  /** "piped": the caller writes the program's stdin (interactive sessions). @default "null" */
  readonly stdin?: "null" | "piped";
}

/** A util-linux program in /usr/bin or /bin, when this thread may see it; null when not. */
const utilCache = new Map<string, string | null>();
/** `/usr/bin/NAME` or `/bin/NAME` when it exists (Linux), else null; cached. */
export function findUtil(name: string): string | null {
  const cached = utilCache.get(name);
  if (cached !== undefined) return cached;
  let found: string | null = null;
  if (Deno.build.os === "linux") {
    for (const path of [`/usr/bin/${name}`, `/bin/${name}`]) {
      try {
        if (Deno.statSync(path).isFile) {
          found = path;
          break;
        }
      } catch {
        // Not there, or not allowed to look.
      }
    }
  }
  utilCache.set(name, found);
  return found;
}

/** The worker's own limits from /proc/self/limits ([soft, hard], Infinity = unlimited), read once. */
let ownLimits: Map<string, [number, number]> | undefined;

/**
 * `wanted` when it lowers the worker's own limit `name` (which the task would inherit), capped at
 * the hard limit (raising past it needs a privilege the worker may lack); undefined when there is
 * nothing to lower — then no limit is set at all.
 */
function lowered(wanted: number | undefined, name: string): number | undefined {
  if (!wanted) return undefined;
  if (!ownLimits) {
    ownLimits = new Map();
    try {
      ownLimits = parseLimits(Deno.readTextFileSync("/proc/self/limits"));
    } catch {
      // Not readable here: ask for the value as is.
    }
  }
  const own = ownLimits.get(name);
  if (!own) return wanted;
  const [soft, hard] = own;
  if (wanted >= soft && soft === hard) return undefined;
  const capped = Math.min(wanted, hard);
  return capped === soft ? undefined : capped;
}

/** setsid(1)'s path, when this thread may use it. */
export function setsidPath(): string | undefined {
  return findSetsid() ?? undefined;
}

/** How this host's /bin/sh sets limits with its `ulimit` builtin (probed once; null: it cannot). */
interface ShellLimits {
  /** The option for RLIMIT_NPROC: `-p` in dash, `-u` in bash and busybox. */
  readonly processes: "-p" | "-u";
  /** The unit of `ulimit -f`: 512 in dash (and POSIX), 1024 in bash. */
  readonly fileBlock: number;
}

let shellLimits: ShellLimits | null | undefined;

/**
 * Finds how /bin/sh's `ulimit` sets the process, open-file and file-size limits, by setting odd
 * values in a child shell and reading them back from /proc (shells differ in option letters and
 * units, and only `-f` is in POSIX). Runs once per thread; null when the shell cannot do it (the
 * limits then go through prlimit(1), one exec more).
 */
function probeShellLimits(): ShellLimits | null {
  if (shellLimits !== undefined) return shellLimits;
  shellLimits = null;
  if (Deno.build.os !== "linux") return null;
  for (const processes of ["-p", "-u"] as const) {
    try {
      const out = new Deno.Command("/bin/sh", {
        args: [
          "-c",
          // Values below any usual hard limit (raising one would fail for a non-root worker).
          `ulimit ${processes} 71 && ulimit -n 67 && ulimit -f 3 && exec cat /proc/self/limits`,
        ],
        clearEnv: true,
        env: { PATH: "/usr/bin:/bin" },
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).outputSync();
      if (!out.success) continue;
      const limits = parseLimits(decoder.decode(out.stdout));
      const same = (name: string, value: number) =>
        limits.get(name)?.[0] === value && limits.get(name)?.[1] === value;
      const fsize = limits.get("Max file size")?.[0];
      const fileBlock = fsize === 1536 ? 512 : fsize === 3072 ? 1024 : 0;
      if (same("Max processes", 71) && same("Max open files", 67) && fileBlock) {
        if (same("Max file size", 3 * fileBlock)) return shellLimits = { processes, fileBlock };
      }
    } catch {
      return null; // no shell, or this thread may not run it
    }
  }
  return null;
}

/** The limits of a `/proc/<pid>/limits` text by name: [soft, hard], Infinity = unlimited. */
function parseLimits(text: string): Map<string, [number, number]> {
  const limits = new Map<string, [number, number]>();
  for (const line of text.split("\n")) {
    const m = line.match(/^(.+?)\s{2,}(\S+)\s+(\S+)/);
    const value = (v: string) => v === "unlimited" ? Infinity : Number(v);
    if (m) limits.set(m[1]!, [value(m[2]!), value(m[3]!)]);
  }
  return limits;
}

/**
 * The programs put between setsid and the task, each exec'ing in place. Every exec costs about
 * a spawn of CPU (#20), so one `sh -c` does all the shell can: it joins the task's cgroup and
 * sets the limits (`ulimit`, where the shell's options are known), then execs setpriv(1) with
 * `--pdeathsig KILL` (so the kernel kills the leader when the worker dies) and, for a task user,
 * the uid change. prlimit(1) is used only for what the shell cannot set. Empty when there is
 * nothing to wrap.
 */
function wrappers(options: SpawnOptions): string[] {
  const out: string[] = [];
  const limits = options.limits;
  // Only ever lowered: raising past the worker's own hard limit needs a privilege it may lack.
  const nproc = lowered(limits?.processes, "Max processes");
  const nofile = lowered(limits?.openFiles, "Max open files");
  let fsize = lowered(limits?.fileBytes, "Max file size");
  fsize = fsize && Math.ceil(fsize);
  const shell = nproc || nofile || fsize ? probeShellLimits() : undefined;
  const ulimits: string[] = [];
  const prlimitArgs: string[] = [];
  if (nproc) {
    if (shell) ulimits.push(`ulimit ${shell.processes} ${nproc}`);
    else prlimitArgs.push(`--nproc=${nproc}`);
  }
  if (nofile) {
    if (shell) ulimits.push(`ulimit -n ${nofile}`);
    else prlimitArgs.push(`--nofile=${nofile}`);
  }
  if (fsize) {
    // The shell counts in blocks: a size that is not a whole number of them keeps its exact value.
    if (shell && fsize % shell.fileBlock === 0) {
      ulimits.push(`ulimit -f ${fsize / shell.fileBlock}`);
    } else prlimitArgs.push(`--fsize=${fsize}`);
  }
  if (options.cgroup || ulimits.length) {
    // The shell moves itself (pid "0": the writer) into the cgroup, lowers its limits (a failure
    // stops the task: it never runs with limits it was not given), then execs the rest in place.
    const join = options.cgroup ? 'echo 0 2>/dev/null >"$0"; ' : "";
    const lower = ulimits.length ? `${ulimits.join(" && ")} || exit 126; ` : "";
    out.push(
      "/bin/sh",
      "-c",
      `${join}${lower}exec "$@"`,
      options.cgroup ? `${options.cgroup}/cgroup.procs` : "sh",
    );
  }
  const prlimit = prlimitArgs.length ? findUtil("prlimit") : null;
  if (prlimit) out.push(prlimit, ...prlimitArgs, "--");
  const user = options.user;
  const setpriv = user?.setpriv ?? findUtil("setpriv");
  if (user) {
    out.push(
      user.setpriv,
      `--reuid=${user.uid}`,
      `--regid=${user.gid}`,
      "--clear-groups",
      "--no-new-privs",
      "--pdeathsig",
      "KILL",
      "--",
    );
  } else if (setpriv) {
    out.push(setpriv, "--pdeathsig", "KILL", "--");
  }
  return out;
}

/** setsid(1), when this thread may use it; null once it is known to be unusable. */
let setsidProgram: string | null | undefined;

function findSetsid(): string | null {
  if (setsidProgram !== undefined) return setsidProgram;
  setsidProgram = null;
  if (Deno.build.os !== "linux") return null;
  for (const path of ["/usr/bin/setsid", "/bin/setsid"]) {
    try {
      if (Deno.statSync(path).isFile) return setsidProgram = path;
    } catch {
      // Not there, or not allowed to look.
    }
  }
  return null;
}

/**
 * Where exec would find `program`: the absolute path Deno itself would run (a name with a slash
 * is taken relative to `cwd`; a bare name is searched on `path`). Undefined when it cannot tell,
 * e.g. the program is missing, a PATH entry is relative, or the thread may not look.
 */
export function resolveProgram(program: string, path: string | undefined, cwd: string) {
  const isExecutable = (file: string) => {
    try {
      const st = Deno.statSync(file);
      return st.isFile && st.mode !== null && (st.mode & 0o111) !== 0;
    } catch {
      return false;
    }
  };
  if (program.includes("/")) {
    const file = resolve(cwd, program);
    return isExecutable(file) ? file : undefined;
  }
  if (!path) return undefined;
  for (const dir of path.split(":")) {
    if (!dir.startsWith("/")) return undefined; // relative or empty entry: leave it to Deno
    const file = `${dir.replace(/\/+$/, "")}/${program}`;
    if (isExecutable(file)) return file;
  }
  return undefined;
}

/** Bare program names found on a PATH lately: PATH → name → [file, when (performance.now())]. */
const resolvedLately = new Map<string, Map<string, [string, number]>>();
/** How long a PATH lookup is reused. */
const RESOLVED_FOR = ms(1000);

/**
 * {@linkcode resolveProgram}, reusing a bare name's lookup for {@linkcode RESOLVED_FOR}: a burst
 * of tasks would stat every PATH entry before each (a missed stat throws, which costs more than
 * the syscall; #20). A program removed meanwhile fails in the wrapper's exec instead.
 */
function resolveCached(program: string, path: string | undefined, cwd: string) {
  if (program.includes("/") || !path) return resolveProgram(program, path, cwd);
  let names = resolvedLately.get(path);
  const hit = names?.get(program);
  const now = performance.now();
  if (hit && now - hit[1] < RESOLVED_FOR) return hit[0];
  const file = resolveProgram(program, path, cwd);
  if (!file) return undefined;
  if (!names) {
    if (resolvedLately.size >= 16) resolvedLately.clear(); // tasks may set any PATH: stay small
    resolvedLately.set(path, names = new Map());
  }
  if (names.size >= 256) names.clear();
  names.set(program, [file, now]);
  return file;
}

/**
 * What the worker's task spawner (spawner.ts) needs to start `program` as
 * {@linkcode spawnSessionLeader} would: the resolved program and the limits to lower. Undefined
 * when the spawner does not apply (piped stdin) or the program cannot be resolved (the usual
 * path then reports it).
 */
export function spawnerRequest(
  program: string,
  args: readonly string[],
  options: SpawnOptions,
): SpawnRequest | undefined {
  if ((options.stdin ?? "null") !== "null") return undefined;
  const resolved = resolveCached(program, options.env.PATH, options.cwd);
  if (!resolved) return undefined;
  const limits = options.limits;
  const fileBytes = lowered(limits?.fileBytes, "Max file size");
  return {
    program: resolved,
    args,
    cwd: options.cwd,
    env: options.env,
    user: options.user && { uid: options.user.uid, gid: options.user.gid },
    limits: {
      // As in wrappers(): only ever lowered, never raised past the worker's own hard limit.
      processes: lowered(limits?.processes, "Max processes"),
      openFiles: lowered(limits?.openFiles, "Max open files"),
      fileBytes: fileBytes && Math.ceil(fileBytes),
    },
    cgroup: options.cgroup,
  };
}

/** Children whose spawn wrapper joins `SpawnOptions.cgroup` before the program starts. */
const joinsCgroup = new WeakSet<Deno.ChildProcess>();

function joined(child: Deno.ChildProcess, options: SpawnOptions): Deno.ChildProcess {
  if (options.cgroup) joinsCgroup.add(child);
  return child;
}

/**
 * True when `child` (from {@linkcode spawnSessionLeader}) joins the cgroup it was given before its
 * program starts; false when the spawn could not wrap it (then the caller should move it).
 */
export function spawnedIntoCgroup(child: Deno.ChildProcess): boolean {
  return joinsCgroup.has(child);
}

/**
 * Spawns `program` as the leader of a new session (pid = pgid = sid) with piped stdout/stderr
 * and no stdin (unless `options.stdin`). Uses `setsid <resolved program> args…` on Deno's cheap posix_spawn path; falls
 * back to `detached: true` (a full fork of this process) when setsid or the program cannot be
 * resolved, so a missing program fails exactly as Deno reports it.
 * @throws what `Deno.Command.spawn` throws (missing program or cwd, permissions)
 */
export function spawnSessionLeader(
  program: string,
  args: readonly string[],
  options: SpawnOptions,
): Deno.ChildProcess {
  const common = {
    cwd: options.cwd,
    clearEnv: true,
    env: options.env,
    stdin: options.stdin ?? "null",
    stdout: "piped",
    stderr: "piped",
  } as const;
  const setsid = findSetsid();
  const user = options.user;
  if (user) {
    if (!setsid) throw new Error("setsid(1) is needed to run a task as its own user");
    const resolved = resolveCached(program, options.env.PATH, options.cwd);
    if (!resolved) throw new Deno.errors.NotFound(`${program}: not found or not executable`);
    // Every program execs in place: the pid Deno returns is the task's session leader, running
    // as `user` with no supplementary groups and unable to regain privileges through setuid
    // programs.
    return joined(
      new Deno.Command(setsid, {
        ...common,
        args: [...wrappers(options), resolved, ...args],
      }).spawn(),
      options,
    );
  }
  const resolved = setsid ? resolveCached(program, options.env.PATH, options.cwd) : undefined;
  if (setsid && resolved) {
    try {
      // setsid(1) calls setsid(2) and execs in place: the child is not a group leader yet, so
      // it does not fork, and the pid Deno returns is the session's leader.
      return joined(
        new Deno.Command(setsid, {
          ...common,
          args: [...wrappers(options), resolved, ...args],
        }).spawn(),
        options,
      );
    } catch (err) {
      if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
        setsidProgram = null; // this thread may not run it: stop trying
      }
      // Anything else (e.g. a missing cwd): the plain spawn below reports it as usual.
    }
  }
  return new Deno.Command(program, { ...common, args: [...args], detached: true }).spawn();
}
