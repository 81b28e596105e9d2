/**
 * `iris job run|list|status|logs|cancel`: job commands over the client API only.
 * @module
 */
import { envToken, IrisClient } from "../client/client.ts";
import { readTokenFile } from "../auth/tokens.ts";
import {
  type ConstraintInput,
  type JobRequest,
  multiHostTpuDefaults,
} from "../client/job_request.ts";
import { JobState, type JobStatus, type LogLine, TaskState } from "../rpc/mod.ts";
import { jobStateName, parseJobState, taskStateName } from "../controller/job_rules.ts";
import { levelRank, LOG_LEVELS } from "../controller/logs.ts";
import { JOB_SORT_KEYS } from "../controller/job_query.ts";
import { type Duration, formatDuration, ms, parseDuration, seconds } from "../time.ts";
import {
  bool,
  type CommandSpec,
  formatBytes,
  num,
  type OptionSpec,
  type Parsed,
  parseSize,
  str,
  strs,
  table,
  UsageError,
} from "./args.ts";
import { environmentFromFlags, PYTHON_OPTIONS, warnPythonMismatch } from "./python.ts";

/** The --controller option shared by client commands. */
export const CONTROLLER_OPTION: OptionSpec = {
  type: "string",
  short: "c",
  value: "URL",
  description: "Controller URL (default: $IRIS_CONTROLLER_URL, else http://127.0.0.1:10000)",
};

/** The --token-file option shared by client commands. */
export const TOKEN_FILE_OPTION: OptionSpec = {
  type: "string",
  value: "FILE",
  description: "File holding the API token (default: $IRIS_TOKEN); never pass a token itself",
};

/** The API token from --token-file, else IRIS_TOKEN, else none. */
export function cliToken(p: { values: Record<string, unknown> }): string | undefined {
  const file = p.values["token-file"];
  if (typeof file === "string") {
    try {
      return readTokenFile("--token-file", file);
    } catch (err) {
      throw new UsageError(err instanceof Error ? err.message : String(err));
    }
  }
  return envToken();
}

/** Where clients look for a controller when neither --controller nor IRIS_CONTROLLER_URL is set. */
export const DEFAULT_CONTROLLER_URL = "http://127.0.0.1:10000";

/** The controller URL from flags or environment. */
export function controllerUrl(p: { values: Record<string, unknown> }): string {
  const flag = p.values.controller;
  const url = typeof flag === "string"
    ? flag
    : Deno.env.get("IRIS_CONTROLLER_URL") || DEFAULT_CONTROLLER_URL;
  try {
    const u = new URL(url);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error();
  } catch {
    throw new UsageError(`--controller must be an http(s) URL (got ${JSON.stringify(url)})`);
  }
  return url;
}

function formatLine(line: LogLine, multiTask: boolean): string {
  const prefix = multiTask ? `[${line.taskId.slice(line.taskId.lastIndexOf("/") + 1)}] ` : "";
  return line.stream === "system" ? `${prefix}[iris] ${line.text}` : `${prefix}${line.text}`;
}

function age(fromMs: number, toMs = Date.now()): string {
  return fromMs ? formatDuration(ms(Math.max(0, toMs - fromMs))) : "-";
}

function countsText(job: JobStatus): string {
  return Object.entries(job.taskStateCounts).map(([k, v]) => `${v} ${k}`).join(", ");
}

type PriorityName = NonNullable<JobRequest["priority"]>;
const PRIORITY_BANDS: readonly PriorityName[] = ["production", "interactive", "batch"];

/** A duration flag ("30s", "10m"), or undefined when absent. */
function durationFlag(p: Parsed, name: string): Duration | undefined {
  const raw = str(p, name);
  if (raw === undefined) return undefined;
  const d = parseDuration(raw);
  if (d === undefined) {
    throw new UsageError(
      `--${name} must be a duration like 30s or 10m (got ${JSON.stringify(raw)})`,
    );
  }
  return d;
}

/** A client for CLI use: gives up on an unreachable controller after 3 s. */
export function cliClient(p: { values: Record<string, unknown> }): IrisClient {
  return new IrisClient(controllerUrl(p), { retryFor: seconds(3), token: cliToken(p) ?? "" });
}

