/**
 * `iris cluster start --config examples/gcp.yaml --as-local` through the real CLI: the gcp
 * config's groups run on this machine, the CLI says what it converted, the controller answers,
 * a TPU job runs on the simulated slice, and `cluster stop --as-local` ends it.
 * @module
 */
import { assertEquals, assertMatch } from "../_helpers/assert.ts";
import { runIris, spawnIris } from "../_helpers/iris_process.ts";
import { seconds } from "../../src/time.ts";

const GCP = new URL("../../examples/gcp.yaml", import.meta.url).pathname;

Deno.test("cluster start --as-local runs examples/gcp.yaml here: it says so, answers, and runs a job", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-as-local-" });
  // A private IRIS_HOME: the local record is named after the gcp cluster (eu-west4).
  const env = { IRIS_HOME: `${dir}/home`, TMPDIR: dir };
  try {
    await using start = spawnIris(["cluster", "start", "--config", GCP, "--as-local"], { env });
    const url = (await start.waitForLine(/\(local\) started at (http:\/\/\S+)/, seconds(60)))[1]!;
    const said = start.lines.join("\n");
    assertMatch(said, /Running \S+gcp\.yaml \(gcp\) as a local cluster \(--as-local\)/);
    assertMatch(said, /scale_groups\.tpu-v5e-16\.provider: tpu → local/);
    assertMatch(said, /controller\.state_dir \S+ dropped/);
    assertMatch(said, /iris cluster stop --config \S+gcp\.yaml --as-local/);

    const status = await runIris(["cluster", "status", "--config", GCP, "--as-local"], { env });
    assertEquals(status.code, 0, status.stdout + status.stderr);
    assertMatch(status.stdout, new RegExp(`Cluster 'eu-west4' \\(local\\) at ${url} \\(direct\\)`));
    assertMatch(status.stdout, /healthy/);
    assertMatch(status.stdout, /tpu-v5e-16/);

    // A gang on the v5litepod-16 group (one task per host): the autoscaler makes a local slice
    // of 4 workers.
    const job = await runIris([
      "job",
      "run",
      "--controller",
      url,
      "--tpu",
      "v5litepod-16",
      "--cpu",
      "0.1",
      "--",
      "sh",
      "-c",
      "echo as-local on $TPU_NAME",
    ], { env, timeout: seconds(120) });
    assertEquals(job.code, 0, job.stdout + job.stderr);
    assertEquals(
      job.stdout.match(/^\[\d\] as-local on iris-tpu-v5e-16-\S+$/gm)?.length,
      4,
      job.stdout,
    );

    const stop = await runIris(["cluster", "stop", "--config", GCP, "--as-local"], { env });
    assertEquals(stop.code, 0, stop.stdout + stop.stderr);
    assertMatch(stop.stdout, /stopped: controller and its slices/);
    assertEquals((await start.status).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
