/**
 * A worker's real accelerator devices: NVIDIA GPUs found through `nvidia-smi --query-gpu`, TPU
 * chips through `/dev/accel*` or `/dev/vfio/<n>` (plus the GCE metadata `accelerator-type`), the
 * check of a configured claim against them, and the pool that hands specific devices to attempts.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { FailedPreconditionError } from "../errors.ts";
import { type DeviceUsage, DeviceUsageSchema } from "../rpc/gen/iris/v1/types_pb.ts";
import { type CommandRunner, DenoCommandRunner } from "../command/mod.ts";
import { tpuTopology } from "../tpu.ts";
import { type Duration, seconds, sleep } from "../time.ts";
import type { AcceleratorSpec, AttributeScalar } from "../types.ts";
import type { WorkerResources } from "./host.ts";

/** The fields asked of `nvidia-smi --query-gpu`, in order. */
export const NVIDIA_SMI_FIELDS = [
  "index",
  "uuid",
  "name",
  "memory.total",
  "memory.used",
  "utilization.gpu",
  "mig.mode.current",
] as const;

/** The argv of one GPU query (CSV without header or units, one line per GPU). */
export function nvidiaSmiArgv(binary = "nvidia-smi"): string[] {
  return [binary, `--query-gpu=${NVIDIA_SMI_FIELDS.join(",")}`, "--format=csv,noheader,nounits"];
}

/** The argv that lists GPUs and their MIG devices (`nvidia-smi -L`). */
export function nvidiaSmiListArgv(binary = "nvidia-smi"): string[] {
  return [binary, "-L"];
}

/** One GPU as nvidia-smi reports it. */
export interface GpuDevice {
  readonly index: number;
  readonly uuid: string;
  /** Product name, e.g. "NVIDIA H100 80GB HBM3". */
  readonly name: string;
  /** Total memory in MiB (0 when unreadable). */
  readonly memoryMiB: number;
  /** Used memory in MiB, when readable. */
  readonly memoryUsedMiB?: number;
  /** GPU utilisation in percent, when readable. */
  readonly utilizationPercent?: number;
  /** Why the GPU cannot be used (an `ERR!` or `[GPU requires reset]` field, a lost GPU). */
  readonly problem?: string;
  /** MIG mode is enabled: the GPU is split into MIG devices and is not handed out whole. */
  readonly mig?: boolean;
}

/** Field values nvidia-smi prints instead of a number when it cannot read one. */
const UNREADABLE = /^(\[N\/A\]|N\/A|\[Not Supported\]|\[Insufficient Permissions\])$/;
/** Field values that mean the GPU itself is broken. */
const BROKEN = /^(ERR!|\[GPU requires reset\]|\[Unknown Error\]|\[GPU is lost\])$/;

/**
 * The GPUs of `nvidia-smi --query-gpu=<NVIDIA_SMI_FIELDS> --format=csv,noheader,nounits` output.
 * A GPU whose fields read `ERR!`, `[GPU requires reset]`, `[Unknown Error]` or `[GPU is lost]`
 * gets a problem; lines that are no GPU record (e.g. "Unable to determine the device handle for
 * GPU0000:3B:00.0: Unknown Error") are returned as errors.
 */
