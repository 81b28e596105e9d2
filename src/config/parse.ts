/**
 * The YAML schema: maps a parsed YAML tree (snake_case keys, human durations and sizes) onto the
 * ClusterConfig proto, checking each field's type and range. Cross-field rules live in
 * validate.ts and defaults in defaults.ts; this module only records what was written.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  AutoscalerConfigSchema,
  type ClusterConfig,
  ClusterConfigSchema,
  type ControllerConfig,
  ControllerConfigSchema,
  DefaultsConfigSchema,
  GceProviderSchema,
  GcpControllerConfigSchema,
  GcpPlatformConfigSchema,
  KubernetesControllerConfigSchema,
  KubernetesPlatformConfigSchema,
  KubernetesProviderSchema,
  type KubernetesToleration,
  KubernetesTolerationSchema,
  LocalControllerConfigSchema,
  LocalProviderSchema,
  ManualControllerConfigSchema,
  type ManualHost,
  ManualHostSchema,
  ManualProviderSchema,
  OutputsConfigSchema,
  PlatformConfigSchema,
  type ProviderConfig,
  ProviderConfigSchema,
  PythonConfigSchema,
  RuntimeConfigSchema,
  type ScaleGroupConfig,
  ScaleGroupConfigSchema,
  SshConfigSchema,
  TpuProviderSchema,
  type UserBudget,
  UserBudgetSchema,
} from "../rpc/gen/iris/v1/config_pb.ts";
import {
  AcceleratorSchema,
  AcceleratorType,
  PriorityBand,
  ResourcesSchema,
} from "../rpc/gen/iris/v1/types_pb.ts";
import { formatGot, joinPath, ROOT_PATH } from "./issues.ts";
import { parseAuth } from "./auth.ts";
import type { YamlMap, YamlReader } from "./reader.ts";

/** Keys allowed in each mapping of the schema (also the reference for docs/config.md). */
export const KEYS = {
  root: ["name", "platform", "controller", "scale_groups", "defaults", "auth"],
  platform: ["label_prefix", "gcp", "ssh", "kubernetes"],
  platformGcp: ["project_id", "zones"],
  platformKubernetes: [
    "flavour",
    "namespace",
    "kubeconfig",
    "context",
    "image",
    "runtime",
    "s3_secret_name",
    "cache_dir",
  ],
  ssh: ["user", "key_file", "port", "connect_timeout", "known_hosts_file"],
  defaults: ["autoscaler", "task_env", "runtime", "outputs", "python"],
  runtime: ["deno_path", "deno_from_npm"],
  outputs: ["retention", "prefix"],
  python: ["installer", "cache_size", "cache_max_age"],
  autoscaler: [
    "evaluation_interval",
    "scale_up_cooldown",
    "scale_down_delay",
    "backoff_initial",
    "backoff_max",
    "boot_timeout",
    "init_timeout",
    "scale_up_rate",
    "scale_down_rate",
    "quota_backoff",
  ],
  controller: [
    "bundle_prefix",
    "state_dir",
    "heartbeat_interval",
    "heartbeat_failure_threshold",
    "heartbeat_max_rate",
    "max_building_tasks_per_worker",
    "worker_reconnect_max",
    "reclaim_margin",
    "log_memory_size",
    "log_task_memory_size",
    "log_retention",
    "log_disk_size",
    "log_attempt_file_size",
    "max_bundle_size",
    "user_budgets",
    "local",
    "gcp",
    "manual",
    "kubernetes",
  ],
  controllerLocal: ["port", "host"],
  controllerGcp: ["zone", "machine_type", "port", "boot_disk_size_gb", "service_account", "image"],
  controllerManual: ["host", "port"],
  controllerKubernetes: ["port", "instance_type", "node_selector"],
  group: [
    "provider",
    "accelerator_type",
    "accelerator_variant",
    "min_slices",
    "max_slices",
    "vm_resources",
    "attributes",
    "scale_up_cooldown",
    "scale_down_delay",
    "priority",
    "zone",
    "region",
    "preemptible",
    "boot_timeout",
    "init_timeout",
    "scale_up_rate",
    "scale_down_rate",
    "buffer_slices",
    "zones",
  ],
  vmResources: ["cpu", "memory", "disk", "accelerators"],
  provider: ["local", "tpu", "manual", "kubernetes", "gce"],
  providerKubernetes: ["instance_type", "node_selector", "tolerations", "rdma"],
  toleration: ["key", "operator", "value", "effect"],
  providerTpu: ["runtime_version", "zone", "project_id"],
  providerGce: ["machine_type", "zone", "project_id", "boot_disk_size_gb"],
  providerManual: ["hosts"],
  manualHost: ["host", "user", "key_file", "port", "known_hosts_file", "deno_path"],
  userBudget: ["users", "max_tasks", "max_band", "max_cpu", "max_memory", "max_accelerators"],
} as const;

