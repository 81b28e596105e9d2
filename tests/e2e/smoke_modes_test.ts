/**
 * The smoke options of the original through the real CLI: --mode keep (the cluster stays up,
 * the run says how to reach and stop it, `iris cluster stop` ends it), --mode redeploy (the jobs
 * run on the running `iris cluster start`, which stays up; its logs are copied through the
 * connection), --job-timeout, --tpu-type, the per-job autoscaler lines in summary.md, --help, and
 * Phase 0's clean start on gcp (against a fake `gcloud` on PATH).
 * @module
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { listProcesses, runIris, spawnIris } from "../_helpers/iris_process.ts";
import { seconds } from "../../src/time.ts";

const LOCAL = new URL("../../examples/local.yaml", import.meta.url).pathname;
const GCP = new URL("../../examples/gcp.yaml", import.meta.url).pathname;

/** examples/local.yaml under a unique name (its record lives in this test's IRIS_HOME anyway). */
async function localConfig(dir: string, edit = (t: string) => t): Promise<string> {
  const path = `${dir}/local-${crypto.randomUUID().slice(0, 6)}.yaml`;
  await Deno.writeTextFile(
    path,
    edit((await Deno.readTextFile(LOCAL)).replace(/^name: local$/m, "name: smoke-modes")),
  );
  return path;
}

Deno.test("iris smoke --help documents --mode, --job-timeout and --tpu-type", async () => {
  const help = await runIris(["smoke", "--help"]);
  assertEquals(help.code, 0, help.stderr);
  assertMatch(help.stdout, /--mode MODE .*full, keep, redeploy/);
  assertMatch(help.stdout, /--job-timeout DURATION/);
  assertMatch(help.stdout, /--tpu-type VARIANT/);
  assertMatch(help.stdout, /keep +the same, but the cluster stays up/);
  assertMatch(help.stdout, /redeploy +no clean start/);
});

Deno.test("iris smoke refuses a bad --mode, --job-timeout or --tpu-type with a usage error", async () => {
  const cases: [string[], RegExp][] = [
    [["--mode", "fast"], /--mode must be one of full, keep, redeploy \(got "fast"\)/],
    [["--job-timeout", "soon"], /--job-timeout must be a duration/],
    [["--tpu-type", "v9-1"], /--tpu-type: unknown TPU variant "v9-1"/],
    [
      ["--tpu-type", "v4-8"],
      /--tpu-type v4-8: no scale group of \S+ has it \(TPU variants: v5litepod-16\)/,
    ],
    [["--keep", "--mode", "redeploy"], /--keep contradicts --mode redeploy/],
  ];
  for (const [args, re] of cases) {
    const res = await runIris(["smoke", "--config", LOCAL, ...args]);
    assertEquals(res.code, 2, `${args.join(" ")}: ${res.stdout}${res.stderr}`);
    assertMatch(res.stderr, re);
  }
});

