/**
 * Pure gcloud argv builders, JSON output parsers and error classification for the GCP platform.
 * Runs nothing itself: gcp.ts sends these Commands through a CommandRunner.
 * @module
 */
import {
  PermissionDeniedError,
  PlatformError,
  PlatformUnavailableError,
  QuotaExhaustedError,
  ResourceNotFoundError,
} from "../errors.ts";
import { type Timestamp, timestamp } from "../time.ts";
import { type Command, type CommandResult, lastLines } from "../command/mod.ts";
import type { CloudSliceState, SliceInfo, VmState } from "./platform.ts";

/** Default machine type of the controller VM. */
export const DEFAULT_CONTROLLER_MACHINE_TYPE = "n2-standard-4";
/** Default TPU runtime when a scale group names none. */
export const DEFAULT_TPU_RUNTIME = "tpu-ubuntu2204-base";

/** `k=v,k2=v2` in a stable (sorted) order. */
export function formatLabels(labels: Readonly<Record<string, string>>): string {
  return Object.keys(labels).sort().map((k) => `${k}=${labels[k]}`).join(",");
}

/** A valid GCP label value: lowercase letters, digits, `_` and `-`, at most 63 characters. */
export function labelValue(value: string): string {
  return value.toLowerCase().replace(/[^a-z0-9_-]/g, "-").slice(0, 63);
}

/** A valid GCE/TPU resource name: `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters. */
export function resourceName(value: string): string {
  let name = value.toLowerCase().replace(/[^a-z0-9-]/g, "-").replace(/-+/g, "-");
  if (!/^[a-z]/.test(name)) name = `x-${name}`;
  return name.slice(0, 63).replace(/-+$/, "");
}

/** Label keys of one label prefix, computed once per platform. */
export interface LabelKeys {
  readonly managed: string;
  readonly scaleGroup: string;
  readonly sliceId: string;
  readonly controller: string;
}

/** `{prefix}-managed`, `{prefix}-scale-group`, `{prefix}-slice-id`, `{prefix}-controller`. */
export function labelKeys(prefix: string): LabelKeys {
  const p = labelValue(prefix);
  return {
    managed: `${p}-managed`,
    scaleGroup: `${p}-scale-group`,
    sliceId: `${p}-slice-id`,
    controller: `${p}-controller`,
  };
}

/** Where a TPU or VM lives. */
export interface GcpLocation {
  readonly zone: string;
  readonly project: string;
}

/** A request for `gcloud compute tpus tpu-vm create`. */
export interface TpuCreateSpec extends GcpLocation {
  readonly name: string;
  /** e.g. "v5litepod-16" */
  readonly acceleratorType: string;
  /** e.g. "tpu-ubuntu2204-base" */
  readonly runtimeVersion: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly preemptible?: boolean;
  /** Startup script, passed as metadata through stdin (`--metadata-from-file startup-script=/dev/stdin`). */
  readonly startupScript?: string;
}

const TPU = ["gcloud", "compute", "tpus", "tpu-vm"] as const;
const INSTANCES = ["gcloud", "compute", "instances"] as const;

function where(loc: GcpLocation): string[] {
  return [`--zone=${loc.zone}`, `--project=${loc.project}`];
}

function withStartupScript(argv: string[], script: string | undefined): Command {
  if (script === undefined) return { argv };
  return { argv: [...argv, "--metadata-from-file=startup-script=/dev/stdin"], stdin: script };
}

/** `gcloud compute tpus tpu-vm create …` (waits for the node; `--format=json` prints it). */
export function gcloudTpuCreate(spec: TpuCreateSpec): Command {
  const argv = [
    ...TPU,
    "create",
    spec.name,
    ...where(spec),
    `--accelerator-type=${spec.acceleratorType}`,
    `--version=${spec.runtimeVersion}`,
    `--labels=${formatLabels(spec.labels)}`,
  ];
  if (spec.preemptible) argv.push("--preemptible");
  const cmd = withStartupScript(argv, spec.startupScript);
  return { ...cmd, argv: [...cmd.argv, "--format=json", "--quiet"] };
}