/** Controller kinds, in oneof order. */
export const CONTROLLER_KINDS = ["local", "gcp", "manual", "kubernetes"] as const;
/** Provider kinds, in oneof order. */
export const PROVIDER_KINDS = ["local", "tpu", "manual", "kubernetes", "gce"] as const;
/** Kubernetes flavours: "coreweave" manages NodePools, "generic" uses the nodes that exist. */
export const KUBERNETES_FLAVOURS = ["coreweave", "generic"] as const;
/** Where tasks run on Kubernetes: in the worker Pod, or each in its own Pod (light workers). */
export const KUBERNETES_RUNTIMES = ["process", "kubernetes"] as const;
/** Kubernetes object names (RFC 1123 labels). */
const K8S_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const K8S_NAME_HINT =
  "lowercase letters, digits or -, starting and ending alphanumeric, ≤ 63 chars";
const LABEL_KEY = /^([a-z0-9.-]{1,253}\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_KEY_HINT = 'a Kubernetes label key, e.g. "node.coreweave.cloud/class"';
/** Accelerator type names as written in YAML. */
export const ACCELERATOR_NAMES = ["cpu", "gpu", "tpu"] as const;

const ACCELERATOR_TYPES: Readonly<Record<(typeof ACCELERATOR_NAMES)[number], AcceleratorType>> = {
  cpu: AcceleratorType.CPU,
  gpu: AcceleratorType.GPU,
  tpu: AcceleratorType.TPU,
};

/** Scale group names: lowercase, start with a letter, ≤ 40 chars (they end up in VM names). */
export const GROUP_NAME_PATTERN = /^[a-z][a-z0-9_-]{0,39}$/;
const TOKEN = /^\S+$/;
const TOKEN_HINT = "a non-empty string without spaces";
const HOST = /^[A-Za-z0-9[][A-Za-z0-9.:\-[\]]*$/;
const HOST_HINT = 'a host name or IP address without user or spaces, e.g. "10.200.0.2"';
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** `defaults.outputs.prefix`: a bucket prefix or an absolute local directory as a URL. */
const OUTPUTS_PREFIX = /^(file:\/\/\/[^\s]*[^\s/]|gs:\/\/[a-z0-9][a-z0-9._-]*(\/\S*)?)$/;

/** GCP zone names, e.g. "europe-west4-b". */
export const GCP_ZONE = /^[a-z]+-[a-z]+\d+-[a-z]$/;
/** GCP region names, e.g. "europe-west4". */
export const GCP_REGION = /^[a-z]+-[a-z]+\d+$/;
const GCP_ZONE_HINT = 'a GCP zone like "europe-west4-b"';

/** The proto built from a YAML tree, plus the set of YAML paths that were given and valid. */
export interface ParsedConfig {
  readonly config: ClusterConfig;
  readonly present: ReadonlySet<string>;
}

/** Maps a YAML tree onto ClusterConfig, recording problems in `reader` (never throws). */
export function parseTree(tree: unknown, reader: YamlReader): ParsedConfig {
  if (tree === null || tree === undefined) {
    reader.problem(ROOT_PATH, "config is empty (expected at least controller and scale_groups)");
    return { config: create(ClusterConfigSchema, {}), present: reader.present };
  }
  const root = reader.mapping(tree, ROOT_PATH, KEYS.root);
  if (!root) return { config: create(ClusterConfigSchema, {}), present: reader.present };
  const config = create(ClusterConfigSchema, {
    name: reader.string(root, "name", "", {
      nonEmpty: true,
      pattern: TOKEN,
      patternHint: TOKEN_HINT,
    }) ?? "",
    platform: parsePlatform(root, reader),
    controller: parseController(root, reader),
    defaults: parseDefaults(root, reader),
    auth: parseAuth(root, reader),
  });
  if (!Object.hasOwn(root, "scale_groups")) {
    reader.problem("scale_groups", "required (a mapping of group name to group config)");
  } else {
    const groups = reader.entries(root.scale_groups, "scale_groups");
    if (groups?.length === 0) reader.problem("scale_groups", "must define at least one group");
    for (const [name, value] of groups ?? []) {
      const path = joinPath("scale_groups", name);
      if (!GROUP_NAME_PATTERN.test(name)) {
        reader.problem(
          path,
          "group name must be lowercase letters, digits, _ or -, start with a letter, ≤ 40 chars",
        );
      }
      const group = parseGroup(value, path, reader);
      if (group) config.scaleGroups[name] = group;
    }
  }
  return { config, present: reader.present };
}

function parsePlatform(root: YamlMap, r: YamlReader) {
  const m = r.child(root, "platform", "", KEYS.platform, { nullIsEmpty: true });
  if (!m) return undefined;
  const gcp = r.child(m, "gcp", "platform", KEYS.platformGcp, { nullIsEmpty: true });
  const ssh = r.child(m, "ssh", "platform", KEYS.ssh, { nullIsEmpty: true });
  const k8s = r.child(m, "kubernetes", "platform", KEYS.platformKubernetes, {
    nullIsEmpty: true,
  });
  const kp = "platform.kubernetes";
  return create(PlatformConfigSchema, {
    kubernetes: k8s && create(KubernetesPlatformConfigSchema, {
      flavour: r.oneOf(k8s, "flavour", kp, KUBERNETES_FLAVOURS) ?? "",
      namespace:
        r.string(k8s, "namespace", kp, { pattern: K8S_NAME, patternHint: K8S_NAME_HINT }) ??
          "",
      kubeconfig: r.string(k8s, "kubeconfig", kp, { nonEmpty: true }) ?? "",
      context: r.string(k8s, "context", kp, { nonEmpty: true }) ?? "",
      image: r.string(k8s, "image", kp, { pattern: TOKEN, patternHint: TOKEN_HINT }) ?? "",
      runtime: r.oneOf(k8s, "runtime", kp, KUBERNETES_RUNTIMES) ?? "",
      s3SecretName:
        r.string(k8s, "s3_secret_name", kp, { pattern: K8S_NAME, patternHint: K8S_NAME_HINT }) ??
          "",
      cacheDir: r.string(k8s, "cache_dir", kp, {
        pattern: /^\/\S*$/,
        patternHint: "an absolute path on the node",
      }) ?? "",
    }),
    labelPrefix: r.string(m, "label_prefix", "platform", {
      pattern: /^[a-z][a-z0-9-]{0,19}$/,
      patternHint: "lowercase letters, digits or -, starting with a letter, ≤ 20 chars",
    }) ?? "",
    gcp: gcp && create(GcpPlatformConfigSchema, {
      projectId: r.string(gcp, "project_id", "platform.gcp", { nonEmpty: true }) ?? "",
      zones: r.stringList(gcp, "zones", "platform.gcp") ?? [],
    }),
    ssh: ssh && create(SshConfigSchema, {
      user: r.string(ssh, "user", "platform.ssh", { nonEmpty: true }) ?? "",
      keyFile: r.string(ssh, "key_file", "platform.ssh", { nonEmpty: true }) ?? "",
      port: r.integer(ssh, "port", "platform.ssh", { min: 1, max: 65535 }) ?? 0,
      connectTimeoutMs: r.duration(ssh, "connect_timeout", "platform.ssh", { positive: true }) ?? 0,
      knownHostsFile: knownHostsFile(ssh, "platform.ssh", r),
    }),
  });
}

function parseDefaults(root: YamlMap, r: YamlReader) {
  const m = r.child(root, "defaults", "", KEYS.defaults, { nullIsEmpty: true });
  if (!m) return undefined;
  const a = r.child(m, "autoscaler", "defaults", KEYS.autoscaler, { nullIsEmpty: true });
  const p = "defaults.autoscaler";
  const rt = r.child(m, "runtime", "defaults", KEYS.runtime, { nullIsEmpty: true });
  const out = r.child(m, "outputs", "defaults", KEYS.outputs, { nullIsEmpty: true });
  const py = r.child(m, "python", "defaults", KEYS.python, { nullIsEmpty: true });
  return create(DefaultsConfigSchema, {
    outputs: out && create(OutputsConfigSchema, {
      retentionMs: r.duration(out, "retention", "defaults.outputs", { positive: true }) ?? 0,
      prefix: r.string(out, "prefix", "defaults.outputs", {
        pattern: OUTPUTS_PREFIX,
        patternHint: '"gs://bucket/path" or "file:///absolute/path"',
      }) ?? "",
    }),
    python: py && create(PythonConfigSchema, {
      installer: r.string(py, "installer", "defaults.python", {
        pattern: /^(uv|pip|auto)$/,
        patternHint: "one of uv, pip, auto",
      }) ?? "",
      cacheBytes: r.size(py, "cache_size", "defaults.python", { positive: true }) ?? 0,
      cacheMaxAgeMs: r.duration(py, "cache_max_age", "defaults.python", { positive: true }) ?? 0,
    }),
    runtime: rt && create(RuntimeConfigSchema, {
      denoPath: denoPath(rt, "defaults.runtime", r),
      denoFromNpm: r.boolean(rt, "deno_from_npm", "defaults.runtime") ?? false,
    }),
    autoscaler: a && create(AutoscalerConfigSchema, {
      evaluationIntervalMs: r.duration(a, "evaluation_interval", p, { positive: true }) ?? 0,
      scaleUpCooldownMs: r.duration(a, "scale_up_cooldown", p) ?? 0,
      scaleDownDelayMs: r.duration(a, "scale_down_delay", p) ?? 0,
      backoffInitialMs: r.duration(a, "backoff_initial", p, { positive: true }) ?? 0,
      backoffMaxMs: r.duration(a, "backoff_max", p, { positive: true }) ?? 0,
      bootTimeoutMs: r.duration(a, "boot_timeout", p) ?? 0,
      initTimeoutMs: r.duration(a, "init_timeout", p) ?? 0,
      scaleUpRate: r.integer(a, "scale_up_rate", p, { min: 0, max: 100_000 }) ?? 0,
      scaleDownRate: r.integer(a, "scale_down_rate", p, { min: 0, max: 100_000 }) ?? 0,
      quotaBackoffMs: r.duration(a, "quota_backoff", p, { positive: true }) ?? 0,
    }),
    taskEnv: r.stringMap(m, "task_env", "defaults", {
      keyPattern: ENV_NAME,
      keyHint: "an environment variable name (letters, digits, _)",
    }) ?? {},
  });
}

function parseController(root: YamlMap, r: YamlReader): ControllerConfig | undefined {
  if (!Object.hasOwn(root, "controller")) {
    r.problem("controller", `required (one of ${CONTROLLER_KINDS.join(", ")})`);
    return undefined;
  }
  const m = r.mapping(root.controller, "controller", KEYS.controller);
  if (!m) return undefined;
  const p = "controller";
  const controller = create(ControllerConfigSchema, {
    bundlePrefix: r.string(m, "bundle_prefix", p, {
      pattern: /^(file:\/\/\/|gs:\/\/[a-z0-9])\S*$/,
      patternHint: '"file:///absolute/path" or "gs://bucket/path"',
    }) ?? "",
    stateDir: r.string(m, "state_dir", p, { nonEmpty: true }) ?? "",
    heartbeatIntervalMs: r.duration(m, "heartbeat_interval", p, { positive: true }) ?? 0,
    heartbeatFailureThreshold:
      r.integer(m, "heartbeat_failure_threshold", p, { min: 1, max: 1000 }) ?? 0,
    heartbeatMaxRate: r.integer(m, "heartbeat_max_rate", p, { min: 1, max: 1_000_000 }) ?? 0,
    userBudgets: parseUserBudgets(m, r),
    maxBuildingTasksPerWorker:
      r.integer(m, "max_building_tasks_per_worker", p, { min: 1, max: 10_000 }) ?? 0,
    workerReconnectMaxMs: r.duration(m, "worker_reconnect_max", p, { positive: true }) ?? 0,
    reclaimMarginMs: r.duration(m, "reclaim_margin", p, { positive: true }) ?? 0,
    logMemoryBytes: r.size(m, "log_memory_size", p, { positive: true }) ?? 0,
    logTaskMemoryBytes: r.size(m, "log_task_memory_size", p, { positive: true }) ?? 0,
    logRetentionMs: r.duration(m, "log_retention", p, { positive: true }) ?? 0,
    logDiskBytes: r.size(m, "log_disk_size", p, { positive: true }) ?? 0,
    logAttemptFileBytes: r.size(m, "log_attempt_file_size", p, { positive: true }) ?? 0,
    maxBundleBytes: r.size(m, "max_bundle_size", p, { positive: true }) ?? 0,
  });
  const kind = r.oneofKey(m, p, CONTROLLER_KINDS);
  if (kind === "local") {
    const c = r.child(m, "local", p, KEYS.controllerLocal, { nullIsEmpty: true });
    if (c) {
      controller.kind = {
        case: "local",
        value: create(LocalControllerConfigSchema, {
          port: r.integer(c, "port", "controller.local", { min: 0, max: 65535 }) ?? 0,
          host:
            r.string(c, "host", "controller.local", { pattern: HOST, patternHint: HOST_HINT }) ??
              "",
        }),
      };
    }
  } else if (kind === "gcp") {
    const c = r.child(m, "gcp", p, KEYS.controllerGcp, { nullIsEmpty: true });
    const cp = "controller.gcp";
    if (c) {
      controller.kind = {
        case: "gcp",
        value: create(GcpControllerConfigSchema, {
          zone: r.string(c, "zone", cp, { pattern: GCP_ZONE, patternHint: GCP_ZONE_HINT }) ?? "",
          machineType:
            r.string(c, "machine_type", cp, { pattern: TOKEN, patternHint: TOKEN_HINT }) ?? "",
          port: r.integer(c, "port", cp, { min: 1, max: 65535 }) ?? 0,
          bootDiskSizeGb: r.integer(c, "boot_disk_size_gb", cp, { min: 10, max: 65536 }) ?? 0,
          serviceAccount:
            r.string(c, "service_account", cp, { pattern: TOKEN, patternHint: TOKEN_HINT }) ?? "",
          image: r.string(c, "image", cp, { pattern: TOKEN, patternHint: TOKEN_HINT }) ?? "",
        }),
      };
    }
  } else if (kind === "manual") {
    const c = r.child(m, "manual", p, KEYS.controllerManual, { nullIsEmpty: true });
    if (c) {
      controller.kind = {
        case: "manual",
        value: create(ManualControllerConfigSchema, {
          host:
            r.string(c, "host", "controller.manual", { pattern: HOST, patternHint: HOST_HINT }) ??
              "",
          port: r.integer(c, "port", "controller.manual", { min: 1, max: 65535 }) ?? 0,
        }),
      };
    }
  } else if (kind === "kubernetes") {
    const c = r.child(m, "kubernetes", p, KEYS.controllerKubernetes, { nullIsEmpty: true });
    const cp = "controller.kubernetes";
    if (c) {
      controller.kind = {
        case: "kubernetes",
        value: create(KubernetesControllerConfigSchema, {
          port: r.integer(c, "port", cp, { min: 1, max: 65535 }) ?? 0,
          instanceType:
            r.string(c, "instance_type", cp, { pattern: TOKEN, patternHint: TOKEN_HINT }) ?? "",
          nodeSelector: r.stringMap(c, "node_selector", cp, {
            keyPattern: LABEL_KEY,
            keyHint: LABEL_KEY_HINT,
          }) ?? {},
        }),
      };
    }
  }
  return controller;
}

function parseGroup(value: unknown, path: string, r: YamlReader): ScaleGroupConfig | undefined {
  const m = r.mapping(value, path, KEYS.group);
  if (!m) return undefined;
  const accelerator = r.oneOf(m, "accelerator_type", path, ACCELERATOR_NAMES);
  const vm = r.child(m, "vm_resources", path, KEYS.vmResources, { nullIsEmpty: true });
  const vp = joinPath(path, "vm_resources");
  const accelerators = vm ? r.integer(vm, "accelerators", vp, { min: 0, max: 1024 }) : undefined;
  return create(ScaleGroupConfigSchema, {
    provider: parseProvider(m, path, r),
    acceleratorType: accelerator ? ACCELERATOR_TYPES[accelerator] : AcceleratorType.UNSPECIFIED,
    acceleratorVariant: r.string(m, "accelerator_variant", path, {
      nonEmpty: true,
      pattern: TOKEN,
      patternHint: TOKEN_HINT,
    }) ??
      "",
    minSlices: r.integer(m, "min_slices", path, { min: 0, max: 10000 }) ?? 0,
    maxSlices: r.integer(m, "max_slices", path, { min: 0, max: 10000 }) ?? 0,
    vmResources: vm && create(ResourcesSchema, {
      cpuMillicores: r.cpu(vm, "cpu", vp) ?? 0,
      memoryBytes: r.size(vm, "memory", vp, { positive: true }) ?? 0,
      diskBytes: r.size(vm, "disk", vp) ?? 0,
      accelerator: accelerators === undefined
        ? undefined
        : create(AcceleratorSchema, { count: accelerators }),
    }),
    attributes: r.stringMap(m, "attributes", path, { keyPattern: TOKEN, keyHint: TOKEN_HINT }) ??
      {},
    scaleUpCooldownMs: r.duration(m, "scale_up_cooldown", path) ?? 0,
    scaleDownDelayMs: r.duration(m, "scale_down_delay", path) ?? 0,
    priority: r.integer(m, "priority", path, { min: 0, max: 1_000_000 }) ?? 0,
    zone: r.string(m, "zone", path, { pattern: TOKEN, patternHint: TOKEN_HINT }) ?? "",
    region: r.string(m, "region", path, { pattern: TOKEN, patternHint: TOKEN_HINT }) ?? "",
    preemptible: r.boolean(m, "preemptible", path) ?? false,
    bootTimeoutMs: r.duration(m, "boot_timeout", path) ?? 0,
    initTimeoutMs: r.duration(m, "init_timeout", path) ?? 0,
    scaleUpRate: r.integer(m, "scale_up_rate", path, { min: 0, max: 100_000 }) ?? 0,
    scaleDownRate: r.integer(m, "scale_down_rate", path, { min: 0, max: 100_000 }) ?? 0,
    bufferSlices: r.integer(m, "buffer_slices", path, { min: 0, max: 10000 }) ?? 0,
    zones: zoneList(m, path, r),
  });
}

/** `zones`: distinct zone names (tokens). */
function zoneList(m: YamlMap, path: string, r: YamlReader): string[] {
  const zones = r.stringList(m, "zones", path) ?? [];
  const seen = new Set<string>();
  const p = joinPath(path, "zones");
  zones.forEach((z, i) => {
    if (!TOKEN.test(z)) r.problem(`${p}[${i}]`, `must be ${TOKEN_HINT} (got ${formatGot(z)})`);
    else if (seen.has(z)) r.problem(`${p}[${i}]`, `duplicate zone ${formatGot(z)}`);
    seen.add(z);
  });
  return zones;
}

function parseProvider(
  group: YamlMap,
  groupPath: string,
  r: YamlReader,
): ProviderConfig | undefined {
  const path = joinPath(groupPath, "provider");
  if (!Object.hasOwn(group, "provider")) {
    r.problem(path, `required (one of ${PROVIDER_KINDS.map((k) => `{${k}: …}`).join(", ")})`);
    return undefined;
  }
  const m = r.mapping(group.provider, path, KEYS.provider);
  if (!m) return undefined;
  const kind = r.oneofKey(m, path, PROVIDER_KINDS);
  if (kind === "local") {
    const c = r.child(m, "local", path, [], { nullIsEmpty: true });
    return c &&
      create(ProviderConfigSchema, {
        kind: { case: "local", value: create(LocalProviderSchema, {}) },
      });
  }
  if (kind === "tpu") {
    const tp = joinPath(path, "tpu");
    const c = r.child(m, "tpu", path, KEYS.providerTpu, { nullIsEmpty: true });
    if (!c) return undefined;
    const tpu = create(TpuProviderSchema, {
      runtimeVersion:
        r.string(c, "runtime_version", tp, { pattern: TOKEN, patternHint: TOKEN_HINT }) ?? "",
      zone: r.string(c, "zone", tp, { pattern: GCP_ZONE, patternHint: GCP_ZONE_HINT }) ?? "",
      projectId: r.string(c, "project_id", tp, { nonEmpty: true }) ?? "",
    });
    return create(ProviderConfigSchema, { kind: { case: "tpu", value: tpu } });
  }
  if (kind === "gce") {
    const gp = joinPath(path, "gce");
    const c = r.child(m, "gce", path, KEYS.providerGce, { nullIsEmpty: true });
    if (!c) return undefined;
    const gce = create(GceProviderSchema, {
      machineType: r.string(c, "machine_type", gp, {
        pattern: /^[a-z][a-z0-9]*(-[a-z0-9]+)+$/,
        patternHint: "a GCE machine type like a3-highgpu-8g",
      }) ?? "",
      zone: r.string(c, "zone", gp, { pattern: GCP_ZONE, patternHint: GCP_ZONE_HINT }) ?? "",
      projectId: r.string(c, "project_id", gp, { nonEmpty: true }) ?? "",
      bootDiskSizeGb: r.integer(c, "boot_disk_size_gb", gp, { min: 10, max: 65536 }) ?? 0,
    });
    return create(ProviderConfigSchema, { kind: { case: "gce", value: gce } });
  }
  if (kind === "manual") {
    const mp = joinPath(path, "manual");
    const c = r.child(m, "manual", path, KEYS.providerManual, { nullIsEmpty: true });
    if (!c) return undefined;
    const hostsPath = joinPath(mp, "hosts");
    const hosts: ManualHost[] = [];
    if (!Object.hasOwn(c, "hosts")) r.problem(hostsPath, "required (a non-empty list of hosts)");
    else if (!Array.isArray(c.hosts) || c.hosts.length === 0) {
      r.problem(hostsPath, `must be a non-empty list of hosts (got ${formatGot(c.hosts)})`);
    } else {
      c.hosts.forEach((item: unknown, i) => {
        const host = parseManualHost(item, `${hostsPath}[${i}]`, r);
        if (host) hosts.push(host);
      });
    }
    return create(ProviderConfigSchema, {
      kind: { case: "manual", value: create(ManualProviderSchema, { hosts }) },
    });
  }
  if (kind === "kubernetes") {
    const kp = joinPath(path, "kubernetes");
    const c = r.child(m, "kubernetes", path, KEYS.providerKubernetes, { nullIsEmpty: true });
    if (!c) return undefined;
    const provider = create(KubernetesProviderSchema, {
      instanceType: r.string(c, "instance_type", kp, { pattern: TOKEN, patternHint: TOKEN_HINT }) ??
        "",
      nodeSelector:
        r.stringMap(c, "node_selector", kp, { keyPattern: LABEL_KEY, keyHint: LABEL_KEY_HINT }) ??
          {},
      tolerations: parseTolerations(c, kp, r),
      rdma: r.boolean(c, "rdma", kp) ?? false,
    });
    return create(ProviderConfigSchema, { kind: { case: "kubernetes", value: provider } });
  }
  return undefined;
}

const TOLERATION_OPERATORS = ["Equal", "Exists"] as const;
const TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"] as const;

function parseTolerations(m: YamlMap, path: string, r: YamlReader): KubernetesToleration[] {
  const p = joinPath(path, "tolerations");
  if (!Object.hasOwn(m, "tolerations") || m.tolerations === null) return [];
  if (!Array.isArray(m.tolerations)) {
    r.problem(
      p,
      `must be a list of {key, operator, value, effect} (got ${formatGot(m.tolerations)})`,
    );
    return [];
  }
  const out: KubernetesToleration[] = [];
  m.tolerations.forEach((item: unknown, i) => {
    const ip = `${p}[${i}]`;
    const t = r.mapping(item, ip, KEYS.toleration);
    if (!t) return;
    const operator = r.oneOf(t, "operator", ip, TOLERATION_OPERATORS) ?? "";
    const key = r.string(t, "key", ip, { pattern: LABEL_KEY, patternHint: LABEL_KEY_HINT }) ?? "";
    if (!key && operator !== "Exists") {
      r.problem(joinPath(ip, "key"), 'required unless operator is "Exists"');
    }
    out.push(create(KubernetesTolerationSchema, {
      key,
      operator,
      value: r.string(t, "value", ip) ?? "",
      effect: r.oneOf(t, "effect", ip, TAINT_EFFECTS) ?? "",
    }));
  });
  return out;
}

const BAND_OF_NAME = {
  production: PriorityBand.PRODUCTION,
  interactive: PriorityBand.INTERACTIVE,
  batch: PriorityBand.BATCH,
} as const;
const BAND_NAMES = Object.keys(BAND_OF_NAME) as (keyof typeof BAND_OF_NAME)[];

function parseUserBudgets(m: YamlMap, r: YamlReader): UserBudget[] {
  const path = "controller.user_budgets";
  if (!Object.hasOwn(m, "user_budgets") || m.user_budgets === null) return [];
  if (!Array.isArray(m.user_budgets)) {
    r.problem(
      path,
      `must be a list of {users, max_tasks, max_band} (got ${formatGot(m.user_budgets)})`,
    );
    return [];
  }
  const out: UserBudget[] = [];
  m.user_budgets.forEach((item: unknown, i) => {
    const p = `${path}[${i}]`;
    const b = r.mapping(item, p, KEYS.userBudget);
    if (!b) return;
    const users = r.stringList(b, "users", p);
    const band = r.oneOf(b, "max_band", p, BAND_NAMES);
    const maxTasks = r.integer(b, "max_tasks", p, { min: 0, max: 100_000_000 }) ?? 0;
    if (!users || users.length === 0) {
      if (users) r.problem(joinPath(p, "users"), 'must list at least one user (or "*")');
      else if (!Object.hasOwn(b, "users")) {
        r.problem(joinPath(p, "users"), 'required (a list of user names, or "*")');
      }
      return;
    }
    const maxCpu = r.cpu(b, "max_cpu", p) ?? 0;
    const maxMemory = r.size(b, "max_memory", p, { positive: true }) ?? 0;
    const maxAcc = r.integer(b, "max_accelerators", p, { min: 0, max: 1_000_000 }) ?? 0;
    out.push(create(UserBudgetSchema, {
      users,
      maxTasks,
      maxCpuMillicores: maxCpu,
      maxMemoryBytes: maxMemory,
      maxAccelerators: maxAcc,
      maxBand: band === undefined ? PriorityBand.UNSPECIFIED : BAND_OF_NAME[band],
    }));
  });
  return out;
}

/** `deno_path`: an absolute path on the remote host (quoted in the bootstrap, so no `~`). */
function denoPath(m: YamlMap, path: string, r: YamlReader): string {
  return r.string(m, "deno_path", path, {
    pattern: /^\/[^\n\0]*$/,
    patternHint: "an absolute path of a Deno 2.9.6 binary on the host, e.g. /usr/local/bin/deno",
  }) ?? "";
}

/**
 * `known_hosts_file`: a path ssh reads host keys from (`~/` allowed, ssh expands it). No
 * whitespace, quotes or `%`: ssh's option parser would split or expand them.
 */
function knownHostsFile(m: YamlMap, path: string, r: YamlReader): string {
  return r.string(m, "known_hosts_file", path, {
    nonEmpty: true,
    pattern: /^[^\s"'%\\]+$/,
    patternHint: "a file path without whitespace, quotes, '%' or '\\'",
  }) ?? "";
}

function parseManualHost(item: unknown, path: string, r: YamlReader): ManualHost | undefined {
  if (typeof item === "string") {
    if (!HOST.test(item)) {
      r.problem(path, `must be ${HOST_HINT} (got ${formatGot(item)})`);
      return undefined;
    }
    r.present.add(path);
    const host = create(ManualHostSchema, { host: item });
    r.origins.set(host, path);
    return host;
  }
  if (typeof item !== "object" || item === null || Array.isArray(item)) {
    r.problem(
      path,
      `must be a host string or a mapping {host, user, key_file, port, known_hosts_file, deno_path} (got ${
        formatGot(item)
      })`,
    );
    return undefined;
  }
  const m = r.mapping(item, path, KEYS.manualHost);
  if (!m) return undefined;
  if (!Object.hasOwn(m, "host")) {
    r.problem(joinPath(path, "host"), "required");
    return undefined;
  }
  const host = r.string(m, "host", path, { pattern: HOST, patternHint: HOST_HINT });
  const result = create(ManualHostSchema, {
    host: host ?? "",
    user: r.string(m, "user", path, { nonEmpty: true, pattern: TOKEN, patternHint: TOKEN_HINT }) ??
      "",
    keyFile: r.string(m, "key_file", path, { nonEmpty: true }) ?? "",
    port: r.integer(m, "port", path, { min: 1, max: 65535 }) ?? 0,
    knownHostsFile: knownHostsFile(m, path, r),
    denoPath: denoPath(m, path, r),
  });
  if (host === undefined) return undefined;
  r.present.add(path);
  r.origins.set(result, path);
  return result;
}
