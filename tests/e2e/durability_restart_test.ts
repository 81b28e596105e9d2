/**
 * What a controller restart keeps besides jobs: endpoints (registered by a running task) and
 * the autoscaler's slices and group state. The cluster from examples/local.yaml (cpu group with
 * min_slices 1) runs on a local platform that outlives the controller, as VMs outlive a real
 * controller; the controller is stopped and started again on the same port and state dir.
 * The first restart happens while the platform cannot list slices: the saved state alone keeps
 * the autoscaler from creating a second slice for min_slices.
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { IrisClient, JobState, TaskState } from "../../mod.ts";
import { loadConfig } from "../../src/config/mod.ts";
import { type RunningCluster, startCluster } from "../../src/cluster/cluster.ts";
import { LocalPlatform } from "../../src/platform/local.ts";
import type { Platform } from "../../src/platform/platform.ts";
import { PlatformError } from "../../src/errors.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";

const EXAMPLE = new URL("../../examples/local.yaml", import.meta.url).pathname;

/** The local platform, counting creations, with a switchable listing outage; shutdown is a no-op. */
function survivingPlatform(inner: LocalPlatform) {
  const stats = { creates: 0, listingFails: false };
  const platform: Platform = {
    kind: "local",
    createSlice: (req, opts) => {
      stats.creates++;
      return inner.createSlice(req, opts);
    },
    listSlices: (opts) =>
      stats.listingFails
        ? Promise.reject(new PlatformError("listing unavailable"))
        : inner.listSlices(opts),
    describeSlice: (id) => inner.describeSlice(id),
    terminateSlice: (id, opts) => inner.terminateSlice(id, opts),
    startupLogs: () => inner.startupLogs(),
    // The controller going away does not take the VMs with it.
    shutdown: () => Promise.resolve(),
    [Symbol.asyncDispose]: () => Promise.resolve(),
  };
  return { platform, stats };
}

Deno.test("endpoints and autoscaler slices survive controller restarts; no slice is created twice", async () => {
  const workDir = await Deno.makeTempDir({ prefix: "iris-restart-" });
  const inner = new LocalPlatform({ rootDir: `${workDir}/vms`, heartbeatInterval: seconds(1) });
  const { platform, stats } = survivingPlatform(inner);
  const config = await loadConfig(EXAMPLE);
  config.controller!.stateDir = `${workDir}/state`;
  config.scaleGroups.cpu!.minSlices = 1;
  const start = (port?: number) =>
    startCluster(config, { workDir, platform, port, log: () => {}, vmLog: () => {} });
  let cluster: RunningCluster | undefined;
  try {
    cluster = await start();
    const port = Number(new URL(cluster.url).port);
    const client = new IrisClient(cluster.url, { retryFor: seconds(30) });
    const [worker] = await waitFor(async () => {
      const workers = await client.workers();
      return workers.length === 1 ? workers : undefined;
    }, { timeout: seconds(30), what: "the min_slices cpu slice to come up" });
    const jobId = await client.submit({
      name: "server",
      command: ["sh", "-c", "while true; do sleep 0.2; done"],
      cpu: 0.25,
    });
    const task = await waitFor(async () => {
      const [t] = await client.tasks(jobId);
      return t?.state === TaskState.RUNNING ? t : undefined;
    }, { timeout: seconds(30), what: "the server task to run" });
    const endpointId = await client.registerEndpoint({
      name: "svc/server",
      address: "127.0.0.1:9999",
      taskId: task.taskId,
      metadata: { role: "primary" },
    });
    assertEquals(stats.creates, 1);

    // Restart 1, while the platform cannot list slices.
    await cluster.stop();
    stats.listingFails = true;
    cluster = await start(port);
    const [ep] = await client.lookupEndpoint(`${jobId}/svc/server`);
    assertEquals(ep?.endpointId, endpointId, "the endpoint is served right after the restart");
    assertEquals(ep?.metadata, { role: "primary" });
    // The worker is known from the state file before it re-registers (healthy once it has).
    assertEquals((await client.workers()).map((w) => w.workerId), [worker!.workerId]);
    await waitFor(async () => {
      const [t] = await client.tasks(jobId);
      const healthy = (await client.workers()).filter((w) => w.healthy);
      return healthy.length === 1 && t?.state === TaskState.RUNNING;
    }, { timeout: seconds(30), what: "the worker to re-register and keep its task" });
    // Several evaluations later, min_slices is still met by the restored slice.
    const evaluated = (await client.autoscalerStatus()).lastEvaluationMs;
    await waitFor(
      async () => (await client.autoscalerStatus()).lastEvaluationMs >= evaluated + ms(1500),
      { timeout: seconds(20), what: "three more autoscaler evaluations" },
    );
    assertEquals(stats.creates, 1, "no second slice for min_slices");
    const group = (await client.autoscalerStatus()).groups.find((g) => g.name === "cpu")!;
    assertEquals(group.slices.map((s) => s.state), ["ready"]);
    assertEquals((await client.lookupEndpoint(`${jobId}/svc/server`)).length, 1);

    // The task ends: its endpoint goes, and stays gone across restart 2 (listing works again).
    await client.cancel(jobId);
    assertEquals((await client.wait(jobId, { timeout: seconds(20) })).state, JobState.KILLED);
    assertEquals(await client.lookupEndpoint(`${jobId}/svc/server`), []);
    await cluster.stop();
    stats.listingFails = false;
    cluster = await start(port);
    assertEquals(await client.lookupEndpoint(`${jobId}/svc/server`), []);
    await waitFor(async () => (await client.workers()).filter((w) => w.healthy).length === 1, {
      timeout: seconds(30),
      what: "the worker to re-register after restart 2",
    });
    const actions = (await client.autoscalerStatus()).recentActions.map((a) => a.action);
    assert(actions.includes("restore"), actions.join(","));
    assertEquals(stats.creates, 1);
  } finally {
    await cluster?.stop();
    await inner.shutdown();
    await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }
});
