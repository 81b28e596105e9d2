/**
 * `iris task profile` on the worker: a CPU profile of a running task's processes. Uses py-spy
 * for a Python process when py-spy is installed (a speedscope profile), and otherwise samples
 * /proc every 20 ms: per process, the share of samples it was running, sleeping (with the kernel
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

/** Pids whose session is `sid`, from /proc. */
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

interface ProcStats {
  command: string;
  samples: number;
  running: number;
  disk: number;
  waits: Map<string, number>;
  cpuStart: number;
  cpuEnd: number;
}

function cmdline(pid: number): string {
  const raw = read(`/proc/${pid}/cmdline`);
  return raw ? raw.split("\0").filter((s) => s).join(" ").slice(0, 120) : "?";
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
  while (performance.now() < end && !signal.aborted) {
    rounds++;
    for (const pid of sessionPids(sid)) {
      const stat = read(`/proc/${pid}/stat`);
      if (!stat) continue;
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const state = f[0] ?? "?";
      const cpu = (Number(f[11]) + Number(f[12])) / USER_HZ;
      let s = stats.get(pid);
      if (!s) {
        s = {
          command: cmdline(pid),
          samples: 0,
          running: 0,
          disk: 0,
          waits: new Map(),
          cpuStart: cpu,
          cpuEnd: cpu,
        };
        stats.set(pid, s);
      }
      s.samples++;
      s.cpuEnd = cpu;
      if (state === "R") s.running++;
      else if (state === "D") s.disk++;
      else {
        const wchan = read(`/proc/${pid}/wchan`)?.trim() || state;
        s.waits.set(wchan, (s.waits.get(wchan) ?? 0) + 1);
      }
    }
    await sleep(PERIOD, signal).catch(() => {});
  }
  const lines = [
    `/proc sampling of session ${sid}: ${rounds} rounds every ${PERIOD} ms over ${
      (duration / 1000).toFixed(1)
    } s`,
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

/** Profiles session `sid` (whose environment's PATH is `path`) for `duration`. */
export async function profileSession(
  sid: number,
  path: string | undefined,
  cwd: string,
  duration: Duration,
  signal: AbortSignal,
): Promise<ProfileTaskResponse> {
  const python = sessionPids(sid).find((pid) => /python/.test(cmdline(pid).split(" ")[0] ?? ""));
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
  } else if (sessionPids(sid).some((pid) => /\bdeno\b/.test(cmdline(pid).split(" ")[0] ?? ""))) {
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
