/**
 * Whole-host CPU and memory for heartbeat snapshots: every process on the machine, not just the
 * worker's tasks. CPU use is the growth of the host's CPU time counters between two readings.
 * Sources, first that works: /proc/stat and /proc/meminfo (a worker process with full
 * permissions on Linux), then node:os cpus() and Deno.systemMemoryInfo() (which need only
 * `sys: ["cpus", "systemMemoryInfo"]`: Deno lets no sandboxed code read /proc files, whatever
 * read paths it is granted, so local VMs get these two sys names and nothing more). A figure that
 * cannot be read is left out ("unknown"), never reported as 0.
 * @module
 */
import { cpus } from "node:os";
import { type Duration, ms } from "../time.ts";

/** The `sys` permission names host metrics need in a sandbox (the local platform grants them). */
export const HOST_METRIC_SYS_PERMISSIONS = ["cpus", "systemMemoryInfo"] as const;

/** Cumulative CPU time counters of the whole host, in clock ticks. */
export interface CpuCounters {
  /** Ticks spent doing anything but idling or waiting for IO. */
  readonly busy: number;
  /** All ticks, idle included. */
  readonly total: number;
  /** Online cores (the `cpuN` lines). */
  readonly cores: number;
}

/** Host memory in bytes. */
export interface HostMemory {
  readonly usedBytes: number;
  readonly totalBytes: number;
}

/** One host reading; a field is absent when it is unknown. */
export interface HostSample {
  /** CPU busy between the last two readings (1000 = one core busy). */
  readonly cpuMillicores?: number;
  /** Cores × 1000. */
  readonly cpuTotalMillicores?: number;
  readonly memoryUsedBytes?: number;
  readonly memoryTotalBytes?: number;
}

/**
 * Parses /proc/stat: the aggregate `cpu` line (user nice system idle iowait irq softirq steal;
 * guest time is already part of user) and the number of `cpuN` lines. Undefined when the text has
 * no usable `cpu` line.
 */
export function parseProcStat(text: string): CpuCounters | undefined {
  let counters: { busy: number; total: number } | undefined;
  let cores = 0;
  for (const line of text.split("\n")) {
    if (/^cpu\d+\s/.test(line)) {
      cores++;
      continue;
    }
    if (!/^cpu\s/.test(line)) continue;
    const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
    // Linux has had at least user, nice, system, idle, iowait, irq, softirq since 2.6.
    if (fields.length < 4 || fields.some((n) => !Number.isFinite(n) || n < 0)) return undefined;
    const total = fields.reduce((sum, n) => sum + n, 0);
    const idle = fields[3]! + (fields[4] ?? 0);
    counters = { busy: total - idle, total };
  }
  return counters && { ...counters, cores: Math.max(1, cores) };
}

/**
 * Parses /proc/meminfo (values in kB). Used memory is MemTotal minus MemAvailable; kernels older
 * than 3.14 lack MemAvailable, so it falls back to MemFree + Buffers + Cached + SReclaimable.
 * Undefined without a positive MemTotal.
 */
export function parseMeminfo(text: string): HostMemory | undefined {
  const kb = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^(\w+(?:\(\w+\))?):\s+(\d+)(?:\s+kB)?\s*$/.exec(line);
    if (m) kb.set(m[1]!, Number(m[2]) * 1024);
  }
  const total = kb.get("MemTotal");
  if (!total || !(total > 0)) return undefined;
  const available = kb.get("MemAvailable") ??
    ["MemFree", "Buffers", "Cached", "SReclaimable"].reduce((s, k) => s + (kb.get(k) ?? 0), 0);
  return { totalBytes: total, usedBytes: Math.min(total, Math.max(0, total - available)) };
}

/**
 * Millicores busy between two readings of the counters, or undefined when they cannot be
 * compared (no time passed, counters went backwards, the core count changed).
 */
export function cpuMillicoresBetween(
  before: CpuCounters,
  after: CpuCounters,
): number | undefined {
  const total = after.total - before.total;
  const busy = after.busy - before.busy;
  if (!(total > 0) || busy < 0 || before.cores !== after.cores) return undefined;
  return Math.round(Math.min(1, busy / total) * after.cores * 1000);
}

/**
 * Counters from node:os cpus() (per-core times in ms: user, nice, sys, idle, irq), or undefined
 * when there are none.
 */
