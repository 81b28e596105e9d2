/** Every class of config problem is reported at its exact YAML path, all problems at once. */
import assert from "node:assert/strict";
import { ConfigError } from "../../src/errors.ts";
import { ConfigValidationError, parseConfig, parseConfigObject } from "../../src/config/mod.ts";

const machine = { cpuCores: 8, memoryBytes: 32 * 2 ** 30 };

/** A valid local config tree; tests mutate copies of it. */
function localTree(): Record<string, unknown> {
  return {
    controller: { local: { port: 0 } },
    scale_groups: {
      tpu: {
        provider: { local: {} },
        accelerator_type: "tpu",
        accelerator_variant: "v5litepod-16",
        min_slices: 0,
        max_slices: 4,
      },
      cpu: { provider: { local: {} }, max_slices: 2 },
    },
  };
}

function gcpTree(): Record<string, unknown> {
  return {
    platform: { gcp: { project_id: "p", zones: ["europe-west4-b"] } },
    controller: { bundle_prefix: "gs://b/iris", gcp: { zone: "europe-west4-b" } },
    scale_groups: {
      tpu: {
        provider: { tpu: {} },
        accelerator_type: "tpu",
        accelerator_variant: "v5litepod-16",
        zone: "europe-west4-b",
        max_slices: 2,
        vm_resources: { cpu: 112, memory: "192GB" },
      },
    },
  };
}

/** Runs `fn` and returns its ConfigValidationError's issues as "path: message" lines. */
function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigValidationError, `expected ConfigValidationError, got ${err}`);
    assert.ok(err instanceof ConfigError);
    return err.issues.map((i) => `${i.path}: ${i.message}`);
  }
  assert.fail("expected the config to be rejected");
}

const fromTree = (tree: unknown) => problems(() => parseConfigObject(tree, undefined, { machine }));
const fromText = (text: string) => problems(() => parseConfig(text, "test.yaml", { machine }));

function edit(
  tree: Record<string, unknown>,
  path: string,
  value: unknown,
): Record<string, unknown> {
  const keys = path.split(".");
  let node = tree as Record<string, unknown>;
  for (const key of keys.slice(0, -1)) node = node[key] as Record<string, unknown>;
  const last = keys[keys.length - 1]!;
  if (value === undefined) delete node[last];
  else node[last] = value;
  return tree;
}

Deno.test("the base trees are valid", () => {
  parseConfigObject(localTree(), undefined, { machine });
  parseConfigObject(gcpTree(), undefined, { machine });
});

