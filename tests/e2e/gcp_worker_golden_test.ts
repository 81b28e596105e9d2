/**
 * The GCP worker bootstrap, run for real: the exact `worker serve` command line of the golden
 * startup script (tests/platform/golden/bootstrap_worker_gcp.txt) is run by bash, against a
 * metadata-server stand-in. The worker advertises the group's TPU, so a TPU job of its variant
 * runs on it; on a VM whose metadata says another accelerator it refuses to start.
 * The one substitution: the controller URL (the golden's internal IP) becomes the test's.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "../_helpers/assert.ts";
import { GceMetadata } from "../../src/gcp/metadata.ts";
import { checkGceAccelerator } from "../../src/gcp/accelerator_check.ts";
import { IrisClient, JobState } from "../../mod.ts";
import { startController } from "../../src/controller/server.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { startGcpStandIn } from "../fakes/gcp_standin.ts";
import { FileBundleStore } from "../../src/bundle/mod.ts";
import { pumpLines } from "../_helpers/iris_process.ts";

const GOLDEN = new URL("../platform/golden/bootstrap_worker_gcp.txt", import.meta.url);
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const GOLDEN_CONTROLLER = "http://10.128.0.7:10000";

/** The golden's `worker serve` invocation, without `setsid nohup` and the log redirection. */
async function goldenWorkerCommand(): Promise<string> {
  const text = await Deno.readTextFile(GOLDEN);
  const line = text.split("\n").find((l) => l.includes(`"\${IRIS_CMD[@]}" worker serve`));
  assert(line, "the golden has no worker serve line");
  const m = /^setsid nohup (".*") >> "\$IRIS_LOG" 2>&1 < \/dev\/null &$/.exec(line);
  assert(m, `unexpected golden line: ${line}`);
  assert(m[1]!.includes(GOLDEN_CONTROLLER));
  return m[1]!;
}