Deno.test("iris smoke --mode keep leaves the cluster up, says how to stop it, and iris cluster stop ends it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "smoke-keep-" });
  const env = { IRIS_HOME: `${dir}/home`, TMPDIR: dir };
  try {
    const config = await localConfig(dir);
    const logDir = `${dir}/logs`;
    await using smoke = spawnIris([
      "smoke",
      "--config",
      config,
      "--mode",
      "keep",
      "--only",
      "hello",
      "--only",
      "endpoints",
      "--job-timeout",
      "90s",
      "--log-dir",
      logDir,
    ], { env });
    const [, url] = await smoke.waitForLine(
      /--mode keep: the cluster is kept up at (http:\/\/\S+) .* or: iris cluster stop --config/,
      seconds(120),
    );
    assert(smoke.lines.some((l) => /\[PASS\] endpoints/.test(l)), smoke.lines.join("\n"));
    const status = await runIris(["cluster", "status", "--config", config], { env });
    assertEquals(status.code, 0, status.stdout + status.stderr);
    assertMatch(status.stdout, new RegExp(`at ${url} \\(direct\\)`));

    const stop = await runIris(["cluster", "stop", "--config", config], { env });
    assertEquals(stop.code, 0, stop.stdout + stop.stderr);
    assertEquals((await smoke.status).code, 0, smoke.lines.join("\n"));
    assert(smoke.lines.some((l) => /2\/2 jobs passed/.test(l)), smoke.lines.join("\n"));

    const summary = await Deno.readTextFile(`${logDir}/summary.md`);
    assertMatch(summary, /- mode: keep/);
    assertMatch(summary, /- timeout: .*\(per job 1m30s\)/);
    for (const job of ["hello", "endpoints"]) {
      assertMatch(summary, new RegExp(`autoscaler after ${job}: demand \\S+`));
    }
    // The slice may still read "booting" until the autoscaler's next status refresh, although its
    // worker already ran both jobs.
    assertMatch(summary, /scale group cpu: cpu, slices 0\.\.4, 1 (ready|booting) now/);
    assertMatch(summary, /scale group tpu_v5e_16: v5litepod-16, slices 0\.\.4/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("iris smoke --mode redeploy runs on the running local cluster and leaves it up", async () => {
  const dir = await Deno.makeTempDir({ prefix: "smoke-redeploy-" });
  const env = { IRIS_HOME: `${dir}/home`, TMPDIR: dir };
  try {
    const config = await localConfig(dir);
    await using start = spawnIris(
      ["cluster", "start", "--config", config, "--log-dir", `${dir}/cluster-logs`],
      { env },
    );
    const url = (await start.waitForLine(/started at (http:\/\/\S+)/, seconds(60)))[1]!;
    const logDir = `${dir}/logs`;
    const res = await runIris([
      "smoke",
      "--config",
      config,
      "--mode",
      "redeploy",
      "--only",
      "hello",
      "--log-dir",
      logDir,
    ], { env, timeout: seconds(120) });
    assertEquals(res.code, 0, res.stdout + res.stderr);
    assertMatch(res.stdout, /skipped: a local cluster needs no images/);
    assertMatch(
      res.stdout,
      new RegExp(`redeploy: using the running local cluster 'smoke-modes' at ${url}`),
    );
    assertMatch(res.stdout, /the cluster is left running/);
    // The connection copied the running cluster's controller log while the jobs ran.
    assertMatch(await Deno.readTextFile(`${logDir}/daemons/controller.log`), /listening/);
    const status = await runIris(["cluster", "status", "--config", config], { env });
    assertEquals(status.code, 0, "the cluster still runs");
    assertEquals(
      (await listProcesses()).filter((p) => p.args.includes("tail") && p.args.includes(dir)),
      [],
      "no log follower is left",
    );
    assertEquals((await start.stop()).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("iris smoke --job-timeout fails a stuck job in time; --tpu-type picks the TPU jobs' slice variant", async () => {
  const dir = await Deno.makeTempDir({ prefix: "smoke-opts-" });
  try {
    // No TPU slice can be made: the gang waits until its own --job-timeout, not the global one.
    const stuck = await localConfig(dir, (t) => t.replace(/max_slices: 4/, "max_slices: 0"));
    const t0 = performance.now();
    const res = await runIris([
      "smoke",
      "--config",
      stuck,
      "--only",
      "coscheduled",
      "--job-timeout",
      "2s",
      "--timeout",
      "300s",
      "--log-dir",
      `${dir}/stuck`,
    ], { env: { TMPDIR: dir }, timeout: seconds(120) });
    assertEquals(res.code, 1, res.stdout + res.stderr);
    assertMatch(res.stdout, /\[FAIL\] coscheduled: Job \S+ did not finish within 2\.0s/);
    assert(performance.now() - t0 < 60_000, "failed long before the global timeout");

    // A v4-16 group (2 hosts of 4 chips): the gang has 2 tasks, tpu-hello lands on it.
    const v4 = await localConfig(
      dir,
      (t) => t.replace("accelerator_variant: v5litepod-16", "accelerator_variant: v4-16"),
    );
    const ok = await runIris([
      "smoke",
      "--config",
      v4,
      "--only",
      "tpu-hello",
      "--only",
      "coscheduled",
      "--tpu-type",
      "v4-16",
      "--log-dir",
      `${dir}/v4`,
    ], { env: { TMPDIR: dir }, timeout: seconds(180) });
    assertEquals(ok.code, 0, ok.stdout + ok.stderr);
    assertMatch(ok.stdout, /\[PASS\] tpu-hello +\S+ s +tpu_name=\S+ worker_id=\d topology=\S+/);
    assertMatch(ok.stdout, /\[PASS\] coscheduled +\S+ s +2 tasks on v4-16 slice /);
    assertMatch(await Deno.readTextFile(`${dir}/v4/summary.md`), /- TPU type: v4-16/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A `gcloud` on PATH that logs its argv and answers like a gcp cluster an earlier run left. */
async function fakeGcloud(dir: string): Promise<string> {
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
    networkInterfaces: [{ networkIP: "192.0.2.1" }],
  };
  const tpus = JSON.stringify([node("iris-tpu-v5e-16-old")]);
  // Listings answer with the leftovers until they are deleted (a marker file per deletion).
  await Deno.writeTextFile(
    `${dir}/gcloud`,
    `#!/usr/bin/env bash
echo "$*" >> ${dir}/gcloud.log
case "$*" in
  "compute instances list"*) [ -e ${dir}/vm-deleted ] && echo '[]' || echo '${
      JSON.stringify([vm])
    }' ;;
  "compute tpus tpu-vm list"*) [ -e ${dir}/tpu-deleted ] && echo '[]' || echo '${tpus}' ;;
  "compute instances delete"*) touch ${dir}/vm-deleted ;;
  "compute tpus tpu-vm delete"*) touch ${dir}/tpu-deleted ;;
  "compute instances create"*) exit 1 ;;
esac
`,
  );
  await Deno.chmod(`${dir}/gcloud`, 0o755);
  return `${dir}/gcloud.log`;
}

Deno.test("iris smoke on gcp: Phase 0 lists an earlier run's leftovers and removes them before starting; redeploy skips it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "smoke-gcp-phase0-" });
  const env = { PATH: `${dir}:${Deno.env.get("PATH")}` };
  try {
    const log = await fakeGcloud(dir);
    // The controller VM cannot be created (the fake refuses): the run fails after Phase 0.
    const res = await runIris(
      ["smoke", "--config", GCP, "--only", "hello", "--timeout", "60s", "--log-dir", `${dir}/full`],
      { env, timeout: seconds(90) },
    );
    assertEquals(res.code, 1, res.stdout + res.stderr);
    const summary = await Deno.readTextFile(`${dir}/full/summary.md`);
    const phase0 = summary.slice(summary.indexOf("## Phase 0"), summary.indexOf("## Phase 1"));
    assertMatch(
      phase0,
      /leftovers of an earlier run: controller VM at http:\/\/192\.0\.2\.1:10000, slice iris-tpu-v5e-16-old \(tpu-v5e-16, ready\); removing them/,
    );
    assertMatch(phase0, /stopped: controller/);
    assertMatch(phase0, /stopped: slice iris-tpu-v5e-16-old/);
    assertMatch(phase0, /removed: .*controller.*slice iris-tpu-v5e-16-old/);
    const calls = (await Deno.readTextFile(log)).split("\n");
    const create = calls.findIndex((l) => l.startsWith("compute instances create"));
    const deletes = calls.flatMap((l, i) => l.includes(" delete ") ? [i] : []);
    assert(create > 0, calls.join("\n"));
    assertEquals(deletes.filter((i) => i < create).length, 2, "both removed before the start");

    await Deno.remove(log);
    const redeploy = await runIris([
      "smoke",
      "--config",
      GCP,
      "--mode",
      "redeploy",
      "--only",
      "hello",
      "--timeout",
      "60s",
      "--log-dir",
      `${dir}/redeploy`,
    ], { env, timeout: seconds(90) });
    assertEquals(redeploy.code, 1, redeploy.stdout + redeploy.stderr);
    assertMatch(redeploy.stdout, /skipped: --mode redeploy reuses the running cluster/);
    assertEquals(
      (await Deno.readTextFile(log)).split("\n").filter((l) => l.includes(" delete ")),
      [],
      "redeploy removes nothing",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
