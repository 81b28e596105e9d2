/**
 * The one interface the controller uses to get machines, and the controller lifecycle protocol.
 * Platforms provision slices (groups of VMs, each running `iris worker serve`); they do NOT
 * schedule, track job state or decide when to scale — that is the controller's job.
 * Implementations: local.ts (Deno Workers in-process), gcp.ts (gcloud), manual.ts (ssh hosts),
 * kubernetes.ts (Pods through the API server).
 * This layer never imports src/controller/.
 * @module
 */
import type { ScaleGroupConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import type { Attributes } from "../types.ts";
import type { Duration, Timestamp } from "../time.ts";

/** State of a slice as the platform reports it. */
export type CloudSliceState =
  | "creating"
  | "bootstrapping"
  | "ready"
  | "failed"
  | "deleting"
  | "unknown";

/** State of one VM of a slice. */
export type VmState = "booting" | "ready" | "failed" | "terminated" | "unknown";

/** One VM (= one worker) of a slice. */
export interface VmInfo {
  readonly vmId: string;
  /** The worker id the VM's worker registers with. */
  readonly workerId: string;
  /** Internal address, e.g. "10.0.0.3" or "127.0.0.1:43121" locally. */
  readonly address: string;
  readonly state: VmState;
  /** Attributes the VM's worker advertises (tpu-name, tpu-worker-id, …). */
  readonly attributes: Attributes;
}

/** A slice: VMs created and terminated together. */
export interface SliceInfo {
  readonly sliceId: string;
  readonly scaleGroup: string;
  readonly zone: string;
  readonly state: CloudSliceState;
  readonly vms: readonly VmInfo[];
  readonly createdAt: Timestamp;
  readonly labels: Readonly<Record<string, string>>;
  readonly error?: string;
}

/** What the controller asks for when it scales a group up. */
export interface CreateSliceRequest {
  /** Chosen by the controller: `{label_prefix}-{group}-{n}`. */
  readonly sliceId: string;
  readonly scaleGroup: string;
  readonly config: ScaleGroupConfig;
  /** VMs (workers) the slice has: the TPU topology's hosts, 1 for cpu/gpu groups. */
  readonly vmCount: number;
  /** Where the slice's workers register. */
  readonly controllerUrl: string;
  /**
   * auth.mode token on gcp: a one-time token each worker of the slice trades for the worker
   * token at first start (EnrolWorker); the worker token itself never goes into metadata.
   */
  readonly enrolmentToken?: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** Options common to platform calls. */
export interface PlatformCallOptions {
  /** Hard limit for the whole call. */
  readonly timeout?: Duration;
  readonly signal?: AbortSignal;
}

/**
 * Provisions and tears down slices.
 *
 * - local: each VM is a Deno Worker running the worker code in-process, with scoped permissions.
 * - gcp: TPU VMs via `gcloud compute tpus tpu-vm`, bootstrapped by startup script or ssh.
 * - manual: hosts from a fixed list, bootstrapped over ssh and returned to the pool on terminate.
 * - kubernetes: one worker Pod per host through the API server (CoreWeave NodePools scale the
 *   nodes); terminate deletes the Pods.
 */
export interface Platform extends AsyncDisposable {
  readonly kind: "local" | "gcp" | "manual" | "kubernetes";
  /**
   * Creates a slice and starts its workers. Resolves once the platform accepted the request
   * (local: workers started; gcp: create returned; manual: hosts taken and bootstrapped).
   * @throws {QuotaExhaustedError} capacity or quota exhausted (the autoscaler backs off)
   * @throws {PlatformError} any other failure; nothing is left half-created
   */
  createSlice(request: CreateSliceRequest, options?: PlatformCallOptions): Promise<SliceInfo>;
  /** Slices this platform manages (by label), optionally of one group. */
  listSlices(options?: PlatformCallOptions & { scaleGroup?: string }): Promise<SliceInfo[]>;
  /** Current view of one slice. @throws {ResourceNotFoundError} */
  describeSlice(sliceId: string, options?: PlatformCallOptions): Promise<SliceInfo>;
  /** Terminates a slice and everything on it. Idempotent. */
  terminateSlice(sliceId: string, options?: PlatformCallOptions): Promise<void>;
  /** Bootstrap/startup log of one VM (empty when there is none). */
  startupLogs(sliceId: string, vmId: string, options?: PlatformCallOptions): Promise<string>;
  /** Releases everything the platform holds (terminates local slices). */
  shutdown(options?: PlatformCallOptions): Promise<void>;
}

/** Health of a controller as seen through its RPC API. */
export interface ControllerStatus {
  readonly running: boolean;
  readonly url: string;
  /** From a real GetControllerStatus call, not assumed. */
  readonly healthy: boolean;
  readonly message?: string;
}

/**
 * The controller lifecycle protocol: how a cluster's controller is started and found.
 * LocalController runs it in-process; GCP creates a VM; manual starts it on a host over ssh.
 */
export interface ControllerLifecycle extends AsyncDisposable {
  /** Starts the controller (reusing a running one on gcp/manual); resolves to its URL. */
  start(): Promise<string>;
  /**
   * Stops the controller and everything it started. Best-effort per step, every step runs.
   * Aborting `options.signal` kills the shell-outs still running (callers' hard timeouts).
   */
  stop(options?: { readonly signal?: AbortSignal }): Promise<void>;
  /** stop() then start(). */
  restart(): Promise<string>;
  /** Picks up new code/config: local = restart; gcp/manual = pull and restart the process. */
  reload(): Promise<string>;
  /** The URL of a running controller, or undefined. */
  discover(): Promise<string | undefined>;
  /** Startup/boot log of the controller. */
  fetchStartupLogs(): Promise<string>;
  /** Health from an RPC call. */
  status(): Promise<ControllerStatus>;
}
