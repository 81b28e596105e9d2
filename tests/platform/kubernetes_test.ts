/**
 * The kubernetes platform against the API server stand-in (tests/fakes/kube_api.ts): the shared
 * contract, `cluster start` creating namespace/RBAC/ConfigMap/NodePools/Deployment/Service
 * idempotently (golden request transcripts), worker Pods (nodeSelector, tolerations,
 * hostNetwork, devices; light workers request none), quota refusals → QuotaExhaustedError,
 * stop leaving NodePools, Pod log following, kubeconfig credentials.
 * @module
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import {
  ConfigError,
  PermissionDeniedError,
  PlatformError,
  QuotaExhaustedError,
  ResourceNotFoundError,
} from "../../src/errors.ts";
import { parseConfig } from "../../src/config/mod.ts";
import { KubeClient, loadKubeCredentials, parseKubeconfig } from "../../src/kube/kube_client.ts";
import {
  KubernetesControllerLifecycle,
  type KubernetesControllerOptions,
  KubernetesPlatform,
  type KubernetesPlatformOptions,
  NODEPOOL_API,
  workerPodName,
} from "../../src/platform/kubernetes.ts";
import {
  KubernetesProviderSchema,
  KubernetesTolerationSchema,
  ProviderConfigSchema,
  ScaleGroupConfigSchema,
} from "../../src/rpc/gen/iris/v1/config_pb.ts";
import type { ScaleGroupConfig } from "../../src/rpc/gen/iris/v1/config_pb.ts";
import {
  AcceleratorSchema,
  AcceleratorType,
  ResourcesSchema,
} from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { KubeApiStandIn } from "../fakes/kube_api.ts";
import {
  connectController,
  removeLeftovers,
  startClusterLogStreaming,
} from "../../src/cluster/manager.ts";
import { createControllerLifecycle } from "../../src/cluster/lifecycle.ts";
import { platformFromConfig } from "../../src/cluster/platforms.ts";
import { assertGolden } from "../fakes/scripted_runner.ts";
import { contractRequest, runPlatformContract } from "./platform_contract.ts";

const NS = "iris";

function gpuGroup(overrides: { rdma?: boolean } = {}): ScaleGroupConfig {
  return create(ScaleGroupConfigSchema, {
    provider: create(ProviderConfigSchema, {
      kind: {
        case: "kubernetes",
        value: create(KubernetesProviderSchema, {
          instanceType: "gd-8xh100ib-i128",
          nodeSelector: { "node.coreweave.cloud/class": "gpu" },
          tolerations: [
            create(KubernetesTolerationSchema, {
              key: "nvidia.com/gpu",
              operator: "Exists",
              effect: "NoSchedule",
            }),
          ],
          rdma: overrides.rdma ?? true,
        }),
      },
    }),
    acceleratorType: AcceleratorType.GPU,
    acceleratorVariant: "H100",
    maxSlices: 4,
    vmResources: create(ResourcesSchema, {
      cpuMillicores: 128_000,
      memoryBytes: 2 ** 40,
      accelerator: create(AcceleratorSchema, {
        type: AcceleratorType.GPU,
        variant: "H100",
        count: 8,
      }),
    }),
  });
}

async function standIn(): Promise<{ api: KubeApiStandIn; connect: () => Promise<KubeClient> }> {
  const api = new KubeApiStandIn();
  const creds = await parseKubeconfig("/standin/kubeconfig", api.kubeconfig());
  return { api, connect: () => Promise.resolve(new KubeClient(creds, { timeout: seconds(10) })) };
}

function platformOptions(
  connect: () => Promise<KubeClient>,
  extra: Partial<KubernetesPlatformOptions> = {},
): KubernetesPlatformOptions {
  return { connect, labelPrefix: "iris", image: "registry.example/iris:0.1.0", ...extra };
}

/** Creates the namespace as `cluster start` would. */
async function withNamespace(connect: () => Promise<KubeClient>): Promise<void> {
  using kube = await connect();
  await kube.create("/api/v1/namespaces", { metadata: { name: NS } }, "create Namespace");
}

runPlatformContract({
  name: "kubernetes",
  create: async () => {
    const { api, connect } = await standIn();
    await withNamespace(connect);
    const platform = new KubernetesPlatform(platformOptions(connect));
    return {
      platform,
      groupConfig: () => gpuGroup(),
      cleanup: async () => {
        await platform[Symbol.asyncDispose]();
        await api[Symbol.asyncDispose]();
      },
    };
  },
});

