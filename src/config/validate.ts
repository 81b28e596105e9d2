/**
 * Cross-field rules of a cluster config: controller/provider compatibility, slice bounds, TPU
 * variants, zones, manual hosts, required-by-mode fields. Runs on the parsed proto and only
 * compares fields that were given and valid (`present`), so one bad value yields one problem.
 * @module
 */
import type { ClusterConfig, ScaleGroupConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import { AcceleratorType } from "../rpc/gen/iris/v1/types_pb.ts";
import { formatGot, joinPath } from "./issues.ts";
import { GCP_REGION, GCP_ZONE } from "./parse.ts";
import type { YamlReader } from "./reader.ts";
import { TPU_VARIANT_EXAMPLES, tpuShape } from "./tpu_variants.ts";
import { formatConfigBytes as formatSizeBytes, formatConfigDuration } from "../format.ts";

/** Ceiling of `controller.max_bundle_size`. */
export const MAX_BUNDLE_SIZE_BYTES = 4 * 1024 * 1024 * 1024;
import { DEFAULTS, groupVmsPerSlice } from "./defaults.ts";
import { GPU_MACHINE_EXAMPLES, gpuMachine } from "./gce_machines.ts";

/** Which provider kinds each controller kind can drive. */
export const COMPATIBLE_PROVIDERS: Readonly<Record<string, readonly string[]>> = {
  local: ["local"],
  gcp: ["tpu", "gce"],
  manual: ["manual"],
  kubernetes: ["kubernetes"],
};

/** Records every cross-field problem of `config` in `r`. */
export function validateConfig(config: ClusterConfig, r: YamlReader): void {
  const has = (path: string) => r.present.has(path);
  validateController(config, r, has);
  validateAutoscaler(config, r, has);
  const seenHosts = new Map<string, string>();
  for (const [name, group] of Object.entries(config.scaleGroups)) {
    validateGroup(config, name, group, r, has, seenHosts);
  }
}

function validateController(
  config: ClusterConfig,
  r: YamlReader,
  has: (p: string) => boolean,
): void {
  const controller = config.controller;
  if (!controller) return;
  const kind = controller.kind;
  const prefix = controller.bundlePrefix;
  // "Missing" only when neither given nor already reported as invalid.
  const missing = (p: string) => !has(p) && !r.issues.list.some((i) => i.path === p);
  // bundle_prefix is optional everywhere: without it the controller keeps bundles in its state
  // dir (or a temp dir) and workers fetch them with GetBundle (docs/bundles.md).
  if (kind.case === "local") {
    if (has("controller.bundle_prefix") && !prefix.startsWith("file://")) {
      r.problem(
        "controller.bundle_prefix",
        `must be a "file:///…" prefix for a local controller (got ${formatGot(prefix)})`,
      );
    }
  } else if (kind.case === "gcp") {
    if (!config.platform?.gcp?.projectId && missing("platform.gcp.project_id")) {
      r.problem("platform.gcp.project_id", "required for a gcp controller");
    }
    if (missing("controller.gcp.zone") && !config.platform?.gcp?.zones.length) {
      r.problem(
        "controller.gcp.zone",
        "required for a gcp controller (or list platform.gcp.zones)",
      );
    }
  } else if (kind.case === "manual") {
    if (missing("controller.manual.host")) r.problem("controller.manual.host", "required");
  } else if (kind.case === "kubernetes") {
    if (!config.platform?.kubernetes?.image && missing("platform.kubernetes.image")) {
      r.problem(
        "platform.kubernetes.image",
        "required for a kubernetes controller (an image with deno and Iris at /app)",
      );
    }
  }
  validateBundleSize(config, r, has);
}

/** Bundles are held in memory whole: at most 4 GiB, and never over the request size limit. */
function validateBundleSize(
  config: ClusterConfig,
  r: YamlReader,
  has: (p: string) => boolean,
): void {
  const bytes = config.controller?.maxBundleBytes ?? 0;
  if (!has("controller.max_bundle_size")) return;
  if (bytes > MAX_BUNDLE_SIZE_BYTES) {
    r.problem(
      "controller.max_bundle_size",
      `must be at most 4GiB (bundles are held in memory; got ${formatSizeBytes(bytes)})`,
    );
  } else if (has("auth.max_request_size") && (config.auth?.maxRequestBytes ?? 0) < bytes) {
    r.problem(
      "controller.max_bundle_size",
      `is larger than auth.max_request_size (${
        formatSizeBytes(config.auth?.maxRequestBytes ?? 0)
      }), so uploads that size would be refused; raise auth.max_request_size or lower this`,
    );
  }
}

function validateAutoscaler(
  config: ClusterConfig,
  r: YamlReader,
  has: (p: string) => boolean,
): void {
  const a = config.defaults?.autoscaler;
  if (!a) return;
  const p = "defaults.autoscaler";
  const initial = has(`${p}.backoff_initial`) ? a.backoffInitialMs : DEFAULTS.backoffInitialMs;
  const max = has(`${p}.backoff_max`) ? a.backoffMaxMs : DEFAULTS.backoffMaxMs;
  if ((has(`${p}.backoff_initial`) || has(`${p}.backoff_max`)) && max < initial) {
    r.problem(
      has(`${p}.backoff_max`) ? `${p}.backoff_max` : `${p}.backoff_initial`,
      has(`${p}.backoff_max`)
        ? `must be ≥ backoff_initial (got ${formatConfigDuration(max)} < ${
          formatConfigDuration(initial)
        })`
        : `must be ≤ backoff_max (got ${formatConfigDuration(initial)} > ${
          formatConfigDuration(max)
        })`,
    );
  }
}

function validateGroup(
  config: ClusterConfig,
  name: string,
  group: ScaleGroupConfig,
  r: YamlReader,
  has: (p: string) => boolean,
  seenHosts: Map<string, string>,
): void {
  const path = joinPath("scale_groups", name);
  const at = (key: string) => joinPath(path, key);
  const providerKind = group.provider?.kind.case;
  const controllerKind = config.controller?.kind.case;

  if (controllerKind === "gcp" && name.includes("_")) {
    r.problem(
      path,
      'group name must not contain "_" with a gcp controller (GCP resource names allow a-z, 0-9 and -)',
    );
  }

  // Controller ↔ provider compatibility.
  if (
    providerKind && controllerKind && !COMPATIBLE_PROVIDERS[controllerKind]?.includes(providerKind)
  ) {
    const allowed = COMPATIBLE_PROVIDERS[controllerKind]?.join(", ") ?? "";
    r.problem(
      at("provider"),
      `a ${controllerKind} controller can only drive ${allowed} providers (got ${providerKind})`,
    );
  }

  // Accelerator type and variant (skipped when accelerator_type itself is bad).
  const failed = (p: string) => r.issues.list.some((i) => i.path === p);
  const typeGiven = has(at("accelerator_type"));
  const type = typeGiven ? group.acceleratorType : AcceleratorType.CPU;
  const variantGiven = has(at("accelerator_variant"));
  if (!failed(at("accelerator_type"))) {
    if (type === AcceleratorType.TPU && !variantGiven && !failed(at("accelerator_variant"))) {
      r.problem(
        at("accelerator_variant"),
        `required for accelerator_type tpu (e.g. ${TPU_VARIANT_EXAMPLES})`,
      );
    } else if (
      type === AcceleratorType.TPU && variantGiven && !tpuShape(group.acceleratorVariant)
    ) {
      r.problem(
        at("accelerator_variant"),
        `unknown TPU variant ${
          formatGot(group.acceleratorVariant)
        } (expected e.g. ${TPU_VARIANT_EXAMPLES})`,
      );
    } else if (type === AcceleratorType.CPU && variantGiven) {
      r.problem(at("accelerator_variant"), "only allowed for accelerator_type gpu or tpu");
    }
    if (providerKind === "tpu" && !typeGiven) {
      r.problem(at("accelerator_type"), "required for a tpu provider (accelerator_type: tpu)");
    } else if (providerKind === "tpu" && type !== AcceleratorType.TPU) {
      r.problem(
        at("provider.tpu"),
        `requires accelerator_type tpu (got ${AcceleratorType[type].toLowerCase()})`,
      );
    }
  }

  // Accelerators per VM.
  const shape = type === AcceleratorType.TPU ? tpuShape(group.acceleratorVariant) : undefined;
  const accelerators = group.vmResources?.accelerator?.count;
  const accPath = at("vm_resources.accelerators");
  if (has(accPath) && accelerators !== undefined) {
    if (type !== AcceleratorType.GPU && type !== AcceleratorType.TPU && accelerators !== 0) {
      r.problem(accPath, `must be 0 for a cpu group (got ${accelerators})`);
    } else if (shape && accelerators !== shape.chipsPerHost) {
      r.problem(
        accPath,
        `must equal the chips per host of ${group.acceleratorVariant} (${shape.chipsPerHost}) (got ${accelerators})`,
      );
    }
  }

  if (group.provider?.kind.case === "gce") validateGceGroup(config, group, at, r, has, failed);

  // Slice bounds.
  const vms = groupVmsPerSlice(group);
  const hosts = group.provider?.kind.case === "manual"
    ? group.provider.kind.value.hosts
    : undefined;
  const maxGiven = has(at("max_slices"));
  if (!maxGiven && providerKind !== "manual" && !failed(at("max_slices"))) {
    r.problem(at("max_slices"), "required (the most slices this group may run)");
  }
  const hostsPath = at("provider.manual.hosts");
  const hostsFailed = r.issues.list.some((i) => i.path.startsWith(hostsPath));
  const hostCap = hosts && hosts.length > 0 && !hostsFailed
    ? Math.floor(hosts.length / vms)
    : undefined;
  if (has(at("min_slices")) && maxGiven && group.maxSlices < group.minSlices) {
    r.problem(
      at("max_slices"),
      `must be ≥ min_slices (got ${group.maxSlices} < ${group.minSlices})`,
    );
  } else if (
    has(at("min_slices")) && !maxGiven && hostCap !== undefined && hostCap < group.minSlices
  ) {
    r.problem(
      at("min_slices"),
      `must be ≤ ${hostCap}, the slices the listed hosts can form (got ${group.minSlices})`,
    );
  }
  if (has(at("buffer_slices")) && maxGiven && group.bufferSlices > group.maxSlices) {
    r.problem(
      at("buffer_slices"),
      `must be ≤ max_slices (got ${group.bufferSlices} > ${group.maxSlices})`,
    );
  }
  if (has(at("zones")) && group.zones.length > 0) {
    if (has(at("zone"))) r.problem(at("zones"), "cannot be combined with zone (give one of them)");
    if (providerKind === "manual") {
      r.problem(at("zones"), "not supported for a manual provider (its hosts have no zones)");
    }
    for (const z of group.zones) {
      const expanded = `${name}-${z}`;
      if (Object.hasOwn(config.scaleGroups, expanded)) {
        r.problem(at("zones"), `expands to group ${expanded}, which is already defined`);
      }
    }
  }
  if (hostCap !== undefined && maxGiven && group.maxSlices > hostCap) {
    r.problem(
      at("max_slices"),
      `must be ≤ ${hostCap} (${hosts?.length} hosts, ${vms} per slice) for a manual provider (got ${group.maxSlices})`,
    );
  }
  if (hosts && hosts.length > 0 && !hostsFailed && hosts.length < vms) {
    r.problem(
      hostsPath,
      `must list at least ${vms} hosts for one ${group.acceleratorVariant} slice (got ${hosts.length})`,
    );
  }

  // Hosts are not shared between groups or listed twice.
  hosts?.forEach((h, i) => {
    const hp = r.origins.get(h) ?? `${hostsPath}[${i}]`;
    const key = `${h.host}:${h.port || 0}`;
    const previous = seenHosts.get(key);
    if (previous) r.problem(hp, `duplicate host ${formatGot(h.host)} (also at ${previous})`);
    else seenHosts.set(key, hp);
  });

  // VM resources are required where Iris cannot measure the machine before it exists.
  if (
    providerKind === "kubernetes" && config.platform?.kubernetes?.flavour !== "generic" &&
    group.provider?.kind.case === "kubernetes" && !group.provider.kind.value.instanceType &&
    !failed(at("provider.kubernetes.instance_type"))
  ) {
    r.problem(
      at("provider.kubernetes.instance_type"),
      "required with the coreweave flavour (the NodePool's instance type, e.g. gd-8xh100ib-i128)",
    );
  }
  if (
    providerKind === "tpu" || providerKind === "manual" || providerKind === "kubernetes" ||
    providerKind === "gce"
  ) {
    for (const key of ["cpu", "memory"]) {
      const p = at(`vm_resources.${key}`);
      if (!has(p) && !failed(p) && !failed(at("vm_resources"))) {
        r.problem(
          p,
          `required for ${providerKind} providers (the ${key} of each VM, used to size slices)`,
        );
      }
    }
  }

  // Zones and regions.
  if (
    has(at("zone")) && has(at("region")) && GCP_ZONE.test(group.zone) &&
    GCP_REGION.test(group.region) &&
    !group.zone.startsWith(`${group.region}-`)
  ) {
    r.problem(
      at("zone"),
      `must be in region ${formatGot(group.region)} (got ${formatGot(group.zone)})`,
    );
  }
  if (providerKind === "tpu" && group.provider?.kind.case === "tpu") {
    const tpu = group.provider.kind.value;
    const gcp = config.platform?.gcp;
    if (has(at("zone")) && !GCP_ZONE.test(group.zone)) {
      r.problem(
        at("zone"),
        `must be a GCP zone like "europe-west4-b" for a tpu provider (got ${
          formatGot(group.zone)
        })`,
      );
    }
    if (has(at("region")) && !GCP_REGION.test(group.region)) {
      r.problem(
        at("region"),
        `must be a GCP region like "europe-west4" for a tpu provider (got ${
          formatGot(group.region)
        })`,
      );
    }
    if (tpu.zone && group.zone && tpu.zone !== group.zone) {
      r.problem(
        at("provider.tpu.zone"),
        `must equal ${at("zone")} when both are set (got ${formatGot(tpu.zone)} ≠ ${
          formatGot(group.zone)
        })`,
      );
    }
    const zone = tpu.zone || group.zone;
    const zonePath = tpu.zone ? at("provider.tpu.zone") : at("zone");
    if (!zone && (gcp?.zones.length ?? 0) !== 1) {
      if (!failed(at("zone")) && !failed(at("provider.tpu.zone"))) {
        r.problem(
          at("zone"),
          "required for a tpu provider (or set provider.tpu.zone, or list one zone in platform.gcp.zones)",
        );
      }
    } else if (
      zone && GCP_ZONE.test(zone) && gcp && gcp.zones.length > 0 && !gcp.zones.includes(zone)
    ) {
      r.problem(
        zonePath,
        `${formatGot(zone)} is not listed in platform.gcp.zones (${gcp.zones.join(", ")})`,
      );
    }
    if (!tpu.projectId && !gcp?.projectId && !has("platform.gcp.project_id")) {
      if (!failed("platform.gcp.project_id")) {
        r.problem(at("provider.tpu.project_id"), "required (or set platform.gcp.project_id)");
      }
    }
  }
}

/** A gcp group of GPU VMs (`provider.gce`): machine type, GPUs, zone and project. */
function validateGceGroup(
  config: ClusterConfig,
  group: ScaleGroupConfig,
  at: (key: string) => string,
  r: YamlReader,
  has: (path: string) => boolean,
  failed: (path: string) => boolean,
): void {
  if (group.provider?.kind.case !== "gce") return;
  const gce = group.provider.kind.value;
  const mt = at("provider.gce.machine_type");
  if (!gce.machineType) {
    if (!failed(mt)) r.problem(mt, `required (a GPU machine type, e.g. ${GPU_MACHINE_EXAMPLES})`);
    return;
  }
  const machine = gpuMachine(gce.machineType);
  const type = has(at("accelerator_type")) ? group.acceleratorType : AcceleratorType.CPU;
  if (type === AcceleratorType.TPU) {
    r.problem(
      at("provider.gce"),
      "requires accelerator_type gpu or cpu (TPU slices use provider.tpu)",
    );
  } else if (type === AcceleratorType.GPU && !machine) {
    r.problem(
      mt,
      `must be a GCE machine type with GPUs for accelerator_type gpu (e.g. ${GPU_MACHINE_EXAMPLES}; got ${
        formatGot(gce.machineType)
      })`,
    );
  } else if (type === AcceleratorType.GPU && machine) {
    const variant = at("accelerator_variant");
    if (
      has(variant) && group.acceleratorVariant.toLowerCase() !== machine.variant.toLowerCase()
    ) {
      r.problem(
        variant,
        `must be ${machine.variant}, the GPU of ${gce.machineType} (got ${
          formatGot(group.acceleratorVariant)
        })`,
      );
    }
    const acc = at("vm_resources.accelerators");
    const count = group.vmResources?.accelerator?.count;
    if (has(acc) && count !== undefined && count !== machine.count) {
      r.problem(
        acc,
        `must be ${machine.count}, the GPUs of ${gce.machineType} (got ${count})`,
      );
    }
  }
  const gcp = config.platform?.gcp;
  const zone = gce.zone || group.zone;
  if (!zone && (gcp?.zones.length ?? 0) !== 1) {
    if (!failed(at("zone")) && !failed(at("provider.gce.zone"))) {
      r.problem(
        at("zone"),
        "required for a gce provider (or set provider.gce.zone, or list one zone in platform.gcp.zones)",
      );
    }
  } else if (
    zone && GCP_ZONE.test(zone) && gcp && gcp.zones.length > 0 && !gcp.zones.includes(zone)
  ) {
    r.problem(
      gce.zone ? at("provider.gce.zone") : at("zone"),
      `${formatGot(zone)} is not listed in platform.gcp.zones (${gcp.zones.join(", ")})`,
    );
  }
  if (!gce.projectId && !gcp?.projectId && !has("platform.gcp.project_id")) {
    if (!failed("platform.gcp.project_id")) {
      r.problem(at("provider.gce.project_id"), "required (or set platform.gcp.project_id)");
    }
  }
}
