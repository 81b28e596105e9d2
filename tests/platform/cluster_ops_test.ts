/**
 * The cluster operations behind `iris cluster stop|logs|status` in gcp mode, over a
 * ScriptedRunner with golden gcloud transcripts: stop deletes the controller VM and every
 * labelled slice in parallel under one hard timeout (timeouts reported and abandoned), log
 * streaming follows the controller and each worker over ssh, and the controller is reached
 * through an ssh tunnel that is closed on exit.
 * @module
 */
import assert from "node:assert/strict";
import { loadConfig } from "../../src/config/mod.ts";
import {
  clusterLogTargets,
  connectCluster,
  connectController,
  startClusterLogStreaming,
  stopCluster,
} from "../../src/cluster/manager.ts";
import { createControllerLifecycle } from "../../src/cluster/lifecycle.ts";
import { startController } from "../../src/controller/server.ts";
import { FileBundleStore } from "../../src/bundle/mod.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";
import { assertGolden, ScriptedRunner } from "../fakes/scripted_runner.ts";

const GCP_YAML = new URL("../../examples/gcp.yaml", import.meta.url).pathname;
const INSTANCES = ["gcloud", "compute", "instances"];
const TPU = ["gcloud", "compute", "tpus", "tpu-vm"];
const ZONE = "europe-west4-b";

const CONTROLLER_VM = {
  name: "iris-controller",
  zone: `https://www.googleapis.com/compute/v1/projects/my-gcp-project/zones/${ZONE}`,
  status: "RUNNING",
  labels: { "iris-managed": "true", "iris-controller": "true" },
  networkInterfaces: [{ networkIP: "10.164.0.2" }],
};

function tpuNode(sliceId: string, hosts: number) {
  return {
    name: `projects/my-gcp-project/locations/${ZONE}/nodes/${sliceId}`,
    acceleratorType: "v5litepod-16",
    state: "READY",
    createTime: "2026-02-01T10:00:00Z",
    labels: {
      "iris-managed": "true",
      "iris-scale-group": "tpu-v5e-16",
      "iris-slice-id": sliceId,
    },
    networkEndpoints: Array.from({ length: hosts }, (_, i) => ({ ipAddress: `10.1.0.${i + 2}` })),
  };
}

function gcpRunner(): ScriptedRunner {
  return new ScriptedRunner()
    .on([...INSTANCES, "list"], { stdout: JSON.stringify([CONTROLLER_VM]) })
    .on([...TPU, "list"], {
      stdout: JSON.stringify([tpuNode("iris-tpu-v5e-16-a", 4), tpuNode("iris-tpu-v5e-16-b", 4)]),
    });
}

Deno.test("stopCluster() deletes the controller VM and every labelled slice in parallel (golden)", async () => {
  const config = await loadConfig(GCP_YAML);
  const runner = gcpRunner()
    .on([...INSTANCES, "delete"], { delay: ms(30) })
    .on([...TPU, "delete"], { delay: ms(30) });
  const lines: string[] = [];
  const report = await stopCluster(config, { runner, log: (l) => lines.push(l) });
  assert.deepEqual(report.stopped.sort(), [
    "controller",
    "slice iris-tpu-v5e-16-a",
    "slice iris-tpu-v5e-16-b",
  ]);
  assert.deepEqual(report.failed, []);
  assert.deepEqual(report.timedOut, []);
  assert.ok(lines.some((l) => /^stopped: slice iris-tpu-v5e-16-a/.test(l)), lines.join("\n"));
  // Sorted: the deletes run in parallel, so their order is not fixed.
  const transcript = runner.transcript().split("\n").filter((l) => l).sort().join("\n") + "\n";
  await assertGolden("cluster_stop_gcp", transcript);
});

Deno.test("stopCluster() reports what passes its hard timeout, kills it and moves on", async () => {
  const config = await loadConfig(GCP_YAML);
  const runner = gcpRunner()
    .on([...INSTANCES, "delete"], {})
    .on([...TPU, "delete", "iris-tpu-v5e-16-b"], { hang: true })
    .on([...TPU, "delete"], {});
  const lines: string[] = [];
  const t0 = performance.now();
  const report = await stopCluster(config, {
    runner,
    timeout: ms(400),
    log: (l) => lines.push(l),
  });
  assert.ok(performance.now() - t0 < 5000);
  assert.deepEqual(report.timedOut, ["slice iris-tpu-v5e-16-b"]);
  assert.deepEqual(report.stopped.sort(), ["controller", "slice iris-tpu-v5e-16-a"]);
  assert.ok(
    lines.some((l) => /^TIMED OUT after .*: slice iris-tpu-v5e-16-b; moving on$/.test(l)),
    lines.join("\n"),
  );
});

Deno.test("stopCluster() reports a failing delete and still stops the rest", async () => {
  const config = await loadConfig(GCP_YAML);
  const runner = gcpRunner()
    .on([...INSTANCES, "delete"], {
      code: 1,
      stderr: "ERROR: (gcloud.compute.instances.delete) PERMISSION_DENIED: no\n",
    })
    .on([...TPU, "delete"], {});
  const lines: string[] = [];
  const report = await stopCluster(config, { runner, log: (l) => lines.push(l) });
  assert.deepEqual(report.failed, ["controller"]);
  assert.equal(report.stopped.length, 2);
  assert.ok(
    lines.some((l) => /^FAILED: controller: .*PERMISSION_DENIED/.test(l)),
    lines.join("\n"),
  );
});

