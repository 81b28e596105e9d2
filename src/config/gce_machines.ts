/**
 * GCE accelerator-optimized machine types and the NVIDIA GPUs that come with them (no
 * `--accelerator` flag: the machine type fixes model and count), from the public GCE GPU
 * machine-type tables: A3 (H100 80GB), A2 Standard (A100 40GB), A2 Ultra (A100 80GB), G2 (L4).
 * @module
 */

/** The GPUs of one machine type. */
export interface GpuMachine {
  /** The short model Iris uses as accelerator_variant, e.g. "H100". */
  readonly variant: string;
  readonly count: number;
  /** The GCE accelerator type name, e.g. "nvidia-h100-80gb". */
  readonly gceAccelerator: string;
}

const TABLE: Readonly<Record<string, GpuMachine>> = (() => {
  const t: Record<string, GpuMachine> = {};
  const add = (names: [string, number][], variant: string, gceAccelerator: string) => {
    for (const [name, count] of names) t[name] = { variant, count, gceAccelerator };
  };
  add(
    [["a3-highgpu-1g", 1], ["a3-highgpu-2g", 2], ["a3-highgpu-4g", 4], ["a3-highgpu-8g", 8]],
    "H100",
    "nvidia-h100-80gb",
  );
  add([["a3-megagpu-8g", 8]], "H100", "nvidia-h100-mega-80gb");
  add(
    [
      ["a2-highgpu-1g", 1],
      ["a2-highgpu-2g", 2],
      ["a2-highgpu-4g", 4],
      ["a2-highgpu-8g", 8],
      ["a2-megagpu-16g", 16],
    ],
    "A100",
    "nvidia-tesla-a100",
  );
  add(
    [["a2-ultragpu-1g", 1], ["a2-ultragpu-2g", 2], ["a2-ultragpu-4g", 4], ["a2-ultragpu-8g", 8]],
    "A100",
    "nvidia-a100-80gb",
  );
  add(
    [
      ["g2-standard-4", 1],
      ["g2-standard-8", 1],
      ["g2-standard-12", 1],
      ["g2-standard-16", 1],
      ["g2-standard-24", 2],
      ["g2-standard-32", 1],
      ["g2-standard-48", 4],
      ["g2-standard-96", 8],
    ],
    "L4",
    "nvidia-l4",
  );
  return t;
})();

/** The GPUs a machine type comes with; undefined for a type without GPUs (or unknown). */
export function gpuMachine(machineType: string): GpuMachine | undefined {
  return TABLE[machineType];
}

/** A few known GPU machine types, for error messages. */
export const GPU_MACHINE_EXAMPLES = "a3-highgpu-8g, a2-highgpu-1g, a2-ultragpu-8g, g2-standard-8";