/** `gcloud compute tpus tpu-vm list` of one zone, filtered on a label (and optionally more). */
export function gcloudTpuList(loc: GcpLocation, filter: string): Command {
  return { argv: [...TPU, "list", ...where(loc), `--filter=${filter}`, "--format=json"] };
}

/** `gcloud compute tpus tpu-vm describe NAME --format=json` */
export function gcloudTpuDescribe(name: string, loc: GcpLocation): Command {
  return { argv: [...TPU, "describe", name, ...where(loc), "--format=json"] };
}

/** `gcloud compute tpus tpu-vm delete NAME --quiet --async` (returns once deletion started). */
export function gcloudTpuDelete(name: string, loc: GcpLocation): Command {
  return { argv: [...TPU, "delete", name, ...where(loc), "--quiet", "--async"] };
}

/** A request for the controller VM (`gcloud compute instances create`). */
export interface InstanceCreateSpec extends GcpLocation {
  readonly name: string;
  /** @default "n2-standard-4" */
  readonly machineType?: string;
  /** @default 50 */
  readonly bootDiskSizeGb?: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount?: string;
  readonly startupScript?: string;
}

/** `gcloud compute instances create NAME …` on debian-12, with labels and a startup script. */
export function gcloudInstanceCreate(spec: InstanceCreateSpec): Command {
  const argv = [
    ...INSTANCES,
    "create",
    spec.name,
    ...where(spec),
    `--machine-type=${spec.machineType || DEFAULT_CONTROLLER_MACHINE_TYPE}`,
    `--boot-disk-size=${spec.bootDiskSizeGb || 50}GB`,
    "--image-family=debian-12",
    "--image-project=debian-cloud",
    "--scopes=cloud-platform",
    `--labels=${formatLabels(spec.labels)}`,
  ];
  if (spec.serviceAccount) argv.push(`--service-account=${spec.serviceAccount}`);
  const cmd = withStartupScript(argv, spec.startupScript);
  return { ...cmd, argv: [...cmd.argv, "--format=json", "--quiet"] };
}

/** A request for a GPU worker VM (`provider.gce`). */
export interface GpuVmCreateSpec extends GcpLocation {
  readonly name: string;
  /** An accelerator-optimized type whose GPUs come with it, e.g. "a3-highgpu-8g". */
  readonly machineType: string;
  /** @default 200 */
  readonly bootDiskSizeGb?: number;
  readonly labels: Readonly<Record<string, string>>;
  /** Spot VM, deleted when GCE reclaims it. */
  readonly preemptible?: boolean;
  readonly startupScript?: string;
}

/** Image family of GPU VMs: the Deep Learning VM base image with CUDA (driver installed at boot). */
export const GPU_VM_IMAGE = {
  family: "common-cu124-debian-11",
  project: "deeplearning-platform-release",
} as const;

/**
 * `gcloud compute instances create NAME …` for a GPU worker: the machine type brings its GPUs;
 * GPU VMs cannot live-migrate (`--maintenance-policy=TERMINATE`); the Deep Learning VM image
 * installs the NVIDIA driver at first boot (`install-nvidia-driver=True`).
 */
export function gcloudGpuVmCreate(spec: GpuVmCreateSpec): Command {
  const argv = [
    ...INSTANCES,
    "create",
    spec.name,
    ...where(spec),
    `--machine-type=${spec.machineType}`,
    "--maintenance-policy=TERMINATE",
    `--boot-disk-size=${spec.bootDiskSizeGb || 200}GB`,
    `--image-family=${GPU_VM_IMAGE.family}`,
    `--image-project=${GPU_VM_IMAGE.project}`,
    "--scopes=cloud-platform",
    "--metadata=install-nvidia-driver=True",
    `--labels=${formatLabels(spec.labels)}`,
  ];
  if (spec.preemptible) {
    argv.push("--provisioning-model=SPOT", "--instance-termination-action=DELETE");
  }
  const cmd = withStartupScript(argv, spec.startupScript);
  return { ...cmd, argv: [...cmd.argv, "--format=json", "--quiet"] };
}

