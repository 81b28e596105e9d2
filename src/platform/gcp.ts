/**
 * GCP platform: TPU slices via `gcloud compute tpus tpu-vm` (bootstrapped by startup-script
 * metadata) and the controller as a labelled GCE VM. Every gcloud call goes through the
 * CommandRunner with a hard timeout; argv builders and parsers live in gcloud.ts.
 * @module
 */
import { PlatformError, ResourceNotFoundError } from "../errors.ts";
import { type Clock, type Duration, minutes, systemClock } from "../time.ts";
import { type Command, type CommandResult, type CommandRunner, runAll } from "../command/mod.ts";
import {
  controllerBootstrapScript,
  FIRST_HOST_IP,
  type IrisRuntime,
  workerBootstrapScript,
} from "./bootstrap.ts";
import { groupAccelerator } from "./accelerator.ts";
import {
  checkGcloud,
  DEFAULT_TPU_RUNTIME,
  type GceInstance,
  gceSliceInfo,
  gcloudGpuVmCreate,
  gcloudInstanceCreate,
  gcloudInstanceDelete,
  gcloudInstanceDescribe,
  gcloudInstanceList,
  gcloudInstanceStart,
  gcloudTpuCreate,
  gcloudTpuDelete,
  gcloudTpuDescribe,
  gcloudTpuList,
  type GcpLocation,
  type LabelKeys,
  labelKeys,
  labelValue,
  parseInstanceJson,
  parseInstanceListJson,
  parseTpuJson,
  parseTpuListJson,
  resourceName,
  type TpuNode,
  tpuSliceInfo,
} from "./gcloud.ts";
import type { LogTarget } from "./log_stream.ts";
import type { GceProvider } from "../rpc/gen/iris/v1/config_pb.ts";
import type {
  ControllerLifecycle,
  ControllerStatus,
  CreateSliceRequest,
  Platform,
  PlatformCallOptions,
  SliceInfo,
} from "./platform.ts";
import {
  checkOnce,
  type GceSshTarget,
  type HealthCheck,
  openTunnel,
  sshExec,
  sshFollow,
  sshTunnel,
  type Tunnel,
  waitHealthy,
} from "./ssh.ts";

/** Where Iris lives on GCP hosts (startup scripts run as root). */
export const GCP_IRIS_HOME = "/var/lib/iris";

/** Limits of single gcloud calls (a caller's `options.timeout` overrides them). */
export interface GcpTimeouts {
  /** `tpu-vm create`, `instances create/start/delete`: they wait for the resource. @default 15m */
  readonly create?: Duration;
  /** Every other call. @default 2m */
  readonly call?: Duration;
}

/** Options of {@linkcode GcpPlatform}. */
export interface GcpPlatformOptions {
  readonly runner: CommandRunner;
  readonly project: string;
  /** Zones scale groups may use; a slice in any other zone is refused. */
  readonly zones: readonly string[];
  /** The cluster's label prefix (resolved when the config is loaded). */
  readonly labelPrefix: string;
  /** How hosts find the Iris code (home defaults to /var/lib/iris). */
  readonly runtime?: IrisRuntime;
  readonly workerPort?: number;
  readonly timeouts?: GcpTimeouts;
  readonly clock?: Clock;
  /** Some groups are GPU VMs (`provider.gce`): list labelled worker instances too. */
  readonly gpuVms?: boolean;
}

/** One gcloud call, failures classified (quota, permission, not found, unavailable). */
async function runGcloud(
  runner: CommandRunner,
  cmd: Command,
  ctx: { action: string; zone?: string; timeout: Duration; signal?: AbortSignal },
): Promise<CommandResult> {
  return checkGcloud(await runner.run(cmd, { timeout: ctx.timeout, signal: ctx.signal }), ctx);
}

/** Journal of the startup script plus the tail of a daemon log, for startup-log commands. */
function startupLogScript(log: string): string {
  return `sudo journalctl -u google-startup-scripts.service --no-pager -n 300 2>/dev/null || true; ` +
    `sudo tail -n 200 ${GCP_IRIS_HOME}/${log} 2>/dev/null || true`;
}