/** Exit code that mirrors a finished job. */
export function jobExitCode(job: JobStatus): number {
  if (job.state === JobState.SUCCEEDED) return 0;
  if (job.state === JobState.FAILED) {
    return job.exitCode > 0 && job.exitCode < 256 ? job.exitCode : 1;
  }
  if (job.state === JobState.KILLED) return 130;
  return 1;
}

const runCommand: CommandSpec = {
  name: "job run",
  summary: "Submit a command as a job; by default wait for it and stream its logs.",
  usage: "job run [options] -- COMMAND [ARGS...]",
  description:
    "The exit code mirrors the job: 0 when it succeeds, the task's exit code when it fails, 130 when killed.\n" +
    "Ctrl-C while waiting cancels the job (use --detach to submit and return).",
  positionals: { min: 0, max: 1000, names: "COMMAND" },
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    name: {
      type: "string",
      short: "n",
      value: "NAME",
      description: "Job name (default: the command name and a timestamp)",
    },
    cpu: {
      type: "string",
      value: "CORES",
      description: "CPU cores per task, e.g. 0.5",
      default: "1",
    },
    memory: {
      type: "string",
      value: "SIZE",
      description: "Memory per task, e.g. 512MiB, 2GB",
      default: "256MiB",
    },
    replicas: {
      type: "string",
      short: "r",
      value: "N",
      description:
        "Number of tasks (default 1; a multi-host --tpu variant defaults to its host count)",
    },
    env: {
      type: "string",
      short: "e",
      value: "KEY=VALUE",
      multiple: true,
      description: "Environment variable for the tasks",
    },
    tpu: {
      type: "string",
      value: "VARIANT",
      description:
        "Run on TPU workers of this variant, e.g. v5litepod-16 (a multi-host variant runs one task per host, coscheduled on one slice)",
    },
    region: {
      type: "string",
      value: "REGION",
      multiple: true,
      description: "Only workers in this region (repeat for any of several)",
    },
    zone: { type: "string", value: "ZONE", description: "Only workers in this zone" },
    priority: {
      type: "string",
      value: "BAND",
      description:
        "production, interactive (default) or batch; a higher band may preempt lower ones",
    },
    "scheduling-timeout": {
      type: "string",
      value: "DURATION",
      description: "Give up (UNSCHEDULABLE) when a task waits this long for a worker, e.g. 10m",
    },
    "max-retries": {
      type: "string",
      value: "N",
      description: "Retries after a task fails",
      default: "0",
    },
    timeout: {
      type: "string",
      value: "DURATION",
      description: "Per-task time limit, e.g. 30s, 10m",
    },
    user: {
      type: "string",
      value: "USER",
      description: "Submit as this user (env IRIS_USER, else $USER)",
    },
    workspace: {
      type: "string",
      short: "w",
      value: "DIR",
      description: "Ship DIR (minus .irisignore entries) to the tasks' working directory",
    },
    module: {
      type: "string",
      short: "m",
      value: "PATH",
      description:
        "Run PATH (a .ts file in --workspace) under scoped Deno permissions; its arguments go after --",
    },
    detach: {
      type: "boolean",
      short: "d",
      description: "Print the job id and return without waiting",
    },
    ...PYTHON_OPTIONS,
  },
  examples: [
    "iris job run -- echo hello",
    "iris job run --replicas 3 --cpu 0.5 -- sh -c 'echo task $IRIS_TASK_INDEX'",
    "iris job run --detach --name sleeper -- sleep 1000",
  ],
  async run(p, io, signal) {
    const command = p.rest.length ? p.rest : p.positionals;
    const modulePath = str(p, "module");
    const workspace = str(p, "workspace");
    if (modulePath && !workspace) {
      throw new UsageError(
        "--module needs --workspace DIR (the module is run from the shipped workspace)",
      );
    }
    if (!modulePath && (command.length === 0 || command[0] === "")) {
      throw new UsageError("missing COMMAND (put it after --)");
    }
    const cpu = num(p, "cpu", { min: 0, max: 1024 })!;
    const memRaw = str(p, "memory")!;
    const memory = parseSize(memRaw);
    if (memory === undefined) {
      throw new UsageError(
        `--memory must be a size like 512MiB or 2GB (got ${JSON.stringify(memRaw)})`,
      );
    }
    const retries = num(p, "max-retries", { min: 0, max: 1000, integer: true })!;
    const timeout = durationFlag(p, "timeout");
    const schedulingTimeout = durationFlag(p, "scheduling-timeout");
    const priority = str(p, "priority");
    if (priority !== undefined && !PRIORITY_BANDS.includes(priority as PriorityName)) {
      throw new UsageError(
        `--priority must be one of ${PRIORITY_BANDS.join(", ")} (got ${JSON.stringify(priority)})`,
      );
    }
    const constraints: ConstraintInput[] = [];
    const regions = strs(p, "region");
    if (regions.length === 1) constraints.push({ key: "region", op: "eq", value: regions[0]! });
    if (regions.length > 1) constraints.push({ key: "region", op: "in", values: regions });
    const zone = str(p, "zone");
    if (zone !== undefined) constraints.push({ key: "zone", op: "eq", value: zone });
    const env: Record<string, string> = {};
    for (const kv of strs(p, "env")) {
      const i = kv.indexOf("=");
      if (i <= 0) throw new UsageError(`--env must be KEY=VALUE (got ${JSON.stringify(kv)})`);
      env[kv.slice(0, i)] = kv.slice(i + 1);
    }
    const tpu = str(p, "tpu");
    const accelerator = tpu ? { kind: "tpu" as const, variant: tpu } : undefined;
    const replicas = num(p, "replicas", { min: 1, max: 10_000, integer: true }) ??
      multiHostTpuDefaults(accelerator)?.replicas ?? 1;
    const base = (modulePath ?? command[0]!).split("/").pop()!.replace(/[^A-Za-z0-9._-]/g, "") ||
      "job";
    const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace(
      "T",
      "-",
    );
    const request: JobRequest = {
      name: str(p, "name") ?? `${base}-${stamp}-${crypto.randomUUID().slice(0, 4)}`,
      ...(modulePath ? { module: { path: modulePath, args: command } } : { command }),
      cpu,
      memory,
      replicas,
      env,
      maxRetriesFailure: retries,
      timeout,
      schedulingTimeout,
      priority: priority as PriorityName | undefined,
      constraints,
      user: str(p, "user") ?? Deno.env.get("IRIS_USER") ?? Deno.env.get("USER") ?? undefined,
      accelerator,
      environment: environmentFromFlags(p),
    };
    const client = cliClient(p);
    await warnPythonMismatch(client, request, io.err);
    if (workspace) {
      const bundleId = await client.uploadWorkspace(workspace);
      io.err(`Uploaded workspace ${workspace} as ${bundleId}\n`);
      Object.assign(request, { bundleId });
    }
    const jobId = await client.submit(request);
    if (bool(p, "detach")) {
      io.out(jobId + "\n");
      return 0;
    }
    io.err(`Submitted ${jobId}\n`);
    const onAbort = () => client.cancel(jobId, "interrupted (Ctrl-C)").catch(() => {});
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      let last = "";
      const job = await client.wait(jobId, {
        onLog: (line) =>
          (line.stream === "stderr" ? io.err : io.out)(formatLine(line, replicas > 1) + "\n"),
        onProgress: (j) => {
          const text = j.state === JobState.PENDING && j.pendingReason?.message
            ? `pending: ${j.pendingReason.message}`
            : "";
          if (text && text !== last) io.err(`[iris] ${text}\n`);
          last = text;
        },
        signal,
      });
      const took = job.finishedAtMs && job.submittedAtMs
        ? ` in ${age(job.submittedAtMs, job.finishedAtMs)}`
        : "";
      io.err(
        `Job ${jobId} ${jobStateName(job.state)}${took}${job.error ? `: ${job.error}` : ""}\n`,
      );
      return jobExitCode(job);
    } catch (err) {
      if (signal.aborted) {
        await onAbort();
        io.err(`Cancelled ${jobId}\n`);
        return 130;
      }
      throw err;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  },
};