Deno.test("unknown keys are rejected with a close match", () => {
  assert.deepEqual(fromTree(edit(localTree(), "scale_groups.tpu.max_slice", 3)), [
    "scale_groups.tpu.max_slice: unknown key (did you mean max_slices?)",
  ]);
  assert.deepEqual(fromTree(edit(localTree(), "scale_groups.cpu.scale_down_delay_ms", 5)), [
    "scale_groups.cpu.scale_down_delay_ms: unknown key (did you mean scale_down_delay?)",
  ]);
  assert.deepEqual(fromTree(edit(localTree(), "scale_groups.cpu.maxSlices", 5)), [
    "scale_groups.cpu.maxSlices: unknown key (did you mean max_slices?)",
  ]);
  const [only] = fromTree(edit(localTree(), "controller.frobnicate", 1));
  assert.match(
    only!,
    /^controller\.frobnicate: unknown key \(expected one of bundle_prefix, state_dir, /,
  );
});

Deno.test("wrong types name the path, the rule and the value", () => {
  assert.deepEqual(fromTree(edit(localTree(), "controller.local.port", "abc")), [
    'controller.local.port: must be an integer 0..65535 (got "abc")',
  ]);
  assert.deepEqual(fromTree(edit(localTree(), "controller.local.port", 70000)), [
    "controller.local.port: must be an integer 0..65535 (got 70000)",
  ]);
  assert.deepEqual(fromTree(edit(localTree(), "scale_groups.cpu.max_slices", 1.5)), [
    "scale_groups.cpu.max_slices: must be an integer 0..10000 (got 1.5)",
  ]);
  assert.deepEqual(fromTree(edit(localTree(), "scale_groups.cpu.preemptible", "yes")), [
    'scale_groups.cpu.preemptible: must be true or false (got "yes")',
  ]);
  assert.deepEqual(fromTree(edit(localTree(), "scale_groups.cpu.accelerator_type", "fpga")), [
    'scale_groups.cpu.accelerator_type: must be one of cpu, gpu, tpu (got "fpga")',
  ]);
  assert.deepEqual(fromTree(edit(localTree(), "scale_groups.cpu", [1])), [
    "scale_groups.cpu: must be a mapping (got a list [1])",
  ]);
  assert.deepEqual(
    fromTree(edit(localTree(), "scale_groups.cpu.attributes", { region: { a: 1 } })),
    [
      'scale_groups.cpu.attributes.region: must be a string, number or boolean (got {"a":1})',
    ],
  );
});

Deno.test("max_slices below min_slices", () => {
  const tree = edit(
    edit(localTree(), "scale_groups.tpu.min_slices", 2),
    "scale_groups.tpu.max_slices",
    0,
  );
  assert.deepEqual(fromTree(tree), [
    "scale_groups.tpu.max_slices: must be ≥ min_slices (got 0 < 2)",
  ]);
});

Deno.test("negative values are rejected", () => {
  assert.deepEqual(fromTree(edit(localTree(), "scale_groups.cpu.min_slices", -1)), [
    "scale_groups.cpu.min_slices: must be an integer 0..10000 (got -1)",
  ]);
  assert.deepEqual(fromTree(edit(localTree(), "scale_groups.cpu.scale_up_cooldown", -5)), [
    'scale_groups.cpu.scale_up_cooldown: must be a duration like "30s", "5m" or "250ms", or a number of seconds (got -5)',
  ]);
  assert.deepEqual(
    fromTree(edit(localTree(), "scale_groups.cpu.vm_resources", { cpu: -1, memory: -2 })),
    [
      'scale_groups.cpu.vm_resources.cpu: must be a number of cores like 4 or 0.5, or millicores like "500m", > 0 (got -1)',
      'scale_groups.cpu.vm_resources.memory: must be a size like "8GiB", "512MiB" or "1.5GB", or a number of bytes (got -2)',
    ],
  );
  assert.deepEqual(fromTree(edit(localTree(), "scale_groups.cpu.priority", -3)), [
    "scale_groups.cpu.priority: must be an integer 0..1000000 (got -3)",
  ]);
});

Deno.test("exactly one controller kind", () => {
  assert.deepEqual(fromTree(edit(localTree(), "controller", { heartbeat_interval: "1s" })), [
    "controller: must set exactly one of local, gcp, manual, kubernetes (got none)",
  ]);
  assert.deepEqual(fromTree(edit(localTree(), "controller.manual", { host: "h" })), [
    "controller: must set exactly one of local, gcp, manual, kubernetes (got local, manual)",
  ]);
  assert.deepEqual(fromTree(edit(localTree(), "controller", undefined)), [
    "controller: required (one of local, gcp, manual, kubernetes)",
  ]);
});

Deno.test("exactly one provider kind per group", () => {
  assert.deepEqual(fromTree(edit(localTree(), "scale_groups.cpu.provider", {})), [
    "scale_groups.cpu.provider: must set exactly one of local, tpu, manual, kubernetes (got none)",
  ]);
  assert.deepEqual(
    fromTree(edit(localTree(), "scale_groups.cpu.provider.manual", { hosts: ["h1"] })),
    [
      "scale_groups.cpu.provider: must set exactly one of local, tpu, manual, kubernetes (got local, manual)",
    ],
  );
  assert.deepEqual(fromTree(edit(localTree(), "scale_groups.cpu.provider", undefined)), [
    "scale_groups.cpu.provider: required (one of {local: …}, {tpu: …}, {manual: …}, {kubernetes: …})",
  ]);
});

Deno.test("controller and provider kinds must be compatible", () => {
  const local = edit(localTree(), "scale_groups.tpu.provider", {
    tpu: { zone: "europe-west4-b", project_id: "p" },
  });
  assert.deepEqual(fromTree(edit(local, "scale_groups.tpu.vm_resources", { cpu: 1, memory: 1 })), [
    "scale_groups.tpu.provider: a local controller can only drive local providers (got tpu)",
  ]);
  assert.deepEqual(fromTree(edit(gcpTree(), "scale_groups.tpu.provider", { local: {} })), [
    "scale_groups.tpu.provider: a gcp controller can only drive tpu providers (got local)",
  ]);
  const manual = {
    controller: { bundle_prefix: "gs://b/x", manual: { host: "10.0.0.1" } },
    "scale_groups": { cpu: { provider: { local: {} }, max_slices: 1 } },
  };
  assert.deepEqual(fromTree(manual), [
    "scale_groups.cpu.provider: a manual controller can only drive manual providers (got local)",
  ]);
});

Deno.test("TPU variants are checked for accelerator_type tpu", () => {
  assert.deepEqual(
    fromTree(edit(localTree(), "scale_groups.tpu.accelerator_variant", "v5litepod-17")),
    [
      'scale_groups.tpu.accelerator_variant: unknown TPU variant "v5litepod-17" (expected e.g. v4-8, v5litepod-16, v5p-8, v6e-4)',
    ],
  );
  assert.deepEqual(fromTree(edit(localTree(), "scale_groups.tpu.accelerator_variant", undefined)), [
    "scale_groups.tpu.accelerator_variant: required for accelerator_type tpu (e.g. v4-8, v5litepod-16, v5p-8, v6e-4)",
  ]);
  assert.deepEqual(
    fromTree(edit(localTree(), "scale_groups.cpu.accelerator_variant", "v5litepod-16")),
    [
      "scale_groups.cpu.accelerator_variant: only allowed for accelerator_type gpu or tpu",
    ],
  );
  assert.deepEqual(
    fromTree(edit(localTree(), "scale_groups.tpu.vm_resources", { accelerators: 8 })),
    [
      "scale_groups.tpu.vm_resources.accelerators: must equal the chips per host of v5litepod-16 (4) (got 8)",
    ],
  );
  const wrongType = edit(gcpTree(), "scale_groups.tpu.accelerator_type", "gpu");
  assert.deepEqual(fromTree(edit(wrongType, "scale_groups.tpu.accelerator_variant", "H100")), [
    "scale_groups.tpu.provider.tpu: requires accelerator_type tpu (got gpu)",
  ]);
});

Deno.test("gcp zones must be listed in platform.gcp.zones", () => {
  assert.deepEqual(fromTree(edit(gcpTree(), "scale_groups.tpu.zone", "us-east1-d")), [
    'scale_groups.tpu.zone: "us-east1-d" is not listed in platform.gcp.zones (europe-west4-b)',
  ]);
  const viaProvider = edit(gcpTree(), "scale_groups.tpu.zone", undefined);
  assert.deepEqual(
    fromTree(edit(viaProvider, "scale_groups.tpu.provider", { tpu: { zone: "us-east1-d" } })),
    [
      'scale_groups.tpu.provider.tpu.zone: "us-east1-d" is not listed in platform.gcp.zones (europe-west4-b)',
    ],
  );
  assert.deepEqual(fromTree(edit(gcpTree(), "scale_groups.tpu.zone", "europe-west4")), [
    'scale_groups.tpu.zone: must be a GCP zone like "europe-west4-b" for a tpu provider (got "europe-west4")',
  ]);
  assert.deepEqual(fromTree(edit(gcpTree(), "scale_groups.tpu.region", "us-central1")), [
    'scale_groups.tpu.zone: must be in region "us-central1" (got "europe-west4-b")',
  ]);
});

Deno.test("gcp and manual modes take any bundle_prefix scheme, or none", () => {
  for (const prefix of [undefined, "gs://b/x", "file:///var/lib/iris/bundles"]) {
    parseConfigObject(edit(gcpTree(), "controller.bundle_prefix", prefix), undefined, { machine });
    const manual = {
      controller: { bundle_prefix: prefix, manual: { host: "10.0.0.1" } },
      "scale_groups": {
        m: {
          provider: { manual: { hosts: ["10.0.0.2"] } },
          vm_resources: { cpu: 4, memory: "8GiB" },
        },
      },
    };
    if (prefix === undefined) delete manual.controller.bundle_prefix;
    const config = parseConfigObject(manual, undefined, { machine });
    assert.equal(config.controller?.bundlePrefix, prefix ?? "");
  }
});

Deno.test("gcp mode requires a project and vm_resources", () => {
  const tree = gcpTree();
  edit(tree, "platform", undefined);
  edit(tree, "controller.bundle_prefix", undefined);
  edit(tree, "scale_groups.tpu.vm_resources", undefined);
  assert.deepEqual(fromTree(tree), [
    "platform.gcp.project_id: required for a gcp controller",
    "scale_groups.tpu.vm_resources.cpu: required for tpu providers (the cpu of each VM, used to size slices)",
    "scale_groups.tpu.vm_resources.memory: required for tpu providers (the memory of each VM, used to size slices)",
  ]);
});

Deno.test("manual hosts must be a non-empty list of host strings, not shared", () => {
  const manual = (hosts: unknown, extra: Record<string, unknown> = {}) => ({
    controller: { bundle_prefix: "gs://b/x", manual: { host: "10.0.0.1" } },
    scale_groups: {
      m: { provider: { manual: { hosts } }, vm_resources: { cpu: 4, memory: "8GiB" }, ...extra },
    },
  });
  assert.deepEqual(fromTree(manual([])), [
    "scale_groups.m.provider.manual.hosts: must be a non-empty list of hosts (got [])",
  ]);
  assert.deepEqual(fromTree(manual("10.0.0.2")), [
    'scale_groups.m.provider.manual.hosts: must be a non-empty list of hosts (got "10.0.0.2")',
  ]);
  assert.deepEqual(fromTree(manual(["10.0.0.2", 7, "root@10.0.0.3", { user: "x" }, "10.0.0.2"])), [
    "scale_groups.m.provider.manual.hosts[1]: must be a host string or a mapping {host, user, key_file, port, known_hosts_file, deno_path} (got 7)",
    'scale_groups.m.provider.manual.hosts[2]: must be a host name or IP address without user or spaces, e.g. "10.200.0.2" (got "root@10.0.0.3")',
    "scale_groups.m.provider.manual.hosts[3].host: required",
    'scale_groups.m.provider.manual.hosts[4]: duplicate host "10.0.0.2" (also at scale_groups.m.provider.manual.hosts[0])',
  ]);
  assert.deepEqual(fromTree(manual(["10.0.0.2", "10.0.0.3"], { max_slices: 3 })), [
    "scale_groups.m.max_slices: must be ≤ 2 (2 hosts, 1 per slice) for a manual provider (got 3)",
  ]);
});

Deno.test("a YAML syntax error reports line and column", () => {
  assert.deepEqual(fromText("controller:\n  local: {port: 0\nscale_groups: {}\n"), [
    "test.yaml:3:1: YAML syntax error: Flow map in block collection must be sufficiently indented and end with a }",
  ]);
  const [dup] = fromText("controller: {local: {}}\ncontroller: {local: {}}\n");
  assert.match(dup!, /^test\.yaml:2:1: YAML syntax error: Map keys must be unique/);
  const [tab] = fromText("controller:\n\tlocal: {}\n");
  assert.match(tab!, /^test\.yaml:2:1: YAML syntax error: /);
});

Deno.test("all problems are reported together, one per line", () => {
  const text = [
    "controller:",
    "  local: {port: abc}",
    "scale_groups:",
    "  tpu:",
    "    provider: {local: {}}",
    "    accelerator_type: tpu",
    "    accelerator_variant: v5litepod-16",
    "    min_slices: 2",
    "    max_slices: 0",
    "    max_slice: 3",
    "    scale_down_delay: 5 parsecs",
  ].join("\n");
  let caught: unknown;
  try {
    parseConfig(text, "test.yaml", { machine });
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigValidationError);
  assert.equal(caught.path, "controller.local.port");
  assert.equal(caught.source, "test.yaml");
  assert.deepEqual(caught.message.split("\n"), [
    'controller.local.port: must be an integer 0..65535 (got "abc")',
    "scale_groups.tpu.max_slice: unknown key (did you mean max_slices?)",
    'scale_groups.tpu.scale_down_delay: must be a duration like "30s", "5m" or "250ms", or a number of seconds (got "5 parsecs")',
    "scale_groups.tpu.max_slices: must be ≥ min_slices (got 0 < 2)",
  ]);
  assert.equal(caught.issues.length, 4);
});

Deno.test("empty, non-mapping and group-less configs are rejected", () => {
  assert.deepEqual(fromText(""), [
    "(root): config is empty (expected at least controller and scale_groups)",
  ]);
  assert.deepEqual(fromText("- 1\n"), ["(root): must be a mapping (got a list [1])"]);
  assert.deepEqual(fromText("controller: {local: {}}\nscale_groups: {}\n"), [
    "scale_groups: must define at least one group",
  ]);
  assert.deepEqual(fromText("controller: {local: {}}\n"), [
    "scale_groups: required (a mapping of group name to group config)",
  ]);
  assert.deepEqual(
    fromTree(
      edit(localTree(), "scale_groups.Bad Name", { provider: { local: {} }, max_slices: 1 }),
    ),
    [
      "scale_groups.Bad Name: group name must be lowercase letters, digits, _ or -, start with a letter, ≤ 40 chars",
    ],
  );
});

Deno.test("bundle_prefix, backoff and durations are checked", () => {
  assert.deepEqual(fromTree(edit(localTree(), "controller.bundle_prefix", "gs://b/x")), [
    'controller.bundle_prefix: must be a "file:///…" prefix for a local controller (got "gs://b/x")',
  ]);
  assert.deepEqual(fromTree(edit(localTree(), "controller.bundle_prefix", "/tmp/x")), [
    'controller.bundle_prefix: must be "file:///absolute/path" or "gs://bucket/path" (got "/tmp/x")',
  ]);
  assert.deepEqual(
    fromTree(
      edit(localTree(), "defaults", { autoscaler: { backoff_initial: "10s", backoff_max: "1s" } }),
    ),
    [
      "defaults.autoscaler.backoff_max: must be ≥ backoff_initial (got 1s < 10s)",
    ],
  );
  assert.deepEqual(fromTree(edit(localTree(), "controller.heartbeat_interval", 0)), [
    "controller.heartbeat_interval: must be > 0 (got 0)",
  ]);
  assert.deepEqual(fromTree(edit(localTree(), "controller.heartbeat_interval", "400d")), [
    'controller.heartbeat_interval: must be a duration like "30s", "5m" or "250ms", or a number of seconds (got "400d")',
  ]);
  assert.deepEqual(fromTree(edit(localTree(), "controller.heartbeat_interval", 1e9)), [
    "controller.heartbeat_interval: must be at most 1 year (got 1000000000)",
  ]);
});

Deno.test("YAML collection keys are rejected with their position", () => {
  assert.deepEqual(fromText("controller: {local: {}}\nscale_groups:\n  ? {a: 1}\n  : 2\n"), [
    "test.yaml:3:5: YAML error: mapping keys must be plain scalars, not lists or mappings",
  ]);
});

Deno.test("gcp group names and regions follow GCP naming", () => {
  const tree = gcpTree();
  const groups = tree.scale_groups as Record<string, unknown>;
  groups.tpu_v5e = groups.tpu;
  delete groups.tpu;
  assert.deepEqual(fromTree(edit(tree, "scale_groups.tpu_v5e.region", "europe_west4")), [
    'scale_groups.tpu_v5e: group name must not contain "_" with a gcp controller (GCP resource names allow a-z, 0-9 and -)',
    'scale_groups.tpu_v5e.region: must be a GCP region like "europe-west4" for a tpu provider (got "europe_west4")',
  ]);
});

Deno.test("an invalid required value is reported once, not also as missing", () => {
  const tree = gcpTree();
  edit(tree, "controller.bundle_prefix", 42);
  edit(tree, "platform.gcp.project_id", "");
  assert.deepEqual(fromTree(tree), [
    "platform.gcp.project_id: must not be empty",
    "controller.bundle_prefix: must be a string (got 42)",
  ]);
  assert.deepEqual(
    fromTree({
      controller: { bundle_prefix: "gs://b/x", manual: { host: "a b" } },
      scale_groups: {
        m: { provider: { manual: { hosts: ["h"] } }, vm_resources: { cpu: 1, memory: "1GiB" } },
      },
    }),
    [
      'controller.manual.host: must be a host name or IP address without user or spaces, e.g. "10.200.0.2" (got "a b")',
    ],
  );
});

Deno.test("a YAML alias bomb is rejected as a ConfigError", () => {
  const lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"];
  for (let i = 1; i < 8; i++) {
    lines.push(`a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(", ")}]`);
  }
  assert.throws(() => parseConfig(lines.join("\n"), "bomb.yaml"), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.path, "bomb.yaml");
    assert.match(err.message, /^bomb\.yaml: YAML error: /);
    return true;
  });
});

