/**
 * `iris controller serve` and `iris worker serve`: the long-running daemons. Both run until
 * SIGINT/SIGTERM, then stop gracefully (tasks killed and awaited, servers closed).
 * @module
 */
import { ENROL_TOKEN_OPTION, enrolIfNeeded } from "./enrol.ts";
import { WORKER_PYTHON_OPTIONS, workerPythonOptions } from "./worker_python.ts";
import { backupController, restoreController, startController } from "../controller/mod.ts";
import {
  startWorker,
  TASK_USER_ISOLATION_MODES,
  taskPodRuntimeFromEnv,
  type TaskUserIsolation,
} from "../worker/mod.ts";
import {
  bool,
  type CommandSpec,
  type Io,
  num,
  type Parsed,
  parseSize,
  str,
  strs,
  UsageError,
} from "./args.ts";
import {
  controllerAuth,
  loadConfig,
  parseAuthDocument,
  resolveWorkerToken,
  workerTokenEnv,
} from "../config/mod.ts";
import { startCluster } from "../cluster/mod.ts";
import { FileBundleStore, rpcBundleFetcher } from "../bundle/mod.ts";
import { controllerDashboard, workerDashboard } from "../dashboard/mod.ts";
import { VERSION } from "../version.ts";
import type { AcceleratorSpec, AttributeScalar } from "../types.ts";
import { seconds } from "../time.ts";
import { DEFAULT_TRANSPORT, HTTP_TRANSPORTS, type HttpTransport } from "../rpc/mod.ts";
import { tpuTopology } from "../tpu.ts";
import { checkGceAccelerator, GceMetadata } from "../gcp/mod.ts";

