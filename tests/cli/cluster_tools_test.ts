/**
 * The cluster tools on a local cluster through the real CLI: `cluster dashboard`, `cluster debug
 * health|discover|validate|bootstrap-logs|cleanup` selected by --config, `cluster restart`'s
 * refusal for a local cluster, and their usage errors; then discover and cleanup once it stopped.
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { runIris, spawnIris } from "../_helpers/iris_process.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { controllerClient } from "../../src/rpc/client.ts";

const CONFIG = (name: string) => `
name: ${name}
controller:
  local:
    port: 0
  heartbeat_interval: 500ms
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

Deno.test("cluster dashboard, restart and debug tools on a local cluster", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-tools-" });
  const name = `tools-${crypto.randomUUID().slice(0, 8)}`;
  const config = `${dir}/cluster.yaml`;
  await Deno.writeTextFile(config, CONFIG(name));
  const env = { IRIS_HOME: `${dir}/home`, TMPDIR: dir, IRIS_CONTROLLER_URL: "", USER: "ops" };
  const iris = (args: string[]) => runIris(args, { env, timeout: seconds(60) });
  try {
    {
      await using start = spawnIris(["cluster", "start", "--config", config], { env });
      const url =
        (await start.waitForLine(/^export IRIS_CONTROLLER_URL=(http:\/\/\S+)$/, seconds(60)))[1]!;
      const rpc = controllerClient(url);
      const slice = await waitFor(async () => {
        const auto = await rpc.getAutoscalerStatus({});
        return auto.groups.flatMap((g) => g.slices).find((s) => s.workerIds.length > 0);
      }, { timeout: seconds(60), what: "the min slice's worker" });

      const dash = await iris(["cluster", "dashboard", "--config", config]);
      assertEquals(dash.code, 0, dash.stderr);
      assertEquals(dash.stdout, `${url}/\n`);
      const page = await fetch(dash.stdout.trim());
      assertEquals(page.status, 200);
      assertMatch(await page.text(), /<html/i);

      const health = await iris(["cluster", "debug", "health", "--config", config]);
      assertEquals(health.code, 0, health.stdout + health.stderr);
      assertMatch(health.stdout, /1 worker\(s\), 0 failing/);

      const discover = await iris(["cluster", "debug", "discover", "--config", config]);
      assertEquals(discover.code, 0, discover.stdout + discover.stderr);
      assertMatch(discover.stdout, new RegExp(`controller ${url} \\(cluster start pid \\d+`));
      assertMatch(discover.stdout, /answers: healthy/);
      assert(discover.stdout.includes(slice.sliceId), discover.stdout);

      const validate = await iris(["cluster", "debug", "validate", "--config", config]);
      assertEquals(validate.code, 0, validate.stdout + validate.stderr);
      assertMatch(validate.stdout, new RegExp(`valid local config '${name}', 1 scale group`));

      const boot = await iris([
        "cluster",
        "debug",
        "bootstrap-logs",
        slice.sliceId,
        "--config",
        config,
      ]);
      assertEquals(boot.code, 0, boot.stderr);
      assertMatch(boot.stdout, new RegExp(`==> ${slice.workerIds[0]} `));
      const ctl = await iris([
        "cluster",
        "debug",
        "bootstrap-logs",
        "controller",
        "--config",
        config,
      ]);
      assertEquals(ctl.code, 0, ctl.stderr);
      assert(ctl.stdout.length > 0);
      const noSlice = await iris([
        "cluster",
        "debug",
        "bootstrap-logs",
        "nope",
        "--config",
        config,
      ]);
      assertEquals(noSlice.code, 1);
      assertMatch(noSlice.stderr, new RegExp(`No slice nope .*slices: ${slice.sliceId}`));

      const cleanup = await iris(["cluster", "debug", "cleanup", "--config", config]);
      assertEquals(cleanup.code, 0, cleanup.stderr);
      assertMatch(cleanup.stdout, /is running \(pid \d+\): nothing to clean/);

      const restart = await iris(["cluster", "restart", "--config", config]);
      assertEquals(restart.code, 2);
      assertMatch(restart.stderr, /is local: it runs inside its 'iris cluster start' process/);

      const both = await iris([
        "cluster",
        "debug",
        "health",
        "--config",
        config,
        "--controller",
        url,
      ]);
      assertEquals(both.code, 2);
      assertMatch(both.stderr, /either --config or --controller/);
      const asLocal = await iris(["cluster", "dashboard", "--as-local"]);
      assertEquals(asLocal.code, 2);
      assertMatch(asLocal.stderr, /--as-local needs --config FILE/);

      const stop = await iris(["cluster", "stop", "--config", config]);
      assertEquals(stop.code, 0, stop.stdout + stop.stderr);
      assertEquals((await start.status).code, 0);
    }
    const gone = await iris(["cluster", "debug", "discover", "--config", config]);
    assertEquals(gone.code, 1);
    assertMatch(gone.stdout, /no controller found/);
    const clean = await iris(["cluster", "debug", "cleanup", "--config", config]);
    assertMatch(clean.stdout, /nothing left behind/);
    const notRunning = await iris(["cluster", "dashboard", "--config", config]);
    assertEquals(notRunning.code, 1);
    assertMatch(notRunning.stderr, /is not running/);

    await Deno.writeTextFile(
      `${dir}/bad.yaml`,
      CONFIG(name).replace("max_slices: 1", "max_slices: -3"),
    );
    const bad = await iris(["cluster", "debug", "validate", "--config", `${dir}/bad.yaml`]);
    assertEquals(bad.code, 1);
    assertMatch(bad.stderr, /max_slices/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
