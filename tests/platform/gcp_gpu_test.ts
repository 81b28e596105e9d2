/**
 * GCP GPU worker VMs (`provider.gce`, #19): create (a3-highgpu-8g, spot), list alongside TPU
 * slices, describe and delete, all through the command seam with golden transcripts; and the
 * config rules of a gce group (a GPU machine type; its GPU model and count).
 * @module
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { QuotaExhaustedError } from "../../src/errors.ts";
import { GcpPlatform } from "../../src/platform/gcp.ts";
import { gpuMachine } from "../../src/config/gce_machines.ts";
import { AcceleratorType } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { ScaleGroupConfigSchema } from "../../src/rpc/gen/iris/v1/config_pb.ts";
import { ConfigValidationError, parseConfigObject } from "../../src/config/mod.ts";
import { assertGolden, ScriptedRunner } from "../fakes/scripted_runner.ts";

const VM = ["gcloud", "compute", "instances"];
const TPU = ["gcloud", "compute", "tpus", "tpu-vm"];

const gpuGroup = () =>
  create(ScaleGroupConfigSchema, {
    provider: {
      kind: {
        case: "gce",
        value: { machineType: "a3-highgpu-8g", zone: "us-central1-a", bootDiskSizeGb: 200 },
      },
    },
    acceleratorType: AcceleratorType.GPU,
    acceleratorVariant: "H100",
    vmResources: {
      cpuMillicores: 208_000,
      memoryBytes: 1872 * 2 ** 30,
      accelerator: { type: AcceleratorType.GPU, variant: "H100", count: 8 },
    },
    preemptible: true,
  });

const vmJson = (name: string, status = "RUNNING") =>
  JSON.stringify([{
    name,
    zone: "https://www.googleapis.com/compute/v1/projects/proj/zones/us-central1-a",
    status,
    creationTimestamp: "2026-12-02T10:00:00.000-07:00",
    labels: {
      "iris-managed": "true",
      "iris-scale-group": "h100",
      "iris-slice-id": "iris-h100-1",
    },
    networkInterfaces: [{ networkIP: "10.128.0.21" }],
  }]);

const platform = (runner: ScriptedRunner) =>
  new GcpPlatform({
    runner,
    project: "proj",
    zones: ["us-central1-a", "us-central2-b"],
    labelPrefix: "iris",
    gpuVms: true,
  });

const request = (sliceId = "iris-h100-1") => ({
  sliceId,
  scaleGroup: "h100",
  config: gpuGroup(),
  vmCount: 1,
  controllerUrl: "http://10.128.0.7:10000",
  labels: { "iris-owner": "smoke" },
});

Deno.test("createSlice() for a gce group creates an a3-highgpu-8g spot VM with the worker bootstrap (golden)", async () => {
  const runner = new ScriptedRunner().on([...VM, "create"], { stdout: vmJson("iris-h100-1") });
  const slice = await platform(runner).createSlice(request());
  await assertGolden("gcp_gpu_vm_create", runner.transcript());
  assert.deepEqual(runner.unmatched, []);
  assert.equal(slice.state, "ready");
  assert.deepEqual(slice.vms.map((v) => [v.workerId, v.address, v.attributes["gce-instance"]]), [
    ["iris-h100-1-w0", "10.128.0.21", "iris-h100-1"],
  ]);
  const script = runner.calls[0]!.cmd.stdin ?? "";
  assert.match(script, /--accelerator-type gpu --accelerator-variant H100 --accelerator-count 8/);
  assert.match(script, /--attribute machine-type=a3-highgpu-8g/);
});

Deno.test("a GPU VM create that hits quota backs off and leaves nothing behind (golden)", async () => {
  const runner = new ScriptedRunner()
    .on([...VM, "create"], {
      code: 1,
      stderr:
        "ERROR: (gcloud.compute.instances.create) Could not fetch resource:\n - Quota 'NVIDIA_H100_GPUS' exceeded.  Limit: 0.0 in region us-central1.\n",
    })
    .on([...VM, "delete"], { code: 1, stderr: "ERROR: NOT_FOUND: was not found\n" });
  await assert.rejects(platform(runner).createSlice(request()), QuotaExhaustedError);
  await assertGolden("gcp_gpu_vm_create_quota", runner.transcript());
});

Deno.test("listSlices() lists GPU VMs (not the controller) with TPU slices; describe and delete go to instances (golden)", async () => {
  const runner = new ScriptedRunner()
    .on([...VM, "list"], { stdout: vmJson("iris-h100-1") })
    .on([...TPU, "list"], { stdout: "[]" })
    .on([...VM, "describe"], { stdout: vmJson("iris-h100-1", "STAGING") })
    .on([...VM, "delete"], {});
  const p = platform(runner);
  const slices = await p.listSlices({ scaleGroup: "h100" });
  assert.deepEqual(slices.map((s) => [s.sliceId, s.scaleGroup, s.zone, s.vms.length]), [
    ["iris-h100-1", "h100", "us-central1-a", 1],
  ]);
  assert.equal((await p.describeSlice("iris-h100-1")).state, "creating");
  await p.terminateSlice("iris-h100-1");
  await assertGolden("gcp_gpu_vm_list_describe_delete", runner.transcript());
  assert.deepEqual(runner.unmatched, []);
});

Deno.test("gce groups: a GPU machine type fixes the GPU model and count; mismatches name the field", () => {
  assert.deepEqual(gpuMachine("a3-highgpu-8g"), {
    variant: "H100",
    count: 8,
    gceAccelerator: "nvidia-h100-80gb",
  });
  assert.equal(gpuMachine("g2-standard-24")?.count, 2);
  assert.equal(gpuMachine("n2-standard-8"), undefined);
  const tree = (group: Record<string, unknown>) => ({
    platform: { gcp: { project_id: "proj", zones: ["us-central1-a"] } },
    controller: { bundle_prefix: "gs://b/bundles", gcp: { zone: "us-central1-a" } },
    scale_groups: {
      h100: {
        provider: { gce: { machine_type: "a3-highgpu-8g" } },
        accelerator_type: "gpu",
        max_slices: 4,
        vm_resources: { cpu: 208, memory: "1872GiB" },
        ...group,
      },
    },
  });
  const ok = parseConfigObject(tree({}));
  const g = ok.scaleGroups.h100!;
  assert.equal(g.acceleratorVariant, "H100");
  assert.equal(g.vmResources?.accelerator?.count, 8);
  assert.equal(g.zone, "us-central1-a");
  const problems = (group: Record<string, unknown>) => {
    try {
      parseConfigObject(tree(group));
    } catch (err) {
      assert.ok(err instanceof ConfigValidationError, String(err));
      return err.issues.map((i) => `${i.path}: ${i.message}`).join("\n");
    }
    return "";
  };
  assert.match(
    problems({ provider: { gce: { machine_type: "n2-standard-8" } } }),
    /scale_groups\.h100\.provider\.gce\.machine_type: must be a GCE machine type with GPUs for accelerator_type gpu \(e\.g\. a3-highgpu-8g.*got "n2-standard-8"\)/,
  );
  assert.match(
    problems({ accelerator_variant: "A100" }),
    /scale_groups\.h100\.accelerator_variant: must be H100, the GPU of a3-highgpu-8g \(got "A100"\)/,
  );
  assert.match(
    problems({ vm_resources: { cpu: 208, memory: "1872GiB", accelerators: 4 } }),
    /scale_groups\.h100\.vm_resources\.accelerators: must be 8, the GPUs of a3-highgpu-8g \(got 4\)/,
  );
  assert.match(
    problems({ provider: { gce: {} } }),
    /scale_groups\.h100\.provider\.gce\.machine_type: required/,
  );
  assert.match(
    problems({ provider: { gce: { machine_type: "a3-highgpu-8g", zone: "europe-west4-a" } } }),
    /provider\.gce\.zone: "europe-west4-a" is not listed in platform\.gcp\.zones/,
  );
});
