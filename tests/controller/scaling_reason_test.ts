/**
 * While the autoscaler brings up a slice for a pending job, the controller's status RPCs (what
 * the CLI and the dashboard show) say so instead of the scheduler's "no healthy workers".
 */
import { create } from "@bufbuild/protobuf";
import { startController } from "../../src/controller/server.ts";
import { IrisClient } from "../../src/client/client.ts";
import { AcceleratorType, GetAutoscalerStatusResponseSchema, JobState } from "../../src/rpc/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { assertEquals, assertMatch } from "../_helpers/assert.ts";
import { PendingReasonSchema } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { withScalingNote } from "../../src/controller/scaling_note.ts";
import { NEVER_FITS } from "../../src/controller/scheduler/reasons.ts";

Deno.test("a job pending on a booting slice reads 'waiting for scale group' in every status RPC", async () => {
  let booting = true;
  await using server = startController({
    log: () => {},
    autoscalerStatus: () =>
      create(GetAutoscalerStatusResponseSchema, {
        enabled: true,
        groups: [{
          name: "cpu",
          acceleratorType: AcceleratorType.CPU,
          slices: booting
            ? [{ sliceId: "s1", state: "booting", createdAtMs: Date.now() - 12_000 }]
            : [],
        }],
      }),
  });
  const client = new IrisClient(server.url);
  const jobId = await client.submit({ name: "waits", user: "u", command: ["true"] });
  const job = await waitFor(async () => {
    const j = await client.call((rpc) => rpc.getJobStatus({ jobId })).then((r) => r.job!);
    return j.pendingReason?.code ? j : undefined;
  }, { timeout: seconds(10), what: "a pending reason" });
  assertEquals(job.state, JobState.PENDING);
  assertEquals(job.pendingReason?.code, "scaling_up");
  assertMatch(
    job.pendingReason!.message,
    /^waiting for scale group cpu: 1 slice booting \(1[2-9] s\)$/,
  );
  const [listed] = (await client.list({})).jobs;
  assertEquals(listed?.pendingReason?.code, "scaling_up");
  const [task] = await client.tasks(jobId);
  assertMatch(task!.pendingReason!.message, /waiting for scale group cpu/);
  // Nothing coming up: the scheduler's own reason.
  booting = false;
  const after = await client.call((rpc) => rpc.getJobStatus({ jobId }));
  assertEquals(after.job?.pendingReason?.code, "no_workers");
});

Deno.test("a job bigger than every worker keeps its 'never fits' reason while a slice boots", () => {
  const autoscaler = create(GetAutoscalerStatusResponseSchema, {
    enabled: true,
    groups: [{
      name: "cpu",
      acceleratorType: AcceleratorType.CPU,
      slices: [{ sliceId: "cpu-1", state: "booting", createdAtMs: 1000 }],
    }],
  });
  const never = create(PendingReasonSchema, {
    code: "insufficient_cpu",
    message: `no eligible worker has 512 cpu in total (largest: 1 cpu); ${NEVER_FITS}`,
  });
  assertEquals(withScalingNote(never, undefined, () => autoscaler, 3000), never);
  const now = create(PendingReasonSchema, { code: "insufficient_cpu", message: "busy" });
  assertEquals(
    withScalingNote(now, undefined, () => autoscaler, 3000)?.message,
    "waiting for scale group cpu: 1 slice booting (2 s)",
  );
});
