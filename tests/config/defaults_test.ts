/** Defaults are applied after validation, by mode; explicit values (even 0) are kept. */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import {
  applyDefaults,
  configMode,
  DEFAULTS,
  localVmShare,
  parseConfig,
  parseConfigObject,
} from "../../src/config/mod.ts";
import { ConfigError } from "../../src/errors.ts";
import { ClusterConfigSchema } from "../../src/rpc/gen/iris/v1/config_pb.ts";
import { AcceleratorType } from "../../src/rpc/gen/iris/v1/types_pb.ts";

const GIB = 2 ** 30;
const machine = { cpuCores: 16, memoryBytes: 64 * GIB };

const minimalLocal = `
controller: {local: {}}
scale_groups:
  cpu: {provider: {local: }, max_slices: 2}
`;

Deno.test("local defaults: fast autoscaler, heartbeat, label prefix, machine share", () => {
  const config = parseConfig(minimalLocal, "dev.yaml", { machine });
  assert.equal(config.name, "dev");
  assert.equal(config.platform?.labelPrefix, "iris");
  assert.equal(config.controller?.heartbeatIntervalMs, 1000);
  assert.equal(config.controller?.heartbeatFailureThreshold, 3);
  assert.equal(
    config.controller?.kind.case === "local" && config.controller.kind.value.host,
    "127.0.0.1",
  );
  const a = config.defaults?.autoscaler;
  assert.equal(a?.evaluationIntervalMs, 1000);
  assert.equal(a?.scaleUpCooldownMs, 1000);
  assert.equal(a?.scaleDownDelayMs, 30_000);
  assert.equal(a?.backoffInitialMs, 5000);
  assert.equal(a?.backoffMaxMs, 300_000);
  const cpu = config.scaleGroups.cpu!;
  assert.equal(cpu.acceleratorType, AcceleratorType.CPU);
  assert.equal(cpu.priority, DEFAULTS.priority);
  assert.equal(cpu.minSlices, 0);
  assert.equal(cpu.scaleUpCooldownMs, 1000);
  assert.equal(cpu.scaleDownDelayMs, 30_000);
  assert.equal(cpu.vmResources?.cpuMillicores, 8000);
  assert.equal(cpu.vmResources?.memoryBytes, 8 * GIB);
  assert.equal(cpu.vmResources?.accelerator?.count, 0);
});

Deno.test("local vm share: half the cores (at least 1), min(8 GiB, a quarter of memory)", () => {
  assert.deepEqual(localVmShare({ cpuCores: 16, memoryBytes: 64 * GIB }), {
    cpuMillicores: 8000,
    memoryBytes: 8 * GIB,
  });
  assert.deepEqual(localVmShare({ cpuCores: 1, memoryBytes: 2 * GIB }), {
    cpuMillicores: 1000,
    memoryBytes: GIB / 2,
  });
  assert.deepEqual(localVmShare({ cpuCores: 3, memoryBytes: 16 * GIB }), {
    cpuMillicores: 1000,
    memoryBytes: 4 * GIB,
  });
});

Deno.test("local vm_resources: given values win, the rest comes from the machine", () => {
  const config = parseConfig(
    minimalLocal.replace("max_slices: 2}", "max_slices: 2, vm_resources: {cpu: 0.5}}"),
    undefined,
    { machine },
  );
  assert.equal(config.scaleGroups.cpu!.vmResources?.cpuMillicores, 500);
  assert.equal(config.scaleGroups.cpu!.vmResources?.memoryBytes, 8 * GIB);
  assert.equal(config.name, "iris");
});

Deno.test("gcp/manual defaults: slower autoscaler, controller port and machine type, ssh", () => {
  const gcp = parseConfigObject(
    {
      platform: { gcp: { project_id: "p", zones: ["europe-west4-b"] } },
      controller: { bundle_prefix: "gs://b/x", gcp: {} },
      scale_groups: {
        t: {
          provider: { tpu: {} },
          accelerator_type: "tpu",
          accelerator_variant: "v5e-16",
          max_slices: 1,
          vm_resources: { cpu: 112, memory: "192GB" },
        },
      },
    },
    undefined,
    { machine },
  );
  assert.equal(configMode(gcp), "gcp");
  assert.equal(gcp.defaults?.autoscaler?.evaluationIntervalMs, 10_000);
  assert.equal(gcp.defaults?.autoscaler?.scaleUpCooldownMs, 60_000);
  assert.equal(gcp.defaults?.autoscaler?.scaleDownDelayMs, 300_000);
  const controller = gcp.controller?.kind;
  assert.ok(controller?.case === "gcp");
  assert.equal(controller.value.zone, "europe-west4-b");
  assert.equal(controller.value.machineType, "n2-standard-4");
  assert.equal(controller.value.port, 10_000);
  assert.equal(controller.value.bootDiskSizeGb, 50);
  const t = gcp.scaleGroups.t!;
  assert.equal(t.acceleratorVariant, "v5litepod-16", "alias normalized");
  assert.equal(t.vmResources?.accelerator?.count, 4);
  assert.equal(t.vmResources?.accelerator?.type, AcceleratorType.TPU);
  assert.equal(t.zone, "europe-west4-b", "the only listed zone");
  assert.equal(t.region, "europe-west4");
  assert.ok(t.provider?.kind.case === "tpu");
  assert.equal(t.provider.kind.value.runtimeVersion, "v2-alpha-tpuv5-lite");
  assert.equal(t.provider.kind.value.projectId, "p");

  const manual = parseConfigObject(
    {
      platform: { ssh: { user: "ops", key_file: "~/.ssh/k" } },
      controller: { bundle_prefix: "file:///shared/bundles", manual: { host: "10.0.0.1" } },
      scale_groups: {
        m: {
          provider: { manual: { hosts: ["10.0.0.2", "10.0.0.3", "10.0.0.4"] } },
          vm_resources: { cpu: 8, memory: "16GiB" },
        },
      },
    },
    undefined,
    { machine },
  );
  assert.equal(configMode(manual), "manual");
  assert.equal(manual.platform?.ssh?.port, 22);
  assert.equal(manual.platform?.ssh?.connectTimeoutMs, 30_000);
  const m = manual.scaleGroups.m!;
  assert.equal(m.maxSlices, 3, "one slice per host");
  assert.ok(m.provider?.kind.case === "manual");
  assert.deepEqual(m.provider.kind.value.hosts.map((h) => [h.user, h.keyFile, h.port]), [
    ["ops", "~/.ssh/k", 22],
    ["ops", "~/.ssh/k", 22],
    ["ops", "~/.ssh/k", 22],
  ]);
  assert.ok(manual.controller?.kind.case === "manual");
  assert.equal(manual.controller.kind.value.port, 10_000);
});

