/**
 * `iris task profile` on the worker: a CPU profile of a running task's processes. Uses py-spy
 * for a Python process when py-spy is installed (a speedscope profile), and otherwise samples
 * /proc every 20 ms (ps(1) every 100 ms where /proc may not be read): per process, the share of samples it was running, sleeping (with the kernel
 * function it waited in, `wchan`) or in disk wait, and the CPU time it used. Deno's `--cpu-prof`
 * must be given when a process starts, so module tasks get the /proc summary too (the note says so).
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type ProfileTaskResponse,
  ProfileTaskResponseSchema,
} from "../rpc/gen/iris/v1/types_pb.ts";
import { type Duration, ms, seconds, sleep } from "../time.ts";
import { resolveProgram } from "./process_tree.ts";

/** Sampling period of the /proc profiler. */
const PERIOD = ms(20);
const USER_HZ = 100;

function read(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/** One process of a session at one instant. */
interface ProcSample {
  readonly pid: number;
  /** R running, D disk wait, S/I/T… otherwise. */
  readonly state: string;
  /** The kernel function it sleeps in, or "". */
  readonly wchan: string;
  readonly cpuSeconds: number;
  readonly command: string;
}

/** Pids whose session is `sid`, from /proc (throws when /proc cannot be listed). */
export function sessionPids(sid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const stat = read(`/proc/${e.name}/stat`);
    if (!stat) continue;
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(f[3]) === sid) out.push(Number(e.name));
  }
  return out.sort((a, b) => a - b);
}

function cmdline(pid: number): string {
  const raw = read(`/proc/${pid}/cmdline`);
  return raw ? raw.split("\0").filter((s) => s).join(" ").slice(0, 120) : "?";
}

/** The session's processes from /proc. */
function procSnapshot(sid: number): ProcSample[] {
  const out: ProcSample[] = [];
  for (const pid of sessionPids(sid)) {
    const stat = read(`/proc/${pid}/stat`);
    if (!stat) continue;
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const state = f[0] ?? "?";
    out.push({
      pid,
      state,
      wchan: state === "R" ? "" : read(`/proc/${pid}/wchan`)?.trim() ?? "",
      cpuSeconds: (Number(f[11]) + Number(f[12])) / USER_HZ,
      // Read every round: a process may exec another program after it is first seen.
      command: cmdline(pid),
    });
  }
  return out;
}

