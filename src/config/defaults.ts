/**
 * Default values of a cluster config (documented in docs/config.md) and their application after
 * validation, plus the derived facts other modules need: VMs per slice and the share of this
 * machine a local worker advertises.
 * @module
 */
import { gpuMachine } from "./gce_machines.ts";
import { clone, create } from "@bufbuild/protobuf";
import {
  AutoscalerConfigSchema,
  type ClusterConfig,
  DefaultsConfigSchema,
  KubernetesPlatformConfigSchema,
  PlatformConfigSchema,
  type ScaleGroupConfig,
  ScaleGroupConfigSchema,
  SshConfigSchema,
} from "../rpc/gen/iris/v1/config_pb.ts";
import {
  AcceleratorSchema,
  AcceleratorType,
  ResourcesSchema,
} from "../rpc/gen/iris/v1/types_pb.ts";
import { defaultTpuRuntimeVersion, tpuShape } from "./tpu_variants.ts";

const GIB = 2 ** 30;

/** Every default value, in one place. Durations in milliseconds, sizes in bytes. */
export const DEFAULTS = {
  name: "iris",
  labelPrefix: "iris",
  heartbeatIntervalMs: 1_000,
  heartbeatFailureThreshold: 3,
  /** Autoscaler timing for local clusters (fast, for development and smoke tests). */
  localAutoscaler: {
    evaluationIntervalMs: 1_000,
    scaleUpCooldownMs: 1_000,
    scaleDownDelayMs: 30_000,
    bootTimeoutMs: 180_000,
    initTimeoutMs: 180_000,
  },
  /** Autoscaler timing for gcp and manual clusters. */
  remoteAutoscaler: {
    evaluationIntervalMs: 10_000,
    scaleUpCooldownMs: 60_000,
    scaleDownDelayMs: 300_000,
    bootTimeoutMs: 600_000,
    initTimeoutMs: 600_000,
  },
  /** Token buckets: slices created / terminated per minute per group. */
  scaleUpRate: 16,
  scaleDownRate: 32,
  /** First wait after a quota error. */
  quotaBackoffMs: 300_000,
  backoffInitialMs: 5_000,
  backoffMaxMs: 300_000,
  /** Scale group priority when not given (lower is preferred). */
  priority: 100,
  localControllerHost: "127.0.0.1",
  controllerPort: 10_000,
  gcpMachineType: "n2-standard-4",
  gcpBootDiskSizeGb: 50,
  sshPort: 22,
  sshConnectTimeoutMs: 30_000,
  /** Cap of the memory a local worker advertises. */
  localMemoryCapBytes: 8 * GIB,
  /** Assumed machine memory when it cannot be read (no --allow-sys). */
  fallbackMachineMemoryBytes: 8 * GIB,
} as const;

/** The machine local workers run on. */
export interface MachineInfo {
  readonly cpuCores: number;
  readonly memoryBytes: number;
}

/** This machine's logical cores and total memory (falls back when sys info is not permitted). */
export function detectMachine(): MachineInfo {
  const cpuCores = Math.max(1, Number(globalThis.navigator?.hardwareConcurrency) || 1);
  let memoryBytes: number = DEFAULTS.fallbackMachineMemoryBytes;
  try {
    memoryBytes = Deno.systemMemoryInfo().total || memoryBytes;
  } catch {
    // Not permitted (e.g. a restricted Worker): keep the fallback.
  }
  return { cpuCores, memoryBytes };
}

/** What one local worker advertises: half the cores (≥ 1) and min(8 GiB, a quarter of memory). */
export function localVmShare(machine: MachineInfo): { cpuMillicores: number; memoryBytes: number } {
  return {
    cpuMillicores: Math.max(1, Math.floor(machine.cpuCores / 2)) * 1000,
    memoryBytes: Math.min(DEFAULTS.localMemoryCapBytes, Math.floor(machine.memoryBytes / 4)),
  };
}

/** VMs (workers) per slice: the hosts of the TPU topology, 1 otherwise. */
export function groupVmsPerSlice(group: ScaleGroupConfig): number {
  if (group.acceleratorType !== AcceleratorType.TPU) return 1;
  return tpuShape(group.acceleratorVariant)?.vmCount ?? 1;
}

/** Options of {@linkcode applyDefaults}. */
export interface ApplyDefaultsOptions {
  /**
   * YAML paths that were written in the file. Fields not in the set get defaults; without the
   * set, zero values count as unset (fine for configs built in code).
   */
  readonly present?: ReadonlySet<string>;
  /** The machine local vm_resources are a share of. @default detectMachine() */
  readonly machine?: MachineInfo;
  /** Config source; its file stem becomes the cluster name when `name` is not given. */
  readonly source?: string;
}

/**
 * Fills every unset field with its default, in place, and returns the config. Call it on a
 * validated config: it assumes the controller kind is set.
 */