export function parseNvidiaSmi(stdout: string): { gpus: GpuDevice[]; errors: string[] } {
  const gpus: GpuDevice[] = [];
  const errors: string[] = [];
  for (const raw of stdout.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const f = line.split(",").map((s) => s.trim());
    const [index = "", uuid = "", name = "", total = "", used = "", util = "", migMode = ""] = f;
    if (f.length !== NVIDIA_SMI_FIELDS.length || !/^\d+$/.test(index)) {
      errors.push(line);
      continue;
    }
    const broken = f.map((v, i) => ({ v, field: NVIDIA_SMI_FIELDS[i] })).filter(({ v }) =>
      BROKEN.test(v)
    );
    const num = (v: string) => (UNREADABLE.test(v) || BROKEN.test(v) ? undefined : Number(v));
    const mig = migMode === "Enabled";
    const problems = [
      ...(broken.length > 0
        ? [`nvidia-smi reports ${broken.map(({ v, field }) => `${field} ${v}`).join(", ")}`]
        : []),
      ...(mig
        ? [
          `MIG mode is enabled (Iris hands out whole GPUs: disable it with nvidia-smi -i ${index} -mig 0)`,
        ]
        : []),
    ];
    gpus.push({
      index: Number(index),
      uuid: BROKEN.test(uuid) || UNREADABLE.test(uuid) ? "" : uuid,
      name,
      memoryMiB: num(total) ?? 0,
      memoryUsedMiB: num(used),
      utilizationPercent: num(util),
      problem: problems.length > 0 ? problems.join("; ") : undefined,
      ...(mig ? { mig } : {}),
    });
  }
  // A lost GPU is often only an error line naming its bus id; it stays unusable.
  return { gpus, errors };
}

/** One GPU line of `nvidia-smi -L`, with its MIG devices. */
export interface ListedGpu {
  readonly index: number;
  readonly name: string;
  readonly uuid: string;
  /** MIG devices (`  MIG 1g.5gb     Device  0: (UUID: MIG-…)`). */
  readonly mig: readonly {
    readonly profile: string;
    readonly device: number;
    readonly uuid: string;
  }[];
}

/**
 * `nvidia-smi -L`: `GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-…)`, each followed by its MIG
 * devices when MIG mode is on (`  MIG 3g.20gb     Device  0: (UUID: MIG-…)`).
 */
export function parseNvidiaSmiList(stdout: string): ListedGpu[] {
  const out: { index: number; name: string; uuid: string; mig: ListedGpu["mig"][number][] }[] = [];
  for (const line of stdout.split("\n")) {
    const gpu = /^GPU (\d+): (.*?) \(UUID: ([^)]+)\)\s*$/.exec(line);
    if (gpu) {
      out.push({ index: Number(gpu[1]), name: gpu[2]!, uuid: gpu[3]!, mig: [] });
      continue;
    }
    const mig = /^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: ([^)]+)\)\s*$/.exec(line);
    if (mig && out.length > 0) {
      out.at(-1)!.mig.push({ profile: mig[1]!, device: Number(mig[2]), uuid: mig[3]! });
    }
  }
  return out;
}

/** The short model of a GPU product name: "NVIDIA H100 80GB HBM3" → "H100", "NVIDIA L4" → "L4". */
export function gpuVariant(name: string): string {
  const words = name.replace(/^NVIDIA\s+/i, "").replace(/^(Tesla|GeForce|Quadro)\s+/i, "")
    .split(/[\s-]+/);
  return words[0] ?? name;
}

/** What the host's GPU driver says. */
export interface GpuScan {
  /** False when nvidia-smi is missing, fails or times out: the host has no usable driver. */
  readonly driver: boolean;
  readonly gpus: readonly GpuDevice[];
  /** Why there are no GPUs or why some are unusable. */
  readonly reason?: string;
}

/** How GPUs are queried. */
export interface GpuScanOptions {
  /** @default a DenoCommandRunner */
  readonly runner?: CommandRunner;
  /** The nvidia-smi executable (a name looked up on PATH, or a path). @default "nvidia-smi" */
  readonly nvidiaSmi?: string;
  /** Hard limit of one query. @default 10 s */
  readonly timeout?: Duration;
  readonly signal?: AbortSignal;
}

