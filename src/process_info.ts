/**
 * What a process knows about itself for `iris process status`: pid, uptime, RSS, CPU time, open
 * file descriptors and threads, read from /proc when there is one (-1 / 0 otherwise).
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type ProcessInfo, ProcessInfoSchema } from "./rpc/gen/iris/v1/types_pb.ts";

/** Clock ticks per second of /proc/self/stat times (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

/** Most log lines a GetProcessStatus answer carries. */
export const MAX_PROCESS_LOG_LINES = 2000;

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/** User and system CPU seconds of this process, from /proc/self/stat. */
function cpuSeconds(): { user: number; system: number } {
  const stat = readText("/proc/self/stat");
  if (!stat) return { user: 0, system: 0 };
  // Fields after the command name (which may hold spaces) start at field 3 ("state").
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(fields[11] ?? 0) / USER_HZ, system: Number(fields[12] ?? 0) / USER_HZ };
}

function threadCount(): number {
  const m = readText("/proc/self/status")?.match(/^Threads:\s+(\d+)/m);
  return m ? Number(m[1]) : 0;
}

function openFds(): number {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
    return n;
  } catch {
    return -1;
  }
}

/** This process's status, with the last `maxLogLines` (0 = 200) of `logs`. */
export function processInfo(opts: {
  role: "controller" | "worker";
  id?: string;
  startedAtMs: number;
  version: string;
  logs: readonly string[];
  maxLogLines?: number;
}): ProcessInfo {
  const cpu = cpuSeconds();
  const max = Math.min(Math.max(opts.maxLogLines || 200, 1), MAX_PROCESS_LOG_LINES);
  return create(ProcessInfoSchema, {
    role: opts.role,
    id: opts.id ?? "",
    hostname: hostnameOrEmpty(),
    pid: Deno.pid,
    startedAtMs: opts.startedAtMs,
    uptimeMs: Math.max(0, Date.now() - opts.startedAtMs),
    version: opts.version,
    rssBytes: Deno.memoryUsage().rss,
    cpuUserSeconds: cpu.user,
    cpuSystemSeconds: cpu.system,
    openFds: openFds(),
    threads: threadCount(),
    recentLogs: opts.logs.slice(-max),
  });
}

/** This host's name; "" where the process may not ask (a local worker's sandboxed Worker). */
function hostnameOrEmpty(): string {
  try {
    return Deno.hostname();
  } catch {
    return "";
  }
}
