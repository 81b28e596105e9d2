/**
 * The platform a cluster config names, built from the config: LocalPlatform for `local`,
 * GcpPlatform for `gcp` (project, zones, label prefix), ManualPlatform for `manual` (the hosts of
 * every manual scale group, ssh defaults from `platform.ssh`). Health checks are real RPCs,
 * injected here so the platform layer never imports the controller or the worker.
 * @module
 */
import type { ClusterConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import { configMode, labelPrefixOf } from "../config/mod.ts";
import { workerClient } from "../rpc/mod.ts";
import type { HealthCheck, IrisRuntime, Platform, WorkerSettings } from "../platform/mod.ts";
import { type CommandRunner, DenoCommandRunner } from "../command/mod.ts";
import { KubeClient, loadKubeCredentials } from "../kube/mod.ts";
import {
  GcpPlatform,
  KubernetesPlatform,
  LocalPlatform,
  type ManualHostSpec,
  ManualPlatform,
  type SshDefaults,
} from "../platform/mod.ts";
import { type Duration, ms, seconds } from "../time.ts";
import { ConfigError, InvalidArgumentError } from "../errors.ts";

/** Options of {@linkcode platformFromConfig}. */
export interface PlatformFromConfigOptions {
  /** Local mode: where VM directories go (required there). */
  readonly workDir?: string;
  /** Local mode: the workers' heartbeat interval. @default 1s */
  readonly heartbeatInterval?: Duration;
  /** Local mode: worker log lines by worker id. */
  readonly vmLog?: (workerId: string, line: string) => void;
  /** The shell-out seam (tests pass a ScriptedRunner). @default DenoCommandRunner */
  readonly runner?: CommandRunner;
  /** How remote hosts find the Iris code. @default the config's `defaults.runtime` */
  readonly runtime?: IrisRuntime;
  /**
   * The worker token when auth is on: local hands it to VMs in memory, manual sends it to each
   * host over ssh stdin; gcp workers enrol instead (src/controller/enrolment.ts).
   */
  readonly workerToken?: string;
  /** Local mode: paths no module task may be granted (worker root, state dir, token file). */
  readonly protectedPaths?: readonly string[];
}

/** `platform.ssh` as the manual platform's defaults (undefined when not configured). */
export function sshDefaultsFromConfig(config: ClusterConfig): SshDefaults | undefined {
  const ssh = config.platform?.ssh;
  if (!ssh) return undefined;
  return {
    user: ssh.user || undefined,
    keyFile: ssh.keyFile || undefined,
    port: ssh.port || undefined,
    connectTimeout: ssh.connectTimeoutMs ? ms(ssh.connectTimeoutMs) : undefined,
    knownHostsFile: ssh.knownHostsFile || undefined,
  };
}

/** `defaults.runtime`: how remote hosts get Deno (undefined when not configured). */
export function runtimeFromConfig(config: ClusterConfig): IrisRuntime | undefined {
  const r = config.defaults?.runtime;
  if (!r) return undefined;
  return { denoPath: r.denoPath || undefined, denoFromNpm: r.denoFromNpm || undefined };
}

/** `defaults.outputs` and `defaults.python`: what every worker of the cluster is started with. */
export function workerSettingsFromConfig(config: ClusterConfig): WorkerSettings {
  const o = config.defaults?.outputs;
  const py = config.defaults?.python;
  const installer = py?.installer;
  return {
    ...(o?.retentionMs ? { outputRetentionMs: o.retentionMs } : {}),
    ...(o?.prefix ? { outputsPrefix: o.prefix } : {}),
    ...(installer === "uv" || installer === "pip" || installer === "auto"
      ? { pythonInstaller: installer }
      : {}),
    ...(py?.cacheBytes ? { pythonCacheBytes: py.cacheBytes } : {}),
    ...(py?.cacheMaxAgeMs ? { pythonCacheMaxAgeMs: py.cacheMaxAgeMs } : {}),
  };
}

/** The `iris worker serve` flags of {@linkcode WorkerSettings} (gcp and manual hosts). */
export function workerSettingsFlags(s: WorkerSettings): string[] {
  const out: string[] = [];
  if (s.outputRetentionMs) out.push("--output-retention", `${s.outputRetentionMs}ms`);
  if (s.outputsPrefix) out.push("--outputs-prefix", s.outputsPrefix);
  if (s.pythonInstaller) out.push("--python-installer", s.pythonInstaller);
  if (s.pythonCacheBytes) out.push("--python-cache-size", String(s.pythonCacheBytes));
  if (s.pythonCacheMaxAgeMs) out.push("--python-cache-max-age", `${s.pythonCacheMaxAgeMs}ms`);
  return out;
}

/** The remote runtime with the config's worker settings as `iris worker serve` flags. */
function remoteRuntime(config: ClusterConfig, runtime: IrisRuntime | undefined) {
  const workerArgs = workerSettingsFlags(workerSettingsFromConfig(config));
  return workerArgs.length ? { ...runtime, workerArgs } : runtime;
}

/** Every host of every manual scale group, first mention wins, in config order. */
export function manualHostsFromConfig(config: ClusterConfig): ManualHostSpec[] {
  const hosts = new Map<string, ManualHostSpec>();
  const groups = Object.entries(config.scaleGroups).sort(([a], [b]) => a.localeCompare(b));
  for (const [, group] of groups) {
    if (group.provider?.kind.case !== "manual") continue;
    for (const h of group.provider.kind.value.hosts) {
      if (hosts.has(h.host)) continue;
      hosts.set(h.host, {
        host: h.host,
        user: h.user || undefined,
        keyFile: h.keyFile || undefined,
        port: h.port || undefined,
        knownHostsFile: h.knownHostsFile || undefined,
        denoPath: h.denoPath || undefined,
      });
    }
  }
  return [...hosts.values()];
}

/** A check that a worker at `url` answers its Health RPC as healthy, sending `workerToken`. */
export function workerHealthCheck(workerToken?: string): HealthCheck {
  return async (url, signal) => {
    try {
      return (await workerClient(url, { token: workerToken }).health({}, { signal })).healthy;
    } catch {
      return false;
    }
  };
}

/** True when a worker at `url` (auth off) answers its Health RPC as healthy. */
export const workerHealthy: HealthCheck = workerHealthCheck();

/** Why a kubernetes cluster refuses auth.mode token for now. */
export const KUBERNETES_TOKEN_MODE_UNSUPPORTED =
  'mode "token" is not supported on kubernetes yet: worker Pods would need the worker token from a Secret, which Iris does not create yet; use mode "none" inside the cluster network';

/** A connector to the API server the config's `platform.kubernetes` names. */
export function kubeConnector(config: ClusterConfig): () => Promise<KubeClient> {
  const k = config.platform?.kubernetes;
  return async () =>
    new KubeClient(
      await loadKubeCredentials({
        kubeconfig: k?.kubeconfig || undefined,
        context: k?.context || undefined,
      }),
    );
}

/** The platform `config` describes. */
export function platformFromConfig(
  config: ClusterConfig,
  options: PlatformFromConfigOptions = {},
): Platform {
  const mode = configMode(config);
  const runner = options.runner ?? new DenoCommandRunner();
  const labelPrefix = labelPrefixOf(config);
  switch (mode) {
    case "local":
      if (!options.workDir) {
        throw new InvalidArgumentError("workDir", "A local platform needs a work directory");
      }
      return new LocalPlatform({
        rootDir: `${options.workDir}/vms`,
        heartbeatInterval: options.heartbeatInterval ?? seconds(1),
        workerToken: options.workerToken,
        protectedPaths: options.protectedPaths,
        log: options.vmLog,
        workerSettings: workerSettingsFromConfig(config),
      });
    case "gcp":
      // With auth, gcp workers enrol (EnrolWorker) instead of getting the worker token.
      return new GcpPlatform({
        runner,
        project: config.platform?.gcp?.projectId ?? "",
        zones: config.platform?.gcp?.zones ?? [],
        labelPrefix,
        runtime: remoteRuntime(config, options.runtime ?? runtimeFromConfig(config)),
        gpuVms: Object.values(config.scaleGroups).some((g) => g.provider?.kind.case === "gce"),
      });
    case "manual":
      return new ManualPlatform({
        runner,
        hosts: manualHostsFromConfig(config),
        ssh: sshDefaultsFromConfig(config),
        checkHealth: workerHealthCheck(options.workerToken),
        runtime: remoteRuntime(config, options.runtime ?? runtimeFromConfig(config)),
        workerToken: options.workerToken,
      });
    case "kubernetes": {
      if (options.workerToken !== undefined) {
        throw new ConfigError("auth.mode", KUBERNETES_TOKEN_MODE_UNSUPPORTED);
      }
      const k = config.platform?.kubernetes;
      return new KubernetesPlatform({
        connect: kubeConnector(config),
        labelPrefix,
        namespace: k?.namespace || undefined,
        flavour: k?.flavour === "generic" ? "generic" : "coreweave",
        image: k?.image ?? "",
        runtime: k?.runtime === "kubernetes" ? "kubernetes" : "process",
        s3SecretName: k?.s3SecretName || undefined,
        cacheDir: k?.cacheDir || undefined,
      });
    }
  }
}
