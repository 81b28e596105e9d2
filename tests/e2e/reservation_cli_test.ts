/**
 * Reservations from the CLI and the client (#24): `iris job run --reserve`, JobRequest.reservation,
 * bad values named, and claims that survive a controller restart (accounts.json in the state dir).
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { throws as assertThrowsNode } from "node:assert/strict";
import { IrisClient } from "../../mod.ts";
import { jobSpecFromRequest } from "../../src/client/job_request.ts";
import { parseReserve } from "../../src/cli/reserve.ts";
import { startController } from "../../src/controller/server.ts";
import { startWorker } from "../../src/worker/mod.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";
import { runIris } from "../_helpers/iris_process.ts";
import { AcceleratorType } from "../../src/rpc/gen/iris/v1/types_pb.ts";

const GiB = 2 ** 30;

Deno.test("JobRequest.reservation expands counts and defaults sizes to one task's", () => {
  const spec = jobSpecFromRequest({
    name: "r",
    command: ["true"],
    cpu: 2,
    memory: GiB,
    constraints: [{ key: "zone", op: "eq", value: "a" }, {
      key: "x",
      op: "exists",
      preferred: true,
    }],
    reservation: [{ count: 2 }, { cpu: 8, accelerator: { kind: "tpu", variant: "v5e-8" } }],
  });
  assertEquals(spec.reservation.length, 3);
  assertEquals(spec.reservation[0]!.resources?.cpuMillicores, 2000);
  assertEquals(spec.reservation[0]!.resources?.memoryBytes, GiB);
  assertEquals(spec.reservation[0]!.constraints.map((c) => c.key), ["zone"], "required only");
  assertEquals(spec.reservation[2]!.resources?.cpuMillicores, 8000);
  assertEquals(spec.reservation[2]!.resources?.accelerator?.type, AcceleratorType.TPU);
  assertThrowsNode(
    () => jobSpecFromRequest({ name: "r", command: ["true"], reservation: [{ count: 0 }] }),
    /reservation\[0\]\.count/,
  );
  assertEquals(parseReserve(["2", "1:cpu=8,memory=32GiB,tpu=v5e-8"]), [
    { count: 2 },
    { count: 1, cpu: 8, memory: 32 * GiB, accelerator: { kind: "tpu", variant: "v5e-8" } },
  ]);
  assertThrowsNode(() => parseReserve(["0"]), /--reserve "0": N must be/);
  assertThrowsNode(() => parseReserve(["1:gpu=2"]), /unknown part "gpu=2"/);
});

Deno.test("iris job run --reserve holds workers, and the claims survive a controller restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-reserve-" });
  const stateDir = `${dir}/state`;
  try {
    let jobId: string;
    {
      await using controller = startController({ stateDir, heartbeatInterval: ms(200) });
      const worker = await startWorker({
        controllerUrl: controller.url,
        rootDir: `${dir}/w`,
        resources: { cpuMillicores: 2000, memoryBytes: 2 * GiB },
        heartbeatInterval: ms(200),
        log: () => {},
      });
      try {
        await worker.registered;
        const env = { IRIS_CONTROLLER_URL: controller.url, USER: "alice" };
        const bad = await runIris(["job", "run", "--reserve", "two", "--", "true"], { env });
        assertEquals(bad.code, 2);
        assertMatch(bad.stderr, /--reserve "two": N must be a whole number/);
        // Two workers wanted, one exists: one entry is claimed and the job waits.
        const run = await runIris(["job", "run", "--detach", "--reserve", "2", "--", "true"], {
          env,
        });
        assertEquals(run.code, 0, run.stderr);
        jobId = run.stdout.trim();
        const client = new IrisClient(controller.url);
        await waitFor(
          async () => (await client.status(jobId)).job?.reservationClaimed === 1,
          { timeout: seconds(20), what: "one reservation entry to be claimed" },
        );
        assertMatch(
          (await client.tasks(jobId))[0]!.pendingReason?.message ?? "",
          /waiting for its reservation: 1 of 2/,
        );
      } finally {
        await worker.stop();
      }
    }
    // Restarted: the claim is back before any worker re-registers.
    await using again = startController({ stateDir, heartbeatInterval: ms(200) });
    const status = await new IrisClient(again.url).status(jobId);
    assertEquals(status.job?.reservationClaimed, 1);
    assert(again.controller.reservedWorkers().size === 1);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
