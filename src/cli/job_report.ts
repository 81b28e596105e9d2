/**
 * `iris job summary ID` (a per-task table: state, attempts, worker, duration, peak memory) and
 * `iris job bug-report ID` (one directory or .tar.gz with the spec, states, every attempt, the
 * logs, the worker statuses and the scheduler's view), over the controller's RPCs only.
 * @module
 */
import { toJson } from "@bufbuild/protobuf";
import { packDirectory } from "../bundle/mod.ts";
import {
  controllerClient,
  GetAutoscalerStatusResponseSchema,
  GetJobStatusResponseSchema,
  GetWorkerStatusResponseSchema,
  type LogLine,
  TaskState,
  type TaskStatus,
} from "../rpc/mod.ts";
import { jobStateName, taskStateName } from "../controller/mod.ts";
import { ms } from "../time.ts";
import { formatDuration } from "../format.ts";
import { describeError } from "../errors.ts";
import { bool, type CommandSpec, formatBytes, str, table, UsageError } from "./args.ts";
import { cliToken, CONTROLLER_OPTION, controllerUrl, TOKEN_FILE_OPTION } from "./job.ts";

const ACTIVE = new Set([TaskState.ASSIGNED, TaskState.BUILDING, TaskState.RUNNING]);

/** The highest memory any attempt of `task` reached (bytes; 0 when never measured). */
export function peakMemory(task: TaskStatus): number {
  return Math.max(
    0,
    task.resourceUsage?.peakMemoryBytes ?? 0,
    ...task.attempts.map((a) => a.peakMemoryBytes),
  );
}

/** Time `task` has run, over all its attempts (running ones up to `now`). */
export function runTime(task: TaskStatus, now = Date.now()): number {
  let total = 0;
  for (const a of task.attempts) {
    if (!a.startedAtMs) continue;
    const end = a.finishedAtMs || (ACTIVE.has(a.state) ? now : a.startedAtMs);
    total += Math.max(0, end - a.startedAtMs);
  }
  return total;
}

/** The rows of `iris job summary`. */
export function summaryRows(tasks: readonly TaskStatus[], now = Date.now()): string[][] {
  return tasks.map((t) => [
    String(t.index),
    taskStateName(t.state),
    String(t.attempts.length),
    t.workerId || "-",
    t.attempts.some((a) => a.startedAtMs) ? formatDuration(ms(runTime(t, now))) : "-",
    peakMemory(t) ? formatBytes(peakMemory(t)) : "-",
    t.state === TaskState.PENDING && t.pendingReason?.message
      ? t.pendingReason.message
      : t.error || (t.exitCode ? `exit ${t.exitCode}` : ""),
  ]);
}

const summaryCommand: CommandSpec = {
  name: "job summary",
  summary: "A per-task table of a job: state, attempts, worker, run time, peak memory.",
  usage: "job summary JOB_ID [--json]",
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    json: { type: "boolean", description: "Print the tasks as JSON" },
  },
  positionals: { min: 1, max: 1, names: "JOB_ID" },
  examples: ["iris job summary /alice/train"],
  async run(p, io, signal) {
    const client = controllerClient(controllerUrl(p), { token: cliToken(p) });
    const jobId = p.positionals[0]!;
    const res = await client.getJobStatus({ jobId }, { signal });
    const job = res.job!;
    const now = Date.now();
    if (bool(p, "json")) {
      io.out(
        JSON.stringify(
          res.tasks.map((t) => ({
            taskId: t.taskId,
            state: taskStateName(t.state),
            attempts: t.attempts.length,
            workerId: t.workerId,
            runTimeMs: runTime(t, now),
            peakMemoryBytes: peakMemory(t),
            exitCode: t.exitCode,
            error: t.error,
          })),
          null,
          2,
        ) + "\n",
      );
      return 0;
    }
    const wall = job.startedAtMs
      ? formatDuration(ms((job.finishedAtMs || now) - job.startedAtMs))
      : "-";
    io.out(
      `${job.jobId}  ${jobStateName(job.state)}  ${res.tasks.length} task(s)  wall ${wall}  ` +
        `peak ${formatBytes(Math.max(0, ...res.tasks.map(peakMemory)))}\n\n`,
    );
    io.out(
      table(
        ["TASK", "STATE", "ATTEMPTS", "WORKER", "RUN TIME", "PEAK MEM", "NOTE"],
        summaryRows(res.tasks, now),
      ),
    );
    return 0;
  },
};

function logText(lines: readonly LogLine[]): string {
  return lines.map((l) =>
    `${new Date(l.timestampMs).toISOString()} [${l.taskId.slice(l.taskId.lastIndexOf("/") + 1)}` +
    `#${l.attemptId} ${l.stream}] ${l.text}`
  ).join("\n") + (lines.length ? "\n" : "");
}