Deno.test("known_hosts_file: empty or unquotable paths are refused naming the field", () => {
  const tree = {
    platform: { ssh: { known_hosts_file: "" } },
    controller: { bundle_prefix: "file:///b", manual: { host: "10.0.0.1" } },
    "scale_groups": {
      m: {
        provider: { manual: { hosts: [{ host: "10.0.0.2", known_hosts_file: "my keys" }] } },
        vm_resources: { cpu: 1, memory: "1GiB" },
      },
    },
  };
  const found = fromTree(tree);
  assert.ok(
    found.some((p) => p.startsWith("platform.ssh.known_hosts_file: ")),
    found.join("\n"),
  );
  assert.ok(
    found.some((p) =>
      p.startsWith("scale_groups.m.provider.manual.hosts[0].known_hosts_file: must be a file path")
    ),
    found.join("\n"),
  );
});

Deno.test("controller.max_building_tasks_per_worker is a positive integer", () => {
  assert.deepEqual(
    fromTree(edit(localTree(), "controller.max_building_tasks_per_worker", 0)),
    ["controller.max_building_tasks_per_worker: must be an integer 1..10000 (got 0)"],
  );
  const tree = edit(localTree(), "controller.max_building_tasks_per_worker", 2);
  assert.equal(
    parseConfigObject(tree, undefined, { machine }).controller?.maxBuildingTasksPerWorker,
    2,
  );
});

