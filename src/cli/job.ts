/**
 * `iris job run|list|status|logs|cancel`: job commands over the client API only.
 * @module
 */
import {
  type ConstraintInput,
  defaultUser,
  envToken,
  envUser,
  IrisClient,
  isFinished,
  type JobRequest,
  multiHostTpuDefaults,
  resolveJobId,
} from "../client/mod.ts";
import { formatCpu, formatDuration, oneLine } from "../format.ts";
import { fileError, readJobFile } from "./job_file.ts";
import { readCurrentCluster } from "./current_cluster.ts";
import { readTokenFile } from "../auth/mod.ts";
import { storedToken } from "./credentials.ts";
import { environmentFromFlags, PYTHON_OPTIONS, warnPythonMismatch } from "./python.ts";
import { peakDeviceMemory, peakDeviceMemoryLine } from "./device_status.ts";
import { parseReserve, RESERVE_OPTION } from "./reserve.ts";
import { parseAcceleratorFlags } from "./accelerator_flags.ts";
import {
  controllerClient,
  JobState,
  type JobStatus,
  type LogLine,
  TaskState,
  type TaskStatus,
} from "../rpc/mod.ts";
import {
  JOB_SORT_KEYS,
  jobStateName,
  levelRank,
  LOG_LEVELS,
  parseJobState,
  taskStateName,
} from "../controller/mod.ts";
import { type Duration, ms, parseDuration, seconds, sleep } from "../time.ts";
import { INTERACTIVE_OPTIONS, interactiveFlags, runSession } from "./interactive.ts";
import {
  bool,
  type CommandSpec,
  formatBytes,
  interruptOf,
  type Io,
  list,
  num,
  type OptionSpec,
  type Parsed,
  parseSize,
  signalExitCode,
  str,
  strs,
  table,
  UsageError,
} from "./args.ts";

/** The --controller option shared by client commands. */
export const CONTROLLER_OPTION: OptionSpec = {
  type: "string",
  short: "c",
  value: "URL",
  description:
    "Controller URL (default: $IRIS_CONTROLLER_URL, else the cluster 'iris cluster start' recorded in $IRIS_HOME/current-cluster, else http://127.0.0.1:10000)",
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
  return envToken() ?? storedToken(controllerUrl(p));
}

/** Where clients look for a controller when neither --controller nor IRIS_CONTROLLER_URL is set. */
export const DEFAULT_CONTROLLER_URL = "http://127.0.0.1:10000";

/**
 * The controller URL: --controller, else $IRIS_CONTROLLER_URL, else the current cluster
 * (`$IRIS_HOME/current-cluster`, written by `iris cluster start`), else the default.
 */