function lifecycleOptions(
  connect: () => Promise<KubeClient>,
  extra: Partial<KubernetesControllerOptions> = {},
): KubernetesControllerOptions {
  return {
    connect,
    labelPrefix: "iris",
    image: "registry.example/iris:0.1.0",
    controllerInstanceType: "cd-gp-i64-erapids",
    scaleGroups: { "h100": gpuGroup(), "h100_spot": gpuGroup({ rdma: false }) },
    clusterConfig: "name: cw\n",
    checkHealth: () => Promise.resolve(true),
    readyTimeout: seconds(10),
    ...extra,
  };
}

/** A Deployment becomes available as soon as it is created (a kubelet that is never slow). */
function availableOnCreate(api: KubeApiStandIn): void {
  api.onCreate = (kind, obj) => {
    if (kind !== "Deployment") return;
    const path = `/apis/apps/v1/namespaces/${obj.metadata!.namespace}/deployments/${
      obj.metadata!.name
    }`;
    api.setStatus(path, { replicas: 1, readyReplicas: 1, availableReplicas: 1 });
  };
}

Deno.test("cluster start creates namespace, RBAC, ConfigMap, NodePools, Deployment and Service (golden)", async () => {
  const { api, connect } = await standIn();
  await using _api = api;
  availableOnCreate(api);
  await using lifecycle = new KubernetesControllerLifecycle(lifecycleOptions(connect));
  const url = await lifecycle.start();
  assert.equal(url, "http://iris-controller-svc.iris.svc.cluster.local:10000");
  await assertGolden("kubernetes_cluster_start", api.transcript());
  assert.deepEqual(api.paths(NODEPOOL_API), [
    `${NODEPOOL_API}/iris-controller`,
    `${NODEPOOL_API}/iris-h100`,
    `${NODEPOOL_API}/iris-h100-spot`,
  ]);
  const pool = api.get(`${NODEPOOL_API}/iris-h100`)!.spec as Record<string, unknown>;
  assert.equal(pool.autoscaling, true);
  assert.equal(pool.targetNodes, 0);
  assert.equal(pool.instanceType, "gd-8xh100ib-i128");
  assert.equal(await lifecycle.discover(), url);
});

Deno.test("cluster start again reuses every object and replaces the ConfigMap (golden)", async () => {
  const { api, connect } = await standIn();
  await using _api = api;
  availableOnCreate(api);
  await using first = new KubernetesControllerLifecycle(lifecycleOptions(connect));
  await first.start();
  api.clearTranscript();
  await using second = new KubernetesControllerLifecycle(
    lifecycleOptions(connect, { clusterConfig: "name: cw2\n" }),
  );
  await second.start();
  await assertGolden("kubernetes_cluster_start_again", api.transcript());
  const cm = api.get("/api/v1/namespaces/iris/configmaps/iris-cluster-config")!;
  assert.deepEqual(cm.data, { "config.yaml": "name: cw2\n" });
});

Deno.test("start waits on a watch until the Deployment is available", async () => {
  const { api, connect } = await standIn();
  await using _api = api;
  await using lifecycle = new KubernetesControllerLifecycle(lifecycleOptions(connect));
  const started = lifecycle.start();
  await waitFor(() => api.transcript().includes("deployments?watch=true"), {
    timeout: seconds(10),
    what: "the Deployment watch",
  });
  assert.equal(await lifecycle.discover(), undefined);
  api.setStatus("/apis/apps/v1/namespaces/iris/deployments/iris-controller", {
    availableReplicas: 1,
  });
  assert.equal(await started, "http://iris-controller-svc.iris.svc.cluster.local:10000");
});

Deno.test("start fails naming the Deployment when it never becomes available", async () => {
  const { api, connect } = await standIn();
  await using _api = api;
  await using lifecycle = new KubernetesControllerLifecycle(
    lifecycleOptions(connect, { readyTimeout: seconds(0.5) }),
  );
  await assert.rejects(lifecycle.start(), /Deployment iris\/iris-controller not available/);
});