/**
 * TPU slices on GCP. Differs from manual/local: slices are cloud resources that outlive the
 * process (found again by label), workers bootstrap themselves from startup-script metadata,
 * and terminate deletes asynchronously (the slice then lists as "deleting").
 */
export class GcpPlatform implements Platform {
  readonly kind = "gcp" as const;
  readonly #o: GcpPlatformOptions;
  readonly #labels: LabelKeys;
  readonly #create: Duration;
  readonly #call: Duration;
  readonly #clock: Clock;
  /** TPU or GPU VM name → where it lives, the slice id it was created for, and which it is. */
  readonly #known = new Map<string, GcpLocation & { sliceId?: string; gce?: boolean }>();

  constructor(options: GcpPlatformOptions) {
    this.#o = options;
    this.#labels = labelKeys(options.labelPrefix);
    this.#create = options.timeouts?.create ?? minutes(15);
    this.#call = options.timeouts?.call ?? minutes(2);
    this.#clock = options.clock ?? systemClock;
  }

  #gcloud(
    cmd: Command,
    action: string,
    zone: string,
    options?: PlatformCallOptions,
    timeout = this.#call,
  ) {
    const ctx = { action, zone, timeout: options?.timeout ?? timeout, signal: options?.signal };
    return runGcloud(this.#o.runner, cmd, ctx);
  }

  async createSlice(
    request: CreateSliceRequest,
    options?: PlatformCallOptions,
  ): Promise<SliceInfo> {
    const { config, sliceId, scaleGroup } = request;
    if (config.provider?.kind.case === "gce") return this.#createGpuVm(request, options);
    const tpu = config.provider?.kind.case === "tpu" ? config.provider.kind.value : undefined;
    if (!tpu) {
      throw new PlatformError(
        `Cannot create slice '${sliceId}' as scale group '${scaleGroup}' has no tpu or gce provider`,
      );
    }
    const zone = tpu.zone || config.zone;
    if (!this.#o.zones.includes(zone)) {
      const zones = this.#o.zones.join(", ");
      throw new PlatformError(
        `Cannot create slice '${sliceId}' as zone '${zone}' is not in platform.gcp.zones: [${zones}]`,
      );
    }
    const loc = { zone, project: tpu.projectId || this.#o.project };
    const name = resourceName(sliceId);
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(request.labels)) labels[labelValue(k)] = labelValue(v);
    labels[this.#labels.managed] = "true";
    labels[this.#labels.scaleGroup] = labelValue(scaleGroup);
    labels[this.#labels.sliceId] = labelValue(sliceId);
    const startupScript = workerBootstrapScript({
      controllerUrl: request.controllerUrl,
      sliceId,
      scaleGroup,
      workerIndex: "tpu-metadata",
      attributes: {
        // region and preemptible for constraints; the group's own attributes may override them.
        region: config.region || zone.replace(/-[a-z]$/, ""),
        preemptible: config.preemptible,
        ...config.attributes,
        "tpu-name": name,
        "tpu-topology": config.acceleratorVariant,
        zone,
      },
      workerIndexAttribute: "tpu-worker-id",
      // The worker advertises the group's TPU and checks it against the VM's metadata.
      accelerator: groupAccelerator(config),
      acceleratorCheck: "gce-metadata",
      port: this.#o.workerPort || 10001,
      advertiseAddress: FIRST_HOST_IP,
      runtime: { home: GCP_IRIS_HOME, ...this.#o.runtime },
      enrolmentToken: request.enrolmentToken,
    });
    const cmd = gcloudTpuCreate({
      name,
      ...loc,
      acceleratorType: config.acceleratorVariant,
      runtimeVersion: tpu.runtimeVersion || DEFAULT_TPU_RUNTIME,
      labels,
      preemptible: config.preemptible,
      startupScript,
    });
    this.#known.set(name, { ...loc, sliceId });
    try {
      const created = await this.#gcloud(
        cmd,
        `create TPU slice ${name}`,
        zone,
        options,
        this.#create,
      );
      return this.#sliceInfo(await this.#parseOrDescribe(created.stdout, name, loc), loc);
    } catch (err) {
      if (!/already exists/i.test(String(err))) {
        // Nothing half-created: a failed or interrupted create may have left a node behind.
        await this.#delete(name, loc).catch(() => {});
        this.#known.delete(name);
      }
      throw err;
    }
  }

  /** A GPU worker VM (`provider.gce`): one VM, one worker, bootstrapped by its startup script. */
  async #createGpuVm(
    request: CreateSliceRequest,
    options?: PlatformCallOptions,
  ): Promise<SliceInfo> {
    const { config, sliceId, scaleGroup } = request;
    const gce = config.provider!.kind.value as GceProvider;
    const zone = gce.zone || config.zone;
    if (!this.#o.zones.includes(zone)) {
      const zones = this.#o.zones.join(", ");
      throw new PlatformError(
        `Cannot create slice '${sliceId}' as zone '${zone}' is not in platform.gcp.zones: [${zones}]`,
      );
    }
    const loc = { zone, project: gce.projectId || this.#o.project };
    const name = resourceName(sliceId);
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(request.labels)) labels[labelValue(k)] = labelValue(v);
    labels[this.#labels.managed] = "true";
    labels[this.#labels.scaleGroup] = labelValue(scaleGroup);
    labels[this.#labels.sliceId] = labelValue(sliceId);
    const startupScript = workerBootstrapScript({
      controllerUrl: request.controllerUrl,
      sliceId,
      scaleGroup,
      workerIndex: 0,
      attributes: {
        region: config.region || zone.replace(/-[a-z]$/, ""),
        preemptible: config.preemptible,
        ...config.attributes,
        "gce-instance": name,
        "machine-type": gce.machineType,
        zone,
      },
      // The worker checks the claim against what nvidia-smi shows (worker serve --devices).
      accelerator: groupAccelerator(config),
      port: this.#o.workerPort || 10001,
      advertiseAddress: FIRST_HOST_IP,
      runtime: { home: GCP_IRIS_HOME, ...this.#o.runtime },
      enrolmentToken: request.enrolmentToken,
    });
    const cmd = gcloudGpuVmCreate({
      name,
      ...loc,
      machineType: gce.machineType,
      bootDiskSizeGb: gce.bootDiskSizeGb,
      labels,
      preemptible: config.preemptible,
      startupScript,
    });
    this.#known.set(name, { ...loc, sliceId, gce: true });
    try {
      const created = await this.#gcloud(
        cmd,
        `create GPU VM ${name}`,
        zone,
        options,
        this.#create,
      );
      let vm: GceInstance;
      try {
        vm = parseInstanceJson(created.stdout);
      } catch {
        vm = parseInstanceJson(
          (await this.#gcloud(gcloudInstanceDescribe(name, loc), `describe VM ${name}`, zone))
            .stdout,
        );
      }
      return this.#vmSliceInfo(vm, loc);
    } catch (err) {
      if (!/already exists/i.test(String(err))) {
        await this.#deleteVm(name, loc).catch(() => {});
        this.#known.delete(name);
      }
      throw err;
    }
  }

  async #deleteVm(name: string, loc: GcpLocation, options?: PlatformCallOptions): Promise<void> {
    try {
      await this.#gcloud(
        gcloudInstanceDelete(name, loc),
        `delete GPU VM ${name}`,
        loc.zone,
        options,
        this.#create,
      );
    } catch (err) {
      if (!(err instanceof ResourceNotFoundError)) throw err;
    }
  }

  #vmSliceInfo(vm: GceInstance, loc: GcpLocation): SliceInfo {
    return gceSliceInfo(vm, {
      labels: this.#labels,
      zone: loc.zone,
      sliceId: this.#known.get(vm.name)?.sliceId,
      now: this.#clock.now(),
    });
  }

  /** Labelled GPU worker VMs of the project (the controller VM has no slice-id label). */
  async #listGpuVms(filter: string, options?: PlatformCallOptions): Promise<SliceInfo[]> {
    const r = await this.#gcloud(
      gcloudInstanceList(this.#o.project, `${filter} AND labels.${this.#labels.sliceId}:*`),
      "list GPU VMs",
      "",
      options,
    );
    // The filter already says so; checked again so that no other labelled VM is taken for one.
    const workers = parseInstanceListJson(r.stdout).filter((vm) =>
      vm.labels[this.#labels.sliceId] !== undefined
    );
    return workers.map((vm) => {
      const loc = { zone: vm.zone, project: this.#o.project };
      if (!this.#known.has(vm.name)) this.#known.set(vm.name, { ...loc, gce: true });
      return this.#vmSliceInfo(vm, loc);
    });
  }

  async #parseOrDescribe(stdout: string, name: string, loc: GcpLocation): Promise<TpuNode> {
    try {
      const node = parseTpuJson(stdout);
      if (node.name === name) return node;
    } catch {
      // create printed something else: ask.
    }
    return parseTpuJson(
      (await this.#gcloud(gcloudTpuDescribe(name, loc), `describe TPU ${name}`, loc.zone)).stdout,
    );
  }

  async listSlices(options?: PlatformCallOptions & { scaleGroup?: string }): Promise<SliceInfo[]> {
    let filter = `labels.${this.#labels.managed}=true`;
    if (options?.scaleGroup) {
      filter += ` AND labels.${this.#labels.scaleGroup}=${labelValue(options.scaleGroup)}`;
    }
    const timeout = options?.timeout ?? this.#call;
    const outcomes = await runAll(
      this.#o.zones.map((zone) => async (signal: AbortSignal) => {
        const loc = { zone, project: this.#o.project };
        const r = await this.#gcloud(
          gcloudTpuList(loc, filter),
          `list TPU slices in ${zone}`,
          zone,
          { timeout, signal },
        );
        return parseTpuListJson(r.stdout).map((node) => {
          // Remembered, so terminating a listed slice needs no describe call.
          if (!this.#known.has(node.name)) this.#known.set(node.name, loc);
          return this.#sliceInfo(node, loc);
        });
      }),
      { timeout, signal: options?.signal },
    );
    const slices: SliceInfo[] = this.#o.gpuVms
      ? await this.#listGpuVms(filter, { timeout, signal: options?.signal })
      : [];
    for (const [i, o] of outcomes.entries()) {
      if (o.status === "rejected") throw o.reason;
      if (o.status === "timedOut") {
        throw new PlatformError(`Cannot list TPU slices in ${this.#o.zones[i]}: timed out`);
      }
      slices.push(...o.value);
    }
    return slices.sort((a, b) => a.sliceId.localeCompare(b.sliceId));
  }

  async describeSlice(sliceId: string, options?: PlatformCallOptions): Promise<SliceInfo> {
    const name = resourceName(sliceId);
    const vm = this.#known.get(name);
    if (vm?.gce) {
      const r = await this.#gcloud(
        gcloudInstanceDescribe(name, vm),
        `describe GPU VM ${name}`,
        vm.zone,
        options,
      );
      return this.#vmSliceInfo(parseInstanceJson(r.stdout), vm);
    }
    const found = await this.#locate(name, options);
    if (found) return this.#sliceInfo(found.node, found.loc);
    const zones = this.#o.zones.join(", ");
    throw new ResourceNotFoundError(
      `Cannot describe slice '${sliceId}' as no TPU ${name} exists in [${zones}]`,
    );
  }

  async terminateSlice(sliceId: string, options?: PlatformCallOptions): Promise<void> {
    const name = resourceName(sliceId);
    const known = this.#known.get(name);
    if (known?.gce) {
      await this.#deleteVm(name, known, options);
      this.#known.delete(name);
      return;
    }
    const loc = known ?? (await this.#locate(name, options))?.loc;
    if (!loc) return; // Already gone.
    await this.#delete(name, loc, options);
    this.#known.delete(name);
  }

  async #delete(name: string, loc: GcpLocation, options?: PlatformCallOptions): Promise<void> {
    try {
      await this.#gcloud(gcloudTpuDelete(name, loc), `delete TPU ${name}`, loc.zone, options);
    } catch (err) {
      if (!(err instanceof ResourceNotFoundError)) throw err;
    }
  }

  async startupLogs(sliceId: string, vmId: string, options?: PlatformCallOptions): Promise<string> {
    const name = resourceName(sliceId);
    const loc = this.#known.get(name) ?? (await this.#locate(name, options))?.loc;
    if (!loc) {
      throw new ResourceNotFoundError(
        `Cannot read startup logs of slice '${sliceId}' as it does not exist`,
      );
    }
    const worker = Number(/-w(\d+)$/.exec(vmId)?.[1] ?? 0);
    const target = this.#known.get(name)?.gce
      ? { kind: "gce" as const, name, zone: loc.zone, project: loc.project }
      : { kind: "tpu" as const, name, ...loc, worker };
    const cmd = sshExec(target, startupLogScript("worker.log"));
    return (await this.#gcloud(cmd, `read startup logs of ${vmId}`, loc.zone, options)).stdout;
  }

  /** Follow commands for every worker's log, for startLogStreaming's discovery. */
  async logTargets(options?: PlatformCallOptions): Promise<LogTarget[]> {
    const follow = `sudo tail -n +1 -F ${GCP_IRIS_HOME}/worker.log`;
    return (await this.listSlices(options)).flatMap((s) =>
      s.vms.map((vm, worker) => {
        const name = resourceName(s.sliceId);
        const target = this.#known.get(name)?.gce
          ? { kind: "gce" as const, name, zone: s.zone, project: this.#o.project }
          : { kind: "tpu" as const, name, zone: s.zone, project: this.#o.project, worker };
        return { name: vm.vmId, command: sshFollow(target, follow) };
      })
    );
  }

  /** Nothing is held locally: TPU slices outlive the process and are found again by label. */
  shutdown(): Promise<void> {
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  /** Finds a TPU by name: the known zone first, else each configured zone in turn. */
  async #locate(
    name: string,
    options?: PlatformCallOptions,
  ): Promise<{ node: TpuNode; loc: GcpLocation } | undefined> {
    const known = this.#known.get(name);
    const candidates = known
      ? [known]
      : this.#o.zones.map((zone) => ({ zone, project: this.#o.project }));
    for (const { zone, project } of candidates) {
      try {
        const r = await this.#gcloud(
          gcloudTpuDescribe(name, { zone, project }),
          `describe TPU ${name}`,
          zone,
          options,
        );
        return { node: parseTpuJson(r.stdout), loc: { zone, project } };
      } catch (err) {
        if (!(err instanceof ResourceNotFoundError)) throw err;
      }
    }
    return undefined;
  }

  #sliceInfo(node: TpuNode, loc: GcpLocation): SliceInfo {
    const sliceId = this.#known.get(node.name)?.sliceId;
    return tpuSliceInfo(node, {
      labels: this.#labels,
      zone: loc.zone,
      sliceId,
      now: this.#clock.now(),
    });
  }
}

/** Options of {@linkcode GcpControllerLifecycle}. */
export interface GcpControllerOptions {
  readonly runner: CommandRunner;
  readonly project: string;
  readonly zone: string;
  /** The cluster's label prefix (resolved when the config is loaded). */
  readonly labelPrefix: string;
  /** VM name. @default "<prefix>-controller" */
  readonly name?: string;
  /** @default 10000 */
  readonly port?: number;
  /** @default "n2-standard-4" */
  readonly machineType?: string;
  readonly bootDiskSizeGb?: number;
  readonly serviceAccount?: string;
  /** Cluster config YAML handed to `iris controller serve --config`. */
  readonly clusterConfig?: string;
  readonly runtime?: IrisRuntime;
  /** Health RPC of a controller URL (injected: this layer never imports the controller). */
  readonly checkHealth: HealthCheck;
  /** @default 10m */
  readonly healthTimeout?: Duration;
  readonly timeouts?: GcpTimeouts;
}

const STOPPED_STATUSES = new Set(["TERMINATED", "STOPPED", "SUSPENDED"]);

/**
 * The controller as a GCE VM found by its `<prefix>-controller=true` label: start reuses a VM
 * that exists (starting it if stopped) and otherwise creates one whose startup script runs
 * `iris controller serve`. Unlike local (in-process) and manual (ssh to a fixed host).
 */
export class GcpControllerLifecycle implements ControllerLifecycle {
  readonly #o: GcpControllerOptions;
  readonly #labels: LabelKeys;
  readonly #name: string;
  readonly #port: number;
  readonly #call: Duration;
  readonly #slow: Duration;

  constructor(options: GcpControllerOptions) {
    this.#o = options;
    this.#labels = labelKeys(options.labelPrefix);
    this.#name = options.name ??
      resourceName(`${labelValue(options.labelPrefix)}-controller`);
    this.#port = options.port || 10000;
    this.#call = options.timeouts?.call ?? minutes(2);
    this.#slow = options.timeouts?.create ?? minutes(15);
  }

  #gcloud(cmd: Command, action: string, zone?: string, timeout = this.#call, signal?: AbortSignal) {
    return runGcloud(this.#o.runner, cmd, { action, zone, timeout, signal });
  }

  #url(vm: GceInstance): string {
    return `http://${vm.internalIp}:${this.#port}`;
  }

  #target(vm: GceInstance): GceSshTarget {
    return { kind: "gce", name: vm.name, zone: vm.zone, project: this.#o.project };
  }

  /** Every VM carrying the controller label, in any zone. */
  async #list(signal?: AbortSignal): Promise<GceInstance[]> {
    const cmd = gcloudInstanceList(this.#o.project, `labels.${this.#labels.controller}=true`);
    const r = await this.#gcloud(cmd, "list controller VMs", undefined, this.#call, signal);
    return parseInstanceListJson(r.stdout);
  }

  async #find(): Promise<GceInstance | undefined> {
    const vms = await this.#list();
    return vms.find((v) => v.status === "RUNNING") ?? vms[0];
  }

  async #describe(name: string, zone: string): Promise<GceInstance> {
    const cmd = gcloudInstanceDescribe(name, { zone, project: this.#o.project });
    return parseInstanceJson((await this.#gcloud(cmd, `describe VM ${name}`, zone)).stdout);
  }

  async start(): Promise<string> {
    let vm = await this.#find();
    if (vm && STOPPED_STATUSES.has(vm.status)) {
      const cmd = gcloudInstanceStart(vm.name, { zone: vm.zone, project: this.#o.project });
      await this.#gcloud(cmd, `start VM ${vm.name}`, vm.zone, this.#slow);
      vm = await this.#describe(vm.name, vm.zone);
    } else if (!vm) {
      const created = await this.#gcloud(
        this.#createCommand(),
        `create controller VM ${this.#name}`,
        this.#o.zone,
        this.#slow,
      );
      try {
        vm = parseInstanceJson(created.stdout);
      } catch {
        // Described below.
      }
    }
    if (!vm?.internalIp) {
      vm = await this.#describe(vm?.name ?? this.#name, vm?.zone ?? this.#o.zone);
    }
    const url = this.#url(vm);
    await waitHealthy(url, this.#o.checkHealth, { timeout: this.#o.healthTimeout ?? minutes(10) });
    return url;
  }

  #createCommand(): Command {
    return gcloudInstanceCreate({
      name: this.#name,
      zone: this.#o.zone,
      project: this.#o.project,
      machineType: this.#o.machineType,
      bootDiskSizeGb: this.#o.bootDiskSizeGb,
      serviceAccount: this.#o.serviceAccount,
      labels: { [this.#labels.managed]: "true", [this.#labels.controller]: "true" },
      startupScript: controllerBootstrapScript({
        port: this.#port,
        advertiseAddress: FIRST_HOST_IP,
        config: this.#o.clusterConfig,
        runtime: { home: GCP_IRIS_HOME, ...this.#o.runtime },
      }),
    });
  }

  /** Deletes every controller VM carrying the label (in parallel); not found counts as done. */
  async stop(options?: { readonly signal?: AbortSignal }): Promise<void> {
    const outcomes = await runAll(
      (await this.#list(options?.signal)).map((vm) => async (signal: AbortSignal) => {
        try {
          const cmd = gcloudInstanceDelete(vm.name, { zone: vm.zone, project: this.#o.project });
          await this.#gcloud(cmd, `delete VM ${vm.name}`, vm.zone, this.#slow, signal);
        } catch (err) {
          if (!(err instanceof ResourceNotFoundError)) throw err;
        }
      }),
      { timeout: this.#slow, signal: options?.signal },
    );
    const failed = outcomes.flatMap((o) =>
      o.status === "fulfilled" ? [] : [o.status === "rejected" ? String(o.reason) : "timed out"]
    );
    if (failed.length) throw new PlatformError(`Cannot stop the controller: ${failed.join("; ")}`);
  }

  async restart(): Promise<string> {
    await this.stop();
    return await this.start();
  }

  /** Re-runs the startup script on the VM (refreshes code and restarts the controller). */
  async reload(): Promise<string> {
    const vm = await this.#find();
    if (!vm || vm.status !== "RUNNING" || !vm.internalIp) return await this.start();
    const cmd = sshExec(this.#target(vm), "sudo google_metadata_script_runner startup");
    await this.#gcloud(cmd, `reload the controller on ${vm.name}`, vm.zone, this.#slow);
    const url = this.#url(vm);
    await waitHealthy(url, this.#o.checkHealth, { timeout: this.#o.healthTimeout ?? minutes(10) });
    return url;
  }

  async discover(): Promise<string | undefined> {
    const vm = await this.#find();
    return vm?.status === "RUNNING" && vm.internalIp ? this.#url(vm) : undefined;
  }

  async fetchStartupLogs(): Promise<string> {
    const vm = await this.#find();
    if (!vm) return "(no controller VM)";
    const cmd = sshExec(this.#target(vm), startupLogScript("controller.log"));
    return (await this.#gcloud(cmd, "read controller startup logs", vm.zone)).stdout;
  }

  async status(): Promise<ControllerStatus> {
    const url = await this.discover();
    if (!url) {
      return { running: false, url: "", healthy: false, message: "no running controller VM" };
    }
    return { running: true, url, healthy: await checkOnce(url, this.#o.checkHealth) };
  }

  /** `gcloud compute ssh VM -- -L local:localhost:port -N`, ready once the controller answers. */
  async tunnel(localPort: number): Promise<Tunnel> {
    const vm = await this.#find();
    if (vm?.status !== "RUNNING") {
      throw new ResourceNotFoundError("Cannot open a tunnel as no controller VM is running");
    }
    const command = sshTunnel(this.#target(vm), localPort, this.#port);
    return await openTunnel({
      runner: this.#o.runner,
      command,
      localPort,
      isReady: this.#o.checkHealth,
    });
  }

  /** The follow command of the controller's log, for startLogStreaming. */
  async logTarget(): Promise<LogTarget | undefined> {
    const vm = await this.#find();
    if (!vm) return undefined;
    return {
      name: "controller",
      command: sshFollow(this.#target(vm), `sudo tail -n +1 -F ${GCP_IRIS_HOME}/controller.log`),
    };
  }

  /** The VM outlives this object: disposing releases nothing. */
  [Symbol.asyncDispose](): Promise<void> {
    return Promise.resolve();
  }
}