export function controllerUrl(p: { values: Record<string, unknown> }): string {
  const flag = p.values.controller;
  const url = typeof flag === "string"
    ? flag
    : Deno.env.get("IRIS_CONTROLLER_URL") || readCurrentCluster() || DEFAULT_CONTROLLER_URL;
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

/** `job run` options: every JobRequest field has one, and a job file may set each (but the first few). */
const RUN_OPTIONS: Record<string, OptionSpec> = {
  controller: CONTROLLER_OPTION,
  "token-file": TOKEN_FILE_OPTION,
  file: {
    type: "string",
    short: "f",
    value: "FILE",
    description: "Read the job from a YAML file with the same fields as these flags (flags win)",
  },
  name: {
    type: "string",
    short: "n",
    value: "NAME",
    description: "Job name (default: the command name and a timestamp)",
  },
  cpu: { type: "string", value: "CORES", description: "CPU cores per task, e.g. 0.5 (default: 1)" },
  memory: {
    type: "string",
    value: "SIZE",
    description: "Memory per task, e.g. 512MiB, 2GB (default: 256MiB)",
  },
  disk: { type: "string", value: "SIZE", description: "Scratch disk per task, e.g. 10GiB" },
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
  gpu: {
    type: "string",
    value: "[VARIANT:]COUNT",
    description: "GPUs per task: a count (--gpu 1), a variant (--gpu a100) or both (--gpu h100:8)",
  },
  "accelerator-count": {
    type: "string",
    value: "N",
    description:
      "Devices per task for --tpu (default: the variant's chips per host) or --gpu VARIANT",
  },
  region: {
    type: "string",
    value: "REGION",
    multiple: true,
    description: "Only workers in this region (repeat or comma-list for any of several)",
  },
  zone: { type: "string", value: "ZONE", description: "Only workers in this zone" },
  constraint: {
    type: "string",
    value: "EXPR",
    multiple: true,
    description:
      "Worker attribute requirement: key=value, key!=value, key>=N, key>N, key<=N, key<N, key=a|b (any of), key (exists), !key (absent)",
  },
  prefer: {
    type: "string",
    value: "EXPR",
    multiple: true,
    description: "Like --constraint, but only preferred: a worker that matches is chosen first",
  },
  coschedule: {
    type: "string",
    value: "ATTRIBUTE",
    description:
      "Place all tasks together on workers sharing this attribute's value (\"\" turns off a TPU slice's default)",
  },
  port: {
    type: "string",
    value: "NAME",
    multiple: true,
    description: "A named port for each task; the task reads it from IRIS_PORT_<NAME>",
  },
  priority: {
    type: "string",
    value: "BAND",
    description: "production, interactive (default) or batch; a higher band may preempt lower ones",
  },
  "scheduling-timeout": {
    type: "string",
    value: "DURATION",
    description: "Give up (UNSCHEDULABLE) when a task waits this long for a worker, e.g. 10m",
  },
  "max-retries": {
    type: "string",
    value: "N",
    description: "Retries after a task fails (default: 0)",
  },
  "max-preemptions": {
    type: "string",
    value: "N",
    description: "Retries after a worker dies or the task is preempted (default: 100)",
  },
  "max-task-failures": {
    type: "string",
    value: "N",
    description: "Tasks that may fail for good before the job fails (default: 0)",
  },
  timeout: { type: "string", value: "DURATION", description: "Per-task time limit, e.g. 30s, 10m" },
  "existing-job-policy": {
    type: "string",
    value: "POLICY",
    description:
      "When a job of this name exists: error, keep (return it) or recreate (default: replace it if finished)",
  },
  reserve: RESERVE_OPTION,
  user: {
    type: "string",
    value: "USER",
    description: "Submit as this user (default: $IRIS_USER, else $USER, else the OS user)",
  },
  parent: {
    type: "string",
    value: "JOB_ID",
    description: "Make the job a child of JOB_ID (default: the enclosing task's job)",
  },
  workspace: {
    type: "string",
    short: "w",
    value: "DIR",
    description: "Ship DIR (minus .irisignore entries) to the tasks' working directory",
  },
  bundle: {
    type: "string",
    value: "ID",
    description: "Use an already uploaded workspace bundle (sha256-…) instead of --workspace",
  },
  module: {
    type: "string",
    short: "m",
    value: "PATH",
    description:
      "Run PATH (a .ts file in --workspace) under scoped Deno permissions; its arguments go after --",
  },
  "allow-read": {
    type: "string",
    value: "PATH",
    multiple: true,
    description: "--module: extra path it may read",
  },
  "allow-write": {
    type: "string",
    value: "PATH",
    multiple: true,
    description: "--module: extra path it may write",
  },
  "allow-net": {
    type: "string",
    value: "HOST",
    multiple: true,
    description: "--module: host[:port] it may reach",
  },
  "allow-env": {
    type: "string",
    value: "NAME",
    multiple: true,
    description: "--module: environment variable it may read",
  },
  detach: {
    type: "boolean",
    short: "d",
    description: "Print the job id and return without waiting",
  },
  "cancel-on-exit": {
    type: "boolean",
    description:
      "Cancel the job when this command is interrupted (Ctrl-C, SIGTERM, SIGHUP) while waiting",
  },
};

/** Parses a constraint expression (see --constraint). */
function parseConstraint(flag: string, text: string, preferred: boolean): ConstraintInput {
  const bad = () =>
    new UsageError(
      `--${flag} must look like key=value, key!=value, key>=N, key<N, key=a|b, key or !key (got ${
        JSON.stringify(text)
      })`,
    );
  const scalar = (v: string): string | number | boolean =>
    v === "true"
      ? true
      : v === "false"
      ? false
      : v.trim() !== "" && Number.isFinite(Number(v))
      ? Number(v)
      : v;
  const key = /^[A-Za-z0-9_.\-\/]+$/;
  if (text.startsWith("!") && key.test(text.slice(1))) {
    return { key: text.slice(1), op: "not_exists", preferred };
  }
  if (key.test(text)) return { key: text, op: "exists", preferred };
  const m = /^([A-Za-z0-9_.\-\/]+)\s*(!=|>=|<=|=|>|<)\s*(.+)$/.exec(text);
  if (!m) throw bad();
  const [, k, op, v] = m as unknown as [string, string, string, string];
  if (op === "=" && v.includes("|")) {
    return { key: k, op: "in", values: v.split("|").map((x) => scalar(x.trim())), preferred };
  }
  const ops = { "=": "eq", "!=": "ne", ">=": "ge", ">": "gt", "<=": "le", "<": "lt" } as const;
  const value = scalar(v.trim());
  if (op !== "=" && op !== "!=" && typeof value !== "number") throw bad();
  return { key: k, op: ops[op as keyof typeof ops], value, preferred };
}

/** A size flag, or undefined when absent. */
function sizeFlag(p: Parsed, name: string): number | undefined {
  const raw = str(p, name);
  if (raw === undefined) return undefined;
  const n = parseSize(raw);
  if (n === undefined) {
    throw new UsageError(
      `--${name} must be a size like 512MiB or 2GB (got ${JSON.stringify(raw)})`,
    );
  }
  return n;
}

const POLICY_NAMES = ["error", "keep", "recreate"] as const;

/** The JobRequest the flags (and job file values merged into them) describe. */
function requestFromFlags(p: Parsed, command: readonly string[]): JobRequest {
  const modulePath = str(p, "module");
  if (modulePath && !str(p, "workspace") && !str(p, "bundle")) {
    throw new UsageError(
      "--module needs --workspace DIR (the module is run from the shipped workspace)",
    );
  }
  if (!modulePath && (command.length === 0 || command[0] === "")) {
    throw new UsageError("missing COMMAND (put it after --, or give command: in --file)");
  }
  const cpu = num({ ...p, values: { cpu: str(p, "cpu") ?? "1" } }, "cpu", { min: 0, max: 1024 })!;
  const memory = sizeFlag({ ...p, values: { memory: str(p, "memory") ?? "256MiB" } }, "memory")!;
  const disk = sizeFlag(p, "disk");
  const retries = num(p, "max-retries", { min: 0, max: 1000, integer: true }) ?? 0;
  const preemptions = num(p, "max-preemptions", { min: 0, max: 10_000, integer: true });
  const taskFailures = num(p, "max-task-failures", { min: 0, max: 100_000, integer: true });
  const timeout = durationFlag(p, "timeout");
  const schedulingTimeout = durationFlag(p, "scheduling-timeout");
  const priority = str(p, "priority");
  if (priority !== undefined && !PRIORITY_BANDS.includes(priority as PriorityName)) {
    throw new UsageError(
      `--priority must be one of ${PRIORITY_BANDS.join(", ")} (got ${JSON.stringify(priority)})`,
    );
  }
  const policy = str(p, "existing-job-policy")?.toLowerCase();
  if (policy !== undefined && !(POLICY_NAMES as readonly string[]).includes(policy)) {
    throw new UsageError(
      `--existing-job-policy must be one of ${POLICY_NAMES.join(", ")} (got ${
        JSON.stringify(policy)
      })`,
    );
  }
  const constraints: ConstraintInput[] = [];
  const regions = list(p, "region");
  if (regions.length === 1) constraints.push({ key: "region", op: "eq", value: regions[0]! });
  if (regions.length > 1) constraints.push({ key: "region", op: "in", values: regions });
  const zone = str(p, "zone");
  if (zone !== undefined) constraints.push({ key: "zone", op: "eq", value: zone });
  for (const c of strs(p, "constraint")) constraints.push(parseConstraint("constraint", c, false));
  for (const c of strs(p, "prefer")) constraints.push(parseConstraint("prefer", c, true));
  const env: Record<string, string> = {};
  for (const kv of strs(p, "env")) {
    const i = kv.indexOf("=");
    if (i <= 0) throw new UsageError(`--env must be KEY=VALUE (got ${JSON.stringify(kv)})`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const accelerator = parseAcceleratorFlags({
    gpu: str(p, "gpu"),
    tpu: str(p, "tpu"),
    acceleratorCount: str(p, "accelerator-count"),
  });
  const replicas = num(p, "replicas", { min: 1, max: 10_000, integer: true }) ??
    multiHostTpuDefaults(accelerator)?.replicas ?? 1;
  const ports = list(p, "port");
  for (const port of ports) {
    if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(port)) {
      throw new UsageError(
        `--port must be a name of letters, digits and _ (it becomes IRIS_PORT_<NAME>; got ${
          JSON.stringify(port)
        })`,
      );
    }
  }
  const reservation = parseReserve(strs(p, "reserve"));
  const bundle = str(p, "bundle");
  if (bundle !== undefined && str(p, "workspace") !== undefined) {
    throw new UsageError("--bundle and --workspace cannot both be given");
  }
  const base = (modulePath ?? command[0]!).split("/").pop()!.replace(/[^A-Za-z0-9._-]/g, "") ||
    "job";
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace(
    "T",
    "-",
  );
  const coschedule = str(p, "coschedule");
  return {
    name: str(p, "name") ?? `${base}-${stamp}-${crypto.randomUUID().slice(0, 4)}`,
    ...(modulePath
      ? {
        module: {
          path: modulePath,
          args: [...command],
          read: list(p, "allow-read"),
          write: list(p, "allow-write"),
          net: list(p, "allow-net"),
          env: list(p, "allow-env"),
        },
      }
      : { command }),
    cpu,
    memory,
    ...(disk !== undefined ? { disk } : {}),
    replicas,
    env,
    maxRetriesFailure: retries,
    ...(preemptions !== undefined ? { maxRetriesPreemption: preemptions } : {}),
    ...(taskFailures !== undefined ? { maxTaskFailures: taskFailures } : {}),
    timeout,
    schedulingTimeout,
    priority: priority as PriorityName | undefined,
    constraints,
    // With a token the controller uses the token's identity; an OS account name would clash.
    user: str(p, "user") ?? (cliToken(p) ? envUser() : defaultUser()),
    accelerator,
    ...(ports.length ? { ports } : {}),
    ...(coschedule !== undefined ? { groupBy: coschedule } : {}),
    ...(policy ? { existingJobPolicy: policy as (typeof POLICY_NAMES)[number] } : {}),
    environment: environmentFromFlags(p),
    ...(reservation.length ? { reservation } : {}),
    ...(str(p, "parent") !== undefined ? { parentJobId: resolveJobId(str(p, "parent")!) } : {}),
    ...(bundle !== undefined ? { bundleId: bundle } : {}),
  };
}

const runCommand: CommandSpec = {
  name: "job run",
  summary: "Submit a command as a job; by default wait for it and stream its logs.",
  usage: "job run [options] -- COMMAND [ARGS...]   |   job run -f job.yaml [options]",
  description:
    "The exit code mirrors the job: 0 when it succeeds, the task's exit code when it fails, 130 when killed.\n" +
    "Task output goes to stdout (its stderr to stderr); Iris's own lines ([iris] …) go to stderr.\n" +
    "Ctrl-C while waiting stops following and leaves the job running (it prints how to reattach\n" +
    "and cancel); a second Ctrl-C within 2 s cancels it, and --cancel-on-exit cancels at once.\n" +
    "-i (like srun --pty): a one-replica job whose stdin is this terminal's, attached once the\n" +
    "task runs; with a terminal (stdin and stdout are one, or -t) the task gets a pty of this\n" +
    "size and this terminal goes raw (Ctrl-C, Ctrl-D go to the task). Its output is in the\n" +
    "job's logs too.\n" +
    "A job file (-f) has the same fields as the flags, in snake_case (max_retries: 2), plus\n" +
    "command: (a list of arguments, or a string run by sh -c); flags given too win.",
  positionals: { min: 0, max: 1000, names: "COMMAND" },
  options: { ...RUN_OPTIONS, ...PYTHON_OPTIONS, ...INTERACTIVE_OPTIONS },
  examples: [
    "iris job run -- echo hello",
    "iris job run --replicas 3 --cpu 0.5 -- sh -c 'echo task $IRIS_TASK_INDEX'",
    "iris job run --detach --name sleeper -- sleep 1000",
    "iris job run --gpu h100:8 --port http --constraint pool=a -- ./serve.sh",
    "iris job run -f job.yaml --name job-2",
    "iris job run -i --cpu 2 -- bash",
  ],
  async run(p, io, signal) {
    let command = p.rest.length ? p.rest : p.positionals;
    const path = str(p, "file");
    let request: JobRequest;
    let q: Parsed = p;
    if (path === undefined) request = requestFromFlags(p, command);
    else {
      const file = await readJobFile(path, RUN_OPTIONS);
      const fromFlags = new Set(Object.keys(p.values).filter((k) => p.values[k] !== undefined));
      if (command.length === 0 && file.command) command = file.command;
      q = { ...p, values: { ...file.values, ...definedValues(p) } };
      try {
        request = requestFromFlags(q, command);
      } catch (err) {
        throw fileError(err, file, fromFlags);
      }
    }
    const replicas = request.replicas ?? 1;
    const interactive = interactiveFlags(p);
    if (interactive) {
      if (replicas !== 1) {
        throw new UsageError(`--interactive needs one replica (got --replicas ${replicas})`);
      }
      if (bool(p, "detach")) throw new UsageError("give either --interactive or --detach");
      Object.assign(request, { interactive });
    }
    const workspace = str(q, "workspace");
    const client = cliClient(p);
    await warnPythonMismatch(client, request, io.err);
    if (workspace) {
      const bundleId = await client.uploadWorkspace(workspace).catch((err) => {
        if (err instanceof Deno.errors.NotFound) {
          throw new UsageError(`--workspace: no such directory ${JSON.stringify(workspace)}`);
        }
        throw err;
      });
      io.err(`Uploaded workspace ${workspace} as ${bundleId}\n`);
      Object.assign(request, { bundleId });
    }
    const jobId = await client.submit(request);
    if (bool(p, "detach")) {
      io.out(jobId + "\n");
      return 0;
    }
    io.err(`Submitted ${jobId}\n`);
    const cancelOnExit = bool(p, "cancel-on-exit");
    const ticker = pendingTicker(io);
    if (interactive) {
      try {
        return await attachJob(p, client, jobId, interactive.tty, io, ticker, signal);
      } catch (err) {
        ticker.clear();
        if (!signal.aborted) throw err;
        return await detachOrCancel(client, jobId, signal, cancelOnExit, io);
      }
    }
    try {
      const job = await client.wait(jobId, {
        onLog: (line) => {
          ticker.clear();
          (line.stream === "stdout" ? io.out : io.err)(formatLine(line, replicas > 1) + "\n");
        },
        onProgress: ticker.progress,
        signal,
      });
      ticker.clear();
      const took = job.finishedAtMs && job.submittedAtMs
        ? ` in ${age(job.submittedAtMs, job.finishedAtMs)}`
        : "";
      io.err(
        `Job ${jobId} ${jobStateName(job.state)}${took}${job.error ? `: ${job.error}` : ""}\n`,
      );
      return jobExitCode(job);
    } catch (err) {
      ticker.clear();
      if (!signal.aborted) throw err;
      return await detachOrCancel(client, jobId, signal, cancelOnExit, io);
    }
  },
};

/**
 * `job run -i`: waits for the job's task to run (showing why it is pending), attaches this
 * terminal to it until it exits, then reports the job like `job run` does.
 */
async function attachJob(
  p: Parsed,
  client: IrisClient,
  jobId: string,
  tty: boolean,
  io: Io,
  ticker: { progress(job: JobStatus): void; clear(): void },
  signal: AbortSignal,
): Promise<number> {
  const taskId = `${jobId}/0`;
  while (true) {
    const st = await client.call((rpc) => rpc.getJobStatus({ jobId }, { signal }));
    const job = st.job!;
    if (isFinished(job.state) || st.tasks[0]?.state === TaskState.RUNNING) break;
    ticker.progress(job);
    await sleep(ms(250), signal);
  }
  ticker.clear();
  const rpc = controllerClient(controllerUrl(p), { token: cliToken(p) });
  const running = await client.call((c) => c.getJobStatus({ jobId }, { signal }));
  if (!isFinished(running.job!.state)) {
    io.err(`[iris] attached to ${taskId}${tty ? " (a terminal; Ctrl-D or exit ends it)" : ""}\n`);
    try {
      await runSession({
        client: rpc,
        output: rpc.attachTask({ taskId }, { signal }),
        sessionId: `task:${taskId}`,
        tty,
        signal,
      });
    } catch (err) {
      // It may have ended between the check and the attach: its output is in the logs then.
      const now = await client.call((c) => c.getJobStatus({ jobId }, { signal }));
      if (signal.aborted || !isFinished(now.job!.state)) throw err;
      await printLogs(client, jobId, io);
    }
  } else await printLogs(client, jobId, io);
  const job = await client.wait(jobId, { signal });
  const took = job.finishedAtMs && job.submittedAtMs
    ? ` in ${age(job.submittedAtMs, job.finishedAtMs)}`
    : "";
  io.err(
    `${tty ? "\r" : ""}Job ${jobId} ${jobStateName(job.state)}${took}${
      job.error ? `: ${job.error}` : ""
    }\n`,
  );
  return jobExitCode(job);
}

/** A finished job's logs, task output to stdout and stderr (for a task that ended unattached). */
async function printLogs(client: IrisClient, jobId: string, io: Io): Promise<void> {
  for (const line of await client.logs(jobId)) {
    if (line.stream === "stdout") io.out(line.text + "\n");
    else if (line.stream === "stderr") io.err(line.text + "\n");
  }
}

/** How a signal is named in a job's cancel reason. */
function signalReason(sig: Deno.Signal | undefined): string {
  return sig === "SIGINT" ? "SIGINT (Ctrl-C)" : sig ?? "an interrupt";
}

/**
 * `job run` got a signal while following: with --cancel-on-exit cancel the job; otherwise stop
 * following, say how to reattach or cancel, and let a second Ctrl-C within 2 s cancel.
 */
async function detachOrCancel(
  client: IrisClient,
  jobId: string,
  signal: AbortSignal,
  cancelOnExit: boolean,
  io: Io,
): Promise<number> {
  const interrupt = interruptOf(signal);
  const sig = interrupt?.signalName;
  const cancel = async (why: string) => {
    await client.cancel(jobId, `client got ${why}`).catch(() => {});
    io.err(`Cancelled ${jobId} (client got ${why})\n`);
    return signalExitCode(sig);
  };
  if (cancelOnExit) return await cancel(signalReason(sig));
  const second = sig === "SIGINT" ? " (Ctrl-C again within 2 s cancels it)" : "";
  io.err(
    `[iris] ${signalReason(sig)}: stopped following ${jobId}; it keeps running${second}.\n` +
      `[iris]   reattach: iris job logs -f ${jobId}\n` +
      `[iris]   cancel:   iris job cancel ${jobId}\n`,
  );
  if (interrupt && sig === "SIGINT") {
    const again = await interrupt.next(2000);
    if (again) return await cancel(`${signalReason(again)} twice`);
  }
  return signalExitCode(sig);
}

/** Waits between "still pending" lines when stderr is not a terminal. */
const PENDING_REPEAT_MS = 30_000;

/**
 * Progress while a job is pending: on a TTY one line rewritten in place with the elapsed time;
 * otherwise a line when the reason changes and every 30 s while it stays.
 */
function pendingTicker(io: Io): { progress(job: JobStatus): void; clear(): void } {
  let last = "";
  let lastAt = 0;
  let live = false;
  const clear = () => {
    if (live) io.err("\r\x1b[2K");
    live = false;
  };
  const progress = (j: JobStatus) => {
    const pending = j.state === JobState.PENDING;
    const now = Date.now();
    // The controller's reason; while slices boot it reads "waiting for scale group cpu: …".
    const text = pending && j.pendingReason?.message ? `pending: ${j.pendingReason.message}` : "";
    if (io.isTty) {
      if (text) {
        const elapsed = j.submittedAtMs ? ` (${age(j.submittedAtMs, now)})` : "";
        io.err(`\r\x1b[2K[iris] ${text}${elapsed}`);
        live = true;
      } else clear();
      return;
    }
    // A boot's seconds count up: the same reason for the repeat rule.
    const same = text.replace(/\(\d+ s\)/g, "") === last.replace(/\(\d+ s\)/g, "");
    if (text && (!same || now - lastAt >= PENDING_REPEAT_MS)) {
      const elapsed = same && j.submittedAtMs ? ` (still, after ${age(j.submittedAtMs, now)})` : "";
      io.err(`[iris] ${text}${elapsed}\n`);
      lastAt = now;
    }
    last = text;
  };
  return { progress, clear };
}

/** Milliseconds a job ran (start to end, or to now while running); undefined before it starts. */
function runMs(
  j: { startedAtMs: number; finishedAtMs: number },
  nowMs = Date.now(),
): number | undefined {
  return j.startedAtMs > 0 ? Math.max(0, (j.finishedAtMs || nowMs) - j.startedAtMs) : undefined;
}

/** A job as scripts read it (`job list --json`, `job history --json`). */
function jobJson(j: JobStatus, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    job_id: j.jobId,
    name: j.jobId.slice(j.jobId.lastIndexOf("/") + 1),
    user: j.user,
    state: jobStateName(j.state),
    tasks: j.taskStateCounts,
    task_count: j.taskCount,
    submitted_at_ms: j.submittedAtMs,
    started_at_ms: j.startedAtMs || null,
    finished_at_ms: j.finishedAtMs || null,
    duration_ms: runMs(j) ?? null,
    exit_code: j.state === JobState.SUCCEEDED ? 0 : isFinished(j.state) ? j.exitCode : null,
    error: j.error,
    pending_reason: j.pendingReason?.message ?? "",
    failures: j.failureCount,
    preemptions: j.preemptionCount,
    parent_job_id: j.parentJobId,
    ...extra,
  };
}

/** A table cell of a possibly multi-line message, cut to `max` characters. */
function cell(text: string, max = 100): string {
  const one = oneLine(text);
  return one.length > max ? one.slice(0, max - 1) + "…" : one;
}

const listCommand: CommandSpec = {
  name: "job list",
  summary: "List jobs, newest first.",
  usage:
    "job list [--state STATE] [--prefix PREFIX] [--user USER] [--name TEXT] [--sort KEY [--desc]] [--json]",
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    state: {
      type: "string",
      value: "STATE",
      multiple: true,
      description:
        "Only jobs in this state (pending, running, succeeded, failed, killed, …; comma lists allowed)",
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
      description:
        "Order by name, state, user, tasks, age or duration (default: age, newest first)",
    },
    desc: { type: "boolean", description: "Reverse the --sort order" },
    limit: { type: "string", value: "N", description: "At most N jobs", default: "200" },
    json: {
      type: "boolean",
      description:
        "Print one JSON object per job: job_id, name, user, state, tasks, submitted/started/finished_at_ms, duration_ms, exit_code, error, …",
    },
  },
  async run(p, io) {
    const sortBy = str(p, "sort");
    if (sortBy !== undefined && !(JOB_SORT_KEYS as readonly string[]).includes(sortBy)) {
      throw new UsageError(
        `--sort must be one of ${JOB_SORT_KEYS.join(", ")} (got ${JSON.stringify(sortBy)})`,
      );
    }
    const states = parseStates(p);
    const limit = num(p, "limit", { min: 1, max: 5000, integer: true })!;
    const client = cliClient(p);
    const { jobs, total } = await client.list({
      prefix: str(p, "prefix"),
      states,
      limit,
      user: str(p, "user"),
      nameContains: str(p, "name"),
      sortBy: sortBy ?? "age",
      descending: bool(p, "desc"),
    });
    const more = total > jobs.length
      ? `(${total - jobs.length} more job${
        total - jobs.length === 1 ? "" : "s"
      } not shown; use --limit ${total} or filters)\n`
      : "";
    if (bool(p, "json")) {
      for (const j of jobs) io.out(JSON.stringify(jobJson(j)) + "\n");
      io.err(more);
      return 0;
    }
    const rows = jobs.map((j) => [
      j.jobId,
      jobStateName(j.state),
      countsText(j),
      age(j.submittedAtMs),
      cell(j.state === JobState.PENDING ? (j.pendingReason?.message ?? "") : j.error),
    ]);
    io.out(table(["JOB", "STATE", "TASKS", "AGE", "REASON"], rows));
    io.err(more);
    return 0;
  },
};

