/**
 * Where workers come from: the `Platform` and `ControllerLifecycle` contracts and their local,
 * GCP, manual (ssh) and Kubernetes implementations, the command runner (the one place processes
 * are spawned) and log streaming. Other folders import this module only; it never imports
 * src/controller or src/cluster (docs/architecture.md).
 * @module
 */
export { type IrisRuntime } from "./bootstrap.ts";
export { type CommandRunner, DenoCommandRunner, runAll } from "./command.ts";
export { GcpControllerLifecycle, GcpPlatform } from "./gcp.ts";
export {
  KubeClient,
  type KubeObject,
  loadKubeCredentials,
  type WatchEvent,
} from "./kube_client.ts";
export {
  boundedKubeName,
  GPU_RESOURCE,
  kubeName,
  KubernetesControllerLifecycle,
  KubernetesPlatform,
  RDMA_RESOURCE,
} from "./kubernetes.ts";
export { LocalPlatform, localVmAttributes, localVmCount } from "./local.ts";
export {
  type FileLogSink,
  fileLogSink,
  type FollowedLogTarget,
  logFileName,
  type LogStreamHandle,
  type LogTarget,
  startLogStreaming,
} from "./log_stream.ts";
export {
  ManualControllerLifecycle,
  type ManualHostSpec,
  ManualPlatform,
  type SshDefaults,
} from "./manual.ts";
export {
  type ControllerLifecycle,
  type ControllerStatus,
  type Platform,
  type SliceInfo,
} from "./platform.ts";
export { type HealthCheck } from "./ssh.ts";
export { lastLines } from "./command.ts";
export { type WorkerSettings } from "./local_messages.ts";
