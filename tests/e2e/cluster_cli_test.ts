/**
 * `iris cluster start|status|logs|stop --config` in local mode through the real CLI: start runs
 * the cluster in its process, status finds it by its record, logs follows the controller's and
 * a new worker's log files into a directory and stops its followers on SIGTERM, stop ends the
 * start process; then status says it is not running and nothing is left behind.
 * @module
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { listProcesses, runIris, spawnIris } from "../_helpers/iris_process.ts";
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
    scale_up_cooldown: 200ms
scale_groups:
  cpu:
    provider:
      local: {}
    accelerator_type: cpu
    min_slices: 0
    max_slices: 1
`;

Deno.test("iris cluster start/status/logs/stop drive a local cluster end to end", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-cluster-cli-" });
  const name = `cli-${crypto.randomUUID().slice(0, 8)}`;
  const config = `${dir}/cluster.yaml`;
  await Deno.writeTextFile(config, CONFIG(name));
  // TMPDIR: the cluster's temp dirs stay inside this test's dir (other tests count theirs).
  const env = { IRIS_HOME: `${dir}/home`, TMPDIR: dir };
  try {
    await using start = spawnIris(["cluster", "start", "--config", config], { env });
    const url = (await start.waitForLine(/started at (http:\/\/\S+)/, seconds(60)))[1]!;

    const status = await runIris(["cluster", "status", "--config", config], { env });
    assertEquals(status.code, 0, status.stderr);
    assertMatch(status.stdout, new RegExp(`Cluster '${name}' \\(local\\) at ${url} \\(direct\\)`));
    assertMatch(status.stdout, /healthy/);

    const logDir = `${dir}/logs`;
    await using logs = spawnIris(
      ["cluster", "logs", "--config", config, "--log-dir", logDir],
      { env },
    );
    await logs.waitForLine(/following controller ->/);
    // A job makes the autoscaler create a worker: its log file is discovered and followed.
    const job = await runIris(
      ["job", "run", "--controller", url, "--cpu", "0.1", "--", "echo", "hello-from-cluster"],
      { env, timeout: seconds(90) },
    );
    assertEquals(job.code, 0, job.stderr);
    await logs.waitForLine(/following workers-\S+ ->/, seconds(30));
    await waitFor(async () => {
      const text = await Deno.readTextFile(`${logDir}/controller.log`).catch(() => "");
      return text.includes("controller listening");
    }, { timeout: seconds(10), what: "the controller log to be copied" });
    assertEquals((await logs.stop()).code, 0);
    const followers = (await listProcesses()).filter((p) =>
      p.args.includes("tail") && p.args.includes(`${dir}/home`)
    );
    assertEquals(followers, [], "no tail follower outlives cluster logs");

    const stop = await runIris(["cluster", "stop", "--config", config], { env });
    assertEquals(stop.code, 0, stop.stdout + stop.stderr);
    assertMatch(stop.stdout, /stopped: controller and its slices/);
    assertEquals((await start.status).code, 0);

    const after = await runIris(["cluster", "status", "--config", config], { env });
    assertEquals(after.code, 1);
    assertMatch(after.stdout, /not running/);
    const again = await runIris(["cluster", "stop", "--config", config], { env });
    assertEquals(again.code, 0);
    assertMatch(again.stdout, /is not running/);
    assert(
      !(await listProcesses()).some((p) => p.args.includes(config)),
      "no process of this cluster is left",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("iris cluster commands refuse bad flags with a usage error", async () => {
  const noConfig = await runIris(["cluster", "stop"]);
  assertEquals(noConfig.code, 2);
  assertMatch(noConfig.stderr, /--config FILE is required/);
  const badTimeout = await runIris([
    "cluster",
    "stop",
    "--config",
    "examples/local.yaml",
    "--timeout",
    "soon",
  ]);
  assertEquals(badTimeout.code, 2);
  assertMatch(badTimeout.stderr, /--timeout must be a duration/);
  const both = await runIris([
    "cluster",
    "status",
    "--config",
    "examples/local.yaml",
    "--controller",
    "http://127.0.0.1:1",
  ]);
  assertEquals(both.code, 2);
  const help = await runIris(["cluster", "logs", "--help"]);
  assertEquals(help.code, 0);
  assertMatch(help.stdout, /Usage: iris cluster logs --config FILE/);
});

/** A `gcloud` on PATH that logs its argv and answers like a gcp cluster with two slices. */
async function fakeGcloud(dir: string, marker: string): Promise<string> {
  const node = (slice: string) => ({
    name: `projects/my-gcp-project/locations/europe-west4-b/nodes/${slice}`,
    acceleratorType: "v5litepod-16",
    state: "READY",
    labels: { "iris-managed": "true", "iris-scale-group": "tpu-v5e-16", "iris-slice-id": slice },
    networkEndpoints: [{ ipAddress: "10.1.0.2" }],
  });
  const vm = {
    name: "iris-controller",
    zone: "https://www.googleapis.com/compute/v1/projects/my-gcp-project/zones/europe-west4-b",
    status: "RUNNING",
    labels: { "iris-managed": "true", "iris-controller": "true" },
    networkInterfaces: [{ networkIP: "10.164.0.2" }],
  };
  const tpus = JSON.stringify([node("iris-tpu-v5e-16-a"), node("iris-tpu-v5e-16-b")]);
  await Deno.writeTextFile(
    `${dir}/gcloud`,
    `#!/usr/bin/env bash
echo "$*" >> ${dir}/gcloud.log
case "$*" in
  "compute instances list"*) echo '${JSON.stringify([vm])}' ;;
  "compute tpus tpu-vm list"*) echo '${tpus}' ;;
  "compute tpus tpu-vm delete iris-tpu-v5e-16-b"*) exec -a ${marker} sleep 600 ;;
esac
`,
  );
  await Deno.chmod(`${dir}/gcloud`, 0o755);
  return `${dir}/gcloud.log`;
}

