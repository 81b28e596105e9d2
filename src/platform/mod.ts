/**
 * Where workers come from: the `Platform` and `ControllerLifecycle` contracts and their local,
 * GCP, manual (ssh) and Kubernetes implementations and log streaming. The command runner and the
 * Kubernetes client they use are src/command and src/kube. Other folders import this module
 * only; it never imports src/controller or src/cluster (docs/architecture.md).
 * @module
 */
export { type IrisRuntime } from "./bootstrap.ts";
export { GcpControllerLifecycle, GcpPlatform } from "./gcp.ts";
export { KubernetesControllerLifecycle, KubernetesPlatform } from "./kubernetes.ts";
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
export { type WorkerSettings } from "./local_messages.ts";