Deno.test("group overrides and explicit zeros are kept; defaults.autoscaler feeds the groups", () => {
  const config = parseConfig(
    `
controller: {local: {}}
defaults: {autoscaler: {scale_up_cooldown: 2s, scale_down_delay: 1m}}
scale_groups:
  a: {provider: {local: {}}, max_slices: 1, scale_up_cooldown: 0, priority: 0}
  b: {provider: {local: {}}, max_slices: 1, scale_down_delay: 250ms}
`,
    undefined,
    { machine },
  );
  const { a, b } = config.scaleGroups;
  assert.equal(a?.scaleUpCooldownMs, 0);
  assert.equal(a?.scaleDownDelayMs, 60_000);
  assert.equal(a?.priority, 0);
  assert.equal(b?.scaleUpCooldownMs, 2000);
  assert.equal(b?.scaleDownDelayMs, 250);
  assert.equal(b?.priority, 100);
});

Deno.test("gpu groups default to one device per VM; a given count is kept", () => {
  const config = parseConfig(
    `
controller: {local: {}}
scale_groups:
  g1: {provider: {local: {}}, accelerator_type: gpu, accelerator_variant: H100, max_slices: 1}
  g8: {provider: {local: {}}, accelerator_type: gpu, max_slices: 1, vm_resources: {accelerators: 8}}
`,
    undefined,
    { machine },
  );
  assert.equal(config.scaleGroups.g1?.vmResources?.accelerator?.count, 1);
  assert.equal(config.scaleGroups.g1?.vmResources?.accelerator?.variant, "H100");
  assert.equal(config.scaleGroups.g8?.vmResources?.accelerator?.count, 8);
});

Deno.test("applyDefaults on a config built in code treats zeros as unset", () => {
  const config = create(ClusterConfigSchema, {
    controller: { kind: { case: "manual", value: { host: "h" } } },
    scaleGroups: {
      m: {
        provider: { kind: { case: "manual", value: { hosts: [{ host: "a" }, { host: "b" }] } } },
        acceleratorType: AcceleratorType.CPU,
        vmResources: { cpuMillicores: 1000, memoryBytes: GIB },
      },
    },
  });
  applyDefaults(config, { machine });
  assert.equal(config.name, "iris");
  assert.equal(config.scaleGroups.m?.maxSlices, 2);
  assert.equal(config.scaleGroups.m?.scaleUpCooldownMs, 60_000);
  assert.equal(config.defaults?.autoscaler?.evaluationIntervalMs, 10_000);
});

Deno.test("configMode follows the controller kind alone", () => {
  assert.equal(configMode(parseConfig(minimalLocal, undefined, { machine })), "local");
  assert.throws(() => configMode(create(ClusterConfigSchema, {})), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.path, "controller");
    return true;
  });
});

Deno.test("known_hosts_file: platform.ssh's value fills hosts that leave it empty", () => {
  const config = parseConfigObject(
    {
      platform: { ssh: { known_hosts_file: "~/.iris/known_hosts" } },
      controller: { bundle_prefix: "file:///shared/bundles", manual: { host: "10.0.0.1" } },
      scale_groups: {
        m: {
          provider: {
            manual: {
              hosts: ["10.0.0.2", { host: "10.0.0.3", known_hosts_file: "/etc/lab_keys" }],
            },
          },
          vm_resources: { cpu: 8, memory: "16GiB" },
        },
      },
    },
    undefined,
    { machine },
  );
  assert.equal(config.platform?.ssh?.knownHostsFile, "~/.iris/known_hosts");
  const m = config.scaleGroups.m!;
  assert.ok(m.provider?.kind.case === "manual");
  assert.deepEqual(m.provider.kind.value.hosts.map((h) => h.knownHostsFile), [
    "~/.iris/known_hosts",
    "/etc/lab_keys",
  ]);
});
