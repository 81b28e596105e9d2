/** The example configs load, validate and get the expected mode, shape and defaults. */
import assert from "node:assert/strict";
import { toBinary } from "@bufbuild/protobuf";
import { ConfigError } from "../../src/errors.ts";
import {
  configMode,
  formatConfigSummary,
  groupVmsPerSlice,
  loadConfig,
  type MachineInfo,
} from "../../src/config/mod.ts";
import { ClusterConfigSchema } from "../../src/rpc/gen/iris/v1/config_pb.ts";
import { AcceleratorType } from "../../src/rpc/gen/iris/v1/types_pb.ts";

const GIB = 2 ** 30;
const machine: MachineInfo = { cpuCores: 16, memoryBytes: 64 * GIB };
const example = (name: string) => new URL(`../../examples/${name}.yaml`, import.meta.url).pathname;

Deno.test("examples/local.yaml loads as a local cluster with a simulated v5e-16 and cpu groups in two regions", async () => {
  const config = await loadConfig(example("local"), { machine });
  assert.equal(configMode(config), "local");
  assert.equal(config.name, "local");
  assert.equal(config.controller?.bundlePrefix, "");
  assert.deepEqual(Object.keys(config.scaleGroups), ["tpu_v5e_16", "cpu", "cpu_eu"]);
  const tpu = config.scaleGroups.tpu_v5e_16!;
  assert.equal(tpu.provider?.kind.case, "local");
  assert.equal(tpu.acceleratorType, AcceleratorType.TPU);
  assert.equal(tpu.acceleratorVariant, "v5litepod-16");
  assert.equal(groupVmsPerSlice(tpu), 4);
  assert.equal(tpu.vmResources?.accelerator?.count, 4);
  assert.equal(tpu.region, "us-central2");
  assert.equal(tpu.minSlices, 0);
  assert.equal(tpu.maxSlices, 4);
  assert.equal(tpu.scaleDownDelayMs, 10_000);
  const cpu = config.scaleGroups.cpu!;
  assert.equal(cpu.acceleratorType, AcceleratorType.CPU);
  assert.equal(cpu.region, "us-central1");
  assert.equal(cpu.vmResources?.cpuMillicores, 8000);
  assert.equal(cpu.vmResources?.memoryBytes, 8 * GIB);
  const eu = config.scaleGroups.cpu_eu!;
  assert.equal(eu.acceleratorType, AcceleratorType.CPU);
  assert.deepEqual([eu.region, eu.zone], ["europe-west4", "europe-west4-b"]);
  assert(eu.priority > cpu.priority, "unconstrained CPU work prefers the cpu group");
  toBinary(ClusterConfigSchema, config);
});

Deno.test("examples/gcp.yaml loads as a gcp cluster with a v5litepod-16 group in europe-west4-b", async () => {
  const config = await loadConfig(example("gcp"), { machine });
  assert.equal(configMode(config), "gcp");
  const [name, group] = Object.entries(config.scaleGroups)[0]!;
  assert.equal(name, "tpu-v5e-16");
  assert.equal(group.acceleratorVariant, "v5litepod-16");
  assert.equal(group.zone, "europe-west4-b");
  assert.equal(group.region, "europe-west4");
  assert.equal(group.provider?.kind.case, "tpu");
  if (group.provider?.kind.case !== "tpu") throw new Error("unreachable");
  assert.equal(group.provider.kind.value.zone, "europe-west4-b");
  assert.equal(group.provider.kind.value.projectId, "my-gcp-project");
  assert.equal(group.vmResources?.accelerator?.count, 4);
  assert.equal(config.controller?.kind.case, "gcp");
  toBinary(ClusterConfigSchema, config);
});

Deno.test("examples/manual.yaml loads as a manual cluster with two ssh hosts", async () => {
  const config = await loadConfig(example("manual"), { machine });
  assert.equal(configMode(config), "manual");
  const group = config.scaleGroups["cpu-hosts"]!;
  if (group.provider?.kind.case !== "manual") throw new Error("expected a manual provider");
  const hosts = group.provider.kind.value.hosts;
  assert.deepEqual(hosts.map((h) => h.host), ["10.200.0.2", "10.200.0.3"]);
  assert.deepEqual(hosts.map((h) => h.user), ["iris", "admin"]);
  assert.deepEqual(hosts.map((h) => h.port), [22, 22]);
  assert.equal(group.vmResources?.memoryBytes, 128 * GIB);
  toBinary(ClusterConfigSchema, config);
});

Deno.test("formatConfigSummary prints a header and one line per group", async () => {
  const config = await loadConfig(example("local"), { machine });
  const lines = formatConfigSummary(config).split("\n");
  assert.equal(lines.length, 4);
  assert.match(lines[0]!, /^cluster local: local controller 127\.0\.0\.1:auto/);
  assert.match(
    lines[1]!,
    /tpu_v5e_16\s+local\s+tpu v5litepod-16\s+slices 0\.\.4\s+4 vms\/slice\s+cpu 8 mem 8GiB tpu ×4/,
  );
  assert.match(lines[2]!, /cpu\s+local\s+cpu\s+slices 0\.\.4\s+1 vm\/slice/);
  assert.match(lines[2]!, /region us-central1$/);
  assert.match(
    lines[3]!,
    /cpu_eu\s+local\s+cpu\s+slices 0\.\.2\s+1 vm\/slice.*zone europe-west4-b$/,
  );
});

Deno.test("loadConfig reports a missing file as a ConfigError at the file path", async () => {
  await assert.rejects(loadConfig("/nonexistent/iris.yaml"), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.path, "/nonexistent/iris.yaml");
    assert.match(err.message, /file not found/);
    return true;
  });
});