/** Largest peak memory over a task's attempts. */
function peakOf(tasks: readonly TaskStatus[]): number {
  return Math.max(0, ...tasks.flatMap((t) => t.attempts.map((a) => a.peakMemoryBytes)));
}

function attemptMs(a: { startedAtMs: number; finishedAtMs: number }): string {
  const d = runMs(a);
  return d === undefined ? "-" : formatDuration(ms(d));
}

const statusCommand: CommandSpec = {
  name: "job status",
  summary: "Show a job, its tasks, every attempt and why it is pending.",
  usage: "job status JOB_ID [--json]",
  description: 'A short JOB_ID ("train") means /$USER/train.',
  positionals: { min: 1, max: 1, names: "JOB_ID" },
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    json: { type: "boolean", description: "Print JSON" },
  },
  async run(p, io) {
    const client = cliClient(p);
    const { job, tasks } = await client.status(resolveJobId(p.positionals[0]!));
    if (!job) return 1;
    if (bool(p, "json")) {
      io.out(
        JSON.stringify(jobJson(job, {
          command: commandText(job),
          peak_memory_bytes: peakOf(tasks),
          peak_device_memory_bytes: peakDeviceMemory(tasks).bytes,
          tasks: tasks.map((t) => ({
            task_id: t.taskId,
            state: taskStateName(t.state),
            worker_id: t.workerId,
            worker_address: t.workerAddress,
            ports: t.ports,
            exit_code: t.exitCode,
            error: t.error,
            pending_reason: t.pendingReason?.code ?? "",
            attempts: t.attempts.map((a) => ({
              attempt_id: a.attemptId,
              worker_id: a.workerId,
              state: taskStateName(a.state),
              exit_code: a.exitCode,
              signal: a.signal,
              error: a.error,
              worker_failure: a.isWorkerFailure,
              started_at_ms: a.startedAtMs || null,
              finished_at_ms: a.finishedAtMs || null,
              duration_ms: runMs(a) ?? null,
              peak_memory_bytes: a.peakMemoryBytes,
            })),
          })),
        })) + "\n",
      );
      return 0;
    }
    const r = job.spec?.resources;
    io.out(
      `Job:       ${job.jobId}\nState:     ${jobStateName(job.state)}\nUser:      ${job.user}\n`,
    );
    io.out(`Command:   ${commandText(job)}\n`);
    io.out(`Submitted: ${age(job.submittedAtMs)} ago\n`);
    const d = runMs(job);
    if (d !== undefined) {
      io.out(`${job.finishedAtMs ? "Ran:      " : "Running:  "} ${formatDuration(ms(d))}\n`);
    }
    io.out(`Tasks:     ${countsText(job)}\n`);
    io.out(
      `Resources: ${formatCpu(r?.cpuMillicores)}, ${formatBytes(r?.memoryBytes ?? 0)} memory${
        r?.accelerator?.variant ? `, ${r.accelerator.variant}` : ""
      }\n`,
    );
    io.out(peakDeviceMemoryLine(tasks));
    if (job.pendingReason?.message) {
      io.out(`Pending:   ${job.pendingReason.code}: ${job.pendingReason.message}\n`);
    }
    if (job.error) io.out(`Error:     ${job.error.replaceAll("\n", "\n           ")}\n`);
    io.out(
      "\n" + table(
        ["TASK", "STATE", "WORKER", "ADDRESS", "PORTS", "ATTEMPTS", "EXIT", "DETAIL"],
        tasks.map((t) => [
          String(t.index),
          taskStateName(t.state),
          t.workerId || "-",
          t.workerAddress || "-",
          Object.entries(t.ports).map(([k, v]) => `${k}=${v}`).join(",") || "-",
          String(t.attempts.length),
          t.state === TaskState.FAILED || t.state === TaskState.SUCCEEDED
            ? String(t.exitCode)
            : "-",
          cell(t.state === TaskState.PENDING ? (t.pendingReason?.message ?? "") : t.error),
        ]),
      ),
    );
    const attempts = tasks.flatMap((t) => t.attempts.map((a) => ({ t, a })));
    if (attempts.length > 0) {
      io.out(
        "\nAttempts:\n" + table(
          ["TASK", "ATTEMPT", "WORKER", "STATE", "EXIT", "DURATION", "PEAK MEM", "REASON"],
          attempts.map(({ t, a }) => [
            String(t.index),
            String(a.attemptId),
            a.workerId || "-",
            taskStateName(a.state) + (a.isWorkerFailure ? " (worker failure)" : ""),
            a.finishedAtMs ? `${a.exitCode}${a.signal ? ` ${a.signal}` : ""}` : "-",
            attemptMs(a),
            a.peakMemoryBytes ? formatBytes(a.peakMemoryBytes) : "-",
            cell(a.error),
          ]),
        ),
      );
    }
    return 0;
  },
};