/** Runs the command with bash as the startup script would (IRIS_CMD, IRIS_WORKER_INDEX set). */
function runGoldenCommand(
  command: string,
  controllerUrl: string,
  metadataHost: string,
  home: string,
) {
  const script = [
    `IRIS_HOME=${home}`,
    `IRIS_CMD=(${JSON.stringify(Deno.execPath())} run -A ${JSON.stringify(CLI)})`,
    "IRIS_WORKER_INDEX=0",
    `exec ${command.replace(GOLDEN_CONTROLLER, controllerUrl)}`,
  ].join("\n");
  const child = new Deno.Command("bash", {
    args: ["-c", script],
    env: { GCE_METADATA_HOST: metadataHost, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const pumps = Promise.all([pumpLines(child.stdout, lines), pumpLines(child.stderr, lines)]);
  const status = child.status.then(async (s) => (await pumps, s));
  return {
    lines,
    status,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 10_000);
      try {
        return await status;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

Deno.test("a worker started with the gcp bootstrap golden's command runs a TPU job of its variant", async () => {
  const command = await goldenWorkerCommand();
  const home = await Deno.makeTempDir({ prefix: "iris-gcp-worker-" });
  await using metadata = startGcpStandIn({ attributes: { "accelerator-type": "v4-16" } });
  await using controller = startController({
    bundles: new FileBundleStore(`${home}/controller-bundles`),
  });
  const worker = runGoldenCommand(command, controller.url, metadata.host, home);
  try {
    const client = new IrisClient(controller.url);
    await waitFor(async () => (await client.workers()).length === 1, {
      timeout: seconds(60),
      what: `the worker to register (output: ${worker.lines.join("\n")})`,
    });
    const w = (await client.workers())[0]!;
    assertEquals(w.workerId, "iris-tpu_v4_16-1-w0");
    const acc = w.resources?.accelerator;
    assertEquals([acc?.variant, acc?.count], ["v4-16", 4]);
    const id = await client.submit({
      name: "tpu-job",
      command: ["sh", "-c", 'echo "tpu=$TPU_NAME worker=$TPU_WORKER_ID"'],
      accelerator: { kind: "tpu", variant: "v4-16" },
      replicas: 1,
      groupBy: "",
      cpu: 0.1,
      memory: 2 ** 26,
    });
    const job = await client.wait(id, { timeout: seconds(60) });
    assertEquals(job.state, JobState.SUCCEEDED, job.error);
    const out = (await client.logs(id)).filter((l) => l.stream === "stdout").map((l) => l.text);
    assertEquals(out, ["tpu=iris-tpu-v4-16-1 worker=0"]);
    // A workspace job too: the bootstrapped worker fetches the bundle from the controller.
    await Deno.mkdir(`${home}/ws`);
    await Deno.writeTextFile(`${home}/ws/data.txt`, "shipped to the TPU VM");
    await Deno.writeTextFile(`${home}/ws/run.sh`, "#!/bin/sh\ncat data.txt\n");
    await Deno.chmod(`${home}/ws/run.sh`, 0o755);
    const bundleId = await client.uploadWorkspace(`${home}/ws`);
    const wsJob = await client.submit({
      name: "tpu-workspace",
      command: ["./run.sh"],
      bundleId,
      accelerator: { kind: "tpu", variant: "v4-16" },
      replicas: 1,
      groupBy: "",
      cpu: 0.1,
      memory: 2 ** 26,
    });
    const wsDone = await client.wait(wsJob, { timeout: seconds(60) });
    assertEquals(wsDone.state, JobState.SUCCEEDED, wsDone.error);
    assertEquals(
      (await client.logs(wsJob)).filter((l) => l.stream === "stdout").map((l) => l.text),
      ["shipped to the TPU VM"],
    );
    // The worker asked the metadata server, as a GCE client must.
    assert(
      metadata.requests.some((r) =>
        r.path === "/computeMetadata/v1/instance/attributes/accelerator-type"
      ),
    );
    assertEquals(metadata.violations, []);
  } finally {
    await worker.stop();
    await Deno.remove(home, { recursive: true }).catch(() => {});
  }
});

Deno.test("the gcp bootstrap golden's worker refuses to start on a VM with another accelerator", async () => {
  const command = await goldenWorkerCommand();
  const home = await Deno.makeTempDir({ prefix: "iris-gcp-worker-" });
  await using metadata = startGcpStandIn({ attributes: { "accelerator-type": "v5litepod-4" } });
  await using controller = startController({});
  const worker = runGoldenCommand(command, controller.url, metadata.host, home);
  try {
    const status = await Promise.race([
      worker.status,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 60_000)),
    ]);
    assert(status, `the worker kept running: ${worker.lines.join("\n")}`);
    assert(status.code !== 0);
    const out = worker.lines.join("\n");
    assertMatch(
      out,
      /accelerator mismatch: the scale group says TPU v4-16, but this VM's metadata accelerator-type is v5litepod-4/,
    );
    assertEquals((await new IrisClient(controller.url).workers()).length, 0);
    assertEquals(metadata.violations, []);
  } finally {
    await worker.stop();
    await Deno.remove(home, { recursive: true }).catch(() => {});
  }
});

Deno.test("checkGceAccelerator: aliases match; a missing key, a wrong count or no TPU are refused", async () => {
  await using md = startGcpStandIn({ attributes: { "accelerator-type": "v5litepod-4" } });
  const metadata = new GceMetadata({ baseUrl: md.url });
  const tpu = (variant: string, count: number) => ({ kind: "tpu" as const, variant, count });
  assertEquals(await checkGceAccelerator(tpu("v5litepod-4", 4), metadata), "v5litepod-4");
  assertEquals(await checkGceAccelerator(tpu("v5e-4", 4), metadata), "v5litepod-4");
  await assertRejects(
    () => checkGceAccelerator(tpu("v5litepod-4", 8), metadata),
    /--accelerator-count 8, but a v5litepod-4 host has 4 chips/,
  );
  await assertRejects(
    () => checkGceAccelerator(undefined, metadata),
    /needs --accelerator-type tpu/,
  );
  await using bare = startGcpStandIn({});
  await assertRejects(
    () => checkGceAccelerator(tpu("v4-8", 4), new GceMetadata({ baseUrl: bare.url })),
    /this VM has no accelerator-type in its metadata/,
  );
  assertEquals([...md.violations, ...bare.violations], []);
});

Deno.test("worker serve: bad accelerator flags name the flag", async () => {
  const cases: [string[], RegExp][] = [
    [["--accelerator-type", "fpga"], /--accelerator-type must be tpu, gpu or cpu \(got "fpga"\)/],
    [
      ["--accelerator-type", "tpu"],
      /--accelerator-variant is required with --accelerator-type tpu/,
    ],
    [["--accelerator-type", "tpu", "--accelerator-variant", "v9-3"], /"v9-3" is not a TPU variant/],
    [["--accelerator-variant", "h100"], /need --accelerator-type/],
    [["--accelerator-check", "aws"], /--accelerator-check must be gce-metadata \(got "aws"\)/],
  ];
  for (const [flags, re] of cases) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", CLI, "worker", "serve", "-c", "http://127.0.0.1:1", ...flags],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    assertEquals(out.code, 2, flags.join(" "));
    assertMatch(new TextDecoder().decode(out.stderr), re);
  }
});
