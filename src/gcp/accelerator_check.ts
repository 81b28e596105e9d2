/**
 * A GCP worker's accelerator cross-check: the scale group's TPU variant (passed by the bootstrap)
 * must be the VM's own, as the metadata server reports it in `instance/attributes/accelerator-type`.
 * A worker that would advertise chips it does not have refuses to start.
 * @module
 */
import { FailedPreconditionError } from "../errors.ts";
import { tpuTopology } from "../tpu.ts";
import { type Duration, seconds, sleep } from "../time.ts";
import type { AcceleratorSpec } from "../types.ts";
import type { GceMetadata } from "./metadata.ts";

const KEY = "instance/attributes/accelerator-type";

/** Canonical form of a TPU variant ("v5e-16" and "v5litepod-16" are the same). */
function canonical(variant: string): string {
  return tpuTopology(variant)?.variant ?? variant.trim().toLowerCase();
}

/**
 * Resolves when `accelerator` matches the VM's metadata `accelerator-type`; throws
 * FailedPreconditionError naming both otherwise, or when the metadata cannot be read (after a
 * few tries over `patience`).
 */
export async function checkGceAccelerator(
  accelerator: AcceleratorSpec | undefined,
  metadata: GceMetadata,
  options: { patience?: Duration; signal?: AbortSignal } = {},
): Promise<string> {
  const where = `${metadata.baseUrl}/computeMetadata/v1/${KEY}`;
  if (accelerator?.kind !== "tpu") {
    throw new FailedPreconditionError(
      `--accelerator-check gce-metadata needs --accelerator-type tpu and its variant (got ${
        accelerator?.kind ?? "none"
      })`,
    );
  }
  const deadline = Date.now() + (options.patience ?? seconds(20));
  let actual: string | undefined;
  for (let attempt = 1;; attempt++) {
    try {
      actual = (await metadata.get(KEY, options.signal))?.trim();
      break;
    } catch (err) {
      if (Date.now() >= deadline || options.signal?.aborted) {
        throw new FailedPreconditionError(
          `cannot read this VM's accelerator-type (${attempt} tries): ${
            err instanceof Error ? err.message : err
          }; refusing to start`,
        );
      }
      await sleep(seconds(Math.min(attempt, 5)), options.signal);
    }
  }
  if (!actual) {
    throw new FailedPreconditionError(
      `this VM has no accelerator-type in its metadata (${where}: not found), but the worker was ` +
        `told it has TPU ${accelerator.variant}; refusing to start`,
    );
  }
  if (canonical(actual) !== canonical(accelerator.variant)) {
    throw new FailedPreconditionError(
      `accelerator mismatch: the scale group says TPU ${accelerator.variant}, but this VM's ` +
        `metadata accelerator-type is ${actual} (${where}); refusing to start`,
    );
  }
  const chips = tpuTopology(actual)?.chipsPerHost;
  if (chips !== undefined && chips !== accelerator.count) {
    throw new FailedPreconditionError(
      `accelerator mismatch: --accelerator-count ${accelerator.count}, but a ${actual} host has ` +
        `${chips} chips; refusing to start`,
    );
  }
  return actual;
}
