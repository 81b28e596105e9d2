/**
 * The accelerator each VM of a scale group offers, as the local VMs and the bootstrapped workers
 * (gcp, manual: `iris worker serve --accelerator-type … --accelerator-variant … --accelerator-count …`)
 * advertise it.
 * @module
 */
import type { ScaleGroupConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import { AcceleratorType } from "../rpc/gen/iris/v1/types_pb.ts";
import type { AcceleratorSpec } from "../types.ts";
import { tpuTopology } from "../tpu.ts";

/**
 * A group's per-VM accelerator: TPU or GPU with its variant and count (vm_resources' count, else a
 * TPU variant's chips per host, else 1); undefined for CPU groups.
 */
export function groupAccelerator(config: ScaleGroupConfig): AcceleratorSpec | undefined {
  const type = config.acceleratorType;
  if (type !== AcceleratorType.TPU && type !== AcceleratorType.GPU) return undefined;
  return {
    kind: type === AcceleratorType.TPU ? "tpu" : "gpu",
    variant: config.acceleratorVariant,
    count: config.vmResources?.accelerator?.count ||
      (type === AcceleratorType.TPU ? tpuTopology(config.acceleratorVariant)?.chipsPerHost : 0) ||
      1,
  };
}

/** The `iris worker serve` flags that advertise `accelerator` (none for CPU). */
export function acceleratorFlags(accelerator: AcceleratorSpec | undefined): string[] {
  if (!accelerator || accelerator.kind === "cpu") return [];
  return [
    "--accelerator-type",
    accelerator.kind,
    ...(accelerator.variant ? ["--accelerator-variant", accelerator.variant] : []),
    "--accelerator-count",
    String(accelerator.count),
  ];
}
