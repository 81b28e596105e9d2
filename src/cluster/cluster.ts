/**
 * A whole cluster controller from a config: the controller and its server, the platform the
 * config names, and the autoscaler driving that platform. Used by LocalController and by
 * `iris controller serve --config`.
 * @module
 */
import type { HttpTransport } from "../rpc/mod.ts";
import type { ClusterConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import {
  controllerAuth,
  labelPrefixOf,
  workerTokenEnv,
  type WorkerTokenSources,
} from "../config/mod.ts";
import {
  AutoscalerRunner,
  budgetsFromConfig,
  type ControllerServer,
  startController,
} from "../controller/mod.ts";
import type { IrisRuntime, Platform } from "../platform/mod.ts";
import { platformFromConfig } from "./platforms.ts";
import { bundleLimitsFor, DEFAULT_MAX_PACK_BYTES, MIB, openBundleStore } from "../bundle/mod.ts";
import { minutes, ms, seconds } from "../time.ts";
import { scaleGroupsFromConfig } from "./scale_groups.ts";
import { controllerDashboard } from "../dashboard/mod.ts";
import { VERSION } from "../version.ts";
import { resolve } from "node:path";
import { gcpWorkerTokenSources } from "./gcp_auth.ts";

/** Options for {@linkcode startCluster}. */
export interface StartClusterOptions {
  /**
   * Working directory: local VM directories, and bundles when the config names neither a
   * bundle_prefix nor a state_dir.
   */
  readonly workDir: string;
  readonly host?: string;
  /** URL workers and clients reach the controller at. @default the listen URL */
  readonly advertiseUrl?: string;
  /** Overrides the config's port. */
  readonly port?: number;
  /** Controller log lines. */
  readonly log?: (line: string) => void;
  /** Local VM log lines, by worker id. */
  readonly vmLog?: (workerId: string, line: string) => void;
  /** gcp/manual: how worker hosts find the Iris code. @default the platform's default */
  readonly runtime?: IrisRuntime;
  /** Move corrupt rows of the controller state to its quarantine table instead of refusing. */
  readonly skipCorruptRows?: boolean;
  /** Start from an incomplete controller state (lost or corrupt WAL) with a warning. */
  readonly acceptStateLoss?: boolean;
  /** The controller's HTTP server; overrides the config's auth.http_server. */
  readonly httpServer?: HttpTransport;
  /** A platform to use instead of the one the config names (tests). */
  readonly platform?: Platform;
  /** Where the worker token comes from when auth is on. @default the process environment */
  readonly workerTokenSources?: WorkerTokenSources;
}

/** A running cluster controller. */
export interface RunningCluster extends AsyncDisposable {
  readonly url: string;
  readonly server: ControllerServer;
  readonly platform: Platform;
  readonly autoscaler: AutoscalerRunner;
  /** Stops the autoscaler, terminates every slice, stops the controller. Each step runs. */
  stop(): Promise<void>;
}

/**
 * What `auth.mode: token` does not protect on local VMs (Deno Workers in this process, which
 * cannot switch users): logged at start, and in docs/security.md.
 */
export function localAuthWarning(groups: readonly string[]): string {
  return `WARNING: auth.mode token with local scale groups (${groups.join(", ")}): their tasks ` +
    `run as this process's OS user, not as users of their own, so any task can read the worker ` +
    `token file, the controller's state directory and database, other tasks' directories, and ` +
    `other tasks' environments (/proc/<pid>/environ, which holds each task's IRIS_TOKEN), and ` +
    `so act as the worker or as any user. Tokens here keep out other clients, not tasks: run ` +
    `only trusted jobs, or use manual hosts with a root worker (task users) to isolate tasks.`;
}

/** Starts the controller, platform and autoscaler a config describes. */
export async function startCluster(
  config: ClusterConfig,
  options: StartClusterOptions,
): Promise<RunningCluster> {
  const c = config.controller!;
  const heartbeatInterval = ms(c.heartbeatIntervalMs || seconds(1));
  const auth = controllerAuth(
    config.auth,
    // gcp: the controller makes its own worker token (gcp_auth.ts); workers enrol for it.
    gcpWorkerTokenSources(
      config,
      options.workerTokenSources ?? (config.auth?.mode === "token" ? workerTokenEnv() : {}),
      c.stateDir || options.workDir,
    ),
  );
  const workerToken = auth.policy.mode === "token" ? auth.policy.workerToken : undefined;
  const localGroups = Object.entries(config.scaleGroups)
    .filter(([, g]) => g.provider?.kind.case === "local").map(([name]) => name);
  if (workerToken && localGroups.length > 0) options.log?.(localAuthWarning(localGroups));
  const protectedPaths = [options.workDir, c.stateDir, config.auth?.workerTokenFile ?? ""]
    .filter((p) => p !== "").map((p) => resolve(p));
  const platform = options.platform ??
    platformFromConfig(config, {
      workDir: options.workDir,
      heartbeatInterval,
      vmLog: options.vmLog,
      runtime: options.runtime,
      workerToken,
      protectedPaths,
    });
  // Without a bundle_prefix the controller keeps bundles itself (state dir, else the work dir)
  // and workers fetch them with GetBundle.
  const maxBundleBytes = c.maxBundleBytes || DEFAULT_MAX_PACK_BYTES;
  const bundles = openBundleStore(
    c.bundlePrefix || `${c.stateDir ? resolve(c.stateDir) : options.workDir}/bundles`,
    bundleLimitsFor(maxBundleBytes),
  );
  const groups = scaleGroupsFromConfig(config);
  // The server's hooks and the runner refer to each other; the runner is set right below.
  const hooks: { autoscaler?: AutoscalerRunner } = {};
  const port = options.port ??
    (c.kind.case === "local"
      ? c.kind.value.port
      : c.kind.case === "gcp"
      ? c.kind.value.port || 10000
      : c.kind.case === "manual" || c.kind.case === "kubernetes"
      ? c.kind.value.port || 10000
      : 0);
  const server = startController({
    host: options.host ?? (c.kind.case === "local" ? c.kind.value.host || "127.0.0.1" : "0.0.0.0"),
    port,
    advertiseUrl: options.advertiseUrl,
    heartbeatInterval,
    heartbeatFailureThreshold: c.heartbeatFailureThreshold || 3,
    heartbeatMaxRate: c.heartbeatMaxRate || undefined,
    maxBuildingPerWorker: c.maxBuildingTasksPerWorker || undefined,
    workerReconnectMax: c.workerReconnectMaxMs ? ms(c.workerReconnectMaxMs) : undefined,
    reclaimMargin: c.reclaimMarginMs ? ms(c.reclaimMarginMs) : undefined,
    taskEnv: config.defaults?.taskEnv,
    userBudgets: budgetsFromConfig(c.userBudgets),
    // Durable state when the config names a directory (docs/durability.md).
    stateDir: c.stateDir || undefined,
    stateSkipCorruptRows: options.skipCorruptRows,
    stateAcceptLoss: options.acceptStateLoss,
    // Task log bounds; files go under <state_dir>/logs (docs/durability.md).
    logs: {
      memoryBytes: c.logMemoryBytes || undefined,
      taskMemoryBytes: c.logTaskMemoryBytes || undefined,
      retention: c.logRetentionMs ? ms(c.logRetentionMs) : undefined,
      diskBytes: c.logDiskBytes || undefined,
      attemptFileBytes: c.logAttemptFileBytes || undefined,
    },
    bundles,
    maxBundleBytes,
    auth: auth.policy,
    launchRateLimit: auth.launchRateLimit,
    // An upload of the largest bundle must fit in one request.
    maxRequestBytes: auth.maxRequestBytes ?? Math.max(DEFAULT_MAX_PACK_BYTES, maxBundleBytes + MIB),
    connectionLimits: options.httpServer
      ? { ...auth.connectionLimits, transport: options.httpServer }
      : auth.connectionLimits,
    log: options.log,
    version: VERSION,
    fallback: (req) => controllerDashboard(req) ?? new Response("Not found\n", { status: 404 }),
    autoscalerStatus: () => hooks.autoscaler!.status(),
    onSchedule: (plan, snapshot) => hooks.autoscaler?.observe(plan, snapshot),
    onWorkerDead: (_id, sliceId) => hooks.autoscaler?.workerDead(sliceId),
  });
  const autoscaler = new AutoscalerRunner({
    host: server.controller,
    platform,
    groups,
    labelPrefix: labelPrefixOf(config),
    evaluationInterval: ms(config.defaults?.autoscaler?.evaluationIntervalMs || seconds(1)),
    backoff: {
      initial: ms(config.defaults?.autoscaler?.backoffInitialMs || seconds(5)),
      max: ms(config.defaults?.autoscaler?.backoffMaxMs || seconds(300)),
      factor: 2,
    },
    quotaBackoff: {
      initial: ms(config.defaults?.autoscaler?.quotaBackoffMs || minutes(5)),
      max: ms(4 * (config.defaults?.autoscaler?.quotaBackoffMs || minutes(5))),
      factor: 2,
    },
    // gcp workers start from metadata: they get a one-time enrolment token, not the worker token.
    enrolmentToken: workerToken && platform.kind === "gcp"
      ? (sliceId, vms) =>
        server.controller.accounts.enrolments.issue(
          sliceId,
          vms,
          server.controller.clock.now() + minutes(60),
          server.controller.clock.now(),
        )
      : undefined,
  });
  hooks.autoscaler = autoscaler;
  await autoscaler.start();
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      await autoscaler.stop().catch((e) => options.log?.(`stopping autoscaler: ${e}`));
      await platform.shutdown({ timeout: seconds(60) }).catch((e) =>
        options.log?.(`stopping slices: ${e}`)
      );
      await server.stop().catch((e) => options.log?.(`stopping controller: ${e}`));
    })();
    return stopped;
  };
  return { url: server.url, server, platform, autoscaler, stop, [Symbol.asyncDispose]: stop };
}