const listCommand: CommandSpec = {
  name: "job list",
  summary: "List jobs.",
  usage:
    "job list [--state STATE] [--prefix PREFIX] [--user USER] [--name TEXT] [--sort KEY [--desc]] [--json]",
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    state: {
      type: "string",
      value: "STATE",
      multiple: true,
      description: "Only jobs in this state (pending, running, succeeded, failed, killed, …)",
    },
    prefix: {
      type: "string",
      value: "PREFIX",
      description: "Only jobs whose id starts with PREFIX",
    },
    user: { type: "string", value: "USER", description: "Only jobs of this user" },
    name: { type: "string", value: "TEXT", description: "Only jobs whose id contains TEXT" },
    sort: {
      type: "string",
      value: "KEY",
      description: "Order by name, state, user, tasks, age or duration (default: submission order)",
    },
    desc: { type: "boolean", description: "Reverse the --sort order" },
    limit: { type: "string", value: "N", description: "At most N jobs", default: "200" },
    json: { type: "boolean", description: "Print JSON lines" },
  },
  async run(p, io) {
    const sortBy = str(p, "sort");
    if (sortBy !== undefined && !(JOB_SORT_KEYS as readonly string[]).includes(sortBy)) {
      throw new UsageError(
        `--sort must be one of ${JOB_SORT_KEYS.join(", ")} (got ${JSON.stringify(sortBy)})`,
      );
    }
    const states = strs(p, "state").map((s) => {
      const st = parseJobState(s);
      if (st === undefined) throw new UsageError(`--state: unknown state ${JSON.stringify(s)}`);
      return st;
    });
    const limit = num(p, "limit", { min: 1, max: 5000, integer: true })!;
    const client = cliClient(p);
    const { jobs, total } = await client.list({
      prefix: str(p, "prefix"),
      states,
      limit,
      user: str(p, "user"),
      nameContains: str(p, "name"),
      sortBy,
      descending: bool(p, "desc"),
    });
    if (bool(p, "json")) {
      for (const j of jobs) {
        io.out(
          JSON.stringify({
            job_id: j.jobId,
            state: jobStateName(j.state),
            tasks: j.taskStateCounts,
            submitted_at_ms: j.submittedAtMs,
            error: j.error,
          }) + "\n",
        );
      }
      return 0;
    }
    const rows = jobs.map((j) => [
      j.jobId,
      jobStateName(j.state),
      countsText(j),
      age(j.submittedAtMs),
      j.state === JobState.PENDING ? (j.pendingReason?.message ?? "") : j.error,
    ]);
    io.out(table(["JOB", "STATE", "TASKS", "AGE", "REASON"], rows));
    if (total > jobs.length) io.out(`(${total - jobs.length} more; use --limit)\n`);
    return 0;
  },
};