Deno.test("defaults.runtime: deno_path must be absolute and deno_from_npm a boolean, named by field", () => {
  const tree = {
    controller: { bundle_prefix: "file:///b", manual: { host: "10.0.0.1" } },
    defaults: { runtime: { deno_path: "~/.deno/bin/deno", deno_from_npm: "yes" } },
    "scale_groups": {
      m: {
        provider: { manual: { hosts: [{ host: "10.0.0.2", deno_path: "deno" }] } },
        vm_resources: { cpu: 1, memory: "1GiB" },
      },
    },
  };
  const found = fromTree(tree);
  for (
    const prefix of [
      "defaults.runtime.deno_path: must be an absolute path of a Deno 2.9.6 binary on the host",
      "defaults.runtime.deno_from_npm: must be",
      "scale_groups.m.provider.manual.hosts[0].deno_path: must be an absolute path",
    ]
  ) assert.ok(found.some((p) => p.startsWith(prefix)), `${prefix}\n${found.join("\n")}`);
});

Deno.test("controller.worker_reconnect_max and reclaim_margin are positive durations", () => {
  assert.deepEqual(fromTree(edit(localTree(), "controller.worker_reconnect_max", 0)), [
    "controller.worker_reconnect_max: must be > 0 (got 0)",
  ]);
  assert.deepEqual(fromTree(edit(localTree(), "controller.reclaim_margin", "soon")), [
    'controller.reclaim_margin: must be a duration like "30s", "5m" or "250ms", or a number of seconds (got "soon")',
  ]);
  let tree = edit(localTree(), "controller.worker_reconnect_max", "10s");
  tree = edit(tree, "controller.reclaim_margin", "500ms");
  const c = parseConfigObject(tree, undefined, { machine }).controller!;
  assert.deepEqual([c.workerReconnectMaxMs, c.reclaimMarginMs], [10_000, 500]);
});