/** What a job runs, as a shell-like line. */
function commandText(job: JobStatus): string {
  const e = job.spec?.entrypoint?.kind;
  if (e?.case === "command") {
    return e.value.argv.map((a) => /^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a)).join(" ");
  }
  if (e?.case === "module") return `module ${e.value.path} ${e.value.args.join(" ")}`.trim();
  return "-";
}

const historyCommand: CommandSpec = {
  name: "job history",
  summary: "Finished jobs with elapsed time, peak memory and exit code (like sacct).",
  usage: "job history [--user USER] [--state STATE] [--prefix PREFIX] [--limit N] [--json]",
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    user: { type: "string", value: "USER", description: "Only jobs of this user" },
    state: {
      type: "string",
      value: "STATE",
      multiple: true,
      description: "Only jobs in this state (default: every finished state; comma lists allowed)",
    },
    prefix: {
      type: "string",
      value: "PREFIX",
      description: "Only jobs whose id starts with PREFIX",
    },
    limit: {
      type: "string",
      value: "N",
      description: "At most N jobs, newest first",
      default: "50",
    },
    json: { type: "boolean", description: "Print one JSON object per job" },
  },
  async run(p, io) {
    const states = parseStates(p);
    const limit = num(p, "limit", { min: 1, max: 5000, integer: true })!;
    const client = cliClient(p);
    const { jobs, total } = await client.list({
      user: str(p, "user"),
      prefix: str(p, "prefix"),
      states: states.length ? states : [...FINISHED],
      limit,
      sortBy: "age",
    });
    const peaks = await Promise.all(jobs.map(async (j) => peakOf(await client.tasks(j.jobId))));
    if (bool(p, "json")) {
      jobs.forEach((j, i) =>
        io.out(JSON.stringify(jobJson(j, { peak_memory_bytes: peaks[i] })) + "\n")
      );
    } else {
      io.out(table(
        ["JOB", "USER", "STATE", "SUBMITTED", "ELAPSED", "PEAK MEM", "EXIT", "TASKS"],
        jobs.map((j, i) => {
          const d = runMs(j);
          return [
            j.jobId,
            j.user,
            jobStateName(j.state),
            new Date(j.submittedAtMs).toISOString().replace(/\.\d+Z$/, "Z"),
            d === undefined ? "-" : formatDuration(ms(d)),
            peaks[i] ? formatBytes(peaks[i]!) : "-",
            j.state === JobState.SUCCEEDED ? "0" : String(j.exitCode),
            String(j.taskCount),
          ];
        }),
      ));
    }
    if (total > jobs.length) io.err(`(${total - jobs.length} older jobs not shown; use --limit)\n`);
    return 0;
  },
};

