/**
 * Why a task is pending while the autoscaler brings up capacity for it: "waiting for scale group
 * cpu: 1 slice booting (12 s)", from the job's accelerator and the autoscaler's slices. The
 * status RPCs put it in place of the scheduler's capacity reason (code `scaling_up`), so the CLI
 * and the dashboard say the same.
 * @module
 */
import {
  AcceleratorType,
  type JobSpec,
  type PendingReason,
  PendingReasonSchema,
} from "../rpc/gen/iris/v1/types_pb.ts";
import type { GetAutoscalerStatusResponse } from "../rpc/gen/iris/v1/controller_pb.ts";
import { create } from "@bufbuild/protobuf";
import { NEVER_FITS } from "./scheduler/reasons.ts";

/** Slices of groups that could run a job of `spec` and are still coming up, or undefined. */
export function scalingNote(
  spec: JobSpec | undefined,
  autoscaler: GetAutoscalerStatusResponse,
  nowMs: number = Date.now(),
): string | undefined {
  const acc = spec?.resources?.accelerator;
  const wantType = acc?.type ?? AcceleratorType.UNSPECIFIED;
  const serves = (type: AcceleratorType, variant: string) =>
    wantType === AcceleratorType.UNSPECIFIED || wantType === AcceleratorType.CPU
      ? type === AcceleratorType.CPU || type === AcceleratorType.UNSPECIFIED
      : type === wantType && (!acc?.variant || acc.variant === variant);
  const parts: string[] = [];
  for (const g of autoscaler.groups) {
    if (!serves(g.acceleratorType, g.acceleratorVariant)) continue;
    const coming = g.slices.filter((s) => s.state === "requesting" || s.state === "booting");
    if (coming.length === 0) continue;
    const booting = coming.filter((s) => s.state === "booting").length;
    const requested = coming.length - booting;
    const oldest = Math.min(...coming.map((s) => s.createdAtMs || nowMs));
    const counts = [
      booting ? `${booting} slice${booting === 1 ? "" : "s"} booting` : "",
      requested ? `${requested} slice${requested === 1 ? "" : "s"} requested` : "",
    ].filter(Boolean).join(", ");
    parts.push(
      `waiting for scale group ${g.name}: ${counts} (${
        Math.max(0, Math.round((nowMs - oldest) / 1000))
      } s)`,
    );
  }
  return parts.length ? parts.join("; ") : undefined;
}

/** Scheduler reasons that mean "no capacity yet": new slices are the answer to them. */
const CAPACITY_CODES = new Set([
  "no_workers",
  "no_matching_worker",
  "insufficient_cpu",
  "insufficient_memory",
  "insufficient_accelerator",
  "gang_no_slice",
]);

/**
 * `reason`, or a `scaling_up` reason naming the slices coming up for `spec` when the scheduler
 * found no capacity and the autoscaler is bringing some.
 */
export function withScalingNote(
  reason: PendingReason | undefined,
  spec: JobSpec | undefined,
  autoscaler: () => GetAutoscalerStatusResponse | undefined,
  nowMs: number = Date.now(),
): PendingReason | undefined {
  if (!reason || !CAPACITY_CODES.has(reason.code)) return reason;
  // Bigger than every worker there is: slices like the ones coming would not hold it either.
  if (reason.message.includes(NEVER_FITS)) return reason;
  const status = autoscaler();
  const note = status?.enabled ? scalingNote(spec, status, nowMs) : undefined;
  if (!note) return reason;
  return create(PendingReasonSchema, {
    code: "scaling_up",
    message: note,
    workersConsidered: reason.workersConsidered,
  });
}
