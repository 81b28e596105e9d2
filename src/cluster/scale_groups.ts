/**
 * Turns a cluster config's scale groups into the autoscaler's pure ScaleGroupSpecs
 * (VMs per slice from the TPU topology, per-VM resources, attributes, cooldowns).
 * @module
 */
import type { ClusterConfig, ScaleGroupConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import { AcceleratorType } from "../rpc/gen/iris/v1/types_pb.ts";
import { tpuTopology } from "../tpu.ts";
import { localVmAttributes, localVmCount } from "../platform/mod.ts";
import { ms } from "../time.ts";
import { expandZones } from "../config/mod.ts";
import type { AcceleratorKind, Attributes } from "../types.ts";
import type { ScaleGroup } from "../controller/mod.ts";

function kind(t: AcceleratorType): AcceleratorKind {
  return t === AcceleratorType.TPU ? "tpu" : t === AcceleratorType.GPU ? "gpu" : "cpu";
}

/** The autoscaler's view of every scale group in `config`. */
export function scaleGroupsFromConfig(config: ClusterConfig): ScaleGroup[] {
  expandZones(config);
  return Object.entries(config.scaleGroups).sort(([a], [b]) => a.localeCompare(b)).map((
    [name, g],
  ) => ({
    config: g,
    spec: {
      name,
      accelerator: {
        kind: kind(g.acceleratorType),
        variant: g.acceleratorVariant,
        count: g.vmResources?.accelerator?.count ||
          (g.acceleratorType === AcceleratorType.TPU
            ? tpuTopology(g.acceleratorVariant)?.chipsPerHost ?? 0
            : 0),
      },
      vmsPerSlice: localVmCount(g),
      vmResources: {
        cpuMillicores: g.vmResources?.cpuMillicores ?? 0,
        memoryBytes: g.vmResources?.memoryBytes ?? 0,
        accelerators: g.vmResources?.accelerator?.count ||
          (g.acceleratorType === AcceleratorType.TPU
            ? tpuTopology(g.acceleratorVariant)?.chipsPerHost ?? 0
            : 0),
      },
      attributes: groupAttributes(name, g),
      minSlices: g.minSlices,
      maxSlices: g.maxSlices,
      // The loaded config has every default filled in (explicit zeros are kept).
      priority: g.priority,
      scaleUpCooldown: ms(g.scaleUpCooldownMs),
      scaleDownDelay: ms(g.scaleDownDelayMs),
      bootTimeout: ms(g.bootTimeoutMs),
      initTimeout: ms(g.initTimeoutMs),
      scaleUpRate: g.scaleUpRate,
      scaleDownRate: g.scaleDownRate,
      bufferSlices: g.bufferSlices,
    },
  }));
}

/** Attributes every worker of the group has (the per-VM ones like tpu-worker-id excluded). */
function groupAttributes(name: string, g: ScaleGroupConfig): Attributes {
  const all = localVmAttributes("", 0, g, name);
  const { "tpu-name": _n, "tpu-worker-id": _w, "slice-id": _s, ...rest } = all;
  return {
    ...rest,
    "device-type": kind(g.acceleratorType),
    ...(g.acceleratorVariant ? { "device-variant": g.acceleratorVariant } : {}),
  };
}