Deno.test("stop deletes the Deployment, the Service and worker Pods and leaves NodePools (golden)", async () => {
  const { api, connect } = await standIn();
  await using _api = api;
  availableOnCreate(api);
  await using lifecycle = new KubernetesControllerLifecycle(lifecycleOptions(connect));
  await lifecycle.start();
  await using platform = new KubernetesPlatform(platformOptions(connect));
  await platform.createSlice(
    contractRequest({ platform, groupConfig: () => gpuGroup() }, "iris-h100-1", "h100"),
  );
  api.clearTranscript();
  await lifecycle.stop();
  // The deletes run in parallel: compared in sorted order.
  await assertGolden("kubernetes_cluster_stop", api.transcript().split("\n").sort().join("\n"));
  assert.deepEqual(api.paths("/api/v1/namespaces/iris/pods"), []);
  assert.equal(api.paths(NODEPOOL_API).length, 3);
  assert.equal(await lifecycle.discover(), undefined);
  // Stopping again finds nothing to delete and succeeds.
  await lifecycle.stop();
});

Deno.test("a worker Pod has the group's nodeSelector, tolerations, hostNetwork and devices (golden)", async () => {
  const { api, connect } = await standIn();
  await using _api = api;
  await withNamespace(connect);
  await using platform = new KubernetesPlatform(platformOptions(connect));
  api.clearTranscript();
  const slice = await platform.createSlice({
    ...contractRequest({ platform, groupConfig: () => gpuGroup() }, "iris-h100-1", "h100"),
    controllerUrl: "http://iris-controller-svc.iris.svc.cluster.local:10000",
  });
  await assertGolden("kubernetes_slice_create", api.transcript());
  assert.equal(slice.state, "creating");
  const pod = api.get("/api/v1/namespaces/iris/pods/iris-h100-1-w0")!;
  const spec = pod.spec as Record<string, unknown> & { containers: Record<string, unknown>[] };
  assert.equal(spec.hostNetwork, true);
  assert.equal(spec.dnsPolicy, "ClusterFirstWithHostNet");
  assert.deepEqual(spec.containers[0]!.resources, {
    limits: { "nvidia.com/gpu": "8", "rdma/ib": "1" },
  });
  // Running and Ready: the slice is ready with the Pod's address.
  api.setStatus("/api/v1/namespaces/iris/pods/iris-h100-1-w0", {
    phase: "Running",
    podIP: "10.0.0.7",
    conditions: [{ type: "Ready", status: "True" }],
  });
  const ready = await platform.describeSlice("iris-h100-1");
  assert.equal(ready.state, "ready");
  assert.equal(ready.vms[0]!.address, "10.0.0.7");
});

Deno.test("light workers (runtime kubernetes): the worker Pod requests no GPUs or RDMA", async () => {
  const { api, connect } = await standIn();
  await using _api = api;
  await withNamespace(connect);
  await using platform = new KubernetesPlatform(
    platformOptions(connect, { runtime: "kubernetes", s3SecretName: "s3-creds" }),
  );
  await platform.createSlice(
    contractRequest({ platform, groupConfig: () => gpuGroup() }, "iris-h100-1", "h100"),
  );
  const pod = api.get("/api/v1/namespaces/iris/pods/iris-h100-1-w0")!;
  const c = (pod.spec as { containers: { resources: unknown; env: { name: string }[] }[] })
    .containers[0]!;
  assert.deepEqual(c.resources, {});
  const env = c.env.map((e) => e.name);
  for (
    const name of [
      "IRIS_TASK_RUNTIME",
      "IRIS_NAMESPACE",
      "IRIS_SERVICE_ACCOUNT_NAME",
      "IRIS_S3_SECRET_NAME",
      "IRIS_TASK_IMAGE",
      "IRIS_NODE_NAME",
      "IRIS_TASK_RDMA",
      "IRIS_TASK_TOLERATIONS",
    ]
  ) {
    assert.ok(env.includes(name), `${name} in ${env}`);
  }
  // The worker's root is on the node, where its task Pods mount their attempt directories.
  const spec = pod.spec as { volumes: unknown[]; containers: { args: string[] }[] };
  assert.deepEqual(spec.volumes, [{
    name: "worker-root",
    hostPath: { path: "/var/lib/iris/worker", type: "DirectoryOrCreate" },
  }]);
  assert.ok(spec.containers[0]!.args.join(" ").includes("--root-dir /var/lib/iris/worker"));
});

