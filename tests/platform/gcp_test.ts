/**
 * GcpPlatform and GcpControllerLifecycle over a ScriptedRunner: golden gcloud transcripts for
 * slice create/list/describe/delete, quota errors, the controller VM lifecycle and tunnels, plus
 * the Platform contract suite against a stateful fake gcloud.
 * @module
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { PlatformError, QuotaExhaustedError, ResourceNotFoundError } from "../../src/errors.ts";
import { GcpControllerLifecycle, GcpPlatform } from "../../src/platform/gcp.ts";
import { AcceleratorType } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { ScaleGroupConfigSchema } from "../../src/rpc/gen/iris/v1/config_pb.ts";
import { assertGolden, ScriptedRunner } from "../fakes/scripted_runner.ts";
import { fakeGcloudRunner, TPU_NODE_JSON } from "./_fake_gcloud.ts";
import { runPlatformContract } from "./platform_contract.ts";

const ZONES = ["us-central2-b", "europe-west4-a"];
const TPU = ["gcloud", "compute", "tpus", "tpu-vm"];
const INSTANCES = ["gcloud", "compute", "instances"];

function tpuGroup(zone = "us-central2-b") {
  return create(ScaleGroupConfigSchema, {
    provider: { kind: { case: "tpu", value: { zone, runtimeVersion: "tpu-ubuntu2204-base" } } },
    acceleratorType: AcceleratorType.TPU,
    acceleratorVariant: "v4-16",
    attributes: { region: "us" },
    preemptible: true,
  });
}

function platform(runner: ScriptedRunner): GcpPlatform {
  return new GcpPlatform({ runner, project: "proj", zones: ZONES, labelPrefix: "iris" });
}

const request = (sliceId = "iris-tpu_v4_16-1", zone?: string) => ({
  sliceId,
  scaleGroup: "tpu_v4_16",
  config: tpuGroup(zone),
  vmCount: 2,
  controllerUrl: "http://10.128.0.7:10000",
  labels: { "iris-owner": "smoke" },
});

runPlatformContract({
  name: "gcp",
  create: () => {
    const { runner } = fakeGcloudRunner();
    return Promise.resolve({ platform: platform(runner), groupConfig: () => tpuGroup() });
  },
});

Deno.test("createSlice() creates a labelled TPU with the bootstrap startup script (golden)", async () => {
  const runner = new ScriptedRunner().on([...TPU, "create"], {
    stdout: TPU_NODE_JSON.replace("iris-tpu-v4-8-1", "iris-tpu-v4-16-1"),
  });
  const slice = await platform(runner).createSlice(request());
  await assertGolden("gcp_slice_create", runner.transcript());
  assert.deepEqual(runner.unmatched, []);
  assert.equal(slice.sliceId, "iris-tpu_v4_16-1");
  assert.equal(slice.state, "ready");
  assert.deepEqual(slice.vms.map((v) => [v.vmId, v.workerId, v.address]), [
    ["iris-tpu-v4-16-1-w0", "iris-tpu_v4_16-1-w0", "10.0.0.2"],
    ["iris-tpu-v4-16-1-w1", "iris-tpu_v4_16-1-w1", "10.0.0.3"],
  ]);
  assert.deepEqual(slice.vms[1]!.attributes, {
    "tpu-name": "iris-tpu-v4-16-1",
    "tpu-worker-id": 1,
    "tpu-topology": "v4-16",
    zone: "us-central2-b",
  });
  const script = runner.calls[0]!.cmd.stdin ?? "";
  assert.match(
    script,
    /worker serve --controller http:\/\/10.128.0.7:10000 --worker-id iris-tpu_v4_16-1-w"\$IRIS_WORKER_INDEX"/,
  );
  assert.match(script, /--attribute region=us .*--attribute tpu-worker-id="\$IRIS_WORKER_INDEX"/);
  // Constraints see preemptible from the group; its own region attribute wins over the zone's.
  assert.match(script, /--attribute preemptible=true --attribute region=us /);
});

Deno.test("createSlice() surfaces QuotaExhaustedError and deletes any half-created node (golden)", async () => {
  const runner = new ScriptedRunner()
    .on([...TPU, "create"], {
      code: 1,
      stderr:
        "ERROR: (gcloud.compute.tpus.tpu-vm.create) RESOURCE_EXHAUSTED: There is no more capacity in the zone\n",
    })
    .on([...TPU, "delete"], { code: 1, stderr: "ERROR: NOT_FOUND: Resource was not found\n" });
  await assert.rejects(platform(runner).createSlice(request()), (e) => {
    return e instanceof QuotaExhaustedError && /zone us-central2-b/.test(e.message) && e.retryable;
  });
  await assertGolden("gcp_slice_create_quota", runner.transcript());
});

Deno.test("createSlice() refuses a zone outside platform.gcp.zones without calling gcloud", async () => {
  const runner = new ScriptedRunner();
  await assert.rejects(
    platform(runner).createSlice(request("s", "asia-east1-c")),
    /not in platform.gcp.zones/,
  );
  assert.equal(runner.calls.length, 0);
});

Deno.test("createSlice() refuses a scale group without a tpu provider", async () => {
  const runner = new ScriptedRunner();
  const req = { ...request(), config: create(ScaleGroupConfigSchema, { zone: "us-central2-b" }) };
  await assert.rejects(platform(runner).createSlice(req), PlatformError);
  assert.equal(runner.calls.length, 0);
});

Deno.test("listSlices() lists every configured zone by label (golden)", async () => {
  const runner = new ScriptedRunner()
    .on([...TPU, "list", "--zone=us-central2-b"], { stdout: `[${TPU_NODE_JSON}]` })
    .on([...TPU, "list", "--zone=europe-west4-a"], { stdout: "[]" });
  const slices = await platform(runner).listSlices({ scaleGroup: "tpu_v4_16" });
  await assertGolden("gcp_slice_list", runner.transcript());
  assert.deepEqual(slices.map((s) => [s.sliceId, s.scaleGroup, s.zone, s.vms.length]), [
    ["iris-tpu_v4_16-1", "tpu_v4_16", "us-central2-b", 2],
  ]);
});

Deno.test("describeSlice() probes the zones of an unknown slice (golden)", async () => {
  const notFound = { code: 1, stderr: "ERROR: NOT_FOUND: Resource 'x' was not found\n" };
  const runner = new ScriptedRunner()
    .on([...TPU, "describe", "iris-tpu-v4-8-1", "--zone=us-central2-b"], notFound)
    .on([...TPU, "describe", "iris-tpu-v4-8-1", "--zone=europe-west4-a"], {
      stdout: TPU_NODE_JSON.replace("us-central2-b", "europe-west4-a"),
    })
    .on([...TPU, "describe"], notFound);
  const p = platform(runner);
  const slice = await p.describeSlice("iris-tpu-v4-8-1");
  assert.equal(slice.zone, "europe-west4-a");
  await assert.rejects(p.describeSlice("iris-gone-1"), ResourceNotFoundError);
  await assertGolden("gcp_slice_describe", runner.transcript());
});

Deno.test("terminateSlice() deletes asynchronously and treats not-found as done (golden)", async () => {
  const runner = new ScriptedRunner()
    .on([...TPU, "create"], { stdout: TPU_NODE_JSON })
    .on([...TPU, "delete"], {}, 1)
    .on([...TPU, "delete"], { code: 1, stderr: "ERROR: NOT_FOUND: was not found\n" })
    .on([...TPU, "describe"], { code: 1, stderr: "ERROR: NOT_FOUND: was not found\n" });
  const p = platform(runner);
  await p.createSlice(request("iris-tpu-v4-8-1"));
  await p.terminateSlice("iris-tpu-v4-8-1");
  await p.terminateSlice("iris-tpu-v4-8-1");
  await assertGolden("gcp_slice_delete", runner.transcript());
});

Deno.test("startupLogs() reads the startup-script journal over tpu-vm ssh", async () => {
  const runner = new ScriptedRunner()
    .on([...TPU, "create"], { stdout: TPU_NODE_JSON })
    .on([...TPU, "ssh"], { stdout: "startup-script: iris worker started\n" });
  const p = platform(runner);
  await p.createSlice(request("iris-tpu-v4-8-1"));
  assert.equal(
    await p.startupLogs("iris-tpu-v4-8-1", "iris-tpu-v4-8-1-w1"),
    "startup-script: iris worker started\n",
  );
  const ssh = runner.calls[1]!.cmd.argv;
  assert.ok(
    ssh.includes("--worker=1") &&
      ssh.some((a) => a.includes("journalctl -u google-startup-scripts")),
  );
});

const CONTROLLER_VM = {
  name: "iris-controller",
  zone: "https://www.googleapis.com/compute/v1/projects/proj/zones/us-central1-a",
  status: "RUNNING",
  labels: { "iris-managed": "true", "iris-controller": "true" },
  networkInterfaces: [{ networkIP: "10.128.0.7" }],
};

function controller(runner: ScriptedRunner, healthy = () => true) {
  const checked: string[] = [];
  const lifecycle = new GcpControllerLifecycle({
    runner,
    project: "proj",
    zone: "us-central1-a",
    labelPrefix: "iris",
    clusterConfig: "name: demo\n",
    checkHealth: (url) => {
      checked.push(url);
      return Promise.resolve(healthy());
    },
  });
  return { lifecycle, checked };
}

Deno.test("controller start() creates the VM when none exists and waits for health (golden)", async () => {
  const runner = new ScriptedRunner()
    .on([...INSTANCES, "list"], { stdout: "[]" })
    .on([...INSTANCES, "create"], { stdout: JSON.stringify([CONTROLLER_VM]) });
  const { lifecycle, checked } = controller(runner);
  assert.equal(await lifecycle.start(), "http://10.128.0.7:10000");
  assert.deepEqual(checked, ["http://10.128.0.7:10000"]);
  await assertGolden("gcp_controller_create", runner.transcript());
  assert.match(
    runner.calls[1]!.cmd.stdin ?? "",
    /controller serve --port 10000 --host 0\.0\.0\.0 --advertise-url http:\/\/"\$\(hostname -I .*\)":10000 --config/,
  );
});

Deno.test("controller start() reuses a running VM found by label (golden)", async () => {
  const runner = new ScriptedRunner().on([...INSTANCES, "list"], {
    stdout: JSON.stringify([CONTROLLER_VM]),
  });
  const { lifecycle } = controller(runner);
  assert.equal(await lifecycle.start(), "http://10.128.0.7:10000");
  assert.equal(await lifecycle.discover(), "http://10.128.0.7:10000");
  await assertGolden("gcp_controller_reuse", runner.transcript());
});

Deno.test("controller start() starts a stopped VM instead of creating one", async () => {
  const runner = new ScriptedRunner()
    .on([...INSTANCES, "list"], {
      stdout: JSON.stringify([{ ...CONTROLLER_VM, status: "TERMINATED" }]),
    })
    .on([...INSTANCES, "start"], {})
    .on([...INSTANCES, "describe"], { stdout: JSON.stringify(CONTROLLER_VM) });
  assert.equal(await controller(runner).lifecycle.start(), "http://10.128.0.7:10000");
  assert.deepEqual(runner.calls.map((c) => c.cmd.argv[3]), ["list", "start", "describe"]);
});

Deno.test("controller stop() deletes every labelled VM (golden)", async () => {
  const runner = new ScriptedRunner()
    .on([...INSTANCES, "list"], { stdout: JSON.stringify([CONTROLLER_VM]) })
    .on([...INSTANCES, "delete"], {});
  await controller(runner).lifecycle.stop();
  await assertGolden("gcp_controller_stop", runner.transcript());
});

Deno.test("controller status() reports an unhealthy controller and discover() nothing when absent", async () => {
  const running = new ScriptedRunner().on([...INSTANCES, "list"], {
    stdout: JSON.stringify([CONTROLLER_VM]),
  });
  const status = await new GcpControllerLifecycle({
    runner: running,
    project: "proj",
    zone: "us-central1-a",
    labelPrefix: "iris",
    checkHealth: () => Promise.resolve(false),
    timeouts: { call: 50 as never },
  }).status();
  assert.deepEqual({ ...status }, {
    running: true,
    url: "http://10.128.0.7:10000",
    healthy: false,
  });
  const none = new ScriptedRunner().on([...INSTANCES, "list"], { stdout: "[]" });
  assert.equal(await controller(none).lifecycle.discover(), undefined);
  assert.equal((await controller(none).lifecycle.status()).running, false);
});

Deno.test("controller reload() re-runs the startup script over ssh", async () => {
  const runner = new ScriptedRunner()
    .on([...INSTANCES, "list"], { stdout: JSON.stringify([CONTROLLER_VM]) })
    .on(["gcloud", "compute", "ssh"], {});
  assert.equal(await controller(runner).lifecycle.reload(), "http://10.128.0.7:10000");
  assert.ok(runner.calls[1]!.line.includes("google_metadata_script_runner startup"));
});

Deno.test("tunnel() runs gcloud compute ssh -L … -N and close() kills it (golden)", async () => {
  const runner = new ScriptedRunner()
    .on([...INSTANCES, "list"], { stdout: JSON.stringify([CONTROLLER_VM]) })
    .on(["gcloud", "compute", "ssh"], { hang: true });
  const { lifecycle, checked } = controller(runner);
  const tunnel = await lifecycle.tunnel(18080);
  assert.equal(tunnel.url, "http://localhost:18080");
  assert.deepEqual(checked, ["http://localhost:18080"]);
  assert.equal(runner.activeStreams, 1);
  await tunnel.close();
  assert.equal(runner.activeStreams, 0);
  await tunnel.close();
  await assertGolden("gcp_tunnel", runner.transcript());
});

Deno.test("logTargets() follows each worker's log over tpu-vm ssh", async () => {
  const runner = new ScriptedRunner()
    .on([...TPU, "list", "--zone=us-central2-b"], { stdout: `[${TPU_NODE_JSON}]` })
    .on([...TPU, "list"], { stdout: "[]" });
  const targets = await platform(runner).logTargets();
  assert.deepEqual(targets.map((t) => t.name), ["iris-tpu-v4-8-1-w0", "iris-tpu-v4-8-1-w1"]);
  assert.ok(targets[1]!.command.argv.includes("--worker=1"));
  assert.ok(
    targets[1]!.command.argv.includes(
      "--command=bash -c 'sudo tail -n +1 -F /var/lib/iris/worker.log'",
    ),
  );
});