Deno.test("controller.log_* settings are sizes and a duration > 0, named in errors", () => {
  let tree = edit(localTree(), "controller.log_memory_size", "-1MiB");
  tree = edit(tree, "controller.log_retention", 0);
  tree = edit(tree, "controller.log_disk_size", "lots");
  const problems = fromTree(tree);
  assert.equal(problems.length, 3, problems.join("\n"));
  assert.match(problems.join("\n"), /controller\.log_memory_size: /);
  assert.match(problems.join("\n"), /controller\.log_retention: must be > 0/);
  assert.match(problems.join("\n"), /controller\.log_disk_size: /);
  let ok = edit(localTree(), "controller.log_memory_size", "64MiB");
  ok = edit(ok, "controller.log_task_memory_size", "1MiB");
  ok = edit(ok, "controller.log_retention", "168h");
  ok = edit(ok, "controller.log_disk_size", "1GiB");
  ok = edit(ok, "controller.log_attempt_file_size", "100MiB");
  const c = parseConfigObject(ok, undefined, { machine }).controller!;
  assert.deepEqual(
    [
      c.logMemoryBytes,
      c.logTaskMemoryBytes,
      c.logRetentionMs,
      c.logDiskBytes,
      c.logAttemptFileBytes,
    ],
    [64 * 1024 ** 2, 1024 ** 2, 7 * 24 * 3600_000, 1024 ** 3, 100 * 1024 ** 2],
  );
});

