/**
 * gcp with auth (#24): the worker token never sits in instance metadata. The autoscaler gives a
 * slice a one-time enrolment token; its startup script (the golden
 * tests/platform/golden/bootstrap_worker_gcp_enrol.txt) writes it to `$IRIS_HOME/enrol.token`,
 * and the worker trades it for the worker token at first start (EnrolWorker), keeps that in
 * `$IRIS_HOME/worker.token` (0600) and deletes the enrolment token, which then opens nothing.
 * Run for real with bash against a token-auth controller and a metadata-server stand-in.
 */
import { assert, assertEquals, assertRejects } from "../_helpers/assert.ts";
import { IrisClient } from "../../mod.ts";
import { startController } from "../../src/controller/server.ts";
import { controllerClient } from "../../src/rpc/client.ts";
import { hashToken, newToken } from "../../src/auth/mod.ts";
import { minutes, seconds, waitFor } from "../../src/time.ts";
import { startGcpStandIn } from "../fakes/gcp_standin.ts";
import { pumpLines } from "../_helpers/iris_process.ts";

const GOLDEN = new URL("../platform/golden/bootstrap_worker_gcp_enrol.txt", import.meta.url);
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const GOLDEN_CONTROLLER = "http://10.128.0.7:10000";
const GOLDEN_TOKEN = "iris-enrol-v1.GOLDEN-ENROLMENT-TOKEN";

Deno.test("a gcp worker enrols with its one-time token and never sees the worker token in metadata", async () => {
  const text = await Deno.readTextFile(GOLDEN);
  const lines = text.split("\n");
  const enrolLine = lines.find((l) => l.includes("enrol.token") && l.startsWith("if "));
  const serveLine = lines.find((l) => l.includes(`"\${IRIS_CMD[@]}" worker serve`));
  assert(enrolLine && serveLine, "the golden has the enrolment and worker serve lines");
  const serve = /^setsid nohup (".*") >> "\$IRIS_LOG" 2>&1 < \/dev\/null &$/.exec(serveLine)![1]!;

  const home = await Deno.makeTempDir({ prefix: "iris-gcp-enrol-" });
  const workerToken = newToken();
  const admin = newToken();
  await using metadata = startGcpStandIn({ attributes: { "accelerator-type": "v4-16" } });
  await using controller = startController({
    auth: {
      mode: "token",
      tokens: [{ sha256: hashToken(admin), user: "root", role: "admin" }],
      workerToken,
    },
  });
  const c = controller.controller;
  const enrolToken = c.accounts.enrolments.issue("iris-tpu_v4_16-1", 1, c.clock.now() + minutes(5));
  const script = [
    `IRIS_HOME=${home}`,
    `IRIS_CMD=(${JSON.stringify(Deno.execPath())} run -A ${JSON.stringify(CLI)})`,
    "IRIS_WORKER_INDEX=0",
    enrolLine.replace(GOLDEN_TOKEN, enrolToken),
    `exec ${serve.replace(GOLDEN_CONTROLLER, controller.url)}`,
  ].join("\n");
  assert(!script.includes(workerToken));
  const child = new Deno.Command("bash", {
    args: ["-c", script],
    env: { GCE_METADATA_HOST: metadata.host, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out: string[] = [];
  const pumps = Promise.all([pumpLines(child.stdout, out), pumpLines(child.stderr, out)]);
  try {
    const client = new IrisClient(controller.url, { token: admin });
    await waitFor(async () => (await client.workers()).length === 1, {
      timeout: seconds(60),
      what: `the enrolled worker to register (output: ${out.join("\n")})`,
    });
    assertEquals((await client.workers())[0]!.workerId, "iris-tpu_v4_16-1-w0");
    // The worker token is on disk, 0600; the enrolment token is gone and opens nothing now.
    assertEquals(await Deno.readTextFile(`${home}/worker.token`), workerToken);
    assertEquals((await Deno.stat(`${home}/worker.token`)).mode! & 0o777, 0o600);
    await assertRejects(() => Deno.stat(`${home}/enrol.token`), /No such file/);
    await assertRejects(
      () => controllerClient(controller.url, { token: enrolToken }).enrolWorker({ workerId: "x" }),
      /invalid token/,
    );
    assert(!out.join("\n").includes(workerToken), "the worker token is never logged");
  } finally {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
    await pumps;
    await Deno.remove(home, { recursive: true }).catch(() => {});
  }
});

Deno.test("an enrolment token serves only its slice's workers, once each, and only EnrolWorker", async () => {
  const workerToken = newToken();
  await using controller = startController({
    auth: { mode: "token", tokens: [], workerToken },
  });
  const c = controller.controller;
  const token = c.accounts.enrolments.issue("slice-a", 2, c.clock.now() + minutes(5));
  const rpc = controllerClient(controller.url, { token });
  await assertRejects(
    () => rpc.listJobs({}),
    /enrolment enrol:slice-a may not call ListJobs/,
  );
  await assertRejects(
    () => rpc.enrolWorker({ workerId: "slice-b-w0" }),
    /is not of slice slice-a/,
  );
  assertEquals((await rpc.enrolWorker({ workerId: "slice-a-w0" })).workerToken, workerToken);
  await assertRejects(() => rpc.enrolWorker({ workerId: "slice-a-w0" }), /enrolled already/);
  assertEquals((await rpc.enrolWorker({ workerId: "slice-a-w1" })).workerToken, workerToken);
  await assertRejects(() => rpc.enrolWorker({ workerId: "slice-a-w2" }), /invalid token/);
  // An expired token opens nothing.
  const old = c.accounts.enrolments.issue("slice-c", 1, c.clock.now() - 1);
  await assertRejects(
    () => controllerClient(controller.url, { token: old }).enrolWorker({ workerId: "slice-c-w0" }),
    /invalid token/,
  );
});
