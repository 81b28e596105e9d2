/**
 * The TPU facts the config needs: whether an accelerator_variant is valid, its host shape (VMs
 * per slice, chips per VM), its canonical name and the default TPU runtime version. Shapes come
 * from the topology table in src/tpu.ts (the one source of truth).
 * @module
 */
import { tpuTopology } from "../tpu.ts";

/** Host shape of a TPU slice. */
export interface TpuShape {
  /** Canonical variant name ("v5e-16" → "v5litepod-16"). */
  readonly variant: string;
  /** VMs (hosts, = workers) per slice. */
  readonly vmCount: number;
  /** TPU chips attached to each VM. */
  readonly chipsPerHost: number;
}

/** Variant name prefixes accepted for accelerator_type tpu ("v5e-" is an alias of "v5litepod-"). */
export const TPU_VARIANT_PREFIXES: readonly string[] = ["v4-", "v5litepod-", "v5p-", "v6e-"];

/** Some valid variants, for error messages. */
export const TPU_VARIANT_EXAMPLES = "v4-8, v5litepod-16, v5p-8, v6e-4";

/** The shape of a TPU variant, or undefined when the variant is unknown. */
export function tpuShape(variant: string): TpuShape | undefined {
  const topology = tpuTopology(variant);
  if (!topology) return undefined;
  return {
    variant: topology.variant,
    vmCount: topology.hosts,
    chipsPerHost: topology.chipsPerHost,
  };
}

/** Default TPU runtime version (`gcloud … --version`) per family of a canonical variant. */
export function defaultTpuRuntimeVersion(variant: string): string {
  if (variant.startsWith("v5litepod-")) return "v2-alpha-tpuv5-lite";
  if (variant.startsWith("v5p-")) return "v2-alpha-tpuv5";
  if (variant.startsWith("v6e-")) return "v2-alpha-tpuv6e";
  return "tpu-ubuntu2204-base";
}
