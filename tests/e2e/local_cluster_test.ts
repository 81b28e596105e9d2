/**
 * The local platform end to end: examples/local.yaml, LocalController, a gang job that scales a
 * v5litepod-16 slice up from zero, a CPU job meanwhile, scale-down after the cooldown, and
 * nothing left behind after stop().
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { IrisClient, JobState } from "../../mod.ts";
import { loadConfig } from "../../src/config/mod.ts";
import { LocalController } from "../../src/cluster/local_controller.ts";
import type { LocalPlatform } from "../../src/platform/local.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { isListening, processesIn } from "../_helpers/leftovers.ts";

const EXAMPLE = new URL("../../examples/local.yaml", import.meta.url).pathname;

Deno.test("LocalController scales a TPU slice for a gang job, runs CPU work, scales down, and cleans up", async (t) => {
  const config = await loadConfig(EXAMPLE);
  // Fast scale-down for the test; everything else as in the example, except that a worker is
  // declared dead only after 30 missed heartbeats: on a loaded machine (a worker "VM" boots, and
  // under `deno test` type-checks, in this process) 3 s without a heartbeat happen, and a worker
  // declared dead sends the gang to a second attempt, so its tasks would run (and log) twice.
  config.defaults!.autoscaler!.scaleDownDelayMs = 1500;
  for (const g of Object.values(config.scaleGroups)) g.scaleDownDelayMs = 1500;
  config.controller!.heartbeatFailureThreshold = 30;
  const addresses: string[] = [];
  const controller = new LocalController(config);
  const t0 = performance.now();
  const url = await controller.start();
  const readyMs = performance.now() - t0;
  let workDir = "";
  try {
    assertMatch(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    addresses.push(url);
    assertEquals(await controller.discover(), url);
    const status = await controller.status();
    assert(status.healthy, status.message);
    workDir = (await controller.fetchStartupLogs()).match(/work dir (\S+)/)![1]!;
    const client = new IrisClient(url);
    assertEquals((await client.workers()).length, 0, "the fleet starts at zero");

    await t.step("a coscheduled 4-replica job gets a v5litepod-16 slice from zero", async () => {
      const submitted = performance.now();
      const gang = await client.submit({
        name: "gang",
        command: [
          "sh",
          "-c",
          'echo "task=$IRIS_TASK_INDEX worker=$TPU_WORKER_ID name=$TPU_NAME hosts=$TPU_WORKER_HOSTNAMES"',
        ],
        replicas: 4,
        cpu: 0.25,
        accelerator: { kind: "tpu", variant: "v5litepod-16" },
        groupBy: "tpu-name",
      });
      // Keeps running until cancelled, so its worker cannot be scaled down before it is checked.
      const cpuJob = await client.submit({
        name: "cpu-work",
        command: ["sh", "-c", "echo cpu work; exec sleep 60"],
        cpu: 0.25,
      });
      // Generous: scale-up from zero boots four worker VMs, slow on a loaded machine.
      const job = await client.wait(gang, { timeout: seconds(240) });
      const gangMs = performance.now() - submitted;
      assertEquals(job.state, JobState.SUCCEEDED, job.error);
      const lines = (await client.logs(gang)).filter((l) => l.stream === "stdout").map((l) =>
        l.text
      ).sort();
      assertEquals(lines.length, 4);
      const names = new Set<string>();
      lines.forEach((line, i) => {
        const m = line.match(/^task=(\d) worker=(\d) name=(\S+) hosts=(\S+)$/)!;
        assert(m, line);
        assertEquals(Number(m[1]), i);
        assertEquals(m[2], m[1], "task i runs on tpu-worker-id i");
        names.add(m[3]!);
        assertEquals(m[4]!.split(",").length, 4, "every task sees the 4 hosts");
      });
      assertEquals(names.size, 1, "all four tasks on one slice");
      const { tasks } = await client.status(gang);
      assertEquals(new Set(tasks.map((x) => x.workerId.replace(/-w\d$/, ""))).size, 1);
      await waitFor(async () => (await client.status(cpuJob)).job?.state === JobState.RUNNING, {
        timeout: seconds(120),
        what: "the cpu job to run",
      });
      const cpuTask = (await client.status(cpuJob)).tasks[0]!;
      const workers = await client.workers();
      addresses.push(...workers.map((w) => w.address));
      assertEquals(workers.find((w) => w.workerId === cpuTask.workerId)?.scaleGroup, "cpu");
      await client.cancel(cpuJob);
      assertEquals((await client.wait(cpuJob, { timeout: seconds(60) })).state, JobState.KILLED);
      console.log(
        `local cluster ready in ${
          readyMs.toFixed(0)
        } ms; gang submit→succeeded (scale-up from zero) ${gangMs.toFixed(0)} ms`,
      );
    });

    await t.step("a local VM cannot read outside its scope", async () => {
      const platform = controller.cluster!.platform as LocalPlatform;
      const worker = (await client.workers())[0]!;
      const denied = await platform.probeRead(worker.workerId, "/etc/hostname");
      assertEquals(denied.ok, false);
      assertMatch(denied.error, /NotCapable|Requires read access/);
    });

    await t.step("idle slices are scaled down after the cooldown", async () => {
      await waitFor(async () => (await client.workers()).length === 0, {
        timeout: seconds(120),
        what: "idle slices to be scaled down",
      });
      const status = await client.autoscalerStatus();
      assert(
        status.recentActions.some((a) => a.action === "scale_up" && a.scaleGroup === "tpu_v5e_16"),
      );
      assert(status.recentActions.some((a) => a.action === "scale_down"));
    });
  } finally {
    await controller.stop();
  }
  assertEquals((await controller.status()).running, false);
  // Nothing remains: no task process, no listening port of the cluster, no temp dir.
  assertEquals(await processesIn(workDir), [], "no task process remains");
  for (const a of addresses) assertEquals(await isListening(a), false, `${a} still listens`);
  assertEquals(
    await Deno.stat(workDir).then(() => true, () => false),
    false,
    "the work dir is removed",
  );
});