Deno.test("cluster log streaming follows the controller VM and every slice worker over ssh (golden)", async () => {
  const config = await loadConfig(GCP_YAML);
  const runner = gcpRunner().on(["gcloud", "compute", "tpus", "tpu-vm", "ssh"], {
    stdout: "worker line\n",
    hang: true,
  }).on(["gcloud", "compute", "ssh"], { stdout: "controller line\n", hang: true });
  const targets = await clusterLogTargets(config, { runner })(new AbortController().signal);
  assert.deepEqual(targets.map((t) => t.name), [
    "controller",
    "iris-tpu-v5e-16-a-w0",
    "iris-tpu-v5e-16-a-w1",
    "iris-tpu-v5e-16-a-w2",
    "iris-tpu-v5e-16-a-w3",
    "iris-tpu-v5e-16-b-w0",
    "iris-tpu-v5e-16-b-w1",
    "iris-tpu-v5e-16-b-w2",
    "iris-tpu-v5e-16-b-w3",
  ]);
  runner.clearCalls();
  const dir = await Deno.makeTempDir({ prefix: "iris-cluster-logs-" });
  try {
    const found: string[] = [];
    const handle = startClusterLogStreaming(config, {
      outputDir: dir,
      runner,
      discoveryInterval: seconds(30),
      onTarget: (name) => found.push(name),
    });
    await waitFor(() => runner.activeStreams === 9, { timeout: seconds(10), what: "9 followers" });
    await handle.stop();
    assert.equal(runner.activeStreams, 0);
    assert.equal(found.length, 9);
    assert.equal(await Deno.readTextFile(`${dir}/controller.log`), "controller line\n");
    assert.equal(await Deno.readTextFile(`${dir}/iris-tpu-v5e-16-b-w3.log`), "worker line\n");
    const streams = runner.transcript().split("\n").filter((l) => l.startsWith("[stream]"));
    await assertGolden("cluster_logs_gcp", streams.slice(0, 2).join("\n") + "\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("connectController() reaches a gcp controller through an ssh tunnel closed on exit (golden)", async () => {
  const config = await loadConfig(GCP_YAML);
  // The far end of the tunnel: a real controller on loopback answers the health check.
  const bundleDir = await Deno.makeTempDir({ prefix: "iris-tunnel-" });
  await using server = startController({
    host: "127.0.0.1",
    port: 0,
    bundles: new FileBundleStore(bundleDir),
  });
  const localPort = Number(new URL(server.url).port);
  const runner = new ScriptedRunner()
    .on([...INSTANCES, "list"], { stdout: JSON.stringify([CONTROLLER_VM]) })
    .on(["gcloud", "compute", "ssh"], { hang: true });
  const lifecycle = createControllerLifecycle(config, { runner });
  {
    await using connection = await connectController(lifecycle, "http://10.164.0.2:10000", {
      localPort,
    });
    assert.equal(connection.url, `http://localhost:${localPort}`);
    assert.equal(connection.via, "ssh tunnel to http://10.164.0.2:10000");
    assert.equal(runner.activeStreams, 1);
  }
  assert.equal(runner.activeStreams, 0);
  await assertGolden(
    "cluster_tunnel_gcp",
    runner.transcript().replace(`-L ${localPort}:`, "-L PORT:"),
  );
  await Deno.remove(bundleDir, { recursive: true });
});

Deno.test("connectCluster() with a log dir streams the controller's and workers' logs while connected and stops every follower on close", async () => {
  const config = await loadConfig(GCP_YAML);
  const bundleDir = await Deno.makeTempDir({ prefix: "iris-connect-" });
  const logDir = await Deno.makeTempDir({ prefix: "iris-connect-logs-" });
  await using server = startController({
    host: "127.0.0.1",
    port: 0,
    bundles: new FileBundleStore(bundleDir),
  });
  const localPort = Number(new URL(server.url).port);
  // The tunnel and the controller's log follower are both `gcloud compute ssh` streams.
  const runner = gcpRunner()
    .on(["gcloud", "compute", "tpus", "tpu-vm", "ssh"], { stdout: "worker line\n", hang: true })
    .on(["gcloud", "compute", "ssh"], { stdout: "controller line\n", hang: true });
  try {
    const followed: string[] = [];
    {
      await using connection = await connectCluster(config, {
        runner,
        localPort,
        logDir,
        discoveryInterval: seconds(30),
        onLogTarget: (name) => followed.push(name),
      });
      assert.equal(connection.controllerUrl, "http://10.164.0.2:10000");
      assert.equal(connection.url, `http://localhost:${localPort}`);
      // 1 tunnel + 1 controller follower + 8 worker followers.
      await waitFor(() => runner.activeStreams === 10, {
        timeout: seconds(10),
        what: "the tunnel and 9 followers",
      });
      assert.deepEqual(connection.logs?.discovered().length, 9);
    }
    assert.equal(runner.activeStreams, 0, "no follower or tunnel outlives the connection");
    assert.equal(followed.length, 9);
    assert.equal(await Deno.readTextFile(`${logDir}/controller.log`), "controller line\n");
    assert.equal(await Deno.readTextFile(`${logDir}/iris-tpu-v5e-16-a-w0.log`), "worker line\n");
  } finally {
    await Deno.remove(bundleDir, { recursive: true });
    await Deno.remove(logDir, { recursive: true });
  }
});

Deno.test("connectCluster() without a running cluster says so", async () => {
  const config = await loadConfig(GCP_YAML);
  const runner = new ScriptedRunner().on([...INSTANCES, "list"], { stdout: "[]" });
  await assert.rejects(
    () => connectCluster(config, { runner, logDir: "/nonexistent/never-created" }),
    /cluster 'eu-west4' \(gcp\) is not running/,
  );
});
