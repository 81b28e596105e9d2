/**
 * A pending job's line while the autoscaler brings up capacity for it: "waiting for scale group
 * cpu: 1 slice booting (12 s)", from the job's accelerator and the autoscaler's slices.
 * @module
 */
import { AcceleratorType, type GetAutoscalerStatusResponse, type JobStatus } from "../rpc/mod.ts";

/** Slices of groups that could run `job` and are still coming up, or undefined when none. */
export function scalingNote(
  job: JobStatus,
  autoscaler: GetAutoscalerStatusResponse,
  nowMs: number = Date.now(),
): string | undefined {
  const acc = job.spec?.resources?.accelerator;
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
      `waiting for scale group ${g.name}: ${counts} (${Math.round((nowMs - oldest) / 1000)} s)`,
    );
  }
  return parts.length ? parts.join("; ") : undefined;
}