export function applyDefaults(
  config: ClusterConfig,
  options: ApplyDefaultsOptions = {},
): ClusterConfig {
  const present = options.present;
  const unset = (path: string, value: number | string) => present ? !present.has(path) : !value;
  const mode = config.controller?.kind.case ?? "local";
  const isLocal = mode === "local";

  if (!config.name) {
    const stem = options.source?.split(/[\\/]/).pop()?.replace(/\.(ya?ml|json)$/i, "");
    config.name = stem && /^\S+$/.test(stem) ? stem : DEFAULTS.name;
  }
  const platform = config.platform ??= create(PlatformConfigSchema, {});
  if (!platform.labelPrefix) platform.labelPrefix = DEFAULTS.labelPrefix;
  if (mode === "manual" || platform.ssh) {
    const ssh = platform.ssh ??= create(SshConfigSchema, {});
    if (!ssh.port) ssh.port = DEFAULTS.sshPort;
    if (!ssh.connectTimeoutMs) ssh.connectTimeoutMs = DEFAULTS.sshConnectTimeoutMs;
  }

  const controller = config.controller;
  if (controller) {
    if (!controller.heartbeatIntervalMs) {
      controller.heartbeatIntervalMs = DEFAULTS.heartbeatIntervalMs;
    }
    if (!controller.heartbeatFailureThreshold) {
      controller.heartbeatFailureThreshold = DEFAULTS.heartbeatFailureThreshold;
    }
    const kind = controller.kind;
    if (kind.case === "local") {
      if (!kind.value.host) kind.value.host = DEFAULTS.localControllerHost;
    } else if (kind.case === "gcp") {
      if (!kind.value.zone) kind.value.zone = platform.gcp?.zones[0] ?? "";
      if (!kind.value.machineType) kind.value.machineType = DEFAULTS.gcpMachineType;
      if (!kind.value.port) kind.value.port = DEFAULTS.controllerPort;
      if (!kind.value.bootDiskSizeGb) kind.value.bootDiskSizeGb = DEFAULTS.gcpBootDiskSizeGb;
    } else if (kind.case === "manual") {
      if (!kind.value.port) kind.value.port = DEFAULTS.controllerPort;
    } else if (kind.case === "kubernetes") {
      if (!kind.value.port) kind.value.port = DEFAULTS.controllerPort;
      const k8s = platform.kubernetes ??= create(KubernetesPlatformConfigSchema, {});
      if (!k8s.flavour) k8s.flavour = "coreweave";
      if (!k8s.namespace) k8s.namespace = platform.labelPrefix;
      if (!k8s.runtime) k8s.runtime = "process";
    }
  }

  const modeDefaults = isLocal ? DEFAULTS.localAutoscaler : DEFAULTS.remoteAutoscaler;
  const defaults = config.defaults ??= create(DefaultsConfigSchema, {});
  const a = defaults.autoscaler ??= create(AutoscalerConfigSchema, {});
  const ap = "defaults.autoscaler";
  if (unset(`${ap}.evaluation_interval`, a.evaluationIntervalMs)) {
    a.evaluationIntervalMs = modeDefaults.evaluationIntervalMs;
  }
  if (unset(`${ap}.scale_up_cooldown`, a.scaleUpCooldownMs)) {
    a.scaleUpCooldownMs = modeDefaults.scaleUpCooldownMs;
  }
  if (unset(`${ap}.scale_down_delay`, a.scaleDownDelayMs)) {
    a.scaleDownDelayMs = modeDefaults.scaleDownDelayMs;
  }
  if (unset(`${ap}.backoff_initial`, a.backoffInitialMs)) {
    a.backoffInitialMs = DEFAULTS.backoffInitialMs;
  }
  if (unset(`${ap}.backoff_max`, a.backoffMaxMs)) a.backoffMaxMs = DEFAULTS.backoffMaxMs;
  if (unset(`${ap}.boot_timeout`, a.bootTimeoutMs)) a.bootTimeoutMs = modeDefaults.bootTimeoutMs;
  if (unset(`${ap}.init_timeout`, a.initTimeoutMs)) a.initTimeoutMs = modeDefaults.initTimeoutMs;
  if (unset(`${ap}.scale_up_rate`, a.scaleUpRate)) a.scaleUpRate = DEFAULTS.scaleUpRate;
  if (unset(`${ap}.scale_down_rate`, a.scaleDownRate)) a.scaleDownRate = DEFAULTS.scaleDownRate;
  if (unset(`${ap}.quota_backoff`, a.quotaBackoffMs)) a.quotaBackoffMs = DEFAULTS.quotaBackoffMs;

  let machine = options.machine;
  for (const [name, group] of Object.entries(config.scaleGroups)) {
    const gp = `scale_groups.${name}`;
    if (group.acceleratorType === AcceleratorType.UNSPECIFIED) {
      group.acceleratorType = AcceleratorType.CPU;
    }
    if (unset(`${gp}.scale_up_cooldown`, group.scaleUpCooldownMs)) {
      group.scaleUpCooldownMs = a.scaleUpCooldownMs;
    }
    if (unset(`${gp}.scale_down_delay`, group.scaleDownDelayMs)) {
      group.scaleDownDelayMs = a.scaleDownDelayMs;
    }
    if (unset(`${gp}.priority`, group.priority)) group.priority = DEFAULTS.priority;
    if (unset(`${gp}.boot_timeout`, group.bootTimeoutMs)) group.bootTimeoutMs = a.bootTimeoutMs;
    if (unset(`${gp}.init_timeout`, group.initTimeoutMs)) group.initTimeoutMs = a.initTimeoutMs;
    if (unset(`${gp}.scale_up_rate`, group.scaleUpRate)) group.scaleUpRate = a.scaleUpRate;
    if (unset(`${gp}.scale_down_rate`, group.scaleDownRate)) {
      group.scaleDownRate = a.scaleDownRate;
    }
    if (group.region === "" && /^[a-z]+-[a-z]+\d+-[a-z]$/.test(group.zone)) {
      group.region = group.zone.replace(/-[a-z]$/, "");
    }

    const vm = group.vmResources ??= create(ResourcesSchema, {});
    const provider = group.provider?.kind;
    if (provider?.case === "local" && (!vm.cpuMillicores || !vm.memoryBytes)) {
      machine ??= detectMachine();
      const share = localVmShare(machine);
      if (!vm.cpuMillicores) vm.cpuMillicores = share.cpuMillicores;
      if (!vm.memoryBytes) vm.memoryBytes = share.memoryBytes;
    }
    const shape = group.acceleratorType === AcceleratorType.TPU
      ? tpuShape(group.acceleratorVariant)
      : undefined;
    if (shape) group.acceleratorVariant = shape.variant;
    // A GCE GPU machine type fixes the GPU model and count.
    const gpuVm = provider?.case === "gce" && group.acceleratorType === AcceleratorType.GPU
      ? gpuMachine(provider.value.machineType)
      : undefined;
    if (gpuVm && !group.acceleratorVariant) group.acceleratorVariant = gpuVm.variant;
    const givenCount = present
      ? (present.has(`${gp}.vm_resources.accelerators`) ? vm.accelerator?.count : undefined)
      : vm.accelerator?.count || undefined;
    const count = shape?.chipsPerHost ?? givenCount ?? gpuVm?.count ??
      (group.acceleratorType === AcceleratorType.GPU ? 1 : 0);
    vm.accelerator = create(AcceleratorSchema, {
      type: group.acceleratorType,
      variant: group.acceleratorVariant,
      count,
    });

    if (provider?.case === "tpu") {
      const tpu = provider.value;
      if (!tpu.zone) {
        tpu.zone = group.zone ||
          (platform.gcp?.zones.length === 1 ? platform.gcp.zones[0] ?? "" : "");
      }
      if (!group.zone) group.zone = tpu.zone;
      if (!group.region && group.zone) group.region = group.zone.replace(/-[a-z]$/, "");
      if (!tpu.projectId) tpu.projectId = platform.gcp?.projectId ?? "";
      if (!tpu.runtimeVersion) {
        tpu.runtimeVersion = defaultTpuRuntimeVersion(group.acceleratorVariant);
      }
    } else if (provider?.case === "gce") {
      const gce = provider.value;
      if (!gce.zone) {
        gce.zone = group.zone ||
          (platform.gcp?.zones.length === 1 ? platform.gcp.zones[0] ?? "" : "");
      }
      if (!group.zone) group.zone = gce.zone;
      if (!group.region && group.zone) group.region = group.zone.replace(/-[a-z]$/, "");
      if (!gce.projectId) gce.projectId = platform.gcp?.projectId ?? "";
      if (!gce.bootDiskSizeGb) gce.bootDiskSizeGb = 200;
    } else if (provider?.case === "manual") {
      if (unset(`${gp}.max_slices`, group.maxSlices)) {
        group.maxSlices = Math.floor(provider.value.hosts.length / groupVmsPerSlice(group));
      }
      for (const host of provider.value.hosts) {
        if (!host.user) host.user = platform.ssh?.user ?? "";
        if (!host.keyFile) host.keyFile = platform.ssh?.keyFile ?? "";
        if (!host.port) host.port = platform.ssh?.port ?? DEFAULTS.sshPort;
        if (!host.knownHostsFile) host.knownHostsFile = platform.ssh?.knownHostsFile ?? "";
      }
    }
  }
  expandZones(config);
  return config;
}

/**
 * Replaces every multi-zone group (`zones: [a, b]`) with one group per zone named
 * "<group>-<zone>", each with its `zone`, `region` and (tpu) provider zone set. Idempotent.
 */
export function expandZones(config: ClusterConfig): void {
  const out: Record<string, ScaleGroupConfig> = {};
  for (const [name, group] of Object.entries(config.scaleGroups)) {
    if (group.zones.length === 0) {
      out[name] = group;
      continue;
    }
    for (const zone of group.zones) {
      const g = clone(ScaleGroupConfigSchema, group);
      g.zones = [];
      g.zone = zone;
      g.region = /^[a-z]+-[a-z]+\d+-[a-z]$/.test(zone) ? zone.replace(/-[a-z]$/, "") : g.region;
      if (g.provider?.kind.case === "tpu") g.provider.kind.value.zone = zone;
      out[`${name}-${zone}`] = g;
    }
  }
  config.scaleGroups = out;
}
