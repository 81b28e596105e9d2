/**
 * Job outputs copied to an outputs prefix when an attempt ends (#18): `file:///dir` for real
 * through a worker, `gs://` through the command seam (golden transcript), failures as an [iris]
 * line that leaves the outcome alone, bad prefixes refused naming the field; and through a local
 * cluster whose config sets `defaults.outputs.prefix`.
 * @module
 */
import assert from "node:assert/strict";
import { TaskState } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { InvalidArgumentError } from "../../src/errors.ts";
import {
  gcloudRsyncArgv,
  outputsDestination,
  uploadOutputs,
} from "../../src/worker/outputs_upload.ts";
import { startWorker } from "../../src/worker/mod.ts";
import { assertGolden, ScriptedRunner } from "../fakes/scripted_runner.ts";
import { commandTask, startHarness } from "./harness.ts";
import { loadConfig } from "../../src/config/mod.ts";
import { LocalController } from "../../src/cluster/local_controller.ts";
import { IrisClient, JobState } from "../../mod.ts";
import { seconds } from "../../src/time.ts";
import { workerSettingsFlags, workerSettingsFromConfig } from "../../src/cluster/platforms.ts";
import { workerBootstrapScript } from "../../src/platform/bootstrap.ts";

const WRITE = [
  "sh",
  "-c",
  'mkdir -p "$IRIS_OUTPUT_DIR/ckpt" && echo step-1 > "$IRIS_OUTPUT_DIR/ckpt/step-1.json" && ' +
  'echo "url=$IRIS_OUTPUT_URL"',
];

const systemLines = (lines: { stream: string; text: string }[]) =>
  lines.filter((l) => l.stream === "system").map((l) => l.text);

Deno.test("outputsDestination() is <prefix>/<job id, URL-encoded>; other schemes are refused by field", () => {
  assert.equal(outputsDestination("gs://b/out/", "/alice/train"), "gs://b/out/%2Falice%2Ftrain");
  assert.equal(outputsDestination("file:///srv/out", "/a/b"), "file:///srv/out/%2Fa%2Fb");
  assert.throws(
    () => outputsDestination("s3://b/x", "/a", "outputsPrefix"),
    (e: Error) =>
      e instanceof InvalidArgumentError && /outputsPrefix: must be "gs:\/\//.test(e.message),
  );
  assert.deepEqual(gcloudRsyncArgv("/w/out", "gs://b/x"), [
    "gcloud",
    "storage",
    "rsync",
    "--recursive",
    "/w/out",
    "gs://b/x",
  ]);
});

Deno.test("a file:// prefix: the attempt's outputs are copied there before its outcome is reported", async () => {
  const dest = await Deno.makeTempDir({ prefix: "iris-outputs-" });
  try {
    await using h = await startHarness({ outputsPrefix: `file://${dest}/runs` });
    await h.client.runTask(commandTask("/u/train/0", WRITE));
    const done = await h.fake.waitForState("/u/train/0", TaskState.SUCCEEDED);
    assert.equal(done.exitCode, 0);
    const out = `${dest}/runs/${encodeURIComponent("/u/train")}`;
    // Already there when SUCCEEDED was reported.
    assert.equal(await Deno.readTextFile(`${out}/ckpt/step-1.json`), "step-1\n");
    const logs = h.fake.logsOf("/u/train/0");
    assert.ok(logs.some((l) => l.text === `url=file://${out}`), JSON.stringify(logs));
    assert.ok(
      systemLines(logs).some((t) => t === `outputs copied to file://${out} (1 files)`),
      systemLines(logs).join("\n"),
    );
  } finally {
    await Deno.remove(dest, { recursive: true });
  }
});

