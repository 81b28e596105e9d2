/**
 * `iris job run --gpu [VARIANT:]COUNT`, `--tpu VARIANT` and `--accelerator-count N` as a job's
 * accelerator. Pure: flag values in, the request's accelerator (or a UsageError naming the flag)
 * out.
 * @module
 */
import { UsageError } from "./args.ts";

/** The accelerator of a job request. */
export interface AcceleratorRequest {
  readonly kind: "tpu" | "gpu";
  readonly variant?: string;
  readonly count?: number;
}

/** The raw values of the three flags (undefined when not given). */
export interface AcceleratorFlagValues {
  readonly gpu?: string;
  readonly tpu?: string;
  readonly acceleratorCount?: string;
}

/** Most devices one task may ask for. */
const MAX_COUNT = 1024;

function count(flag: string, text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > MAX_COUNT) {
    throw new UsageError(
      `${flag} must be a whole number from 1 to ${MAX_COUNT} (got ${JSON.stringify(text)})`,
    );
  }
  return Number(text);
}

/**
 * The accelerator the flags ask for; undefined when none was given.
 * - `--gpu 2`: 2 GPUs of any model; `--gpu H100:8`: 8 H100s; `--gpu H100`: one H100.
 * - `--tpu v5litepod-16`: that TPU type (chips per task from the variant, unless counted).
 * - `--accelerator-count N`: the count for `--tpu`, or for `--gpu TYPE` (it must agree with
 *   `--gpu TYPE:N`).
 * @throws {UsageError} on a malformed value, `--gpu` with `--tpu`, or a count without either
 */
export function parseAcceleratorFlags(f: AcceleratorFlagValues): AcceleratorRequest | undefined {
  if (f.gpu !== undefined && f.tpu !== undefined) {
    throw new UsageError("--gpu and --tpu cannot be combined: a task runs on one kind of device");
  }
  const counted = f.acceleratorCount === undefined
    ? undefined
    : count("--accelerator-count", f.acceleratorCount.trim());
  if (f.gpu !== undefined) {
    const text = f.gpu.trim();
    const m = /^(?:([A-Za-z][\w.-]*):)?(\d+)$/.exec(text);
    let variant: string | undefined;
    let n: number | undefined;
    const bad = () =>
      new UsageError(
        `--gpu must be a count, a variant or VARIANT:COUNT, e.g. 1, a100, h100:8, with a count ` +
          `from 1 to ${MAX_COUNT} (got ${JSON.stringify(f.gpu)})`,
      );
    if (m) {
      variant = m[1];
      n = Number(m[2]);
      if (n < 1 || n > MAX_COUNT) throw bad();
    } else if (/^[A-Za-z][\w.-]*$/.test(text)) {
      variant = text;
    } else {
      throw bad();
    }
    if (n !== undefined && counted !== undefined && n !== counted) {
      throw new UsageError(
        `--gpu ${text} asks for ${n} GPUs but --accelerator-count says ${counted}`,
      );
    }
    return { kind: "gpu", ...(variant ? { variant } : {}), count: n ?? counted ?? 1 };
  }
  if (f.tpu !== undefined) {
    const variant = f.tpu.trim();
    if (!variant) throw new UsageError("--tpu must name a TPU variant, e.g. v5litepod-16");
    return { kind: "tpu", variant, ...(counted !== undefined ? { count: counted } : {}) };
  }
  if (counted !== undefined) {
    throw new UsageError("--accelerator-count needs --gpu or --tpu");
  }
  return undefined;
}