/** States of a finished job. */
const FINISHED: readonly JobState[] = [
  JobState.SUCCEEDED,
  JobState.FAILED,
  JobState.KILLED,
  JobState.WORKER_FAILED,
  JobState.UNSCHEDULABLE,
];

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
    const id = resolveJobId(p.positionals[0]!);
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
    const { job, tasks } = await client.status(isTask ? id.slice(0, id.lastIndexOf("/")) : id)
      .catch(() => client.status(id));
    const multi = !isTask && tasks.length > 1;
    if (bool(p, "follow") && job?.state === JobState.PENDING) {
      // Otherwise -f on a pending job prints nothing at all until it starts.
      io.err(
        `[iris] ${job.jobId} is pending${
          job.pendingReason?.message ? `: ${job.pendingReason.message}` : ""
        }; its lines follow once it starts\n`,
      );
    }
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
        (line.stream === "stdout" ? io.out : io.err)(formatLine(line, multi) + "\n");
        printed++;
      },
    });
    return 0;
  },
};

/** --state values (comma lists allowed), checked. */
function parseStates(p: Parsed): JobState[] {
  return list(p, "state").map((s) => {
    const st = parseJobState(s);
    if (st === undefined) {
      throw new UsageError(
        `--state: unknown state ${JSON.stringify(s)} (one of ${
          Object.keys(JobState).filter((k) => isNaN(Number(k)) && k !== "UNSPECIFIED").map((k) =>
            k.toLowerCase()
          ).join(", ")
        })`,
      );
    }
    return st;
  });
}