Deno.test("a gs:// prefix runs gcloud storage rsync through the command seam; a failed copy is an [iris] line", async () => {
  const runner = new ScriptedRunner()
    .on(["gcloud", "storage", "rsync"], {}, 1)
    .on(["gcloud", "storage", "rsync"], {
      code: 1,
      stderr:
        "ERROR: (gcloud.storage.rsync) HTTPError 403: caller does not have storage.objects.create access",
    });
  await using h = await startHarness({
    outputsPrefix: "gs://my-bucket/iris-outputs",
    outputsRunner: runner,
  });
  await h.client.runTask(commandTask("/u/train/0", WRITE));
  await h.fake.waitForState("/u/train/0", TaskState.SUCCEEDED);
  const ok = systemLines(h.fake.logsOf("/u/train/0"));
  assert.ok(
    ok.includes("outputs copied to gs://my-bucket/iris-outputs/%2Fu%2Ftrain"),
    ok.join("\n"),
  );
  await h.client.runTask(commandTask("/u/denied/0", WRITE));
  const denied = await h.fake.waitForState("/u/denied/0", TaskState.SUCCEEDED);
  assert.equal(denied.exitCode, 0, "the outcome is the task's");
  const lines = systemLines(h.fake.logsOf("/u/denied/0"));
  assert.ok(
    lines.some((t) =>
      t.startsWith(
        "outputs not copied: copying outputs to gs://my-bucket/iris-outputs/%2Fu%2Fdenied failed " +
          "(gcloud storage rsync exit 1): ERROR: (gcloud.storage.rsync) HTTPError 403",
      )
    ),
    lines.join("\n"),
  );
  const root = h.worker.rootDir;
  await assertGolden("worker_outputs_gcs", runner.transcript().replaceAll(root, "<worker root>"));
  assert.deepEqual(runner.unmatched, []);
});

Deno.test("uploadOutputs() reports a gcloud timeout naming the destination", async () => {
  const runner = new ScriptedRunner().on(["gcloud"], { hang: true });
  await assert.rejects(
    uploadOutputs("/nonexistent", "gs://b/p", "/a/j", { runner, timeout: seconds(0.2) }),
    /copying outputs to gs:\/\/b\/p\/%2Fa%2Fj timed out after/,
  );
});

Deno.test("a worker with a bad outputs prefix is refused at start, naming outputsPrefix", async () => {
  await assert.rejects(
    startWorker({ controllerUrl: "http://127.0.0.1:9", outputsPrefix: "/tmp/out" }),
    /outputsPrefix: must be "gs:\/\/bucket\/path" or "file:\/\/\/absolute\/path"/,
  );
});

Deno.test("defaults.outputs.prefix in a local cluster's config reaches its workers", async () => {
  const dest = await Deno.makeTempDir({ prefix: "iris-outputs-cluster-" });
  const config = await loadConfig(new URL("../../examples/local.yaml", import.meta.url).pathname);
  config.defaults!.outputs!.prefix = `file://${dest}`;
  const controller = new LocalController(config);
  try {
    const client = new IrisClient(await controller.start());
    const job = await client.submit({ name: "ckpt", command: WRITE, cpu: 0.25 });
    assert.equal((await client.wait(job, { timeout: seconds(90) })).state, JobState.SUCCEEDED);
    const file = `${dest}/${encodeURIComponent(job)}/ckpt/step-1.json`;
    assert.equal(await Deno.readTextFile(file), "step-1\n");
  } finally {
    await controller.stop();
    await Deno.remove(dest, { recursive: true });
  }
});

Deno.test("examples/gcp.yaml's defaults.outputs and defaults.python become worker serve flags in the VM bootstrap", async () => {
  const config = await loadConfig(new URL("../../examples/gcp.yaml", import.meta.url).pathname);
  const flags = workerSettingsFlags(workerSettingsFromConfig(config));
  assert.deepEqual(flags, [
    "--output-retention",
    `${72 * 3600 * 1000}ms`,
    "--outputs-prefix",
    "gs://my-iris-bucket/iris-outputs",
    "--python-installer",
    "auto",
    "--python-cache-size",
    String(50 * 2 ** 30),
    "--python-cache-max-age",
    `${72 * 3600 * 1000}ms`,
  ]);
  const script = workerBootstrapScript({
    controllerUrl: "http://10.0.0.1:10000",
    sliceId: "s",
    scaleGroup: "g",
    workerIndex: 0,
    runtime: { workerArgs: flags },
  });
  assert.match(
    script,
    /--outputs-prefix gs:\/\/my-iris-bucket\/iris-outputs --python-installer auto/,
  );
});