/** Runs nvidia-smi once; never throws for a missing or failing driver (see GpuScan.driver). */
export async function scanGpus(opts: GpuScanOptions = {}): Promise<GpuScan> {
  const runner = opts.runner ?? new DenoCommandRunner();
  const argv = nvidiaSmiArgv(opts.nvidiaSmi);
  let result;
  try {
    result = await runner.run({ argv }, {
      timeout: opts.timeout ?? seconds(10),
      signal: opts.signal,
    });
  } catch (err) {
    opts.signal?.throwIfAborted();
    const missing = err instanceof Deno.errors.NotFound ||
      /not ?found|No such file/i.test(String(err));
    return {
      driver: false,
      gpus: [],
      reason: missing
        ? `no NVIDIA driver: ${argv[0]} not found`
        : `no NVIDIA driver: ${argv[0]} failed: ${err instanceof Error ? err.message : err}`,
    };
  }
  if (result.timedOut) {
    return { driver: false, gpus: [], reason: `no NVIDIA driver: ${argv[0]} timed out` };
  }
  const { gpus: parsed, errors } = parseNvidiaSmi(result.stdout);
  const said = (result.stderr.trim() || result.stdout.trim()).split("\n")[0] ?? "";
  // Exit 6 "No devices were found": the driver is loaded and sees no GPU (nvidia-smi(1)).
  if (result.code === 6 || /^No devices were found/.test(result.stdout.trim())) {
    return {
      driver: true,
      gpus: [],
      reason: `the NVIDIA driver reports no GPUs (${argv[0]}: ${said || "exit 6"})`,
    };
  }
  if (result.code !== 0 && parsed.length === 0) {
    return {
      driver: false,
      gpus: [],
      reason: `no NVIDIA driver: ${argv[0]} failed (exit ${result.code})${said ? `: ${said}` : ""}`,
    };
  }
  const gpus = parsed.some((g) => g.mig) ? await withMigDevices(parsed, runner, opts) : parsed;
  const problems = [
    ...gpus.filter((g) => g.problem).map((g) => `GPU ${g.index}: ${g.problem}`),
    ...errors,
  ];
  return {
    driver: true,
    gpus,
    reason: gpus.length === 0
      ? "the NVIDIA driver reports no GPUs"
      : problems.length > 0
      ? problems.join("; ")
      : undefined,
  };
}

/** Names the MIG devices of MIG-mode GPUs in their problem, from `nvidia-smi -L` (best effort). */
async function withMigDevices(
  gpus: GpuDevice[],
  runner: CommandRunner,
  opts: GpuScanOptions,
): Promise<GpuDevice[]> {
  let listed: ListedGpu[] = [];
  try {
    const r = await runner.run({ argv: nvidiaSmiListArgv(opts.nvidiaSmi) }, {
      timeout: opts.timeout ?? seconds(10),
      signal: opts.signal,
    });
    if (r.code === 0 && !r.timedOut) listed = parseNvidiaSmiList(r.stdout);
  } catch {
    // the query already said MIG is on; the list only adds detail
  }
  return gpus.map((g) => {
    const mig = listed.find((l) => l.index === g.index)?.mig ?? [];
    if (!g.mig || mig.length === 0) return g;
    const profiles = mig.map((m) => m.profile).join(", ");
    return {
      ...g,
      problem: `${g.problem}; ${mig.length} MIG device${mig.length === 1 ? "" : "s"}: ${profiles}`,
    };
  });
}

/** One TPU chip's device node. */
export interface TpuChip {
  readonly index: number;
  readonly path: string;
}

/** What the host's TPU device nodes say. */
export interface TpuScan {
  readonly chips: readonly TpuChip[];
  /** The TPU type, e.g. "v4-16" (GCE metadata `accelerator-type`), when known. */
  readonly acceleratorType?: string;
  readonly reason?: string;
}

/**
 * TPU chips under `<root>/dev`: `accel<N>` nodes (v4, v5p, v6e), else numbered `vfio/<N>` groups
 * (v5e; counted only when `acceleratorType`, from the GCE metadata, says the VM has a TPU).
 */
