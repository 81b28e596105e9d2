/**
 * Units of config values: durations ("30s", "5m", "250ms", or a number of seconds), sizes
 * ("8GiB", "512MiB", "1.5GB", or a number of bytes) and CPU (cores, possibly fractional, or
 * "500m" millicores). Parsers return undefined for text that is not a valid value.
 * @module
 */
import { parseDuration } from "../time.ts";

/** Longest duration accepted anywhere in a config: one year. */
export const MAX_DURATION_MS = 365 * 24 * 3600 * 1000;
/** Largest size accepted: 1 PiB. */
export const MAX_SIZE_BYTES = 2 ** 50;
/** Most CPU accepted for one VM: 100,000 cores. */
export const MAX_CPU_MILLICORES = 100_000_000;

/** Hint shown when a duration does not parse. */
export const DURATION_HINT = 'a duration like "30s", "5m" or "250ms", or a number of seconds';
/** Hint shown when a size does not parse. */
export const SIZE_HINT = 'a size like "8GiB", "512MiB" or "1.5GB", or a number of bytes';
/** Hint shown when a CPU amount does not parse. */
export const CPU_HINT = 'a number of cores like 4 or 0.5, or millicores like "500m"';

/**
 * Parses a duration into whole milliseconds (rounded).
 * Accepts "250ms", "30s", "5m", "1h", "1.5s" and non-negative numbers of seconds.
 */
export function parseDurationMs(value: unknown): number | undefined {
  if (typeof value !== "number" && typeof value !== "string") return undefined;
  const d = parseDuration(value);
  if (d === undefined || !Number.isFinite(d) || d > MAX_DURATION_MS) return undefined;
  return Math.round(d);
}

const SIZE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  ki: 2 ** 10,
  kib: 2 ** 10,
  m: 1e6,
  mb: 1e6,
  mi: 2 ** 20,
  mib: 2 ** 20,
  g: 1e9,
  gb: 1e9,
  gi: 2 ** 30,
  gib: 2 ** 30,
  t: 1e12,
  tb: 1e12,
  ti: 2 ** 40,
  tib: 2 ** 40,
};

/**
 * Parses a size into whole bytes (rounded). Units are case-insensitive: B, KB/MB/GB/TB (powers
 * of 1000), KiB/MiB/GiB/TiB (powers of 1024; "Gi" also works). Plain integers are bytes.
 */
export function parseSizeBytes(value: unknown): number | undefined {
  if (typeof value === "number") {
    return Number.isSafeInteger(value) && value >= 0 && value <= MAX_SIZE_BYTES ? value : undefined;
  }
  if (typeof value !== "string") return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  if (!m) return undefined;
  const factor = SIZE_UNITS[(m[2] ?? "").toLowerCase()];
  if (factor === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * factor);
  return Number.isFinite(bytes) && bytes <= MAX_SIZE_BYTES ? bytes : undefined;
}

/** Parses CPU into millicores: cores as a number (4, 0.5) or string ("2"), or "500m". */
export function parseCpuMillicores(value: unknown): number | undefined {
  let millicores: number;
  if (typeof value === "number") {
    millicores = value * 1000;
  } else if (typeof value === "string") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(m?)\s*$/.exec(value);
    if (!m) return undefined;
    millicores = Number(m[1]) * (m[2] === "m" ? 1 : 1000);
  } else {
    return undefined;
  }
  if (!Number.isFinite(millicores) || millicores < 0 || millicores > MAX_CPU_MILLICORES) {
    return undefined;
  }
  return Math.round(millicores);
}