/** The session's processes from ps(1), where this thread may not read /proc. */
async function psSnapshot(sid: number): Promise<ProcSample[]> {
  const res = await new Deno.Command("ps", {
    args: ["-s", String(sid), "-o", "pid=,stat=,wchan:40=,times=,args="],
    stdout: "piped",
    stderr: "null",
    signal: AbortSignal.timeout(5000),
  }).output();
  const out: ProcSample[] = [];
  for (const line of new TextDecoder().decode(res.stdout).split("\n")) {
    const m = /^\s*(\d+)\s+(\S+)\s+(\S+)\s+(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    out.push({
      pid: Number(m[1]),
      state: m[2]![0]!,
      wchan: m[3] === "-" ? "" : m[3]!,
      cpuSeconds: Number(m[4]),
      command: m[5]!.slice(0, 120),
    });
  }
  return out;
}

interface ProcStats {
  command: string;
  samples: number;
  running: number;
  disk: number;
  waits: Map<string, number>;
  cpuStart: number;
  cpuEnd: number;
}

/** Samples the processes of session `sid` for `duration`; returns the text report. */
export async function sampleSession(
  sid: number,
  duration: Duration,
  signal: AbortSignal,
): Promise<string> {
  const stats = new Map<number, ProcStats>();
  const end = performance.now() + duration;
  let rounds = 0;
  let viaPs = false;
  let period = PERIOD;
  while (performance.now() < end && !signal.aborted) {
    rounds++;
    let samples: ProcSample[];
    if (viaPs) samples = await psSnapshot(sid);
    else {
      try {
        samples = procSnapshot(sid);
      } catch {
        // No /proc here (or not allowed to read it): ps(1), which costs a process per round.
        viaPs = true;
        period = ms(100);
        samples = await psSnapshot(sid);
      }
    }
    for (const p of samples) {
      let s = stats.get(p.pid);
      if (!s) {
        s = {
          command: p.command,
          samples: 0,
          running: 0,
          disk: 0,
          waits: new Map(),
          cpuStart: p.cpuSeconds,
          cpuEnd: p.cpuSeconds,
        };
        stats.set(p.pid, s);
      }
      s.samples++;
      s.cpuEnd = p.cpuSeconds;
      s.command = p.command;
      if (p.state === "R") s.running++;
      else if (p.state === "D") s.disk++;
      else {
        const wait = p.wchan || p.state;
        s.waits.set(wait, (s.waits.get(wait) ?? 0) + 1);
      }
    }
    await sleep(period, signal).catch(() => {});
  }
  const lines = [
    `${viaPs ? "ps" : "/proc"} sampling of session ${sid}: ${rounds} rounds every ${period} ms ` +
    `over ${(duration / 1000).toFixed(1)} s`,
    "",
    "PID      CPU-S   RUNNING  DISK   SLEEPING IN (share of samples)            COMMAND",
  ];
  for (const [pid, s] of [...stats].sort((a, b) => b[1].running - a[1].running || a[0] - b[0])) {
    const pct = (n: number) => `${Math.round((100 * n) / Math.max(1, s.samples))}%`;
    const waits = [...s.waits].sort((a, b) => b[1] - a[1]).slice(0, 3)
      .map(([w, n]) => `${w} ${pct(n)}`).join(", ");
    lines.push(
      `${String(pid).padEnd(8)} ${(s.cpuEnd - s.cpuStart).toFixed(2).padStart(6)}  ${
        pct(s.running).padStart(7)
      }  ${pct(s.disk).padStart(5)}  ${waits.padEnd(40)} ${s.command}`,
    );
  }
  return lines.join("\n") + "\n";
}

/** The session's processes and their command lines, from /proc or ps; [] when neither works. */
async function sessionCommands(sid: number): Promise<{ pid: number; command: string }[]> {
  try {
    return sessionPids(sid).map((pid) => ({ pid, command: cmdline(pid) }));
  } catch {
    return await psSnapshot(sid).catch(() => []);
  }
}

/** Profiles session `sid` (whose environment's PATH is `path`) for `duration`. */
export async function profileSession(
  sid: number,
  path: string | undefined,
  cwd: string,
  duration: Duration,
  signal: AbortSignal,
): Promise<ProfileTaskResponse> {
  const commands = await sessionCommands(sid);
  const python = commands.find((c) => /python/.test(c.command.split(" ")[0] ?? ""))?.pid;
  let note = "";
  if (python !== undefined) {
    const pySpy = resolveProgram("py-spy", path, cwd) ??
      resolveProgram("py-spy", Deno.env.get("PATH"), cwd);
    if (pySpy) {
      const out = await Deno.makeTempFile({ prefix: "iris-profile-", suffix: ".json" });
      try {
        const res = await new Deno.Command(pySpy, {
          args: [
            "record",
            "--pid",
            String(python),
            "--duration",
            String(Math.max(1, Math.round(duration / 1000))),
            "--format",
            "speedscope",
            "--output",
            out,
            "--nonblocking",
          ],
          stdout: "null",
          stderr: "piped",
          signal: AbortSignal.any([signal, AbortSignal.timeout(duration + seconds(30))]),
        }).output();
        if (res.success) {
          return create(ProfileTaskResponseSchema, {
            profile: await Deno.readFile(out),
            format: "speedscope",
            method: "py-spy",
          });
        }
        note = `py-spy failed (${
          new TextDecoder().decode(res.stderr).trim().split("\n").at(-1)
        }); used /proc sampling`;
      } finally {
        await Deno.remove(out).catch(() => {});
      }
    } else {
      note = "py-spy is not installed on this worker: used /proc sampling (install py-spy for " +
        "Python stacks)";
    }
  } else if (commands.some((c) => /\bdeno\b/.test(c.command.split(" ")[0] ?? ""))) {
    note = "Deno's --cpu-prof must be given when a process starts: used /proc sampling";
  }
  const text = await sampleSession(sid, duration, signal);
  return create(ProfileTaskResponseSchema, {
    profile: new TextEncoder().encode(text),
    format: "text",
    method: "proc-sampling",
    note,
  });
}
