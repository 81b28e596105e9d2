/**
 * Seed 004's `connect(log_dir=…)` on a local cluster run by `iris cluster start` (a real
 * process): connecting with a log dir copies the controller's and the worker's logs there while
 * connected; closing the connection leaves no follower behind.
 * @module
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { listProcesses, spawnIris } from "../_helpers/iris_process.ts";
import { parseConfig } from "../../src/config/mod.ts";
import { connectCluster } from "../../src/cluster/manager.ts";
import { IrisClient } from "../../src/client/client.ts";
import { seconds, waitFor } from "../../src/time.ts";

const CONFIG = (name: string) => `
name: ${name}
controller:
  local:
    port: 0
  heartbeat_interval: 500ms
  heartbeat_failure_threshold: 30 # no liveness test here: load must not fake a death
defaults:
  autoscaler:
    evaluation_interval: 200ms
scale_groups:
  cpu:
    provider:
      local: {}
    accelerator_type: cpu
    min_slices: 1
    max_slices: 1
`;

async function logFiles(dir: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
  } catch {
    return [];
  }
}

Deno.test("connectCluster with a log dir writes the controller's and workers' logs and leaves no follower behind", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-connect-e2e-" });
  // A unique name: the cluster's record lives in this user's $IRIS_HOME, shared with this test.
  const name = `connect-${crypto.randomUUID().slice(0, 8)}`;
  const path = `${dir}/cluster.yaml`;
  await Deno.writeTextFile(path, CONFIG(name));
  const ownLogs = `${dir}/cluster-logs`;
  const copied = `${dir}/connected-logs`;
  try {
    await using start = spawnIris(
      ["cluster", "start", "--config", path, "--log-dir", ownLogs],
      { env: { TMPDIR: dir } },
    );
    const url = (await start.waitForLine(/started at (http:\/\/\S+)/, seconds(60)))[1]!;
    const config = parseConfig(await Deno.readTextFile(path), path);
    {
      await using connection = await connectCluster(config, { logDir: copied });
      assertEquals(connection.url, url);
      assertEquals(connection.via, "direct");
      assert(connection.logs, "log streaming started");
      const health = await new IrisClient(connection.url).call((rpc) =>
        rpc.getControllerStatus({})
      );
      assert(health.healthy);
      await waitFor(async () => {
        const files = await logFiles(copied);
        const worker = files.find((f) => f.startsWith("workers-"));
        if (!worker || !files.includes("controller.log")) return false;
        const [c, w] = await Promise.all([
          Deno.readTextFile(`${copied}/controller.log`),
          Deno.readTextFile(`${copied}/${worker}`),
        ]);
        return c.includes("controller listening") && w.length > 0;
      }, { timeout: seconds(30), what: "the controller's and a worker's log to be copied" });
    }
    const followers = (await listProcesses()).filter((p) =>
      p.args.includes("tail") && p.args.includes(ownLogs)
    );
    assertEquals(followers, [], "no tail follower outlives the connection");
    assertEquals((await start.stop()).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
