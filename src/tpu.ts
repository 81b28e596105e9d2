/**
 * TPU slice topologies: hosts (VMs), chips per host and ICI shape for each Cloud TPU variant.
 * Pure table lookups; does not create slices or report config errors (callers turn `undefined`
 * into a ConfigError naming the variant).
 * @module
 */
import type { AcceleratorKind } from "./types.ts";

/** The physical shape of one TPU slice. */
export interface TpuTopology {
  /** Normalised variant name, e.g. "v5litepod-16". */
  readonly variant: string;
  /** VMs (hosts) in the slice; each runs one worker. */
  readonly hosts: number;
  readonly chipsPerHost: number;
  /** hosts × chipsPerHost. */
  readonly chips: number;
  /** ICI shape, e.g. "4x4" (v5e/v6e) or "2x2x4" (v4/v5p). */
  readonly topology: string;
}

interface Family {
  /** Name suffix counts TensorCores (2 per chip) rather than chips. */
  readonly coresInName: boolean;
  /** Chips per host once a slice spans more than one host. */
  readonly multiHostChipsPerHost: number;
  /** Largest single-host slice, in chips. */
  readonly maxSingleHostChips: number;
  /** chips → ICI shape. */
  readonly shapes: Readonly<Record<number, string>>;
}

/** v4 and v5p: 3D torus, 2 TensorCores per chip, 4 chips per host. */
const CUBE_SHAPES: Readonly<Record<number, string>> = {
  4: "2x2x1",
  8: "2x2x2",
  16: "2x2x4",
  32: "2x4x4",
  64: "4x4x4",
  128: "4x4x8",
  256: "4x8x8",
  512: "8x8x8",
  768: "8x8x12",
  1024: "8x8x16",
  2048: "8x16x16",
};

/** v5e and v6e: 2D torus, 1 TensorCore per chip; 8 chips on the largest single host. */
const TORUS_2D_SHAPES: Readonly<Record<number, string>> = {
  1: "1x1",
  4: "2x2",
  8: "2x4",
  16: "4x4",
  32: "4x8",
  64: "8x8",
  128: "8x16",
  256: "16x16",
};

const FAMILIES: Readonly<Record<string, Family>> = {
  v4: { coresInName: true, multiHostChipsPerHost: 4, maxSingleHostChips: 4, shapes: CUBE_SHAPES },
  v5p: {
    coresInName: true,
    multiHostChipsPerHost: 4,
    maxSingleHostChips: 4,
    shapes: { ...CUBE_SHAPES, 4096: "16x16x16", 6144: "16x16x24" },
  },
  v5litepod: {
    coresInName: false,
    multiHostChipsPerHost: 4,
    maxSingleHostChips: 8,
    shapes: TORUS_2D_SHAPES,
  },
  v6e: {
    coresInName: false,
    multiHostChipsPerHost: 4,
    maxSingleHostChips: 8,
    shapes: TORUS_2D_SHAPES,
  },
};

/** Accepted spellings of a family prefix. */
const ALIASES: Readonly<Record<string, string>> = { v5e: "v5litepod", v6litepod: "v6e" };

/**
 * Looks up the topology of a TPU variant such as "v5litepod-16", "v4-32" or "v6e-8".
 * Names of v4/v5p count TensorCores (2 per chip); names of v5litepod/v6e count chips.
 * "v5e-N" is accepted as an alias of "v5litepod-N".
 * @param variant accelerator variant, case-insensitive.
 * @returns the topology, or undefined for an unknown variant.
 * @example tpuTopology("v5litepod-16") // { hosts: 4, chipsPerHost: 4, chips: 16, topology: "4x4" }
 */
export function tpuTopology(variant: string): TpuTopology | undefined {
  const m = /^(v\d+[a-z]*)-(\d+)$/.exec(variant.trim().toLowerCase());
  if (!m) return undefined;
  const familyName = ALIASES[m[1]!] ?? m[1]!;
  const family = FAMILIES[familyName];
  if (!family) return undefined;
  const size = Number(m[2]);
  if (family.coresInName && size % 2 !== 0) return undefined;
  const chips = family.coresInName ? size / 2 : size;
  const topology = family.shapes[chips];
  if (topology === undefined) return undefined;
  const singleHost = chips <= family.maxSingleHostChips;
  const chipsPerHost = singleHost ? chips : family.multiHostChipsPerHost;
  return {
    variant: `${familyName}-${size}`,
    hosts: chips / chipsPerHost,
    chipsPerHost,
    chips,
    topology,
  };
}

/** Every variant name {@linkcode tpuTopology} knows, for error messages ("known: v4-8, …"). */
export function tpuVariants(): readonly string[] {
  const out: string[] = [];
  for (const [name, family] of Object.entries(FAMILIES)) {
    for (const chips of Object.keys(family.shapes).map(Number).sort((a, b) => a - b)) {
      out.push(`${name}-${family.coresInName ? chips * 2 : chips}`);
    }
  }
  return out;
}

/**
 * VMs per slice for a scale group: the TPU host count, or 1 for cpu and gpu.
 * @returns undefined when `kind` is "tpu" and the variant is unknown.
 */
export function vmsPerSlice(kind: AcceleratorKind, variant: string): number | undefined {
  if (kind !== "tpu") return 1;
  return tpuTopology(variant)?.hosts;
}