Deno.test("a quota refusal is a QuotaExhaustedError naming verb and Pod; nothing is left (golden)", async () => {
  const { api, connect } = await standIn();
  await using _api = api;
  await withNamespace(connect);
  await using platform = new KubernetesPlatform(platformOptions(connect));
  // Two hosts: the first Pod is created, the second refused by the namespace's ResourceQuota,
  // and the first is deleted again.
  api.failNext(
    "POST",
    /\/pods$/,
    403,
    "Forbidden",
    'pods "iris-h100-1-w1" is forbidden: exceeded quota: gpu-quota, requested: nvidia.com/gpu=8, used: nvidia.com/gpu=8, limited: nvidia.com/gpu=8',
    1,
  );
  api.clearTranscript();
  const request = {
    ...contractRequest({ platform, groupConfig: () => gpuGroup() }, "iris-h100-1", "h100"),
    vmCount: 2,
  };
  const err = await platform.createSlice(request).catch((e) => e);
  assert.ok(err instanceof QuotaExhaustedError, String(err));
  assert.match(
    err.message,
    /^Cannot create Pod iris\/iris-h100-1-w1: 403 Forbidden: .*exceeded quota/,
  );
  await assertGolden("kubernetes_slice_create_quota", api.transcript());
  assert.deepEqual(api.paths("/api/v1/namespaces/iris/pods"), []);
});

Deno.test("other API errors are classified: 401 permission, 404 not found, 500 unavailable", async () => {
  const { api, connect } = await standIn();
  await using _api = api;
  using bad = new KubeClient({ server: api.url, token: "wrong" });
  await assert.rejects(
    bad.get("/api/v1/namespaces/iris", "read Namespace iris"),
    (e) =>
      e instanceof PermissionDeniedError && /read Namespace iris: 401 Unauthorized/.test(e.message),
  );
  using kube = await connect();
  await assert.rejects(
    kube.get("/api/v1/namespaces/nope", "read Namespace nope"),
    (e) =>
      e instanceof ResourceNotFoundError &&
      e.message === 'Cannot read Namespace nope: 404 NotFound: namespaces "nope" not found',
  );
  api.failNext("GET", /namespaces$/, 503, "ServiceUnavailable", "etcd is down");
  await assert.rejects(
    kube.list("/api/v1/namespaces", "list Namespaces"),
    (e) => e instanceof PlatformError && e.retryable && /503 ServiceUnavailable/.test(e.message),
  );
  // Creating in a namespace that does not exist: the API's 404 names the namespace.
  await assert.rejects(
    kube.create("/api/v1/namespaces/gone/pods", { metadata: { name: "p" } }, "create Pod gone/p"),
    /namespaces "gone" not found/,
  );
});

Deno.test("startupLogs reads a worker Pod's log and followLogs streams it until aborted", async () => {
  const { api, connect } = await standIn();
  await using _api = api;
  await withNamespace(connect);
  await using platform = new KubernetesPlatform(platformOptions(connect));
  await platform.createSlice(
    contractRequest({ platform, groupConfig: () => gpuGroup() }, "iris-h100-1", "h100"),
  );
  api.appendLog(NS, "iris-h100-1-w0", "worker starting");
  assert.equal(await platform.startupLogs("iris-h100-1", "iris-h100-1-w0"), "worker starting\n");
  await assert.rejects(platform.startupLogs("iris-h100-1", "nope-w0"), ResourceNotFoundError);
  const got: string[] = [];
  const stop = new AbortController();
  const following = platform.followLogs((pod, line) => got.push(`${pod}: ${line}`), stop.signal);
  await waitFor(() => got.length === 1, { timeout: seconds(10), what: "the first log line" });
  api.appendLog(NS, "iris-h100-1-w0", "registered");
  await waitFor(() => got.length === 2, { timeout: seconds(10), what: "the followed line" });
  stop.abort();
  await following;
  assert.deepEqual(got, ["iris-h100-1-w0: worker starting", "iris-h100-1-w0: registered"]);
  assert.match(
    api.transcript(),
    /GET \/api\/v1\/namespaces\/iris\/pods\/iris-h100-1-w0\/log\?follow=true/,
  );
});