const statusCommand: CommandSpec = {
  name: "job status",
  summary: "Show a job, its tasks, attempts and why it is pending.",
  usage: "job status JOB_ID [--json]",
  positionals: { min: 1, max: 1, names: "JOB_ID" },
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    json: { type: "boolean", description: "Print JSON" },
  },
  async run(p, io) {
    const client = cliClient(p);
    const { job, tasks } = await client.status(p.positionals[0]!);
    if (!job) return 1;
    if (bool(p, "json")) {
      io.out(
        JSON.stringify({
          job_id: job.jobId,
          state: jobStateName(job.state),
          error: job.error,
          pending_reason: job.pendingReason?.message ?? "",
          tasks: tasks.map((t) => ({
            task_id: t.taskId,
            state: taskStateName(t.state),
            worker_id: t.workerId,
            exit_code: t.exitCode,
            attempts: t.attempts.length,
            pending_reason: t.pendingReason?.code ?? "",
          })),
        }) + "\n",
      );
      return 0;
    }
    const r = job.spec?.resources;
    io.out(
      `Job:       ${job.jobId}\nState:     ${jobStateName(job.state)}\nUser:      ${job.user}\n`,
    );
    io.out(`Submitted: ${age(job.submittedAtMs)} ago\nTasks:     ${countsText(job)}\n`);
    io.out(
      `Resources: ${(r?.cpuMillicores ?? 0) / 1000} cpu, ${
        formatBytes(r?.memoryBytes ?? 0)
      } memory${r?.accelerator?.variant ? `, ${r.accelerator.variant}` : ""}\n`,
    );
    if (job.pendingReason?.message) {
      io.out(`Pending:   ${job.pendingReason.code}: ${job.pendingReason.message}\n`);
    }
    if (job.error) io.out(`Error:     ${job.error}\n`);
    io.out(
      "\n" + table(
        ["TASK", "STATE", "WORKER", "ATTEMPTS", "EXIT", "DETAIL"],
        tasks.map((t) => [
          String(t.index),
          taskStateName(t.state),
          t.workerId || "-",
          String(t.attempts.length),
          t.state === TaskState.FAILED || t.state === TaskState.SUCCEEDED
            ? String(t.exitCode)
            : "-",
          t.state === TaskState.PENDING ? (t.pendingReason?.message ?? "") : t.error,
        ]),
      ),
    );
    return 0;
  },
};