export async function scanTpuChips(root = "/", acceleratorType?: string): Promise<TpuScan> {
  const dev = `${root.replace(/\/+$/, "")}/dev`;
  const list = async (dir: string, pattern: RegExp) => {
    const out: TpuChip[] = [];
    try {
      for await (const e of Deno.readDir(dir)) {
        const m = pattern.exec(e.name);
        if (m) out.push({ index: Number(m[1]), path: `${dir}/${e.name}` });
      }
    } catch {
      // no such directory: no chips of this kind
    }
    return out.sort((a, b) => a.index - b.index);
  };
  let chips = await list(dev, /^accel(\d+)$/);
  // VFIO groups exist on many servers; they are TPU chips only on a VM that says it has a TPU.
  if (chips.length === 0 && acceleratorType) chips = await list(`${dev}/vfio`, /^(\d+)$/);
  return {
    chips,
    acceleratorType,
    reason: chips.length === 0
      ? `no TPU chips: no ${dev}/accel* or ${dev}/vfio/<n> nodes`
      : undefined,
  };
}

/** The devices a host has. */
export interface HostDevices {
  readonly gpu: GpuScan;
  readonly tpu: TpuScan;
}

/** Options of {@linkcode detectDevices}. */
export interface DetectDevicesOptions extends GpuScanOptions {
  /** Where `dev/` is looked for (tests use a temp dir). @default "/" */
  readonly root?: string;
  /** The TPU type, when known (GCE metadata `accelerator-type`). */
  readonly tpuAcceleratorType?: string;
}

/** Scans GPUs and TPU chips. */
export async function detectDevices(opts: DetectDevicesOptions = {}): Promise<HostDevices> {
  const [gpu, tpu] = await Promise.all([
    scanGpus(opts),
    scanTpuChips(opts.root, opts.tpuAcceleratorType),
  ]);
  return { gpu, tpu };
}

/** What a worker advertises after checking its claim against its devices. */
export interface DeviceAdvert {
  readonly accelerator?: AcceleratorSpec;
  /** The devices it may hand to attempts (indices and, for GPUs, UUIDs). */
  readonly devices: readonly { readonly index: number; readonly uuid?: string }[];
  readonly attributes: Record<string, AttributeScalar>;
  /** Why the worker has no devices or fewer than the host has; shown in its status. */
  readonly reason?: string;
}

/**
 * The accelerator to advertise: the claim (config or flags) checked against the host, or what
 * was found when nothing is claimed.
 * @param strict refuse a claim even when the host has no driver for its kind (else it is kept
 *   unverified, as for local test clusters)
 * @throws {FailedPreconditionError} when the claim asks for more, or another model, than the host has
 */