const bugReportCommand: CommandSpec = {
  name: "job bug-report",
  summary: "Write one archive (directory or .tar.gz) with everything about a job for a bug.",
  usage: "job bug-report JOB_ID [--out PATH] [--tar]",
  description: "Collects job.json (spec, state, tasks with every attempt and pending reasons), " +
    "logs.txt (every line of every attempt), workers.json (the status of each worker an " +
    "attempt ran on), scheduler.json (pending reasons, autoscaler and controller status) and " +
    "README.txt. Writes a directory, or with --tar (or an --out ending in .tar.gz) one gzip'd " +
    "tar archive. Parts that cannot be fetched are noted in errors.txt instead of failing.",
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    out: {
      type: "string",
      value: "PATH",
      description: "Where to write (default: ./iris-bug-<job>-<time>[.tar.gz])",
    },
    tar: { type: "boolean", description: "Write a .tar.gz instead of a directory" },
  },
  positionals: { min: 1, max: 1, names: "JOB_ID" },
  examples: ["iris job bug-report /alice/train --tar"],
  async run(p, io, signal) {
    const client = controllerClient(controllerUrl(p), { token: cliToken(p) });
    const jobId = p.positionals[0]!;
    const status = await client.getJobStatus({ jobId }, { signal });
    const outFlag = str(p, "out");
    const tar = bool(p, "tar") || (outFlag?.endsWith(".tar.gz") ?? false);
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    const base = outFlag?.replace(/\.tar\.gz$/, "") ??
      `iris-bug-${jobId.replace(/^\//, "").replace(/[^\w.-]+/g, "_")}-${stamp}`;
    const target = tar ? `${base}.tar.gz` : base;
    try {
      await Deno.lstat(target);
      throw new UsageError(`${target} exists; choose another --out`);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    const dir = tar ? await Deno.makeTempDir({ prefix: "iris-bug-" }) : base;
    const errors: string[] = [];
    const attempt = async <T>(what: string, f: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await f();
      } catch (err) {
        errors.push(`${what}: ${describeError(err)}`);
        return undefined;
      }
    };
    try {
      if (!tar) await Deno.mkdir(dir, { recursive: true });
      const write = (name: string, text: string) => Deno.writeTextFile(`${dir}/${name}`, text);
      const json = (v: unknown) => JSON.stringify(v, null, 2) + "\n";
      // Tasks with their usage history (ListTasks), under the job status.
      const tasks = await attempt(
        "ListTasks",
        () => client.listTasks({ jobId, includeUsageHistory: true }, { signal }),
      );
      if (tasks) status.tasks = tasks.tasks;
      await write("job.json", json(toJson(GetJobStatusResponseSchema, status)));
      const logs = await attempt("GetTaskLogs", async () => {
        const out: LogLine[] = [];
        let cursor = 0;
        while (true) {
          const page = await client.getTaskLogs(
            { id: jobId, cursor, maxLines: 10_000 },
            { signal },
          );
          out.push(...page.lines);
          if (page.lines.length < 10_000) return out;
          cursor = Number(page.nextCursor);
        }
      });
      await write("logs.txt", logText(logs ?? []));
      const workerIds = [
        ...new Set(status.tasks.flatMap((t) => [t.workerId, ...t.attempts.map((a) => a.workerId)])),
      ].filter((w) => w).sort();
      const workers: Record<string, unknown> = {};
      for (const id of workerIds) {
        const w = await attempt(
          `GetWorkerStatus ${id}`,
          () => client.getWorkerStatus({ workerId: id }, { signal }),
        );
        workers[id] = w ? toJson(GetWorkerStatusResponseSchema, w) : null;
      }
      await write("workers.json", json(workers));
      const autoscaler = await attempt(
        "GetAutoscalerStatus",
        () => client.getAutoscalerStatus({}, { signal }),
      );
      const controller = await attempt(
        "GetControllerStatus",
        () => client.getControllerStatus({}, { signal }),
      );
      await write(
        "scheduler.json",
        json({
          job: {
            state: jobStateName(status.job!.state),
            pendingReason: status.job!.pendingReason ?? null,
            effectivePriority: status.job!.effectivePriority,
            priorityReason: status.job!.priorityReason,
          },
          tasks: status.tasks.map((t) => ({
            taskId: t.taskId,
            state: taskStateName(t.state),
            pendingReason: t.pendingReason
              ? { code: t.pendingReason.code, message: t.pendingReason.message }
              : null,
          })),
          autoscaler: autoscaler ? toJson(GetAutoscalerStatusResponseSchema, autoscaler) : null,
          controller: controller
            ? {
              version: controller.version,
              healthy: controller.healthy,
              statusMessage: controller.statusMessage,
              jobCount: controller.jobCount,
              workerCount: controller.workerCount,
              recentLogs: controller.recentLogs,
            }
            : null,
        }),
      );
      if (errors.length) await write("errors.txt", errors.join("\n") + "\n");
      await write(
        "README.txt",
        [
          `Iris bug report for ${jobId}`,
          `Written ${new Date().toISOString()} from ${controllerUrl(p)}`,
          `Job state: ${jobStateName(status.job!.state)}; ${status.tasks.length} task(s)`,
          "",
          "job.json        spec, state, tasks with every attempt (GetJobStatus + ListTasks)",
          "logs.txt        every log line of every attempt (GetTaskLogs)",
          "workers.json    status of each worker an attempt ran on (GetWorkerStatus)",
          "scheduler.json  pending reasons, autoscaler and controller status",
          ...(errors.length ? ["errors.txt      parts that could not be fetched"] : []),
          "",
        ].join("\n"),
      );
      if (tar) {
        const packed = await packDirectory(dir, { maxBytes: 1024 ** 3 });
        await Deno.writeFile(target, packed.data, { createNew: true });
      }
    } finally {
      if (tar) await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
    io.out(`${target}\n`);
    if (errors.length) {
      io.err(`some parts could not be fetched (see errors.txt):\n${errors.join("\n")}\n`);
    }
    return 0;
  },
};

/** `iris job summary` and `iris job bug-report`. */
export const jobReportCommands: readonly CommandSpec[] = [summaryCommand, bugReportCommand];