/** `gcloud compute instances describe NAME --format=json` */
export function gcloudInstanceDescribe(name: string, loc: GcpLocation): Command {
  return { argv: [...INSTANCES, "describe", name, ...where(loc), "--format=json"] };
}

/** `gcloud compute instances list` of a project (all zones), filtered on labels. */
export function gcloudInstanceList(project: string, filter: string): Command {
  return {
    argv: [...INSTANCES, "list", `--project=${project}`, `--filter=${filter}`, "--format=json"],
  };
}

/** `gcloud compute instances start NAME` (a stopped controller VM). */
export function gcloudInstanceStart(name: string, loc: GcpLocation): Command {
  return { argv: [...INSTANCES, "start", name, ...where(loc), "--quiet"] };
}

/** `gcloud compute instances delete NAME --quiet` */
export function gcloudInstanceDelete(name: string, loc: GcpLocation): Command {
  return { argv: [...INSTANCES, "delete", name, ...where(loc), "--quiet"] };
}

/** A TPU node as `tpu-vm describe/list --format=json` reports it. */
export interface TpuNode {
  /** Short name (last segment of `projects/…/nodes/NAME`). */
  readonly name: string;
  /** From the resource path, when present. */
  readonly zone?: string;
  /** CREATING, READY, REPAIRING, DELETING, PREEMPTED, … */
  readonly state: string;
  readonly acceleratorType: string;
  readonly labels: Readonly<Record<string, string>>;
  /** One internal IP per host, in worker order. */
  readonly ipAddresses: readonly string[];
  readonly createTime?: string;
  readonly health?: string;
}

/** A GCE instance as `instances describe/list --format=json` reports it. */
export interface GceInstance {
  readonly name: string;
  readonly zone: string;
  /** RUNNING, STAGING, TERMINATED, … */
  readonly status: string;
  /** networkInterfaces[0].networkIP */
  readonly internalIp?: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly createTime?: string;
}

type Json = Record<string, unknown>;

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new PlatformError(`Cannot parse gcloud ${what} output as JSON: ${text.slice(0, 200)}`, {
      cause: err,
    });
  }
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (isObject(v)) {
    for (const [k, x] of Object.entries(v)) {
      if (typeof x === "string") out[k] = x;
    }
  }
  return out;
}

/** `projects/p/locations/z/nodes/n` → `n`; URLs → their last segment. */
function lastSegment(path: string): string {
  return path.split("/").filter((s) => s !== "").at(-1) ?? path;
}

function tpuNodeFrom(v: unknown): TpuNode {
  if (!isObject(v) || !str(v.name)) {
    throw new PlatformError(
      `Cannot read TPU node from gcloud output: ${JSON.stringify(v)?.slice(0, 200)}`,
    );
  }
  const path = str(v.name)!;
  const zoneMatch = /\/locations\/([^/]+)\//.exec(path);
  const endpoints = Array.isArray(v.networkEndpoints) ? v.networkEndpoints : [];
  return {
    name: lastSegment(path),
    zone: zoneMatch?.[1],
    state: str(v.state) ?? "STATE_UNSPECIFIED",
    acceleratorType: str(v.acceleratorType) ??
      lastSegment(str(isObject(v.acceleratorConfig) ? v.acceleratorConfig.type : undefined) ?? ""),
    labels: stringMap(v.labels),
    ipAddresses: endpoints.map((e) => (isObject(e) ? str(e.ipAddress) : undefined) ?? ""),
    createTime: str(v.createTime),
    health: str(v.health),
  };
}

/** Parses `tpu-vm describe --format=json` (or a create that printed the node). */
export function parseTpuJson(stdout: string): TpuNode {
  const v = parseJson(stdout, "tpu-vm describe");
  return tpuNodeFrom(Array.isArray(v) ? v[0] : v);
}