export function advertiseDevices(
  claim: AcceleratorSpec | undefined,
  found: HostDevices,
  strict = false,
): DeviceAdvert {
  const healthy = found.gpu.gpus.filter((g) => !g.problem);
  const firstName = healthy[0]?.name ?? "";
  const gpuModel = firstName ? gpuVariant(firstName) : "";
  const gpuSummary = found.gpu.driver
    ? `${healthy.length} healthy GPU${healthy.length === 1 ? "" : "s"}${
      gpuModel ? ` (${healthy.length}× ${firstName})` : ""
    }${found.gpu.reason ? `; ${found.gpu.reason}` : ""}`
    : found.gpu.reason ?? "no GPUs";
  const gpuAttrs = (n: number, variant: string) => ({
    "device-type": "gpu",
    "device-variant": variant,
    "device-count": n,
    ...(healthy[0]?.memoryMiB ? { "device-memory-mib": healthy[0].memoryMiB } : {}),
  });
  const tpuAttrs = (n: number, variant: string) => ({
    "device-type": "tpu",
    "device-variant": variant,
    "device-count": n,
  });
  if (!claim || claim.kind === "cpu") {
    if (healthy.length > 0) {
      return {
        accelerator: { kind: "gpu", variant: gpuModel, count: healthy.length },
        devices: healthy.map((g) => ({ index: g.index, uuid: g.uuid || undefined })),
        attributes: gpuAttrs(healthy.length, gpuModel),
        reason: found.gpu.reason,
      };
    }
    const chips = found.tpu.chips;
    if (chips.length > 0) {
      const variant = found.tpu.acceleratorType ?? "";
      return {
        accelerator: { kind: "tpu", variant, count: chips.length },
        devices: chips.map((c) => ({ index: c.index })),
        attributes: tpuAttrs(chips.length, variant),
      };
    }
    return {
      devices: [],
      attributes: {},
      reason: [found.gpu.reason, found.tpu.reason].filter(Boolean).join("; "),
    };
  }
  if (claim.kind === "gpu") {
    const claimed = `${claim.count}× ${claim.variant || "GPU"}`;
    if (!found.gpu.driver) {
      if (strict) {
        throw new FailedPreconditionError(
          `accelerator: the worker claims ${claimed} but the host has none (${found.gpu.reason})`,
        );
      }
      return {
        accelerator: claim,
        devices: range(claim.count).map((index) => ({ index })),
        attributes: gpuAttrs(claim.count, claim.variant),
        reason: `${claimed} claimed, not verified: ${found.gpu.reason}`,
      };
    }
    if (healthy.length < claim.count) {
      throw new FailedPreconditionError(
        `accelerator: the worker claims ${claimed} but the host has ${gpuSummary}`,
      );
    }
    if (claim.variant && gpuModel && claim.variant.toLowerCase() !== gpuModel.toLowerCase()) {
      throw new FailedPreconditionError(
        `accelerator: the worker claims ${claimed} but the host's GPUs are ${firstName}`,
      );
    }
    const taken = healthy.slice(0, claim.count);
    return {
      accelerator: { kind: "gpu", variant: claim.variant || gpuModel, count: claim.count },
      devices: taken.map((g) => ({ index: g.index, uuid: g.uuid || undefined })),
      attributes: gpuAttrs(claim.count, claim.variant || gpuModel),
      reason: found.gpu.reason,
    };
  }
  // TPU
  const chips = found.tpu.chips;
  const claimed = `${claim.count} chip${claim.count === 1 ? "" : "s"} of ${claim.variant}`;
  const metaType = found.tpu.acceleratorType;
  if (metaType && claim.variant && metaType !== claim.variant) {
    throw new FailedPreconditionError(
      `accelerator: the worker claims ${claimed} but the VM's metadata accelerator-type is ${metaType}`,
    );
  }
  if (chips.length === 0) {
    if (strict) {
      throw new FailedPreconditionError(
        `accelerator: the worker claims ${claimed} but the host has none (${found.tpu.reason})`,
      );
    }
    return {
      accelerator: claim,
      devices: range(claim.count).map((index) => ({ index })),
      attributes: tpuAttrs(claim.count, claim.variant),
      reason: `${claimed} claimed, not verified: ${found.tpu.reason}`,
    };
  }
  if (chips.length < claim.count) {
    throw new FailedPreconditionError(
      `accelerator: the worker claims ${claimed} but the host has ${chips.length} TPU chip${
        chips.length === 1 ? "" : "s"
      } (${chips.map((c) => c.path).join(", ")})`,
    );
  }
  return {
    accelerator: claim,
    devices: chips.slice(0, claim.count).map((c) => ({ index: c.index })),
    attributes: tpuAttrs(claim.count, claim.variant),
  };
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** One device of a pool. */
export interface PoolDevice {
  readonly index: number;
  readonly uuid?: string;
}

/**
 * The worker's devices and which attempt holds each: attempts take specific devices when they
 * start and give them back when they end; a failed device is never handed out again.
 */
export class DevicePool {
  readonly #devices: readonly PoolDevice[];
  readonly #holder = new Map<number, string>();
  readonly #failed = new Map<number, string>();

  constructor(devices: readonly PoolDevice[]) {
    this.#devices = [...devices].sort((a, b) => a.index - b.index);
  }

  /** Devices neither held nor failed. */
  get free(): number {
    return this.#devices.filter((d) => !this.#holder.has(d.index) && !this.#failed.has(d.index))
      .length;
  }

  /** Devices not failed. */
  get healthy(): number {
    return this.#devices.length - this.#failed.size;
  }

  /** Takes `n` free devices for `owner` (lowest indices first); undefined when too few are free. */
  take(owner: string, n: number): PoolDevice[] | undefined {
    const free = this.#devices.filter((d) =>
      !this.#holder.has(d.index) && !this.#failed.has(d.index)
    );
    if (free.length < n) return undefined;
    const got = free.slice(0, n);
    for (const d of got) this.#holder.set(d.index, owner);
    return got;
  }

  /** Gives back every device `owner` holds. */
  release(owner: string): void {
    for (const [index, o] of this.#holder) if (o === owner) this.#holder.delete(index);
  }

  /** Everyone holding a device. */
  holders(): Set<string> {
    return new Set(this.#holder.values());
  }

  /** The devices `owner` holds. */
  held(owner: string): PoolDevice[] {
    return this.#devices.filter((d) => this.#holder.get(d.index) === owner);
  }

  /**
   * Marks a device failed (never handed out again); returns the holder, whose attempt must end.
   * Returns undefined when it was already failed or nobody held it.
   */
  fail(index: number, reason: string): string | undefined {
    if (this.#failed.has(index) || !this.#devices.some((d) => d.index === index)) return undefined;
    this.#failed.set(index, reason);
    const owner = this.#holder.get(index);
    this.#holder.delete(index);
    return owner;
  }

  /** Every device, failed or not. */
  allDevices(): readonly PoolDevice[] {
    return this.#devices;
  }

  /** Failed devices and why. */
  failures(): ReadonlyMap<number, string> {
    return this.#failed;
  }
}

/**
 * The environment that limits a task to its devices: CUDA_VISIBLE_DEVICES (UUIDs when known,
 * else indices) and NVIDIA_VISIBLE_DEVICES for GPUs; TPU_VISIBLE_CHIPS, TPU_PROCESS_BOUNDS and
 * TPU_CHIPS_PER_PROCESS_BOUNDS for TPU chips when the task has only part of the host's chips.
 */
export function deviceEnv(
  kind: "gpu" | "tpu",
  devices: readonly PoolDevice[],
  hostDevices: number,
): Record<string, string> {
  if (kind === "gpu") {
    const ids = devices.every((d) => d.uuid)
      ? devices.map((d) => d.uuid!).join(",")
      : devices.map((d) => d.index).join(",");
    return { CUDA_VISIBLE_DEVICES: ids, NVIDIA_VISIBLE_DEVICES: ids };
  }
  if (devices.length >= hostDevices) return {};
  // A host split into single-process parts: each process sees a 1×N row of chips.
  return {
    TPU_VISIBLE_CHIPS: devices.map((d) => d.index).join(","),
    TPU_PROCESS_BOUNDS: "1,1,1",
    TPU_CHIPS_PER_PROCESS_BOUNDS: devices.length === 4
      ? "2,2,1"
      : devices.length === 2
      ? "1,2,1"
      : `1,${devices.length},1`,
  };
}

/** The chips per host of a TPU type, when known (e.g. 4 for v4-16). */
export function tpuChipsPerHost(variant: string): number | undefined {
  return tpuTopology(variant)?.chipsPerHost;
}

/** Options of {@linkcode WorkerDevices}. */
export interface WorkerDevicesOptions {
  readonly kind: "gpu" | "tpu";
  readonly devices: readonly PoolDevice[];
  /** Re-queries GPUs for health checks (nvidia-smi); none for TPUs. */
  readonly scan?: () => Promise<GpuScan>;
  /** How often GPUs are checked while attempts hold some. @default 5 s */
  readonly interval?: Duration;
  /** Called when a device an attempt holds fails: the attempt must end with `reason`. */
  readonly onLost: (owner: string, reason: string) => void;
  /** Called after any device failed: the worker's capacity went down. */
  readonly onCapacity?: () => void;
  readonly log?: (line: string) => void;
}

/**
 * A worker's devices at run time: hands devices to attempts (with the environment that limits
 * them to those), takes them back, and checks GPU health so that a GPU that is lost (nvidia-smi
 * shows an error for it, or no longer lists it) leaves the worker's capacity and ends the attempt
 * holding it.
 */
export class WorkerDevices {
  readonly kind: "gpu" | "tpu";
  readonly #pool: DevicePool;
  readonly #opts: WorkerDevicesOptions;
  readonly #abort = new AbortController();
  #loop?: Promise<void>;
  /** The last per-device reading (GPUs), for metrics. */
  last: readonly GpuDevice[] = [];
  /** Peak GPU memory (MiB) of each holder since it took its devices. */
  readonly #peak = new Map<string, number>();

  constructor(opts: WorkerDevicesOptions) {
    this.kind = opts.kind;
    this.#opts = opts;
    this.#pool = new DevicePool(opts.devices);
    if (opts.scan) this.#loop = this.#watch(opts.scan);
  }

  /** Devices not failed: the worker's current accelerator capacity. */
  get healthy(): number {
    return this.#pool.healthy;
  }

  /**
   * Takes `count` devices for `owner` and returns the environment that limits the task to them,
   * or an error text when too few are free. "none": the task asked for no accelerator.
   */
  assign(
    owner: string,
    count: number | "none",
  ): { env: Record<string, string> } | { error: string } {
    if (count === "none") {
      // A task that asked for no accelerator sees no GPU.
      return {
        env: this.kind === "gpu"
          ? { CUDA_VISIBLE_DEVICES: "", NVIDIA_VISIBLE_DEVICES: "void" }
          : {},
      };
    }
    // An accelerator of unspecified count (0) takes the host as it is.
    if (count <= 0) return { env: {} };
    const got = this.#pool.take(owner, count);
    if (!got) {
      const failed = this.#pool.failures().size;
      return {
        error: `needs ${count} ${this.kind.toUpperCase()} device${count === 1 ? "" : "s"}, ` +
          `${this.#pool.free} free on this worker` + (failed ? ` (${failed} failed)` : ""),
      };
    }
    return {
      env: {
        IRIS_DEVICE_INDICES: got.map((d) => d.index).join(","),
        ...deviceEnv(this.kind, got, this.#pool.healthy + this.#pool.failures().size),
      },
    };
  }

  /** Gives back the devices of an attempt that ended. */
  release(owner: string): void {
    this.#pool.release(owner);
    this.#peak.delete(owner);
  }

  /** Memory in use on `owner`'s GPUs (MiB, from the last reading) and its peak so far. */
  taskMemoryMiB(owner: string): { current: number; peak: number } {
    const held = new Set(this.#pool.held(owner).map((d) => d.index));
    let current = 0;
    for (const g of this.last) if (held.has(g.index)) current += g.memoryUsedMiB ?? 0;
    const peak = Math.max(current, this.#peak.get(owner) ?? 0);
    return { current, peak };
  }

  /** Checks the GPUs once: failed or missing ones leave the pool and end their holders. */
  check(scan: GpuScan): void {
    this.last = scan.gpus;
    if (!scan.driver) return; // a driver that stops answering is not a device failure
    for (const owner of this.#pool.holders()) {
      this.#peak.set(owner, this.taskMemoryMiB(owner).peak);
    }
    const byIndex = new Map(scan.gpus.map((g) => [g.index, g]));
    const byUuid = new Map(scan.gpus.filter((g) => g.uuid).map((g) => [g.uuid, g]));
    for (const d of this.#pool.allDevices()) {
      const g = (d.uuid ? byUuid.get(d.uuid) : undefined) ??
        (d.uuid ? undefined : byIndex.get(d.index));
      const problem = !g ? "no longer listed by nvidia-smi (GPU lost)" : g.problem;
      if (!problem) continue;
      const reason = `GPU ${d.index}${d.uuid ? ` (${d.uuid})` : ""} failed: ${problem}`;
      if (this.#pool.failures().has(d.index)) continue;
      const owner = this.#pool.fail(d.index, reason);
      this.#opts.log?.(`${reason}; the worker now has ${this.#pool.healthy} healthy GPUs`);
      if (owner) this.#opts.onLost(owner, reason);
      this.#opts.onCapacity?.();
    }
  }

  async #watch(scan: () => Promise<GpuScan>): Promise<void> {
    const signal = this.#abort.signal;
    const interval = this.#opts.interval ?? seconds(5);
    while (!signal.aborted) {
      await sleep(interval, signal).catch(() => {});
      if (signal.aborted) break;
      try {
        this.check(await scan());
      } catch (err) {
        this.#opts.log?.(`GPU health check failed: ${err instanceof Error ? err.message : err}`);
      }
    }
  }

  /** Stops the health checks. */
  async close(): Promise<void> {
    this.#abort.abort();
    await this.#loop;
  }
}

/**
 * The runtime devices of a worker that offers an accelerator: the detected ones, else indices
 * 0..count-1 of the claim (a local or unverified worker). Undefined for CPU workers.
 */
export function workerDevices(
  resources: WorkerResources,
  advert: DeviceAdvert | undefined,
  opts: {
    readonly devices?: GpuScanOptions & { readonly healthInterval?: Duration };
    readonly log?: (line: string) => void;
  },
  onLost: (owner: string, reason: string) => void,
  onCapacity?: () => void,
): WorkerDevices | undefined {
  const acc = resources.accelerator;
  if (!acc || acc.kind === "cpu" || acc.count <= 0) return undefined;
  const detected = advert && advert.devices.length > 0;
  const gpuHealth = acc.kind === "gpu" && opts.devices && advert?.devices.some((d) => d.uuid);
  return new WorkerDevices({
    kind: acc.kind,
    devices: detected ? advert.devices : range(acc.count).map((index) => ({ index })),
    scan: gpuHealth ? () => scanGpus(opts.devices) : undefined,
    interval: opts.devices?.healthInterval,
    onLost,
    onCapacity,
    log: opts.log,
  });
}

/** The worker's resources with its accelerator count lowered to the devices still healthy. */
export function healthyResources(
  r: WorkerResources,
  devices: WorkerDevices | undefined,
): WorkerResources {
  if (!devices || !r.accelerator || devices.healthy >= r.accelerator.count) return r;
  return { ...r, accelerator: { ...r.accelerator, count: devices.healthy } };
}

const MIB = 1024 * 1024;

/** The GPUs' last reading in heartbeat form (empty without detected GPUs). */
export function deviceUsageProto(devices: WorkerDevices | undefined): DeviceUsage[] {
  return (devices?.last ?? []).map((g) =>
    create(DeviceUsageSchema, {
      index: g.index,
      uuid: g.uuid,
      utilizationPercent: g.utilizationPercent,
      memoryUsedBytes: g.memoryUsedMiB === undefined ? undefined : g.memoryUsedMiB * MIB,
      memoryTotalBytes: g.memoryMiB * MIB,
      problem: g.problem ?? "",
    })
  );
}

/** An attempt's GPU memory in bytes (current and peak), for its TaskResourceUsage. */
export function deviceTaskUsage(
  devices: WorkerDevices | undefined,
  owner: string,
): { deviceMemoryBytes: number; peakDeviceMemoryBytes: number } | Record<never, never> {
  if (!devices || devices.last.length === 0) return {};
  const m = devices.taskMemoryMiB(owner);
  return { deviceMemoryBytes: m.current * MIB, peakDeviceMemoryBytes: m.peak * MIB };
}
