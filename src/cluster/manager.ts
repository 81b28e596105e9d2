/**
 * Cluster operations behind `iris cluster start|stop|status|logs`, for every mode:
 * - where a running local cluster is recorded (the `cluster start` process owns it),
 * - stopCluster: controller and every slice in parallel under one hard timeout,
 * - startClusterLogStreaming: controller and worker logs into a directory, discovering workers,
 * - connectController: the URL a laptop reaches the controller at (an ssh tunnel on gcp),
 * - connectCluster: connect to a running cluster, optionally streaming its logs while connected.
 * @module
 */
import type { ClusterConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import { configMode } from "../config/mod.ts";
import { describeError, NotFoundError, PlatformError } from "../errors.ts";
import { type CommandRunner, DenoCommandRunner, runAll } from "../command/mod.ts";
import {
  type FollowedLogTarget,
  GcpControllerLifecycle,
  GcpPlatform,
  KubernetesControllerLifecycle,
  KubernetesPlatform,
  type LogStreamHandle,
  type LogTarget,
  ManualControllerLifecycle,
  ManualPlatform,
  startLogStreaming,
} from "../platform/mod.ts";
import type { ControllerLifecycle } from "../platform/mod.ts";
import { type Duration, ms, seconds, waitFor } from "../time.ts";
import { formatDuration } from "../format.ts";
import { createControllerLifecycle } from "./lifecycle.ts";
import { manualHostsFromConfig, platformFromConfig } from "./platforms.ts";
import { LocalController } from "./local_controller.ts";

/** Where Iris keeps files on this machine: `$IRIS_HOME`, else `~/.iris`. */
export function irisHome(): string {
  return Deno.env.get("IRIS_HOME") || `${Deno.env.get("HOME") || "/root"}/.iris`;
}

/** What a running local cluster (`iris cluster start` in local mode) records about itself. */
export interface LocalClusterRecord {
  readonly name: string;
  /** The `iris cluster start` process that runs the whole cluster. */
  readonly pid: number;
  readonly url: string;
  /** Where its controller.log and workers/<id>.log are written. */
  readonly logDir: string;
  readonly startedAtMs: number;
}

/** `<irisHome>/clusters/<name>.json`. */
export function localRecordPath(name: string): string {
  return `${irisHome()}/clusters/${name.replace(/[^A-Za-z0-9._-]/g, "_")}.json`;
}

function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

/** The record of a running local cluster named `name`; a stale record (dead pid) is removed. */
export async function readLocalRecord(name: string): Promise<LocalClusterRecord | undefined> {
  const path = localRecordPath(name);
  let record: LocalClusterRecord;
  try {
    record = JSON.parse(await Deno.readTextFile(path));
  } catch {
    return undefined;
  }
  if (typeof record.pid === "number" && alive(record.pid)) return record;
  await Deno.remove(path).catch(() => {});
  return undefined;
}

/** Writes the record; returns a disposable that removes it (only if it is still ours). */
export async function writeLocalRecord(record: LocalClusterRecord): Promise<AsyncDisposable> {
  const path = localRecordPath(record.name);
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(path, JSON.stringify(record, null, 2) + "\n");
  return {
    [Symbol.asyncDispose]: async () => {
      const current = await Deno.readTextFile(path).then(JSON.parse).catch(() => undefined);
      if (current?.pid === record.pid) await Deno.remove(path).catch(() => {});
    },
  };
}

/** Options of {@linkcode stopCluster}. */
export interface StopClusterOptions {
  /** Hard limit for the whole stop; what is still running then is abandoned. @default 60s */
  readonly timeout?: Duration;
  /** Progress and outcome lines. */
  readonly log: (line: string) => void;
  /** The shell-out seam (tests pass a ScriptedRunner). @default DenoCommandRunner */
  readonly runner?: CommandRunner;
  /** gcp/manual: the controller lifecycle. @default createControllerLifecycle(config) */
  readonly lifecycle?: ControllerLifecycle;
}

/** What {@linkcode stopCluster} did, by item ("controller", "slice …", "host …"). */
export interface StopReport {
  readonly stopped: string[];
  readonly failed: string[];
  readonly timedOut: string[];
}

/**
 * Stops a cluster: local — SIGTERM to the `cluster start` process, which stops its slices and
 * controller; gcp — deletes the controller VM and every labelled TPU slice; manual — stops the
 * controller and the worker of every configured host. Everything runs in parallel under one
 * hard timeout: what has not finished by then is logged as timed out and abandoned (its
 * shell-outs are killed).
 */
export async function stopCluster(
  config: ClusterConfig,
  options: StopClusterOptions,
): Promise<StopReport> {
  const timeout = options.timeout ?? seconds(60);
  const log = options.log;
  const report: StopReport = { stopped: [], failed: [], timedOut: [] };
  const mode = configMode(config);
  if (mode === "local") {
    const record = await readLocalRecord(config.name);
    if (!record) {
      log(`local cluster '${config.name}' is not running`);
      return report;
    }
    log(`stopping local cluster '${config.name}' (pid ${record.pid}, ${record.url})`);
    Deno.kill(record.pid, "SIGTERM");
    try {
      await waitFor(() => !alive(record.pid), { timeout, what: `pid ${record.pid} to exit` });
      report.stopped.push("controller");
      log("stopped: controller and its slices");
    } catch {
      report.timedOut.push("controller");
      log(`TIMED OUT after ${formatDuration(timeout)}: pid ${record.pid} still running; moving on`);
    }
    return report;
  }

  const started = performance.now();
  const runner = options.runner ?? new DenoCommandRunner();
  const lifecycle = options.lifecycle ?? createControllerLifecycle(config, { runner });
  const platform = platformFromConfig(config, { runner });
  const items: { name: string; run: (signal: AbortSignal) => Promise<void> }[] = [
    { name: "controller", run: (signal) => lifecycle.stop({ signal }) },
  ];
  if (platform instanceof ManualPlatform) {
    for (const host of platform.hosts()) {
      items.push({
        name: `worker on host ${host.host}`,
        run: (signal) => platform.stopHostWorker(host, { signal, timeout }),
      });
    }
  } else if (platform instanceof GcpPlatform) {
    try {
      const slices = await platform.listSlices({ timeout });
      for (const s of slices) {
        items.push({
          name: `slice ${s.sliceId}`,
          run: (signal) => platform.terminateSlice(s.sliceId, { signal, timeout }),
        });
      }
    } catch (err) {
      report.failed.push("list slices");
      log(`FAILED to list slices (stopping the controller anyway): ${describeError(err)}`);
    }
  }
  const remaining = ms(Math.max(1, timeout - (performance.now() - started)));
  log(`stopping ${items.map((i) => i.name).join(", ")} (timeout ${formatDuration(remaining)})`);
  const outcomes = await runAll(
    items.map((item) => async (signal: AbortSignal) => {
      const t0 = performance.now();
      await item.run(signal);
      return performance.now() - t0;
    }),
    { timeout: remaining, concurrency: 64 },
  );
  outcomes.forEach((o, i) => {
    const name = items[i]!.name;
    if (o.status === "fulfilled") {
      report.stopped.push(name);
      log(`stopped: ${name} (${formatDuration(ms(o.value))})`);
    } else if (o.status === "rejected") {
      report.failed.push(name);
      log(`FAILED: ${name}: ${describeError(o.reason)}`);
    } else {
      report.timedOut.push(name);
      log(`TIMED OUT after ${formatDuration(remaining)}: ${name}; moving on`);
    }
  });
  await platform.shutdown().catch(() => {});
  return report;
}

/** Options of {@linkcode startClusterLogStreaming}. */
export interface ClusterLogOptions {
  readonly outputDir: string;
  /** How often new workers are looked for. @default 10s (local: 1s) */
  readonly discoveryInterval?: Duration;
  readonly runner?: CommandRunner;
  readonly lifecycle?: ControllerLifecycle;
  readonly signal?: AbortSignal;
  readonly onError?: (err: unknown) => void;
  /** Called once per newly discovered target. */
  readonly onTarget?: (name: string) => void;
}

async function localLogFiles(dir: string, prefix = ""): Promise<string[]> {
  const files: string[] = [];
  try {
    for await (const e of Deno.readDir(`${dir}/${prefix}`)) {
      if (e.isDirectory) files.push(...await localLogFiles(dir, `${prefix}${e.name}/`));
      else if (e.isFile && e.name.endsWith(".log")) files.push(`${prefix}${e.name}`);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return files.sort();
}

/**
 * Discovery of the log targets of a cluster: local — every log file the running `cluster start`
 * process writes (followed with `tail -F`); gcp — the controller VM and every worker of every
 * labelled slice (over `gcloud … ssh`); manual — the controller host and every configured host;
 * kubernetes — the controller Pod and every worker Pod (the API server's followed Pod logs).
 */
export function clusterLogTargets(
  config: ClusterConfig,
  options: { runner?: CommandRunner; lifecycle?: ControllerLifecycle } = {},
): (signal: AbortSignal) => Promise<(LogTarget | FollowedLogTarget)[]> {
  const mode = configMode(config);
  if (mode === "local") {
    return async () => {
      const record = await readLocalRecord(config.name);
      if (!record) {
        throw new PlatformError(
          `Cannot stream the logs of local cluster '${config.name}' as it is not running (start it with iris cluster start)`,
        );
      }
      return (await localLogFiles(record.logDir)).map((file) => ({
        name: file.replace(/\.log$/, "").replaceAll("/", "-"),
        command: { argv: ["tail", "-n", "+1", "-F", `${record.logDir}/${file}`] },
      }));
    };
  }
  const runner = options.runner ?? new DenoCommandRunner();
  const lifecycle = options.lifecycle ?? createControllerLifecycle(config, { runner });
  const platform = platformFromConfig(config, { runner });
  return async (signal) => {
    const targets: (LogTarget | FollowedLogTarget)[] = [];
    if (lifecycle instanceof ManualControllerLifecycle) targets.push(lifecycle.logTarget());
    if (lifecycle instanceof KubernetesControllerLifecycle) {
      const t = await lifecycle.logTarget();
      if (t) targets.push(t);
    }
    if (platform instanceof KubernetesPlatform) {
      targets.push(...await platform.logTargets({ signal }));
    }
    if (lifecycle instanceof GcpControllerLifecycle) {
      const t = await lifecycle.logTarget();
      if (t) targets.push(t);
    }
    if (platform instanceof ManualPlatform) targets.push(...platform.hostLogTargets());
    if (platform instanceof GcpPlatform) targets.push(...await platform.logTargets({ signal }));
    return targets;
  };
}

/**
 * Streams the controller's and every worker's log into `<outputDir>/<name>.log` (one follower
 * process and one writer per file), picking up new workers as they appear. The handle's
 * `stop()` kills every follower and waits for it.
 */
export function startClusterLogStreaming(
  config: ClusterConfig,
  options: ClusterLogOptions,
): LogStreamHandle {
  const runner = options.runner ?? new DenoCommandRunner();
  const local = configMode(config) === "local";
  return startLogStreaming({
    runner,
    targets: clusterLogTargets(config, { runner, lifecycle: options.lifecycle }),
    outputDir: options.outputDir,
    discoveryInterval: options.discoveryInterval ?? (local ? seconds(1) : seconds(10)),
    signal: options.signal,
    onError: options.onError,
    onTarget: options.onTarget,
  });
}

/** A free TCP port on loopback (for a tunnel's local end). */
export function freeLocalPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    return (listener.addr as Deno.NetAddr).port;
  } finally {
    listener.close();
  }
}

/** A URL this machine reaches the controller at, and how to release it. */
export interface ControllerConnection extends AsyncDisposable {
  readonly url: string;
  /** "direct" or "ssh tunnel to <controller url>". */
  readonly via: string;
  close(): Promise<void>;
}

/**
 * Connects to a started controller: gcp — an ssh tunnel (`gcloud compute ssh … -L`) from a free
 * local port, since the VM's internal IP is not reachable from a laptop; closing kills the
 * tunnel and waits for it. kubernetes — a loopback proxy through the API server's service proxy
 * (the Service's cluster DNS name is not reachable from a laptop). local/manual — the
 * controller URL itself.
 */
export async function connectController(
  lifecycle: ControllerLifecycle | undefined,
  controllerUrl: string,
  options: { readonly localPort?: number } = {},
): Promise<ControllerConnection> {
  if (lifecycle instanceof GcpControllerLifecycle) {
    const tunnel = await lifecycle.tunnel(options.localPort ?? freeLocalPort());
    return {
      url: tunnel.url,
      via: `ssh tunnel to ${controllerUrl}`,
      close: () => tunnel.close(),
      [Symbol.asyncDispose]: () => tunnel.close(),
    };
  }
  if (lifecycle instanceof KubernetesControllerLifecycle) {
    const tunnel = await lifecycle.tunnel(options.localPort ?? 0);
    return {
      url: tunnel.url,
      via: `API server service proxy to ${controllerUrl}`,
      close: () => tunnel.close(),
      [Symbol.asyncDispose]: () => tunnel.close(),
    };
  }
  const close = () => Promise.resolve();
  return { url: controllerUrl, via: "direct", close, [Symbol.asyncDispose]: close };
}

/** Options of {@linkcode connectCluster}. */
export interface ConnectClusterOptions {
  /** The cluster's controller lifecycle. @default createControllerLifecycle(config, { runner }) */
  readonly lifecycle?: ControllerLifecycle;
  /**
   * The controller's URL when the caller just started it. @default local: the running
   * `cluster start` process's record; gcp/manual: `lifecycle.discover()`
   */
  readonly controllerUrl?: string;
  /** gcp: the tunnel's local port. @default a free one */
  readonly localPort?: number;
  /**
   * Streams the controller's and every worker's log into `<logDir>/<name>.log` while connected
   * (new workers are picked up as they appear); closing the connection stops every follower
   * and waits for it. Not for a local cluster run by this very process: its owner already
   * writes its logs (one owner per log file).
   */
  readonly logDir?: string;
  /** The shell-out seam (tests pass a ScriptedRunner). @default DenoCommandRunner */
  readonly runner?: CommandRunner;
  /** How often new workers are looked for. @default 10s (local: 1s) */
  readonly discoveryInterval?: Duration;
  /** Log streaming problems (streaming goes on). */
  readonly onLogError?: (err: unknown) => void;
  /** Called once per newly followed log. */
  readonly onLogTarget?: (name: string) => void;
}

/** A connection to a running cluster: its URL, how it is reached, and its log streaming. */
export interface ClusterConnection extends ControllerConnection {
  /** The controller's own URL (what workers use; on gcp not reachable from here). */
  readonly controllerUrl: string;
  /** The log stream, when connected with a `logDir` (and not an in-process local cluster). */
  readonly logs?: LogStreamHandle;
}

/**
 * Connects to a running cluster (seed 004's `connect(log_dir=…)`): finds its controller, opens
 * the way to it (an ssh tunnel on gcp, see {@linkcode connectController}) and, with `logDir`,
 * streams the controller's and workers' logs there until the connection is closed. Closing
 * stops log streaming (every follower killed and awaited), then the tunnel.
 * @throws {NotFoundError} when the cluster is not running
 */
export async function connectCluster(
  config: ClusterConfig,
  options: ConnectClusterOptions = {},
): Promise<ClusterConnection> {
  const mode = configMode(config);
  const runner = options.runner ?? new DenoCommandRunner();
  const lifecycle = options.lifecycle ??
    (mode === "local" ? undefined : createControllerLifecycle(config, { runner }));
  const url = options.controllerUrl ??
    (mode === "local" ? (await readLocalRecord(config.name))?.url : await lifecycle!.discover());
  if (!url) {
    throw new NotFoundError(
      `cluster '${config.name}' (${mode}) is not running` +
        (mode === "local" ? ` (no live record at ${localRecordPath(config.name)})` : ""),
    );
  }
  const connection = await connectController(lifecycle, url, { localPort: options.localPort });
  const inProcess = lifecycle instanceof LocalController && lifecycle.cluster !== undefined;
  let logs: LogStreamHandle | undefined;
  if (options.logDir !== undefined && !inProcess) {
    try {
      logs = startClusterLogStreaming(config, {
        outputDir: options.logDir,
        runner,
        lifecycle,
        discoveryInterval: options.discoveryInterval,
        onError: options.onLogError,
        onTarget: options.onLogTarget,
      });
    } catch (err) {
      await connection.close();
      throw err;
    }
  }
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      try {
        await logs?.stop();
      } finally {
        await connection.close();
      }
    })();
  return {
    url: connection.url,
    via: connection.via,
    controllerUrl: url,
    logs,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** What {@linkcode removeLeftovers} found and did. */
export interface LeftoversReport extends StopReport {
  /** What was found ("controller VM at …", "slice …"; manual: the hosts that were cleaned). */
  readonly found: string[];
}

/**
 * A clean start on a remote cluster (the smoke test's phase 0): lists what an earlier run left
 * (gcp: the labelled controller VM and every labelled slice; manual: every configured host may
 * still run a controller or worker, so all are cleaned) and removes it with
 * {@linkcode stopCluster}, logging what was found and what was removed. Local clusters leave
 * nothing behind: returns at once.
 */
export async function removeLeftovers(
  config: ClusterConfig,
  options: StopClusterOptions,
): Promise<LeftoversReport> {
  const mode = configMode(config);
  const empty = { found: [], stopped: [], failed: [], timedOut: [] };
  if (mode === "local") return empty;
  const runner = options.runner ?? new DenoCommandRunner();
  const lifecycle = options.lifecycle ?? createControllerLifecycle(config, { runner });
  const found: string[] = [];
  if (mode === "gcp" || mode === "kubernetes") {
    const platform = platformFromConfig(config, { runner });
    try {
      const url = await lifecycle.discover();
      if (url) found.push(`controller ${mode === "gcp" ? "VM" : "Deployment"} at ${url}`);
      for (const s of await platform.listSlices({ timeout: options.timeout })) {
        found.push(`slice ${s.sliceId} (${s.scaleGroup}, ${s.state})`);
      }
    } finally {
      await platform.shutdown().catch(() => {});
    }
    if (found.length === 0) {
      options.log("no leftovers of an earlier run");
      return empty;
    }
    options.log(`leftovers of an earlier run: ${found.join(", ")}; removing them`);
  } else {
    found.push(...manualHostsFromConfig(config).map((h) => `host ${h.host}`));
    options.log(
      `stopping any controller and worker an earlier run left on the controller host and ${
        found.join(", ") || "no worker host"
      }`,
    );
  }
  const report = await stopCluster(config, { ...options, runner, lifecycle });
  options.log(
    `removed: ${report.stopped.join(", ") || "nothing"}` +
      (report.failed.length ? `; FAILED: ${report.failed.join(", ")}` : "") +
      (report.timedOut.length ? `; TIMED OUT: ${report.timedOut.join(", ")}` : ""),
  );
  return { found, ...report };
}