export function countersFromCpuTimes(
  cores: ReadonlyArray<{ readonly times: Readonly<Record<string, number>> }>,
): CpuCounters | undefined {
  if (cores.length === 0) return undefined;
  let busy = 0;
  let idle = 0;
  for (const { times } of cores) {
    const { user = 0, nice = 0, sys = 0, irq = 0, idle: coreIdle = 0 } = times;
    busy += user + nice + sys + irq;
    idle += coreIdle;
  }
  if (!Number.isFinite(busy + idle) || busy < 0 || idle < 0) return undefined;
  return { busy, total: busy + idle, cores: cores.length };
}

/** How {@linkcode HostMeter} reads the host; tests replace it. */
export interface HostSource {
  /** A file's text, or undefined when it cannot be read. */
  readonly readFile: (path: string) => string | undefined;
  /** node:os cpus() counters, or undefined when not allowed. */
  readonly cpuTimes: () => CpuCounters | undefined;
  /** Deno.systemMemoryInfo() or undefined when not allowed. */
  readonly systemMemory: () => { total: number; available: number } | undefined;
  /** Monotonic clock in milliseconds. */
  readonly now: () => number;
}

/**
 * True when `descriptor` is granted. Asked first so that a worker run without the permission
 * never stops at an interactive permission prompt in its heartbeat path.
 */
function granted(descriptor: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return false;
  }
}

/** Reads the real host; every failure (missing file, no permission) becomes undefined. */
export const SYSTEM_HOST_SOURCE: HostSource = {
  readFile: (path) => {
    if (!granted({ name: "read", path })) return undefined;
    try {
      return Deno.readTextFileSync(path);
    } catch {
      return undefined;
    }
  },
  cpuTimes: () => {
    if (!granted({ name: "sys", kind: "cpus" })) return undefined;
    try {
      return countersFromCpuTimes(cpus());
    } catch {
      return undefined;
    }
  },
  systemMemory: () => {
    if (!granted({ name: "sys", kind: "systemMemoryInfo" })) return undefined;
    try {
      return Deno.systemMemoryInfo();
    } catch {
      return undefined;
    }
  },
  now: () => performance.now(),
};

/**
 * Samples the host at most once per `minInterval` (heartbeats may come in bursts); in between it
 * returns the last sample. CPU needs two readings, so the first sample has memory only.
 */
export class HostMeter {
  readonly #source: HostSource;
  readonly #minInterval: Duration;
  #lastAt = -Infinity;
  /** The last CPU counters and where they came from (ticks and ms do not compare). */
  #lastCpu?: { counters: CpuCounters; from: "proc" | "os" };
  #sample: HostSample = {};

  constructor(source: HostSource = SYSTEM_HOST_SOURCE, minInterval: Duration = ms(500)) {
    this.#source = source;
    this.#minInterval = minInterval;
  }

  /** The host now (or as of the last reading, when that was less than `minInterval` ago). */
  read(): HostSample {
    const now = this.#source.now();
    if (now - this.#lastAt < this.#minInterval) return this.#sample;
    this.#lastAt = now;
    const reading = this.#cpu();
    const cpu = reading?.counters;
    const last = this.#lastCpu;
    const cpuMillicores = cpu && last?.from === reading.from
      ? cpuMillicoresBetween(last.counters, cpu)
      : undefined;
    this.#lastCpu = reading;
    const memory = this.#memory();
    this.#sample = {
      ...(cpuMillicores !== undefined ? { cpuMillicores } : {}),
      ...(cpu ? { cpuTotalMillicores: cpu.cores * 1000 } : {}),
      ...(memory ? { memoryUsedBytes: memory.usedBytes, memoryTotalBytes: memory.totalBytes } : {}),
    };
    return this.#sample;
  }

  #cpu(): { counters: CpuCounters; from: "proc" | "os" } | undefined {
    const stat = this.#source.readFile("/proc/stat");
    const fromProc = stat === undefined ? undefined : parseProcStat(stat);
    if (fromProc) return { counters: fromProc, from: "proc" };
    const fromOs = this.#source.cpuTimes();
    return fromOs && { counters: fromOs, from: "os" };
  }

  #memory(): HostMemory | undefined {
    const text = this.#source.readFile("/proc/meminfo");
    const parsed = text === undefined ? undefined : parseMeminfo(text);
    if (parsed) return parsed;
    const info = this.#source.systemMemory();
    if (!info || !(info.total > 0)) return undefined;
    return {
      totalBytes: info.total,
      usedBytes: Math.min(info.total, Math.max(0, info.total - info.available)),
    };
  }
}