Deno.test("controller.max_bundle_size is a size > 0, at most 4GiB and within auth.max_request_size", () => {
  assert.match(
    fromTree(edit(localTree(), "controller.max_bundle_size", "huge")).join("\n"),
    /^controller\.max_bundle_size: must be a size like/,
  );
  assert.deepEqual(fromTree(edit(localTree(), "controller.max_bundle_size", "5GiB")), [
    "controller.max_bundle_size: must be at most 4GiB (bundles are held in memory; got 5GiB)",
  ]);
  const tree = {
    ...edit(localTree(), "controller.max_bundle_size", "512MiB"),
    auth: { max_request_size: "64MiB" },
  };
  assert.match(
    fromTree(tree).join("\n"),
    /controller\.max_bundle_size: is larger than auth\.max_request_size \(64MiB\)/,
  );
  const ok = edit(localTree(), "controller.max_bundle_size", "512MiB");
  assert.equal(
    parseConfigObject(ok, undefined, { machine }).controller!.maxBundleBytes,
    512 * 1024 ** 2,
  );
});

Deno.test("defaults.outputs and defaults.python: each bad value is named by its field", () => {
  const tree = localTree();
  tree.defaults = {
    outputs: { retention: "0s", prefix: "s3://bucket/x", keep: 1 },
    python: { installer: "conda", cache_size: "lots", cache_max_age: -1 },
  };
  const found = fromTree(tree);
  for (
    const prefix of [
      "defaults.outputs.retention: must be > 0",
      'defaults.outputs.prefix: must be "gs://bucket/path" or "file:///absolute/path" (got "s3://bucket/x")',
      "defaults.outputs.keep: unknown key",
      'defaults.python.installer: must be one of uv, pip, auto (got "conda")',
      "defaults.python.cache_size: must be",
      "defaults.python.cache_max_age: must be",
    ]
  ) assert.ok(found.some((p) => p.startsWith(prefix)), `${prefix}\n${found.join("\n")}`);
  for (const prefix of ["file:///", "file://relative/x", "gs://", "gs://Bad_Bucket"]) {
    const t = localTree();
    t.defaults = { outputs: { prefix } };
    assert.ok(
      fromTree(t).some((p) => p.startsWith("defaults.outputs.prefix: must be")),
      prefix,
    );
  }
  const good = localTree();
  good.defaults = {
    outputs: { retention: "24h", prefix: "gs://my-bucket/out" },
    python: { installer: "uv", cache_size: "5GiB", cache_max_age: "72h" },
  };
  const config = parseConfigObject(good, undefined, { machine });
  assert.equal(config.defaults?.outputs?.retentionMs, 24 * 3600 * 1000);
  assert.equal(config.defaults?.outputs?.prefix, "gs://my-bucket/out");
  assert.equal(config.defaults?.python?.installer, "uv");
  assert.equal(config.defaults?.python?.cacheBytes, 5 * 2 ** 30);
  assert.equal(config.defaults?.python?.cacheMaxAgeMs, 72 * 3600 * 1000);
});