Deno.test("kubeconfig: token, inline CA and client cert, context namespace; in-cluster account", async () => {
  const b64 = (s: string) => btoa(s);
  const text = [
    "apiVersion: v1",
    "current-context: b",
    "clusters:",
    "  - {name: c, cluster: {server: 'https://k.example:6443/', certificate-authority-data: " +
    `${b64("CA PEM")}}}`,
    "users:",
    `  - {name: u, user: {client-certificate-data: ${b64("CERT")}, client-key-data: ${
      b64("KEY")
    }}}`,
    "  - {name: t, user: {token: abc}}",
    "contexts:",
    "  - {name: a, context: {cluster: c, user: t}}",
    "  - {name: b, context: {cluster: c, user: u, namespace: ml}}",
  ].join("\n");
  const b = await parseKubeconfig("/k", text);
  assert.deepEqual(b, {
    server: "https://k.example:6443",
    token: undefined,
    caCert: "CA PEM",
    clientCert: "CERT",
    clientKey: "KEY",
    namespace: "ml",
  });
  assert.equal((await parseKubeconfig("/k", text, "a")).token, "abc");
  await assert.rejects(parseKubeconfig("/k", text, "zz"), /kubeconfig \/k: no context named 'zz'/);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/config`, text);
    const env = (n: string) => ({ KUBECONFIG: `${dir}/config` } as Record<string, string>)[n];
    assert.equal((await loadKubeCredentials({ env })).namespace, "ml");
    await assert.rejects(
      loadKubeCredentials({ kubeconfig: `${dir}/missing`, env }),
      /Cannot read kubeconfig .*missing/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("config: a kubernetes cluster loads with defaults; bad fields are named", () => {
  const ok = parseConfig(`
controller: {kubernetes: {}}
platform: {kubernetes: {image: r/iris:1}}
scale_groups:
  h100:
    provider: {kubernetes: {instance_type: gd-8xh100ib-i128, tolerations: [{key: a, effect: NoSchedule}]}}
    accelerator_type: gpu
    max_slices: 2
    vm_resources: {cpu: 128, memory: 1TiB, accelerators: 8}
`);
  assert.equal(ok.platform?.kubernetes?.flavour, "coreweave");
  assert.equal(ok.platform?.kubernetes?.namespace, "iris");
  assert.equal(ok.controller?.kind.case === "kubernetes" && ok.controller.kind.value.port, 10000);
  assert.throws(
    () =>
      parseConfig(`
controller: {kubernetes: {}}
platform: {kubernetes: {image: r/iris:1, runtime: docker}}
scale_groups:
  h100:
    provider: {kubernetes: {tolerations: [{effect: Sometimes}]}}
    max_slices: 2
    vm_resources: {cpu: 1, memory: 1GiB}
`),
    (e: Error) =>
      /platform\.kubernetes\.runtime: must be one of process, kubernetes/.test(e.message) &&
      /tolerations\[0\]\.effect: must be one of/.test(e.message) &&
      /tolerations\[0\]\.key: required unless operator is "Exists"/.test(e.message) &&
      /provider\.kubernetes\.instance_type: required with the coreweave flavour/.test(e.message),
  );
  assert.throws(
    () =>
      parseConfig(`
controller: {kubernetes: {}}
scale_groups:
  g: {provider: {tpu: {}}, max_slices: 1, accelerator_type: tpu, accelerator_variant: v5litepod-4}
`),
    (e: Error) =>
      /platform\.kubernetes\.image: required/.test(e.message) &&
      /a kubernetes controller can only drive kubernetes providers/.test(e.message),
  );
});

Deno.test("cluster logs follow the controller and worker Pods through the kubeconfig", async () => {
  const { api, connect } = await standIn();
  await using _api = api;
  await withNamespace(connect);
  const dir = await Deno.makeTempDir({ prefix: "iris-k8s-logs-" });
  try {
    await Deno.writeTextFile(`${dir}/kubeconfig`, api.kubeconfig());
    const config = parseConfig(`
controller: {kubernetes: {}}
platform: {kubernetes: {image: r/iris:1, kubeconfig: ${dir}/kubeconfig}}
scale_groups:
  h100:
    provider: {kubernetes: {instance_type: gd-8xh100ib-i128}}
    accelerator_type: gpu
    max_slices: 2
    vm_resources: {cpu: 128, memory: 1TiB, accelerators: 8}
`);
    using kube = await connect();
    await kube.create("/api/v1/namespaces/iris/pods", {
      metadata: { name: "iris-controller-abc", labels: { "iris-app": "controller" } },
    }, "create Pod");
    await using platform = new KubernetesPlatform(platformOptions(connect));
    await platform.createSlice(
      contractRequest({ platform, groupConfig: () => gpuGroup() }, "iris-h100-1", "h100"),
    );
    api.appendLog(NS, "iris-controller-abc", "controller up");
    api.appendLog(NS, "iris-h100-1-w0", "worker up");
    await using logs = startClusterLogStreaming(config, {
      outputDir: `${dir}/logs`,
      discoveryInterval: seconds(0.2),
    });
    const read = (f: string) => Deno.readTextFile(`${dir}/logs/${f}`).catch(() => "");
    await waitFor(
      async () =>
        (await read("controller.log")).includes("controller up") &&
        (await read("iris-h100-1-w0.log")).includes("worker up"),
      { timeout: seconds(10), what: "both Pod logs in files" },
    );
    api.appendLog(NS, "iris-h100-1-w0", "task started");
    await waitFor(async () => (await read("iris-h100-1-w0.log")).includes("task started"), {
      timeout: seconds(10),
      what: "a followed line",
    });
    await logs.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kubernetes refuses auth.mode token naming auth.mode, before any API call", async () => {
  const config = parseConfig(`
controller: {kubernetes: {}}
platform: {kubernetes: {image: r/iris:1}}
auth:
  mode: token
  tokens: [{ user: alice, sha256: ${"a".repeat(64)} }]
scale_groups:
  h100:
    provider: {kubernetes: {instance_type: gd-8xh100ib-i128}}
    max_slices: 1
    vm_resources: {cpu: 1, memory: 1GiB}
`);
  const { api } = await standIn();
  await using _api = api;
  const refused = (err: unknown) =>
    err instanceof ConfigError && err.path === "auth.mode" &&
    /not supported on kubernetes yet/.test(err.message);
  assert.throws(
    () => createControllerLifecycle(config, { workerTokenSources: { env: "t0ken" } }),
    refused,
  );
  assert.throws(() => platformFromConfig(config, { workerToken: "t0ken" }), refused);
  assert.equal(api.transcript(), "");
});

Deno.test("https: the kubeconfig's cluster CA is trusted, and a server it did not sign is refused", async () => {
  await using api = new KubeApiStandIn("standin-token", { tls: true });
  const creds = await parseKubeconfig("/k", api.kubeconfig());
  assert.ok(creds.caCert?.includes("BEGIN CERTIFICATE"));
  using kube = new KubeClient(creds);
  await kube.create("/api/v1/namespaces", { metadata: { name: NS } }, "create Namespace iris");
  assert.equal(
    (await kube.get(`/api/v1/namespaces/${NS}`, "read Namespace iris")).metadata?.name,
    NS,
  );
  // Without the CA the system roots do not know the test CA: a retryable failure naming the call.
  using untrusted = new KubeClient({ server: api.url, token: api.token });
  await assert.rejects(
    untrusted.get(`/api/v1/namespaces/${NS}`, "read Namespace iris"),
    (e) => e instanceof PlatformError && /^Cannot read Namespace iris: /.test(e.message),
  );
});

Deno.test("reload replaces the config and rolls the Deployment; status and startup logs read the Pods", async () => {
  const { api, connect } = await standIn();
  await using _api = api;
  availableOnCreate(api);
  await using lifecycle = new KubernetesControllerLifecycle(lifecycleOptions(connect));
  await lifecycle.start();
  await using updated = new KubernetesControllerLifecycle(
    lifecycleOptions(connect, { clusterConfig: "name: cw3\n" }),
  );
  api.clearTranscript();
  assert.equal(await updated.reload(), "http://iris-controller-svc.iris.svc.cluster.local:10000");
  assert.match(
    api.transcript(),
    /PATCH \/apis\/apps\/v1\/namespaces\/iris\/deployments\/iris-controller -> 200\n {2}\{"spec":\{"template":\{"metadata":\{"annotations":\{"iris\/restarted-at":/,
  );
  const cmPath = "/api/v1/namespaces/iris/configmaps/iris-cluster-config";
  assert.deepEqual(api.get(cmPath)!.data, { "config.yaml": "name: cw3\n" });
  // A lifecycle made without a config (for status or stop) keeps the stored one.
  await using bare = new KubernetesControllerLifecycle(
    lifecycleOptions(connect, { clusterConfig: undefined }),
  );
  await bare.reload();
  assert.deepEqual(api.get(cmPath)!.data, { "config.yaml": "name: cw3\n" });
  // status: the Deployment is available; the health RPC is the injected check.
  assert.deepEqual(await bare.status(), {
    running: true,
    url: "http://iris-controller-svc.iris.svc.cluster.local:10000",
    healthy: true,
  });
  assert.equal(await bare.fetchStartupLogs(), "(no controller Pod)");
  using kube = await connect();
  await kube.create("/api/v1/namespaces/iris/pods", {
    metadata: { name: "iris-controller-abc", labels: { "iris-app": "controller" } },
  }, "create Pod");
  api.appendLog(NS, "iris-controller-abc", "Controller started at http://0.0.0.0:10000");
  assert.match(await bare.fetchStartupLogs(), /Controller started/);
});

Deno.test("worker Pod names keep the host suffix and stay unique for long or odd slice ids", () => {
  assert.equal(workerPodName("iris-h100-1", 3), "iris-h100-1-w3");
  const long = `iris-${"g".repeat(40)}-${"x".repeat(20)}-12345`;
  const a = workerPodName(long, 0);
  const b = workerPodName(`${long}6`, 0);
  assert.ok(a.length <= 63 && b.length <= 63, `${a} ${b}`);
  assert.match(a, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  assert.ok(a.endsWith("-w0") && a !== b);
  // "_" is not allowed in Pod names: mapped, and marked so "a_b" and "a-b" differ.
  assert.notEqual(workerPodName("iris-h100_spot-1", 0), workerPodName("iris-h100-spot-1", 0));
});

Deno.test("connectController reaches the controller Service through the API server's service proxy", async () => {
  const { api, connect } = await standIn();
  await using _api = api;
  // The controller behind the Service: answers with what it was sent.
  await using backend = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) =>
      Response.json({
        path: new URL(req.url).pathname,
        body: await req.text(),
        auth: req.headers.get("authorization"),
      }),
  );
  api.setServiceBackend(NS, "iris-controller-svc", `http://127.0.0.1:${backend.addr.port}`);
  await using lifecycle = new KubernetesControllerLifecycle(lifecycleOptions(connect));
  await using conn = await connectController(
    lifecycle,
    "http://iris-controller-svc.iris.svc.cluster.local:10000",
  );
  assert.match(conn.via, /^API server service proxy to http:\/\/iris-controller-svc/);
  const res = await fetch(`${conn.url}/iris.v1.ControllerService/GetControllerStatus`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  assert.deepEqual(await res.json(), {
    path: "/iris.v1.ControllerService/GetControllerStatus",
    body: "{}",
    // The API server's credentials stay with the API server.
    auth: null,
  });
  assert.equal(
    api.transcript(),
    "POST /api/v1/namespaces/iris/services/iris-controller-svc:10000/proxy/iris.v1.ControllerService/GetControllerStatus -> 200",
  );
});

Deno.test("iris cluster stop on kubernetes (through the kubeconfig) removes the controller and worker Pods", async () => {
  const { api, connect } = await standIn();
  await using _api = api;
  availableOnCreate(api);
  const dir = await Deno.makeTempDir({ prefix: "iris-k8s-stop-" });
  try {
    await Deno.writeTextFile(`${dir}/kubeconfig`, api.kubeconfig());
    const config = parseConfig(`
controller: {kubernetes: {}}
platform: {kubernetes: {image: r/iris:1, kubeconfig: ${dir}/kubeconfig}}
scale_groups:
  h100:
    provider: {kubernetes: {instance_type: gd-8xh100ib-i128}}
    max_slices: 2
    vm_resources: {cpu: 128, memory: 1TiB}
`);
    await using lifecycle = new KubernetesControllerLifecycle(lifecycleOptions(connect));
    await lifecycle.start();
    await using platform = new KubernetesPlatform(platformOptions(connect));
    await platform.createSlice(
      contractRequest({ platform, groupConfig: () => gpuGroup() }, "iris-h100-1", "h100"),
    );
    const lines: string[] = [];
    const found = await removeLeftovers(config, { log: (l) => lines.push(l) });
    assert.deepEqual(found.found, [
      "controller Deployment at http://iris-controller-svc.iris.svc.cluster.local:10000",
      "slice iris-h100-1 (h100, creating)",
    ]);
    assert.deepEqual(found.stopped, ["controller"]);
    assert.deepEqual(api.paths("/api/v1/namespaces/iris/pods"), []);
    assert.deepEqual(api.paths("/apis/apps/v1/namespaces/iris/deployments"), []);
    assert.equal(api.paths(NODEPOOL_API).length, 3);
    // Nothing left: a second stop reports nothing to remove.
    const again = await removeLeftovers(config, { log: (l) => lines.push(l) });
    assert.deepEqual(again.found, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
