/**
 * `iris cluster start|stop|logs --config FILE`: the cluster lifecycle for every mode, through
 * src/cluster (the controller lifecycle protocol, stopCluster, cluster log streaming).
 * @module
 */
import { clearCurrentCluster, currentClusterPath, writeCurrentCluster } from "./current_cluster.ts";
import { configMode, loadConfig, loadConfigAsLocal } from "../config/mod.ts";
import type { ClusterConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import {
  createControllerLifecycle,
  irisHome,
  LocalController,
  localRecordPath,
  readLocalRecord,
  startClusterLogStreaming,
  stopCluster,
  writeLocalRecord,
} from "../cluster/mod.ts";
import { type FileLogSink, fileLogSink, logFileName } from "../platform/mod.ts";
import { describeError } from "../errors.ts";
import { ms, parseDuration } from "../time.ts";
import { formatDuration } from "../format.ts";
import {
  bool,
  type CommandSpec,
  type Io,
  type OptionSpec,
  type Parsed,
  str,
  UsageError,
} from "./args.ts";

/** `--config FILE`, shared by the cluster commands. */
export const CONFIG_OPTION: OptionSpec = {
  type: "string",
  value: "FILE",
  description: "Cluster config (YAML); its controller kind decides the mode",
};

/** `--as-local`, shared by the cluster commands. */
export const AS_LOCAL_OPTION: OptionSpec = {
  type: "boolean",
  description: "Run a gcp or manual config's scale groups on this machine " +
    "(local controller and providers, local bundles)",
};

/**
 * The `--config` file, converted to its local variant with `--as-local` (the conversion is
 * printed: `verbose` lists every change, otherwise one line).
 */
export async function requireConfig(
  p: Parsed,
  io: Io,
  options: { verbose?: boolean } = {},
): Promise<{ path: string; config: ClusterConfig; asLocal: string }> {
  const path = str(p, "config");
  if (!path) throw new UsageError("--config FILE is required");
  if (!bool(p, "as-local")) return { path, config: await loadConfig(path), asLocal: "" };
  const variant = await loadConfigAsLocal(path);
  if (variant.from === "local") {
    io.out(`${path} is already a local config; --as-local changes nothing\n`);
  } else if (options.verbose) {
    io.out(
      `Running ${path} (${variant.from}) as a local cluster (--as-local): same scale groups, ` +
        `local controller and providers, local bundles. Changes:\n` +
        variant.changes.map((c) => `  ${c}\n`).join(""),
    );
  } else {
    io.err(`${path} (${variant.from}) taken as a local cluster (--as-local)\n`);
  }
  return { path, config: variant.config, asLocal: " --as-local" };
}

function waitForAbort(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

/** Log files of a local cluster: one sink per file, opened on first use, all closed at the end. */
function localLogSinks(dir: string): {
  write(file: string, line: string): void;
  close(): Promise<void>;
} {
  Deno.mkdirSync(`${dir}/workers`, { recursive: true });
  const sinks = new Map<string, FileLogSink>();
  return {
    write(file, line) {
      let sink = sinks.get(file);
      if (!sink) {
        sink = fileLogSink(`${dir}/${file}`);
        sinks.set(file, sink);
      }
      sink.write(line);
    },
    async close() {
      await Promise.all([...sinks.values()].map((s) => s.close()));
    },
  };
}

/** Local mode: the whole cluster lives in this process until Ctrl-C or `cluster stop`. */
async function startLocal(
  path: string,
  asLocal: string,
  config: ClusterConfig,
  p: Parsed,
  io: Io,
  signal: AbortSignal,
): Promise<number> {
  const running = await readLocalRecord(config.name);
  if (running) {
    io.out(
      `Cluster '${config.name}' (local) is already running at ${running.url} (pid ${running.pid})\n`,
    );
    return 0;
  }
  const logDir = str(p, "log-dir") ?? `${irisHome()}/clusters/${config.name}-logs`;
  const logs = localLogSinks(logDir);
  try {
    await using lifecycle = new LocalController(config, {
      log: (line) => logs.write("controller.log", line),
      vmLog: (workerId, line) => logs.write(`workers/${logFileName(workerId)}`, line),
    });
    const url = await lifecycle.start();
    await using _record = await writeLocalRecord({
      name: config.name,
      pid: Deno.pid,
      url,
      logDir,
      startedAtMs: Date.now(),
    });
    await using _current = await writeCurrentCluster(url);
    io.out(
      `Cluster '${config.name}' (local) started at ${url}\n` +
        `Logs: ${logDir}\n` +
        `Client commands use it by default (recorded in ${currentClusterPath()}); elsewhere run:\n` +
        `export IRIS_CONTROLLER_URL=${url}\n` +
        `Stop it with Ctrl-C or: iris cluster stop --config ${path}${asLocal}\n`,
    );
    await waitForAbort(signal);
    io.err(`Stopping cluster '${config.name}'\n`);
  } finally {
    await logs.close();
  }
  return 0;
}

export const startCommand: CommandSpec = {
  name: "cluster start",
  summary: "Start a cluster's controller (local: run the whole cluster here until Ctrl-C).",
  usage: "cluster start --config FILE [--as-local] [--log-dir DIR]",
  description: "The config's controller kind decides what happens:\n" +
    "  local   the controller, autoscaler and workers run in this process until Ctrl-C or\n" +
    "          'iris cluster stop'; controller and worker logs go to --log-dir.\n" +
    "  gcp     creates (or reuses, or restarts) the labelled controller VM and waits until it\n" +
    "          answers; its autoscaler then creates TPU slices on demand. Returns.\n" +
    "  manual  starts 'iris controller serve' on the controller host over ssh (reusing one that\n" +
    "          answers); its autoscaler bootstraps workers on the listed hosts. Returns.\n" +
    "With --as-local, a gcp or manual config runs as a local cluster: the same scale groups\n" +
    "(accelerators, slice bounds, priorities, regions, attributes) with local providers, the\n" +
    "controller in this process, bundles stored by it; what it changed is printed. Use\n" +
    "--as-local with status, logs and stop too.",
  options: {
    config: CONFIG_OPTION,
    "as-local": AS_LOCAL_OPTION,
    "log-dir": {
      type: "string",
      value: "DIR",
      description: "local: where controller.log and workers/<id>.log go " +
        "(default: $IRIS_HOME/clusters/<name>-logs)",
    },
  },
  examples: [
    "iris cluster start --config examples/local.yaml",
    "iris cluster start --config examples/gcp.yaml",
    "iris cluster start --config examples/gcp.yaml --as-local",
  ],
  async run(p, io, signal) {
    const { path, config, asLocal } = await requireConfig(p, io, { verbose: true });
    const mode = configMode(config);
    if (mode === "local") return await startLocal(path, asLocal, config, p, io, signal);
    const lifecycle = createControllerLifecycle(config, {
      configText: await Deno.readTextFile(path),
    });
    io.err(`Starting the controller of cluster '${config.name}' (${mode})\n`);
    const t0 = performance.now();
    const url = await lifecycle.start();
    io.out(
      `Cluster '${config.name}' (${mode}) controller running at ${url} (${
        formatDuration(ms(performance.now() - t0))
      })\n` +
        `Status: iris cluster status --config ${path}` +
        (mode === "gcp" ? " (reaches it through an ssh tunnel)\n" : "\n"),
    );
    return 0;
  },
};

export const stopCommand: CommandSpec = {
  name: "cluster stop",
  summary: "Stop a cluster: its controller and every slice, in parallel, with a hard timeout.",
  usage: "cluster stop --config FILE [--as-local] [--timeout DURATION]",
  description:
    "local: signals the 'iris cluster start' process, which stops its workers and controller.\n" +
    "gcp: deletes the controller VM and every TPU slice carrying the cluster's labels.\n" +
    "manual: stops the controller and the worker on every configured host (over ssh).\n" +
    "What has not finished when the timeout passes is reported as timed out and abandoned.\n" +
    "Exit code 0 only when everything stopped.",
  options: {
    config: CONFIG_OPTION,
    "as-local": AS_LOCAL_OPTION,
    timeout: {
      type: "string",
      value: "DURATION",
      description: "Hard limit for the whole stop",
      default: "60s",
    },
  },
  examples: [
    "iris cluster stop --config examples/gcp.yaml",
    "iris cluster stop --config examples/manual.yaml --timeout 2m",
  ],
  async run(p, io) {
    const { config } = await requireConfig(p, io);
    const timeout = parseDuration(str(p, "timeout")!);
    if (timeout === undefined || timeout <= 0) {
      throw new UsageError(
        `--timeout must be a duration like 60s or 2m (got ${JSON.stringify(str(p, "timeout"))})`,
      );
    }
    const local = configMode(config) === "local" ? await readLocalRecord(config.name) : undefined;
    const report = await stopCluster(config, {
      timeout,
      log: (line) => io.out(line + "\n"),
    });
    const ok = !report.failed.length && !report.timedOut.length;
    if (ok && local) await clearCurrentCluster(local.url);
    return ok ? 0 : 1;
  },
};

export const logsCommand: CommandSpec = {
  name: "cluster logs",
  summary: "Stream the controller's and every worker's log into a directory until Ctrl-C.",
  usage: "cluster logs --config FILE [--as-local] [--log-dir DIR]",
  description:
    "One file per component (controller.log, one per worker), appended as lines arrive; new\n" +
    "workers are picked up as they appear. local: follows the files of the running\n" +
    "'iris cluster start'; gcp/manual: follows each daemon's log over ssh. Ctrl-C stops every\n" +
    "follower and waits for it.",
  options: {
    config: CONFIG_OPTION,
    "as-local": AS_LOCAL_OPTION,
    "log-dir": {
      type: "string",
      value: "DIR",
      description: "Where the log files go (default: ./iris-logs/<name>-<timestamp>)",
    },
  },
  examples: ["iris cluster logs --config examples/manual.yaml --log-dir /tmp/lab-logs"],
  async run(p, io, signal) {
    const { config } = await requireConfig(p, io);
    if (configMode(config) === "local" && !(await readLocalRecord(config.name))) {
      io.err(
        `iris cluster logs: local cluster '${config.name}' is not running ` +
          `(no live record at ${localRecordPath(config.name)}); start it with iris cluster start\n`,
      );
      return 1;
    }
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    const dir = str(p, "log-dir") ?? `iris-logs/${config.name}-${stamp}`;
    await using handle = startClusterLogStreaming(config, {
      outputDir: dir,
      signal,
      onTarget: (name) => io.out(`following ${name} -> ${dir}/${logFileName(name)}\n`),
      onError: (err) => io.err(`warning: ${describeError(err)}\n`),
    });
    io.out(`Streaming logs of cluster '${config.name}' into ${dir} (Ctrl-C to stop)\n`);
    await waitForAbort(signal);
    await handle.stop();
    io.err(`Stopped ${handle.discovered().length} log followers\n`);
    return 0;
  },
};
