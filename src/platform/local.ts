/**
 * The local platform: every VM of a slice is a Deno Worker running the worker code in-process,
 * with permissions scoped to what a worker needs (its own directory, loopback, running tasks).
 * One port table is shared by all groups. No GCP, no Docker, no SSH.
 * @module
 */
import type { ScaleGroupConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import { AcceleratorType } from "../rpc/gen/iris/v1/types_pb.ts";
import type {
  CreateSliceRequest,
  Platform,
  PlatformCallOptions,
  SliceInfo,
  VmInfo,
} from "./platform.ts";
import type { LocalVmStartMessage, LocalVmToPlatform, WorkerSettings } from "./local_messages.ts";
import { HOST_METRIC_SYS_PERMISSIONS, PortAllocator } from "../worker/mod.ts";
import { tpuTopology } from "../tpu.ts";
import { groupAccelerator } from "./accelerator.ts";
import { PlatformError, ResourceNotFoundError } from "../errors.ts";
import { type Duration, seconds, timestamp } from "../time.ts";
import type { AttributeScalar } from "../types.ts";

/** Where the Worker script lives; listed for `deno compile --include`. */
export const LOCAL_WORKER_ENTRY = new URL("./local_worker_entry.ts", import.meta.url);
const PROJECT_ROOT = new URL("../../", import.meta.url);

/** Options for {@linkcode LocalPlatform}. */
export interface LocalPlatformOptions {
  /** Directory under which every VM gets its own directory (removed on terminate). */
  readonly rootDir: string;
  /** Heartbeat period of the workers. @default 1s */
  readonly heartbeatInterval?: Duration;
  /** Receives every VM's log lines, tagged with the worker id. */
  readonly log?: (workerId: string, line: string) => void;
  /** Task port range shared by all VMs. @default 30000..39999 */
  readonly ports?: { readonly min: number; readonly max: number };
  /** The cluster's worker token when auth is on (handed to each VM's worker in memory). */
  readonly workerToken?: string;
  /** Paths module tasks may never be granted (besides every VM's directory). @default [] */
  readonly protectedPaths?: readonly string[];
  /** Every VM's worker settings (the config's `defaults.outputs`, `defaults.python`). */
  readonly workerSettings?: WorkerSettings;
}

interface LocalVm {
  readonly info: VmInfo;
  readonly worker: Worker;
  readonly dir: string;
  readonly messages: EventTarget;
}

interface LocalSlice {
  readonly info: SliceInfo;
  readonly vms: LocalVm[];
  readonly dir: string;
}

/** Attributes a local VM of a group advertises. */
export function localVmAttributes(
  sliceId: string,
  index: number,
  config: ScaleGroupConfig,
  scaleGroup: string,
): Record<string, AttributeScalar> {
  const attrs: Record<string, AttributeScalar> = {
    ...config.attributes,
    "scale-group": scaleGroup,
    "slice-id": sliceId,
  };
  if (config.region) attrs.region = config.region;
  if (config.zone) attrs.zone = config.zone;
  attrs.preemptible = config.preemptible;
  if (config.acceleratorType === AcceleratorType.TPU) {
    const topo = tpuTopology(config.acceleratorVariant);
    attrs["tpu-name"] = sliceId;
    attrs["tpu-worker-id"] = index;
    if (topo) {
      attrs["tpu-topology"] = topo.topology;
      attrs["tpu-vm-count"] = topo.hosts;
    }
  }
  return attrs;
}

/** VMs per slice for a group config. */
export function localVmCount(config: ScaleGroupConfig): number {
  if (config.acceleratorType !== AcceleratorType.TPU) return 1;
  return tpuTopology(config.acceleratorVariant)?.hosts ?? 1;
}

/** In-process slices of Deno Workers. */
export class LocalPlatform implements Platform {
  readonly kind = "local" as const;
  readonly #o: LocalPlatformOptions;
  readonly #slices = new Map<string, LocalSlice>();
  readonly #ports: PortAllocator;

  constructor(options: LocalPlatformOptions) {
    this.#o = options;
    this.#ports = new PortAllocator({
      min: options.ports?.min ?? 30000,
      max: options.ports?.max ?? 39999,
    });
  }

  async createSlice(
    request: CreateSliceRequest,
    options: PlatformCallOptions = {},
  ): Promise<SliceInfo> {
    if (this.#slices.has(request.sliceId)) {
      throw new PlatformError(`Cannot create slice ${request.sliceId}: it already exists`);
    }
    const config = request.config;
    const count = localVmCount(config);
    const dir = `${this.#o.rootDir}/${request.sliceId}`;
    await Deno.mkdir(dir, { recursive: true });
    const vms: LocalVm[] = [];
    const started: Promise<VmInfo>[] = [];
    for (let i = 0; i < count; i++) {
      const workerId = `${request.sliceId}-w${i}`;
      const vmDir = `${dir}/w${i}`;
      await Deno.mkdir(vmDir, { recursive: true });
      const attributes = localVmAttributes(request.sliceId, i, config, request.scaleGroup);
      const { worker, messages } = this.#spawnVm(vmDir, workerId);
      const res = config.vmResources;
      const start: LocalVmStartMessage = {
        type: "start",
        controllerUrl: request.controllerUrl,
        workerToken: this.#o.workerToken,
        // Every VM's directory, not just this one's: tasks of one VM may not read another's.
        protectedPaths: [this.#o.rootDir, ...(this.#o.protectedPaths ?? [])],
        workerId,
        sliceId: request.sliceId,
        scaleGroup: request.scaleGroup,
        rootDir: vmDir,
        resources: {
          cpuMillicores: res?.cpuMillicores || 1000,
          memoryBytes: res?.memoryBytes || 2 ** 30,
          accelerator: groupAccelerator(config),
        },
        attributes,
        heartbeatIntervalMs: this.#o.heartbeatInterval ?? seconds(1),
        ports: this.#ports.shared,
        settings: this.#o.workerSettings,
      };
      const vm: LocalVm = {
        info: { vmId: workerId, workerId, address: "", state: "booting", attributes },
        worker,
        dir: vmDir,
        messages,
      };
      vms.push(vm);
      started.push(
        this.#await(vm, "started", options.timeout ?? seconds(60)).then((m) => {
          if (m.type !== "started") {
            throw new PlatformError(
              `Local VM ${workerId} failed to start: ${m.type === "error" ? m.message : m.type}`,
            );
          }
          return { ...vm.info, address: m.url, state: "ready" as const };
        }),
      );
      worker.postMessage(start);
    }
    const results = await Promise.allSettled(started);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    const slice: LocalSlice = {
      info: {
        sliceId: request.sliceId,
        scaleGroup: request.scaleGroup,
        zone: config.zone || "local",
        state: failed ? "failed" : "ready",
        vms: results.map((
          r,
          i,
        ) => (r.status === "fulfilled" ? r.value : { ...vms[i]!.info, state: "failed" as const })),
        createdAt: timestamp(Date.now()),
        labels: { ...request.labels },
        error: failed ? String(failed.reason?.message ?? failed.reason) : undefined,
      },
      vms,
      dir,
    };
    this.#slices.set(request.sliceId, slice);
    if (failed) {
      await this.terminateSlice(request.sliceId);
      throw failed.reason instanceof Error
        ? failed.reason
        : new PlatformError(String(failed.reason));
    }
    return slice.info;
  }

  #spawnVm(vmDir: string, workerId: string): { worker: Worker; messages: EventTarget } {
    const prefix = this.#o.workerSettings?.outputsPrefix ?? "";
    const outputsDir = prefix.startsWith("file:///") ? [new URL(prefix).pathname] : [];
    const worker = new Worker(LOCAL_WORKER_ENTRY, {
      type: "module",
      name: workerId,
      deno: {
        permissions: {
          // Its own directory, the code it runs, and the deno binary (module tasks).
          // A file:// outputs prefix is where it copies job outputs (outputs_upload.ts).
          read: [vmDir, PROJECT_ROOT.pathname, Deno.execPath(), ...outputsDir],
          write: [vmDir, ...outputsDir],
          net: ["127.0.0.1", "localhost"],
          // Tasks are arbitrary commands, and killing their process groups needs run.
          run: true,
          env: false,
          // Host CPU and memory for heartbeats, and no other system information.
          sys: [...HOST_METRIC_SYS_PERMISSIONS],
          ffi: false,
          import: false,
        },
      },
    });
    const messages = new EventTarget();
    worker.onmessage = (ev: MessageEvent<LocalVmToPlatform>) => {
      if (ev.data.type === "log") this.#o.log?.(workerId, ev.data.line);
      else messages.dispatchEvent(new MessageEvent("message", { data: ev.data }));
    };
    worker.onerror = (ev) => {
      ev.preventDefault();
      this.#o.log?.(workerId, `worker thread error: ${ev.message}`);
      messages.dispatchEvent(
        new MessageEvent("message", { data: { type: "error", message: ev.message } }),
      );
    };
    return { worker, messages };
  }

  #await(
    vm: LocalVm,
    want: LocalVmToPlatform["type"],
    timeout: Duration,
  ): Promise<LocalVmToPlatform> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        vm.messages.removeEventListener("message", onMessage);
        reject(
          new PlatformError(
            `Local VM ${vm.info.workerId} did not answer '${want}' within ${timeout} ms`,
          ),
        );
      }, timeout);
      const onMessage = (ev: Event) => {
        const data = (ev as MessageEvent<LocalVmToPlatform>).data;
        if (data.type !== want && data.type !== "error") return;
        clearTimeout(timer);
        vm.messages.removeEventListener("message", onMessage);
        resolve(data);
      };
      vm.messages.addEventListener("message", onMessage);
    });
  }

  listSlices(options: PlatformCallOptions & { scaleGroup?: string } = {}): Promise<SliceInfo[]> {
    return Promise.resolve(
      [...this.#slices.values()].map((s) => s.info).filter((s) =>
        !options.scaleGroup || s.scaleGroup === options.scaleGroup
      ),
    );
  }

  describeSlice(sliceId: string): Promise<SliceInfo> {
    const s = this.#slices.get(sliceId);
    return s
      ? Promise.resolve(s.info)
      : Promise.reject(new ResourceNotFoundError(`No local slice ${sliceId}`));
  }

  /** Stops every VM (its tasks are killed and awaited), terminates the Workers, removes the directories. */
  async terminateSlice(sliceId: string, options: PlatformCallOptions = {}): Promise<void> {
    const slice = this.#slices.get(sliceId);
    if (!slice) return;
    this.#slices.delete(sliceId);
    const timeout = options.timeout ?? seconds(30);
    await Promise.allSettled(slice.vms.map(async (vm) => {
      try {
        const stopped = this.#await(vm, "stopped", timeout);
        vm.worker.postMessage({ type: "stop" });
        await stopped;
      } catch (err) {
        this.#o.log?.(
          vm.info.workerId,
          `did not stop cleanly: ${err instanceof Error ? err.message : err}`,
        );
      } finally {
        vm.worker.terminate();
      }
    }));
    await Deno.remove(slice.dir, { recursive: true }).catch(() => {});
  }

  startupLogs(): Promise<string> {
    return Promise.resolve("");
  }

  /** Asks a VM to read a file, to show what its permissions allow (diagnostics and tests). */
  async probeRead(workerId: string, path: string): Promise<{ ok: boolean; error: string }> {
    for (const s of this.#slices.values()) {
      const vm = s.vms.find((v) => v.info.workerId === workerId);
      if (!vm) continue;
      const reply = this.#await(vm, "probe-result", seconds(10));
      vm.worker.postMessage({ type: "probe-read", path });
      const m = await reply;
      return m.type === "probe-result"
        ? { ok: m.ok, error: m.error }
        : { ok: false, error: m.type };
    }
    throw new ResourceNotFoundError(`No local VM ${workerId}`);
  }

  async shutdown(options: PlatformCallOptions = {}): Promise<void> {
    await Promise.allSettled(
      [...this.#slices.keys()].map((id) => this.terminateSlice(id, options)),
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }
}
