/**
 * Observing and signalling a task's process tree (its session) through `ps` and kill(2).
 * Reading /proc needs --allow-all in Deno, so `ps` is used; `kill` is the fallback when the
 * thread may run programs but not call Deno.kill on arbitrary pids.
 * @module
 */
import { Deadline, type Duration, ms, sleep } from "../time.ts";

/** One process of a task's session, as `ps` reports it. */
export interface ProcessEntry {
  readonly sid: number;
  readonly pid: number;
  readonly ppid: number;
  readonly pgid: number;
  /** Exited but not yet reaped by its parent. */
  readonly zombie: boolean;
  readonly rssBytes: number;
  /** User + system CPU time used so far (1 s resolution). */
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

const decoder = new TextDecoder();
const PS_FORMAT = "sid=,pid=,ppid=,pgid=,stat=,rss=,times=";

/** Runs `ps` with `selection` and parses it; undefined when `ps` cannot be run. */
async function ps(selection: string[]): Promise<ProcessEntry[] | undefined> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("ps", {
      args: [...selection, "-o", PS_FORMAT],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
  } catch {
    return undefined;
  }
  // ps exits 1 when nothing matched: that is an empty list, not a failure.
  return parsePs(decoder.decode(out.stdout));
}

/**
 * Lists the processes of session `sid` (a task leader spawned with `detached: true` is a session
 * leader, so the session is its whole tree unless a descendant called setsid itself).
 * Returns undefined when `ps` cannot be run.
 */
export function listSession(sid: number): Promise<ProcessEntry[] | undefined> {
  return ps(["-s", String(sid)]);
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
 * One `ps -e` shared by every task of a worker: a sample younger than `maxAge` is reused and
 * concurrent requests share one call, so sampling costs the same for 1 task or 500.
 */
export class ProcessTable {
  readonly #maxAge: Duration;
  #cache?: { at: number; bySid: Map<number, ProcessEntry[]> };
  #loading?: Promise<Map<number, ProcessEntry[]> | undefined>;

  /** A table refreshed at most every `maxAge`. @param maxAge @default 200ms */
  constructor(maxAge: Duration = ms(200)) {
    this.#maxAge = maxAge;
  }

  /** The processes of session `sid`, at most `maxAge` old; undefined when `ps` cannot be run. */
  async session(sid: number): Promise<ProcessEntry[] | undefined> {
    const cache = this.#cache;
    if (cache && performance.now() - cache.at < this.#maxAge) return cache.bySid.get(sid) ?? [];
    this.#loading ??= this.#load().finally(() => this.#loading = undefined);
    const bySid = await this.#loading;
    return bySid ? bySid.get(sid) ?? [] : undefined;
  }

  async #load(): Promise<Map<number, ProcessEntry[]> | undefined> {
    const at = performance.now();
    const entries = await ps(["-e"]);
    if (!entries) return undefined;
    const bySid = new Map<number, ProcessEntry[]>();
    for (const e of entries) {
      const list = bySid.get(e.sid);
      if (list) list.push(e);
      else bySid.set(e.sid, [e]);
    }
    this.#cache = { at, bySid };
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
}

/**
 * Signals the session's processes leaves first, waiting after each round for their parents to
 * reap them, then moves up. Killing a whole group at once orphans the children of every dying
 * parent, and without a reaping init (a container, this sandbox) they stay zombies forever.
 * Does not signal `leader`; the caller signals the group afterwards.
 * Returns false when `ps` is unavailable (the caller then relies on the group signal alone).
 */
export async function signalTreeBottomUp(
  sid: number,
  leader: number,
  signal: TaskSignal,
  options: BottomUpOptions,
): Promise<boolean> {
  const deadline = Deadline.after(options.budget);
  const roundWait = options.roundWait ?? ms(200);
  while (!options.isDone() && !deadline.expired()) {
    const entries = await listSession(sid);
    if (!entries) return false;
    const live = entries.filter((e) => !e.zombie && e.pid !== leader);
    if (live.length === 0) return true;
    const parents = new Set(live.map((e) => e.ppid));
    const leaves = live.filter((e) => !parents.has(e.pid)).map((e) => e.pid);
    for (const pid of leaves) await sendSignal(pid, signal);
    const round = Deadline.after(Math.min(roundWait, deadline.remaining()) as Duration);
    while (!options.isDone() && !round.expired()) {
      const now = await listSession(sid);
      if (!now) return false;
      const present = new Set(now.map((e) => e.pid));
      if (!leaves.some((pid) => present.has(pid))) break;
      await sleep(ms(10));
    }
  }
  return true;
}

/** Kills whatever is left of a session after its leader exited (daemons, stragglers). */
export async function killLeftovers(sid: number): Promise<void> {
  await signalTreeBottomUp(sid, -1, "SIGKILL", {
    isDone: () => false,
    budget: ms(500),
    roundWait: ms(50),
  });
  await sendSignal(-sid, "SIGKILL");
  const entries = await listSession(sid);
  for (const e of entries ?? []) {
    if (!e.zombie) await sendSignal(e.pid, "SIGKILL");
  }
}