Deno.test("iris cluster stop on gcp deletes the controller and every slice, and reports a hung delete as timed out", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-cluster-gcp-" });
  const marker = `fake-gcloud-hang-${crypto.randomUUID().slice(0, 8)}`;
  try {
    const log = await fakeGcloud(dir, marker);
    const t0 = performance.now();
    const stop = await runIris(
      ["cluster", "stop", "--config", "examples/gcp.yaml", "--timeout", "3s"],
      { env: { PATH: `${dir}:${Deno.env.get("PATH")}` } },
    );
    assert(performance.now() - t0 < 30_000, "stop returns soon after its timeout");
    assertEquals(stop.code, 1, stop.stdout + stop.stderr);
    assertMatch(stop.stdout, /stopped: controller/);
    assertMatch(stop.stdout, /stopped: slice iris-tpu-v5e-16-a/);
    assertMatch(stop.stdout, /TIMED OUT after .*: slice iris-tpu-v5e-16-b; moving on/);
    const calls = (await Deno.readTextFile(log)).split("\n").filter((l) => l).sort();
    assertEquals(calls, [
      "compute instances delete iris-controller --zone=europe-west4-b --project=my-gcp-project --quiet",
      "compute instances list --project=my-gcp-project --filter=labels.iris-controller=true --format=json",
      "compute tpus tpu-vm delete iris-tpu-v5e-16-a --zone=europe-west4-b --project=my-gcp-project --quiet --async",
      "compute tpus tpu-vm delete iris-tpu-v5e-16-b --zone=europe-west4-b --project=my-gcp-project --quiet --async",
      "compute tpus tpu-vm list --zone=europe-west4-b --project=my-gcp-project --filter=labels.iris-managed=true --format=json",
    ]);
    // The hung gcloud was killed, not left behind.
    await waitFor(async () => !(await listProcesses()).some((p) => p.args.includes(marker)), {
      timeout: seconds(10),
      what: "the hung fake gcloud to be gone",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