/** Parses `tpu-vm list --format=json`. */
export function parseTpuListJson(stdout: string): TpuNode[] {
  if (stdout.trim() === "") return [];
  const v = parseJson(stdout, "tpu-vm list");
  if (!Array.isArray(v)) {
    throw new PlatformError(`Cannot read gcloud tpu-vm list output: expected an array`);
  }
  return v.map(tpuNodeFrom);
}

function instanceFrom(v: unknown): GceInstance {
  if (!isObject(v) || !str(v.name)) {
    throw new PlatformError(
      `Cannot read instance from gcloud output: ${JSON.stringify(v)?.slice(0, 200)}`,
    );
  }
  const nics = Array.isArray(v.networkInterfaces) ? v.networkInterfaces : [];
  const nic0 = nics[0];
  return {
    name: str(v.name)!,
    zone: lastSegment(str(v.zone) ?? ""),
    status: str(v.status) ?? "UNKNOWN",
    internalIp: isObject(nic0) ? str(nic0.networkIP) : undefined,
    labels: stringMap(v.labels),
    createTime: str(v.creationTimestamp),
  };
}

/** Parses `instances describe --format=json` (or the one-element list `create` prints). */
export function parseInstanceJson(stdout: string): GceInstance {
  const v = parseJson(stdout, "instances describe");
  return instanceFrom(Array.isArray(v) ? v[0] : v);
}

/** Parses `instances list --format=json`. */
export function parseInstanceListJson(stdout: string): GceInstance[] {
  if (stdout.trim() === "") return [];
  const v = parseJson(stdout, "instances list");
  if (!Array.isArray(v)) {
    throw new PlatformError(`Cannot read gcloud instances list output: expected an array`);
  }
  return v.map(instanceFrom);
}

const TPU_STATES: Readonly<Record<string, readonly [CloudSliceState, VmState]>> = {
  CREATING: ["creating", "booting"],
  STARTING: ["creating", "booting"],
  RESTARTING: ["creating", "booting"],
  READY: ["ready", "ready"],
  REPAIRING: ["unknown", "unknown"],
  DELETING: ["deleting", "terminated"],
  STOPPING: ["deleting", "terminated"],
  STOPPED: ["failed", "terminated"],
  TERMINATED: ["failed", "terminated"],
  PREEMPTED: ["failed", "terminated"],
};

const INSTANCE_STATES: Readonly<Record<string, readonly [CloudSliceState, VmState]>> = {
  PROVISIONING: ["creating", "booting"],
  STAGING: ["creating", "booting"],
  RUNNING: ["ready", "ready"],
  REPAIRING: ["unknown", "unknown"],
  STOPPING: ["deleting", "terminated"],
  SUSPENDING: ["deleting", "terminated"],
  SUSPENDED: ["failed", "terminated"],
  TERMINATED: ["failed", "terminated"],
};

/** A GPU worker VM as a one-VM SliceInfo (worker `<sliceId>-w0`, attribute `gce-instance`). */
export function gceSliceInfo(
  vm: GceInstance,
  ctx: { labels: LabelKeys; zone: string; sliceId?: string; now: Timestamp },
): SliceInfo {
  const [state, vmState] = INSTANCE_STATES[vm.status] ?? ["unknown", "unknown"];
  const sliceId = ctx.sliceId ?? vm.labels[ctx.labels.sliceId] ?? vm.name;
  const zone = vm.zone || ctx.zone;
  const created = vm.createTime ? Date.parse(vm.createTime) : NaN;
  return {
    sliceId,
    scaleGroup: vm.labels[ctx.labels.scaleGroup] ?? "",
    zone,
    state,
    vms: [{
      vmId: `${vm.name}-w0`,
      workerId: `${sliceId}-w0`,
      address: vm.internalIp ?? "",
      state: vmState,
      attributes: { "gce-instance": vm.name, zone },
    }],
    createdAt: Number.isNaN(created) ? ctx.now : timestamp(created),
    labels: vm.labels,
    error: state === "failed" || state === "unknown" ? `VM status ${vm.status}` : undefined,
  };
}