function waitForAbort(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

/** `--http-server`: which HTTP server carries a daemon's RPCs (src/rpc/server.ts). */
const HTTP_SERVER_OPTION = {
  type: "string",
  value: "SERVER",
  description:
    `HTTP server of the RPCs: ${HTTP_TRANSPORTS.join(", ")} (default ${DEFAULT_TRANSPORT}, ` +
    "or the auth config's http_server); see docs/security.md#request-limits",
} as const;

/** The `--http-server` flag's value, checked; undefined when not given. */
function httpServerFlag(p: Parsed): HttpTransport | undefined {
  const v = str(p, "http-server");
  if (v === undefined) return undefined;
  if (!(HTTP_TRANSPORTS as readonly string[]).includes(v)) {
    throw new UsageError(
      `--http-server must be one of ${HTTP_TRANSPORTS.join(", ")} (got ${JSON.stringify(v)})`,
    );
  }
  return v as HttpTransport;
}

const controllerServe: CommandSpec = {
  name: "controller serve",
  summary: "Run a controller: the RPC API, the scheduler and (with --config) the autoscaler.",
  usage: "controller serve [--host HOST] [--port PORT]",
  description:
    "Workers register with it (iris worker serve --controller URL) and clients submit jobs to it.\n" +
    "Prints 'Controller started at <url>' once it is listening.",
  options: {
    host: {
      type: "string",
      value: "HOST",
      description: "Address to listen on",
      default: "127.0.0.1",
    },
    port: {
      type: "string",
      short: "p",
      value: "PORT",
      description: "Port to listen on (0 = any free port)",
      default: "10000",
    },
    "advertise-url": {
      type: "string",
      value: "URL",
      description: "URL tasks use to reach the controller (default: the listen URL)",
    },
    quiet: { type: "boolean", short: "q", description: "Do not print controller log lines" },
    "bundle-dir": {
      type: "string",
      value: "DIR",
      description:
        "Where uploaded workspace bundles are stored (default: <state-dir>/bundles, else a temp dir removed on exit)",
    },
    config: {
      type: "string",
      value: "FILE",
      description: "Cluster config: also run the autoscaler over its scale groups",
    },
    "state-dir": {
      type: "string",
      value: "DIR",
      description: "Keep controller state (jobs, tasks, attempts) in DIR across restarts",
    },
    "skip-corrupt-rows": {
      type: "boolean",
      description:
        "Start even when rows of the state do not parse: move them (with the rest of their job) " +
        "to the state's quarantine table and say so",
    },
    "accept-state-loss": {
      type: "boolean",
      description:
        "Start even when the state is incomplete (its WAL was lost or is corrupt), from what " +
        "controller.sqlite3 holds",
    },
    "auth-config": {
      type: "string",
      value: "FILE",
      description: "YAML with an auth: section (tokens, rate limits); see docs/security.md",
    },
    "http-server": HTTP_SERVER_OPTION,
  },
  examples: [
    "iris controller serve --port 10000",
    "iris controller serve --port 10000 --state-dir /var/lib/iris",
    "iris controller serve --config examples/local.yaml",
    "iris controller serve --host 0.0.0.0 --advertise-url http://10.0.0.2:10000",
  ],
  async run(p, io, signal) {
    const port = num(p, "port", { min: 0, max: 65535, integer: true })!;
    const quiet = bool(p, "quiet");
    const configPath = str(p, "config");
    const httpServer = httpServerFlag(p);
    if (configPath) return await serveCluster(configPath, p, io, signal);
    const authPath = str(p, "auth-config");
    const auth = authPath
      ? controllerAuth(
        parseAuthDocument(await Deno.readTextFile(authPath), authPath),
        workerTokenEnv(),
      )
      : undefined;
    // Bundles live with the state when there is a state dir, else in a temp dir.
    const stateDir = str(p, "state-dir");
    const givenBundleDir = str(p, "bundle-dir") ??
      (stateDir !== undefined ? `${stateDir}/bundles` : undefined);
    const bundleDir = givenBundleDir ?? await Deno.makeTempDir({ prefix: "iris-bundles-" });
    // Declared before the server, so it is disposed after it: a temp bundle dir goes away.
    await using _bundles = {
      [Symbol.asyncDispose]: async () => {
        if (givenBundleDir === undefined) {
          await Deno.remove(bundleDir, { recursive: true }).catch(() => {});
        }
      },
    };
    let server;
    try {
      server = startController({
        host: str(p, "host"),
        port,
        advertiseUrl: str(p, "advertise-url"),
        stateDir,
        stateSkipCorruptRows: bool(p, "skip-corrupt-rows"),
        stateAcceptLoss: bool(p, "accept-state-loss"),
        auth: auth?.policy,
        launchRateLimit: auth?.launchRateLimit,
        maxRequestBytes: auth?.maxRequestBytes,
        connectionLimits: httpServer
          ? { ...auth?.connectionLimits, transport: httpServer }
          : auth?.connectionLimits,
        version: VERSION,
        log: quiet ? undefined : (line) => io.err(line + "\n"),
        bundles: new FileBundleStore(bundleDir),
        fallback: (req) => controllerDashboard(req) ?? new Response("Not found\n", { status: 404 }),
      });
    } catch (err) {
      if (err instanceof Deno.errors.AddrInUse) {
        throw new UsageError(`port ${port} is already in use (try --port 0)`);
      }
      throw err;
    }
    await using _server = server;
    io.out(`Controller started at ${server.url}\n`);
    await waitForAbort(signal);
    io.err("Stopping controller\n");
    return 0;
  },
};

const workerServe: CommandSpec = {
  name: "worker serve",
  summary: "Run a worker: register with a controller and run the tasks it assigns.",
  usage: "worker serve --controller URL [--cpu CORES] [--memory SIZE]",
  description:
    "Resources default to this machine's cores and memory. Tasks run as subprocesses in\n" +
    "<root-dir>/tasks/<task>_attempt_<n> with a clean environment.",
  options: {
    controller: {
      type: "string",
      short: "c",
      value: "URL",
      description: "Controller URL (env IRIS_CONTROLLER_URL)",
    },
    host: {
      type: "string",
      value: "HOST",
      description: "Address to listen on",
      default: "127.0.0.1",
    },
    port: {
      type: "string",
      short: "p",
      value: "PORT",
      description: "Port to listen on (0 = any free port)",
      default: "0",
    },
    "advertise-url": {
      type: "string",
      value: "URL",
      description: "URL the controller calls this worker at (default: the listen URL)",
    },
    cpu: { type: "string", value: "CORES", description: "CPU cores to offer (default: all cores)" },
    memory: {
      type: "string",
      value: "SIZE",
      description: "Memory to offer, e.g. 8GiB (default: all memory)",
    },
    "worker-id": {
      type: "string",
      value: "ID",
      description: "Stable worker id (default: hostname and port)",
    },
    "root-dir": {
      type: "string",
      value: "DIR",
      description: "Working directory for tasks (default: a temp dir)",
    },
    "scale-group": {
      type: "string",
      value: "NAME",
      description: "Scale group this worker belongs to",
    },
    "task-users": {
      type: "string",
      value: "MODE",
      description:
        "Run each task as its own OS user: auto (when root with setpriv), required, or off",
      default: "auto",
    },
    "task-max-processes": {
      type: "string",
      value: "N",
      description: "Most processes per task (RLIMIT_NPROC for task users, else counted); 0 = off",
      default: "4096",
    },
    "task-max-open-files": {
      type: "string",
      value: "N",
      description: "Most open files per task process (RLIMIT_NOFILE); 0 = off",
      default: "65536",
    },
    ...WORKER_PYTHON_OPTIONS,
    "slice-id": { type: "string", value: "ID", description: "Slice this worker belongs to" },
    attribute: {
      type: "string",
      short: "a",
      value: "KEY=VALUE",
      multiple: true,
      description: "Worker attribute for constraints",
    },
    "accelerator-type": {
      type: "string",
      value: "TYPE",
      description: "Accelerator this worker offers: tpu, gpu or cpu (default cpu)",
    },
    "accelerator-variant": {
      type: "string",
      value: "VARIANT",
      description: "Its variant, e.g. v5litepod-16 or h100 (required with tpu and gpu)",
    },
    "accelerator-count": {
      type: "string",
      value: "N",
      description: "Chips or devices on this VM (default: a TPU variant's chips per host, else 1)",
    },
    "accelerator-check": {
      type: "string",
      value: "SOURCE",
      description:
        "gce-metadata: refuse to start unless the VM's metadata accelerator-type is the variant",
    },
    devices: {
      type: "string",
      value: "MODE",
      default: "auto",
      description:
        "auto: detect GPUs (nvidia-smi) and TPU chips (/dev/accel*, /dev/vfio) and refuse " +
        "claims the host's driver contradicts; strict: also refuse claims on a host without one; " +
        "off: take the claim as given",
    },
    quiet: { type: "boolean", short: "q", description: "Do not print worker log lines" },
    "worker-token-file": {
      type: "string",
      value: "FILE",
      description:
        "File holding the worker token (or env IRIS_WORKER_TOKEN / IRIS_WORKER_TOKEN_FILE)",
    },
    "enrol-token-file": ENROL_TOKEN_OPTION,
    "http-server": HTTP_SERVER_OPTION,
  },
  examples: [
    "iris worker serve --controller http://127.0.0.1:10000",
    "iris worker serve -c http://10.0.0.2:10000 --cpu 4 --memory 8GiB -a region=us-east1",
    "iris worker serve -c http://10.0.0.2:10000 --accelerator-type tpu --accelerator-variant v5litepod-4",
  ],
  async run(p, io, signal) {
    const controllerUrl = str(p, "controller") ?? Deno.env.get("IRIS_CONTROLLER_URL");
    if (!controllerUrl) throw new UsageError("--controller URL is required");
    try {
      new URL(controllerUrl);
    } catch {
      throw new UsageError(`--controller must be a URL (got ${JSON.stringify(controllerUrl)})`);
    }
    const cpu = num(p, "cpu", { min: 0.001, max: 1024 });
    const memRaw = str(p, "memory");
    const memory = memRaw === undefined ? undefined : parseSize(memRaw);
    if (memRaw !== undefined && (memory === undefined || memory <= 0)) {
      throw new UsageError(`--memory must be a size like 8GiB (got ${JSON.stringify(memRaw)})`);
    }
    const attributes: Record<string, AttributeScalar> = {};
    for (const kv of strs(p, "attribute")) {
      const i = kv.indexOf("=");
      if (i <= 0) throw new UsageError(`--attribute must be KEY=VALUE (got ${JSON.stringify(kv)})`);
      const v = kv.slice(i + 1);
      attributes[kv.slice(0, i)] = /^-?\d+$/.test(v)
        ? Number(v)
        : v === "true"
        ? true
        : v === "false"
        ? false
        : v;
    }
    const taskUsers = str(p, "task-users") ?? "auto";
    if (!(TASK_USER_ISOLATION_MODES as readonly string[]).includes(taskUsers)) {
      throw new UsageError(
        `--task-users must be one of ${TASK_USER_ISOLATION_MODES.join(", ")} (got ${
          JSON.stringify(taskUsers)
        })`,
      );
    }
    const accelerator = workerAccelerator(p);
    const check = str(p, "accelerator-check");
    if (check !== undefined && check !== "gce-metadata") {
      throw new UsageError(
        `--accelerator-check must be gce-metadata (got ${JSON.stringify(check)})`,
      );
    }
    let tpuAcceleratorType: string | undefined;
    if (check === "gce-metadata") {
      // Refuses to start (FailedPreconditionError, exit 1) unless the VM has this accelerator.
      const actual = await checkGceAccelerator(accelerator, new GceMetadata(), { signal });
      io.err(`accelerator-type ${actual} matches the VM's metadata\n`);
      if (accelerator?.kind === "tpu") tpuAcceleratorType = actual;
    }
    const devices = str(p, "devices") ?? "auto";
    if (!["auto", "strict", "off"].includes(devices)) {
      throw new UsageError(
        `--devices must be auto, strict or off (got ${JSON.stringify(devices)})`,
      );
    }
    const quiet = bool(p, "quiet");
    const httpServer = httpServerFlag(p);
    const rootDir = str(p, "root-dir") ?? await Deno.makeTempDir({ prefix: "iris-worker-" });
    // Declared before the worker, so it is disposed after the worker stopped: a temp root goes away.
    await using _rootDir = {
      [Symbol.asyncDispose]: async () => {
        if (str(p, "root-dir") === undefined) {
          await Deno.remove(rootDir, { recursive: true }).catch(() => {});
        }
      },
    };
    let workerToken: string | undefined;
    // gcp with auth: trade the one-time enrolment token for the worker token first.
    await enrolIfNeeded(controllerUrl, str(p, "worker-id"), p);
    try {
      workerToken = resolveWorkerToken(str(p, "worker-token-file"), workerTokenEnv());
    } catch (err) {
      throw new UsageError(err instanceof Error ? err.message : String(err));
    }
    const tokenFile = str(p, "worker-token-file") ?? Deno.env.get("IRIS_WORKER_TOKEN_FILE");
    // Light worker mode on Kubernetes: tasks run as their own Pods (docs/platforms.md#kubernetes).
    const taskPods = await taskPodRuntimeFromEnv();
    using _taskPods = { [Symbol.dispose]: () => taskPods?.client[Symbol.dispose]() };
    const worker = await startWorker({
      fallback: workerDashboard,
      taskPods,
      controllerUrl,
      workerToken,
      protectedPaths: tokenFile ? [tokenFile] : [],
      taskUserIsolation: taskUsers as TaskUserIsolation,
      ...workerPythonOptions(p),
      taskLimits: {
        processes: num(p, "task-max-processes", { min: 0, max: 4_194_304, integer: true }),
        openFiles: num(p, "task-max-open-files", { min: 0, max: 1 << 30, integer: true }),
      },
      host: str(p, "host"),
      port: num(p, "port", { min: 0, max: 65535, integer: true }),
      ...(httpServer ? { connectionLimits: { transport: httpServer } } : {}),
      advertiseUrl: advertiseUrl(p),
      workerId: str(p, "worker-id"),
      rootDir,
      cleanup: str(p, "root-dir") === undefined,
      // No task outlives this process: a watchdog sweeps them (and a temp root) if it dies.
      reaper: { removeRoot: str(p, "root-dir") === undefined },
      bundleFetcher: rpcBundleFetcher(controllerUrl, `${rootDir}/bundles`, { token: workerToken }),
      resources: cpu !== undefined || memory !== undefined || accelerator
        ? {
          cpuMillicores: cpu !== undefined ? Math.round(cpu * 1000) : undefined,
          memoryBytes: memory,
          accelerator,
        }
        : undefined,
      attributes,
      devices: devices === "off"
        ? undefined
        : { strict: devices === "strict", tpuAcceleratorType, signal },
      scaleGroup: str(p, "scale-group"),
      sliceId: str(p, "slice-id"),
      heartbeatInterval: seconds(1),
      log: quiet ? undefined : (line: string) => io.err(line + "\n"),
      signal,
    });
    await using _worker = worker;
    io.out(`Worker ${worker.workerId} serving at ${worker.url}, controller ${controllerUrl}\n`);
    await waitForAbort(signal);
    io.err("Stopping worker\n");
    return 0;
  },
};

/** `--accelerator-type/-variant/-count` as the worker's accelerator (undefined: CPU). */
function workerAccelerator(p: Parsed): AcceleratorSpec | undefined {
  const type = str(p, "accelerator-type") ?? "cpu";
  const variant = str(p, "accelerator-variant") ?? "";
  const countGiven = str(p, "accelerator-count") !== undefined;
  if (type !== "cpu" && type !== "tpu" && type !== "gpu") {
    throw new UsageError(
      `--accelerator-type must be tpu, gpu or cpu (got ${JSON.stringify(type)})`,
    );
  }
  if (type === "cpu") {
    if (variant || countGiven) {
      throw new UsageError("--accelerator-variant and --accelerator-count need --accelerator-type");
    }
    return undefined;
  }
  if (!variant) {
    throw new UsageError(`--accelerator-variant is required with --accelerator-type ${type}`);
  }
  const topology = type === "tpu" ? tpuTopology(variant) : undefined;
  if (type === "tpu" && !topology) {
    throw new UsageError(
      `--accelerator-variant ${
        JSON.stringify(variant)
      } is not a TPU variant (e.g. v4-8, v5litepod-16)`,
    );
  }
  const count = countGiven
    ? num(p, "accelerator-count", { min: 1, max: 1024, integer: true })!
    : topology?.chipsPerHost ?? 1;
  return { kind: type, variant, count };
}

function advertiseUrl(p: Parsed): string | undefined {
  const url = str(p, "advertise-url");
  if (url === undefined) return undefined;
  try {
    new URL(url);
  } catch {
    throw new UsageError(`--advertise-url must be a URL (got ${JSON.stringify(url)})`);
  }
  return url;
}

/** `controller serve --config`: the controller plus the autoscaler and platform the config names. */
async function serveCluster(
  configPath: string,
  p: Parsed,
  io: Io,
  signal: AbortSignal,
): Promise<number> {
  const config = await loadConfig(configPath);
  const quiet = bool(p, "quiet");
  const explicitPort = Deno.args.includes("--port") || Deno.args.includes("-p") ||
    Deno.args.some((a) => a.startsWith("--port="));
  const workDir = await Deno.makeTempDir({ prefix: "iris-controller-" });
  try {
    const cluster = await startCluster(config, {
      workDir,
      host: str(p, "host"),
      advertiseUrl: str(p, "advertise-url"),
      port: explicitPort ? num(p, "port", { min: 0, max: 65535, integer: true }) : undefined,
      skipCorruptRows: bool(p, "skip-corrupt-rows"),
      acceptStateLoss: bool(p, "accept-state-loss"),
      httpServer: httpServerFlag(p),
      log: quiet ? undefined : (line) => io.err(line + "\n"),
      vmLog: quiet ? undefined : (id, line) => io.err(`[${id}] ${line}\n`),
    });
    await using _cluster = cluster;
    io.out(`Controller started at ${cluster.url}\n`);
    await waitForAbort(signal);
    io.err("Stopping controller, autoscaler and slices\n");
  } finally {
    await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }
  return 0;
}

const controllerBackup: CommandSpec = {
  name: "controller backup",
  summary: "Write a consistent copy of a controller's state (also while it runs).",
  usage: "controller backup --state-dir DIR --output FILE",
  description:
    "Copies DIR/controller.sqlite3 with its WAL into FILE, one self-contained SQLite file, as of\n" +
    "one commit (SQLite VACUUM INTO through a read-only connection); the controller keeps\n" +
    "serving and writing meanwhile. FILE also carries the files beside the database:\n" +
    "accounts.json (budgets, users, API keys, reservation claims, enrolment tokens),\n" +
    "transactions.jsonl and gcp's worker.token. Restore with 'iris controller restore'\n" +
    "(docs/durability.md). Task logs (DIR/logs) are not included.",
  options: {
    "state-dir": { type: "string", value: "DIR", description: "The controller's --state-dir" },
    output: {
      type: "string",
      short: "o",
      value: "FILE",
      description: "Backup file (must not exist)",
    },
  },
  examples: [
    "iris controller backup --state-dir /var/lib/iris --output /backup/iris-$(date +%F).sqlite3",
  ],
  run(p, io) {
    const dir = str(p, "state-dir");
    const output = str(p, "output");
    if (!dir) throw new UsageError("--state-dir is required");
    if (!output) throw new UsageError("--output is required");
    const r = backupController(dir, output);
    const files = r.files.length ? `, with ${r.files.join(", ")}` : "";
    io.out(
      `Backed up ${dir} (commit ${r.seq}: ${r.jobs} job(s), ${r.tasks} task(s)${files}) to ${r.output} (${r.bytes} bytes)\n`,
    );
    return Promise.resolve(0);
  },
};

const controllerRestore: CommandSpec = {
  name: "controller restore",
  summary: "Restore a backup into a new, empty state dir.",
  usage: "controller restore --backup FILE --state-dir DIR",
  description:
    "Checks FILE (made by 'iris controller backup'), then writes DIR/controller.sqlite3 and the\n" +
    "files the backup carries (accounts.json, transactions.jsonl, worker.token). DIR must be\n" +
    "missing or empty: move the old state dir away first. Start the controller on DIR after;\n" +
    "workers re-register and re-claim the attempts still running (docs/durability.md).",
  options: {
    backup: { type: "string", value: "FILE", description: "A file 'iris controller backup' wrote" },
    "state-dir": {
      type: "string",
      value: "DIR",
      description: "New state dir (missing or empty)",
    },
  },
  examples: [
    "iris controller restore --backup /backup/iris-2026-12-01.sqlite3 --state-dir /var/lib/iris.new",
  ],
  run(p, io) {
    const backup = str(p, "backup");
    const dir = str(p, "state-dir");
    if (!backup) throw new UsageError("--backup is required");
    if (!dir) throw new UsageError("--state-dir is required");
    const r = restoreController(backup, dir);
    const files = r.files.length ? `, with ${r.files.join(", ")}` : "";
    io.out(
      `Restored ${backup} (commit ${r.seq}: ${r.jobs} job(s), ${r.tasks} task(s)${files}) into ${r.dir}\n` +
        `Start the controller with --state-dir ${r.dir}\n`,
    );
    return Promise.resolve(0);
  },
};

/** Daemon commands. */
export const serveCommands: readonly CommandSpec[] = [
  controllerServe,
  controllerBackup,
  controllerRestore,
  workerServe,
];