const logsCommand: CommandSpec = {
  name: "job logs",
  summary: "Print the logs of a job or one task; --follow keeps streaming until the job ends.",
  usage:
    "job logs JOB_OR_TASK_ID [-f] [--grep TEXT] [--level LEVEL] [--since DURATION] [--tail N] [--max-lines N]",
  positionals: { min: 1, max: 1, names: "JOB_OR_TASK_ID" },
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    follow: {
      type: "boolean",
      short: "f",
      description: "Keep streaming new lines until the job finishes",
    },
    grep: { type: "string", value: "TEXT", description: "Only lines containing TEXT" },
    level: {
      type: "string",
      value: "LEVEL",
      description: "Only lines at LEVEL or above: debug, info, warning, error, critical",
    },
    since: {
      type: "string",
      value: "DURATION",
      description: "Only lines from the last DURATION, e.g. 10m",
    },
    tail: {
      type: "string",
      value: "N",
      description: "Start with the last N matching lines (then follow with -f)",
    },
    "max-lines": {
      type: "string",
      value: "N",
      description: "Stop after printing N lines",
    },
  },
  examples: [
    "iris job logs /alice/train -f",
    "iris job logs /alice/train/0 --level warning --since 10m",
    "iris job logs /alice/train --tail 50 -f",
  ],
  async run(p, io, signal) {
    const client = cliClient(p);
    const id = p.positionals[0]!;
    const minLevel = str(p, "level") ?? "";
    try {
      levelRank(minLevel);
    } catch {
      throw new UsageError(
        `--level must be one of ${LOG_LEVELS.join(", ")} (got ${JSON.stringify(minLevel)})`,
      );
    }
    const since = durationFlag(p, "since");
    const tail = num(p, "tail", { min: 1, max: 100_000, integer: true });
    const maxLines = num(p, "max-lines", { min: 1, max: 10_000_000, integer: true });
    const isTask = /\/\d+$/.test(id);
    const { tasks } = await client.status(isTask ? id.slice(0, id.lastIndexOf("/")) : id)
      .catch(() => client.status(id));
    const multi = !isTask && tasks.length > 1;
    let printed = 0;
    await client.streamLogs(id, {
      substring: str(p, "grep"),
      minLevel,
      sinceMs: since === undefined ? 0 : Date.now() - since,
      tail,
      follow: bool(p, "follow"),
      signal,
      onLine: (line) => {
        if (maxLines !== undefined && printed >= maxLines) return false;
        (line.stream === "stderr" ? io.err : io.out)(formatLine(line, multi) + "\n");
        printed++;
      },
    });
    return 0;
  },
};

const cancelCommand: CommandSpec = {
  name: "job cancel",
  summary: "Cancel a job and its child jobs; running tasks are killed.",
  usage: "job cancel JOB_ID",
  positionals: { min: 1, max: 1, names: "JOB_ID" },
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    reason: { type: "string", value: "TEXT", description: "Reason recorded with the job" },
  },
  async run(p, io) {
    const client = cliClient(p);
    const ids = await client.cancel(p.positionals[0]!, str(p, "reason") ?? "cancelled by user");
    io.out(
      ids.length
        ? `Cancelled ${ids.join(", ")}\n`
        : `Nothing to cancel: ${p.positionals[0]} already finished\n`,
    );
    return 0;
  },
};

/** Job commands. */
export const jobCommands: readonly CommandSpec[] = [
  runCommand,
  listCommand,
  statusCommand,
  logsCommand,
  cancelCommand,
];