/**
 * A TPU node as a SliceInfo: one VM per network endpoint (`<name>-w<i>`, worker
 * `<sliceId>-w<i>`) with the tpu-name/tpu-worker-id/tpu-topology/zone attributes; the slice id
 * and scale group come from the labels unless `sliceId` is known.
 */
export function tpuSliceInfo(
  node: TpuNode,
  ctx: { labels: LabelKeys; zone: string; sliceId?: string; now: Timestamp },
): SliceInfo {
  const [state, vmState] = TPU_STATES[node.state] ?? ["unknown", "unknown"];
  const sliceId = ctx.sliceId ?? node.labels[ctx.labels.sliceId] ?? node.name;
  const zone = node.zone ?? ctx.zone;
  const created = node.createTime ? Date.parse(node.createTime) : NaN;
  return {
    sliceId,
    scaleGroup: node.labels[ctx.labels.scaleGroup] ?? "",
    zone,
    state,
    vms: node.ipAddresses.map((address, i) => ({
      vmId: `${node.name}-w${i}`,
      workerId: `${sliceId}-w${i}`,
      address,
      state: vmState,
      attributes: {
        "tpu-name": node.name,
        "tpu-worker-id": i,
        "tpu-topology": node.acceleratorType,
        zone,
      },
    })),
    createdAt: Number.isNaN(created) ? ctx.now : timestamp(created),
    labels: node.labels,
    error: state === "failed" || state === "unknown" ? `TPU state ${node.state}` : undefined,
  };
}

const ZONE_IN_TEXT = /\b([a-z]+-[a-z]+\d+-[a-z])\b/;

/**
 * Maps a failed gcloud call to the error the callers act on:
 * quota/capacity → QuotaExhaustedError (the autoscaler backs off, message names the zone),
 * permission → PermissionDeniedError, not found → ResourceNotFoundError,
 * network/503 → PlatformUnavailableError, else PlatformError with the last stderr lines.
 */
export function classifyGcloudError(
  stderr: string,
  code: number,
  context: { action?: string; zone?: string } = {},
): PlatformError | PermissionDeniedError {
  const tail = lastLines(stderr, 5) || "(no stderr)";
  const action = context.action ?? "run gcloud";
  const text = stderr.toLowerCase();
  if (code === 127) {
    return new PlatformUnavailableError(`Cannot ${action} as gcloud is not runnable: ${tail}`);
  }
  if (
    /exhausted|quota|insufficient capacity|no more capacity|out of capacity|stockout|does not have enough resources/
      .test(text)
  ) {
    const zone = context.zone ?? ZONE_IN_TEXT.exec(stderr)?.[1] ?? "unknown";
    return new QuotaExhaustedError(
      `Cannot ${action} as capacity or quota is exhausted in zone ${zone}: ${tail}`,
    );
  }
  if (/permission_denied|does not have permission|permission denied|forbidden|\b403\b/.test(text)) {
    return new PermissionDeniedError(`Cannot ${action} as permission is denied: ${tail}`);
  }
  if (/not_found|was not found|could not be found|does not exist|\b404\b/.test(text)) {
    return new ResourceNotFoundError(`Cannot ${action} as the resource was not found: ${tail}`);
  }
  if (
    /unable to connect|connection (refused|reset|timed out)|temporarily unavailable|service unavailable|\b503\b|unavailable|deadline exceeded|network is unreachable|could not resolve|name resolution/
      .test(text)
  ) {
    return new PlatformUnavailableError(`Cannot ${action} as GCP is unreachable: ${tail}`);
  }
  return new PlatformError(`Cannot ${action}: gcloud exited with code ${code}: ${tail}`);
}

/**
 * Throws the classified error of a failed gcloud result (a timeout is PlatformUnavailableError);
 * returns the result when it succeeded.
 */
export function checkGcloud(
  result: CommandResult,
  context: { action: string; zone?: string },
): CommandResult {
  if (result.timedOut) {
    throw new PlatformUnavailableError(
      `Cannot ${context.action} as gcloud timed out: ${lastLines(result.stderr)}`,
    );
  }
  if (result.code !== 0) throw classifyGcloudError(result.stderr, result.code, context);
  return result;
}