/** States a bulk cancel touches when --state is not given: every unfinished one. */
const UNFINISHED: readonly JobState[] = [JobState.PENDING, JobState.BUILDING, JobState.RUNNING];

const cancelCommand: CommandSpec = {
  name: "job cancel",
  summary: "Cancel jobs (by id, or all matching --user/--state/--prefix) and their child jobs.",
  usage: "job cancel [JOB_ID...] [--user USER] [--state STATE] [--prefix PREFIX] [-y]",
  description: 'A short JOB_ID ("train") means /$USER/train. Filters select unfinished jobs\n' +
    "(or those in --state); the matching jobs are counted and confirmed first (-y skips that;\n" +
    "without a terminal, -y is required).",
  positionals: { min: 0, max: 10_000, names: "JOB_ID" },
  options: {
    controller: CONTROLLER_OPTION,
    "token-file": TOKEN_FILE_OPTION,
    reason: { type: "string", value: "TEXT", description: "Reason recorded with the job" },
    user: {
      type: "string",
      value: "USER",
      multiple: true,
      description: "Cancel the unfinished jobs of USER (comma lists allowed)",
    },
    state: {
      type: "string",
      value: "STATE",
      multiple: true,
      description: "Cancel the jobs in STATE, e.g. pending,running (comma lists allowed)",
    },
    prefix: {
      type: "string",
      value: "PREFIX",
      description: "Cancel the unfinished jobs whose id starts with PREFIX",
    },
    yes: { type: "boolean", short: "y", description: "Do not ask for confirmation" },
  },
  examples: [
    "iris job cancel sleeper",
    "iris job cancel /alice/a /alice/b",
    "iris job cancel --user alice --state pending -y",
    "iris job cancel --prefix /alice/sweep- ",
  ],
  async run(p, io) {
    const users = list(p, "user");
    const states = parseStates(p);
    const prefix = str(p, "prefix");
    const filtered = users.length > 0 || states.length > 0 || prefix !== undefined;
    if (p.positionals.length === 0 && !filtered) {
      throw new UsageError("give JOB_IDs or a filter (--user, --state, --prefix)");
    }
    const client = cliClient(p);
    const ids = p.positionals.map((id) => resolveJobId(id));
    if (filtered) {
      const matched: string[] = [];
      for (const user of users.length ? users : [undefined]) {
        const { jobs } = await client.list({
          user,
          prefix: prefix === undefined ? undefined : resolveJobId(prefix),
          states: states.length ? states : [...UNFINISHED],
          limit: 5000,
        });
        matched.push(...jobs.map((j) => j.jobId));
      }
      const fresh = matched.filter((id) => !ids.includes(id));
      if (fresh.length > 0) {
        const what = `${fresh.length} job${fresh.length === 1 ? "" : "s"}`;
        if (!bool(p, "yes")) {
          io.err(
            `${what} match:\n${fresh.slice(0, 20).map((id) => `  ${id}\n`).join("")}${
              fresh.length > 20 ? `  … and ${fresh.length - 20} more\n` : ""
            }`,
          );
          if (!io.confirm) {
            throw new UsageError(
              `refusing to cancel ${what} without a terminal to confirm; add -y`,
            );
          }
          if (!await io.confirm(`Cancel ${what}?`)) {
            io.err("Nothing cancelled\n");
            return 1;
          }
        }
        ids.push(...fresh);
      } else if (ids.length === 0) {
        io.out("Nothing to cancel: no job matches\n");
        return 0;
      }
    }
    const reason = str(p, "reason") ?? "cancelled by user";
    let failed = 0;
    for (const id of ids) {
      try {
        const done = await client.cancel(id, reason);
        io.out(
          done.length
            ? `Cancelled ${done.join(", ")}\n`
            : `Nothing to cancel: ${id} already finished\n`,
        );
      } catch (err) {
        if (ids.length === 1) throw err;
        io.err(`iris job cancel: ${id}: ${err instanceof Error ? err.message : String(err)}\n`);
        failed++;
      }
    }
    return failed ? 1 : 0;
  },
};

/** Values of the flags actually given. */
function definedValues(p: Parsed): Parsed["values"] {
  return Object.fromEntries(Object.entries(p.values).filter(([, v]) => v !== undefined));
}

/** Job commands. */
export const jobCommands: readonly CommandSpec[] = [
  runCommand,
  listCommand,
  statusCommand,
  historyCommand,
  logsCommand,
  cancelCommand,
];
