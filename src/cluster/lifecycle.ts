/**
 * Chooses the controller lifecycle a config describes: LocalController for `controller.local`,
 * a GCE VM for `controller.gcp`, an ssh host for `controller.manual`, a Deployment for
 * `controller.kubernetes`. Health checks are real
 * GetControllerStatus calls, injected so platforms never import the controller.
 * @module
 */
import type { ClusterConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import type { ControllerLifecycle, HealthCheck } from "../platform/mod.ts";
import type { KubeClient } from "../kube/mod.ts";
import { type CommandRunner, DenoCommandRunner } from "../command/mod.ts";
import {
  configMode,
  controllerAuth,
  labelPrefixOf,
  workerTokenEnv,
  type WorkerTokenSources,
} from "../config/mod.ts";
import { controllerClient } from "../rpc/mod.ts";
import {
  GcpControllerLifecycle,
  KubernetesControllerLifecycle,
  ManualControllerLifecycle,
} from "../platform/mod.ts";
import {
  kubeConnector,
  KUBERNETES_TOKEN_MODE_UNSUPPORTED,
  manualHostsFromConfig,
  runtimeFromConfig,
  sshDefaultsFromConfig,
} from "./platforms.ts";
import { gcpTokenMode } from "./gcp_auth.ts";
import { ConfigError } from "../errors.ts";
import { Code, ConnectError } from "@connectrpc/connect";
import { LocalController, type LocalControllerOptions } from "./local_controller.ts";

/** Options for {@linkcode createControllerLifecycle}. */
export interface LifecycleOptions extends LocalControllerOptions {
  /** The config file's text, handed to `iris controller serve --config` on a remote controller. */
  readonly configText?: string;
  /** gcp/manual: the shell-out seam (tests pass a ScriptedRunner). @default DenoCommandRunner */
  readonly runner?: CommandRunner;
  /**
   * auth.mode token: where the worker token comes from (it is delivered to a manual controller
   * host). @default the config's auth.worker_token_file and the process environment
   */
  readonly workerTokenSources?: WorkerTokenSources;
  /** kubernetes: the API client (tests point it at a stand-in). @default from the kubeconfig */
  readonly kubeConnect?: () => Promise<KubeClient>;
}

/**
 * A check that a controller at `url` answers GetControllerStatus as healthy. With auth on, the
 * operator holds the worker token, which may not read the status: the PermissionDenied the
 * controller answers only after recognising the token proves it is up and is ours.
 */
export function controllerHealthCheck(workerToken?: string): HealthCheck {
  return async (url, signal) => {
    try {
      const rpc = controllerClient(url, { token: workerToken });
      return (await rpc.getControllerStatus({}, { signal })).healthy;
    } catch (err) {
      return workerToken !== undefined && err instanceof ConnectError &&
        err.code === Code.PermissionDenied;
    }
  };
}

/** True when a controller at `url` (auth off) answers GetControllerStatus as healthy. */
export const controllerHealthy: HealthCheck = controllerHealthCheck();

/**
 * gcp with token auth, where the operator holds no worker token: a controller that answers
 * `unauthenticated` is up and enforcing auth (the VM is the one the lifecycle created).
 */
export const authedControllerUp: HealthCheck = async (url, signal) => {
  try {
    return (await controllerClient(url).getControllerStatus({}, { signal })).healthy;
  } catch (err) {
    return err instanceof ConnectError && err.code === Code.Unauthenticated;
  }
};

/** The lifecycle for `config`'s controller kind. */
export function createControllerLifecycle(
  config: ClusterConfig,
  options: LifecycleOptions = {},
): ControllerLifecycle {
  const mode = configMode(config);
  const c = config.controller!;
  if (mode === "local" || c.kind.case === "local") return new LocalController(config, options);
  const runner = options.runner ?? new DenoCommandRunner();
  const labelPrefix = labelPrefixOf(config);
  if (c.kind.case === "gcp") {
    // With token auth the controller VM makes its own worker token and workers enrol for it
    // (gcp_auth.ts): the operator's machine needs no worker token and none goes into metadata.
    return new GcpControllerLifecycle({
      runner,
      project: config.platform?.gcp?.projectId ?? "",
      zone: c.kind.value.zone,
      labelPrefix,
      port: c.kind.value.port || 10000,
      machineType: c.kind.value.machineType || undefined,
      bootDiskSizeGb: c.kind.value.bootDiskSizeGb || undefined,
      serviceAccount: c.kind.value.serviceAccount || undefined,
      clusterConfig: options.configText,
      runtime: runtimeFromConfig(config),
      checkHealth: gcpTokenMode(config) ? authedControllerUp : controllerHealthy,
    });
  }
  const auth = config.auth?.mode === "token"
    ? controllerAuth(config.auth, options.workerTokenSources ?? workerTokenEnv())
    : undefined;
  const workerToken = auth?.policy.mode === "token" ? auth.policy.workerToken : undefined;
  if (c.kind.case === "kubernetes") {
    if (workerToken !== undefined) {
      throw new ConfigError("auth.mode", KUBERNETES_TOKEN_MODE_UNSUPPORTED);
    }
    const k = config.platform?.kubernetes;
    return new KubernetesControllerLifecycle({
      connect: options.kubeConnect ?? kubeConnector(config),
      labelPrefix,
      namespace: k?.namespace || undefined,
      flavour: k?.flavour === "generic" ? "generic" : "coreweave",
      image: k?.image ?? "",
      port: c.kind.value.port || 10000,
      controllerInstanceType: c.kind.value.instanceType || undefined,
      controllerNodeSelector: c.kind.value.nodeSelector,
      scaleGroups: config.scaleGroups,
      clusterConfig: options.configText,
      checkHealth: controllerHealthCheck(workerToken),
    });
  }
  const manual = c.kind.value!;
  const host = "host" in manual ? manual.host : "";
  return new ManualControllerLifecycle({
    runner,
    // A controller host that is also a worker host keeps its own deno_path.
    host: { host, denoPath: manualHostsFromConfig(config).find((h) => h.host === host)?.denoPath },
    runtime: runtimeFromConfig(config),
    ssh: sshDefaultsFromConfig(config),
    port: ("port" in manual ? manual.port : 0) || 10000,
    clusterConfig: options.configText,
    workerToken,
    checkHealth: controllerHealthCheck(workerToken),
  });
}
