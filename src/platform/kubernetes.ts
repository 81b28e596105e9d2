/**
 * Kubernetes platform (CoreWeave first): slices are Pods, one worker Pod per host, on the
 * scale group's nodes (nodeSelector, tolerations, hostNetwork); the controller is a Deployment
 * behind a ClusterIP Service that workers reach by in-cluster DNS. With the coreweave flavour
 * `cluster start` also makes one NodePool per scale group (compute.coreweave.com/v1alpha1,
 * `autoscaling: true`, `targetNodes: 0`) that CoreWeave grows when Pods wait for nodes and
 * shrinks to zero when idle; stop never deletes NodePools. Everything goes through
 * {@linkcode KubeClient} (REST API, no kubectl). Unlike gcp/manual there is no bootstrap
 * script: the Pod's command is the worker.
 * @module
 */
import { PlatformError, ResourceNotFoundError } from "../errors.ts";
import { formatCores } from "../format.ts";
import type { KubernetesToleration, ScaleGroupConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import { type Duration, minutes, timestamp } from "../time.ts";
import { acceleratorFlags, groupAccelerator } from "./accelerator.ts";
import {
  boundedKubeName,
  GPU_RESOURCE,
  KubeAlreadyExistsError,
  type KubeClient,
  kubeName,
  type KubeObject,
  RDMA_RESOURCE,
} from "../kube/mod.ts";
import type {
  CloudSliceState,
  ControllerLifecycle,
  ControllerStatus,
  CreateSliceRequest,
  Platform,
  PlatformCallOptions,
  SliceInfo,
  VmInfo,
  VmState,
} from "./platform.ts";
import { checkOnce, type HealthCheck, type Tunnel } from "./ssh.ts";
import type { FollowedLogTarget } from "./log_stream.ts";

/** The CoreWeave NodePool custom resource (docs.coreweave.com, CKS Node Pool reference). */
export const NODEPOOL_API = "/apis/compute.coreweave.com/v1alpha1/nodepools";
/** Where the controller Pod mounts the cluster config ConfigMap. */
export const CONFIG_MOUNT = "/etc/iris";
/** Where the image holds the Iris checkout. */
export const IMAGE_IRIS_DIR = "/app";

/** What every Kubernetes object Iris makes is called, from the label prefix. */
export interface KubeNames {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly role: string;
  readonly configMap: string;
  readonly deployment: string;
  readonly service: string;
  /** The label every Iris object carries (`=true`). */
  readonly managed: string;
  readonly scaleGroup: string;
  readonly sliceId: string;
  readonly app: string;
  /** The node label of Iris NodePools (their `nodeLabels`), selected by worker Pods. */
  readonly nodePoolLabel: string;
}

/** The Pod of host `index` of a slice: `<slice-id>-w<index>` (see boundedKubeName). */
export function workerPodName(sliceId: string, index: number): string {
  return boundedKubeName(sliceId, `-w${index}`);
}

/** A valid label value. */
function labelValue(value: string): string {
  return value.replace(/[^A-Za-z0-9_.-]/g, "-").slice(0, 63).replace(
    /^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g,
    "",
  );
}

/** The names of one cluster's objects. */
export function kubeNames(labelPrefix: string, namespace?: string): KubeNames {
  const p = kubeName(labelPrefix);
  return {
    namespace: namespace || p,
    serviceAccount: p,
    role: p,
    configMap: `${p}-cluster-config`,
    deployment: `${p}-controller`,
    service: `${p}-controller-svc`,
    managed: `${p}-managed`,
    scaleGroup: `${p}-scale-group`,
    sliceId: `${p}-slice-id`,
    app: `${p}-app`,
    nodePoolLabel: `${p}-nodepool`,
  };
}

/** The NodePool of a scale group: `{label_prefix}-{group}`. */
export function nodePoolName(labelPrefix: string, group: string): string {
  return kubeName(`${labelPrefix}-${group}`);
}

/** The in-cluster DNS URL of the controller Service. */
export function controllerServiceUrl(names: KubeNames, port: number): string {
  return `http://${names.service}.${names.namespace}.svc.cluster.local:${port}`;
}

/** Options of {@linkcode KubernetesPlatform}. */
export interface KubernetesPlatformOptions {
  /** The API client, made on first use (credentials are read then). */
  readonly connect: () => Promise<KubeClient>;
  readonly labelPrefix: string;
  readonly namespace?: string;
  /** "coreweave": worker Pods select their group's NodePool. @default "coreweave" */
  readonly flavour?: "coreweave" | "generic";
  /** An image with `deno` on PATH and Iris at /app. */
  readonly image: string;
  /** "kubernetes": light workers (tasks get their own Pods; worker Pods request no devices). */
  readonly runtime?: "process" | "kubernetes";
  readonly s3SecretName?: string;
  readonly cacheDir?: string;
  /** @default 10001 */
  readonly workerPort?: number;
  /** Limit of one API call. @default 2m */
  readonly callTimeout?: Duration;
}

function tolerationJson(t: KubernetesToleration) {
  return {
    ...(t.key ? { key: t.key } : {}),
    operator: t.operator || "Equal",
    ...(t.value ? { value: t.value } : {}),
    ...(t.effect ? { effect: t.effect } : {}),
  };
}

/** The worker Pod of host `index` of a slice. */
export function workerPodManifest(
  o: KubernetesPlatformOptions,
  request: CreateSliceRequest,
  index: number,
): KubeObject {
  const names = kubeNames(o.labelPrefix, o.namespace);
  const { config, sliceId, scaleGroup } = request;
  const k8s = config.provider?.kind.case === "kubernetes" ? config.provider.kind.value : undefined;
  const port = o.workerPort || 10001;
  const accelerator = groupAccelerator(config);
  const light = o.runtime === "kubernetes";
  const args = [
    "run",
    "-A",
    `${IMAGE_IRIS_DIR}/cli.ts`,
    "worker",
    "serve",
    "--controller",
    request.controllerUrl,
    "--worker-id",
    `${sliceId}-w${index}`,
    "--slice-id",
    sliceId,
    "--scale-group",
    scaleGroup,
    "--port",
    String(port),
    "--host",
    "0.0.0.0",
    // Kubernetes expands $(POD_IP) from the env below; with hostNetwork it is the node's IP.
    "--advertise-url",
    `http://$(POD_IP):${port}`,
  ];
  const vm = config.vmResources;
  if (vm?.cpuMillicores) args.push("--cpu", formatCores(vm.cpuMillicores));
  if (vm?.memoryBytes) args.push("--memory", String(vm.memoryBytes));
  args.push(...acceleratorFlags(accelerator));
  const attributes: Record<string, string> = {
    ...(config.region ? { region: config.region } : {}),
    preemptible: String(config.preemptible),
    ...config.attributes,
    ...(config.zone ? { zone: config.zone } : {}),
  };
  for (const [k, v] of Object.entries(attributes).sort(([a], [b]) => a.localeCompare(b))) {
    args.push("--attribute", `${k}=${v}`);
  }
  const limits: Record<string, string> = {};
  if (!light && accelerator?.kind === "gpu") limits[GPU_RESOURCE] = String(accelerator.count);
  if (!light && k8s?.rdma) limits[RDMA_RESOURCE] = "1";
  const env: KubeObject[] = [
    { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
    { name: "IRIS_HOME", value: "/var/lib/iris" },
  ];
  const volumes: KubeObject[] = [];
  const volumeMounts: KubeObject[] = [];
  if (light) {
    env.push(
      { name: "IRIS_TASK_RUNTIME", value: "kubernetes" },
      { name: "IRIS_NAMESPACE", value: names.namespace },
      { name: "IRIS_SERVICE_ACCOUNT_NAME", value: names.serviceAccount },
      { name: "IRIS_TASK_IMAGE", value: o.image },
      { name: "IRIS_LABEL_PREFIX", value: o.labelPrefix },
    );
    env.push({ name: "IRIS_NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } });
    if (o.s3SecretName) env.push({ name: "IRIS_S3_SECRET_NAME", value: o.s3SecretName });
    if (k8s?.rdma) env.push({ name: "IRIS_TASK_RDMA", value: "true" });
    if (k8s?.tolerations.length) {
      // The node's taints apply to task Pods too (NoExecute ones even with nodeName set).
      env.push({
        name: "IRIS_TASK_TOLERATIONS",
        value: JSON.stringify(k8s.tolerations.map(tolerationJson)),
      });
    }
    // Task Pods on this node mount their attempt directory from the node at the same path.
    const root = `${o.cacheDir ?? "/var/lib/iris"}/worker`;
    args.push("--root-dir", root);
    volumes.push({ name: "worker-root", hostPath: { path: root, type: "DirectoryOrCreate" } });
    volumeMounts.push({ name: "worker-root", mountPath: root });
  }
  if (o.cacheDir) env.push({ name: "IRIS_CACHE_DIR", value: o.cacheDir });
  const nodeSelector: Record<string, string> = { ...k8s?.nodeSelector };
  if (o.flavour !== "generic") {
    nodeSelector[names.nodePoolLabel] = nodePoolName(o.labelPrefix, scaleGroup);
  }
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: workerPodName(sliceId, index),
      namespace: names.namespace,
      labels: {
        [names.managed]: "true",
        [names.app]: "worker",
        [names.scaleGroup]: labelValue(scaleGroup),
        [names.sliceId]: labelValue(sliceId),
        ...Object.fromEntries(
          Object.entries(request.labels).map(([k, v]) => [labelValue(k), labelValue(v)]),
        ),
      },
      annotations: { "iris/slice-id": sliceId, "iris/scale-group": scaleGroup },
    },
    spec: {
      restartPolicy: "Always",
      hostNetwork: true,
      dnsPolicy: "ClusterFirstWithHostNet",
      serviceAccountName: names.serviceAccount,
      nodeSelector,
      tolerations: (k8s?.tolerations ?? []).map(tolerationJson),
      containers: [{
        name: "worker",
        image: o.image,
        command: ["deno"],
        args,
        env,
        ports: [{ name: "rpc", containerPort: port }],
        // Ready (and the slice's VM "ready") once the worker's RPC port accepts connections.
        readinessProbe: { tcpSocket: { port }, periodSeconds: 5 },
        resources: Object.keys(limits).length ? { limits } : {},
        ...(volumeMounts.length ? { volumeMounts } : {}),
      }],
      ...(volumes.length ? { volumes } : {}),
    },
  };
}

interface PodStatus {
  readonly phase?: string;
  readonly podIP?: string;
  readonly reason?: string;
  readonly message?: string;
  readonly conditions?: readonly { type: string; status: string; reason?: string }[];
}

type Pod = KubeObject & { readonly status?: PodStatus };

function vmState(pod: Pod): VmState {
  if (pod.metadata?.deletionTimestamp) return "terminated";
  switch (pod.status?.phase) {
    case "Running":
      return pod.status.conditions?.some((c) => c.type === "Ready" && c.status === "True")
        ? "ready"
        : "booting";
    case "Pending":
    case undefined:
      return "booting";
    case "Failed":
      return "failed";
    case "Succeeded":
      return "terminated";
    default:
      return "unknown";
  }
}

function sliceState(pods: readonly Pod[], vms: readonly VmInfo[]): CloudSliceState {
  if (pods.some((p) => p.metadata?.deletionTimestamp)) return "deleting";
  if (vms.some((v) => v.state === "failed" || v.state === "terminated")) return "failed";
  if (vms.every((v) => v.state === "ready")) return "ready";
  if (pods.every((p) => !p.status?.phase || p.status.phase === "Pending")) return "creating";
  return "bootstrapping";
}

/** The Iris slice a set of Pods forms. */
export function podsToSlice(names: KubeNames, sliceId: string, pods: readonly Pod[]): SliceInfo {
  const sorted = [...pods].sort((a, b) => podIndex(a) - podIndex(b));
  const vms: VmInfo[] = sorted.map((pod) => ({
    vmId: pod.metadata?.name ?? "",
    workerId: `${sliceId}-w${podIndex(pod)}`,
    address: pod.status?.podIP ?? "",
    state: vmState(pod),
    attributes: {},
  }));
  const first = sorted[0];
  const annotations = first?.metadata?.annotations;
  const unschedulable = sorted.flatMap((p) =>
    p.status?.conditions?.filter((c) => c.type === "PodScheduled" && c.status === "False") ?? []
  );
  const failed = sorted.find((p) => p.status?.phase === "Failed");
  return {
    sliceId,
    scaleGroup: annotations?.["iris/scale-group"] ?? first?.metadata?.labels?.[names.scaleGroup] ??
      "",
    zone: "kubernetes",
    state: sliceState(sorted, vms),
    vms,
    createdAt: timestamp(Date.parse(first?.metadata?.creationTimestamp ?? "") || 0),
    labels: first?.metadata?.labels ?? {},
    error: failed
      ? `Pod ${failed.metadata?.name} failed: ${failed.status?.reason ?? ""} ${
        failed.status?.message ?? ""
      }`.trim()
      : unschedulable.length
      ? `waiting for a node: ${unschedulable[0]?.reason ?? "Unschedulable"}`
      : undefined,
  };
}

function podIndex(pod: Pod): number {
  return Number(/-w(\d+)$/.exec(pod.metadata?.name ?? "")?.[1] ?? 0);
}

function sliceIdOf(names: KubeNames, pod: Pod): string {
  return pod.metadata?.annotations?.["iris/slice-id"] ?? pod.metadata?.labels?.[names.sliceId] ??
    "";
}

/**
 * Slices as Pods. Pods outlive this process and are found again by label; terminate deletes
 * them (the API server then removes them after their grace period: such a slice lists as
 * "deleting").
 */
export class KubernetesPlatform implements Platform {
  readonly kind = "kubernetes" as const;
  readonly #o: KubernetesPlatformOptions;
  readonly #names: KubeNames;
  readonly #call: Duration;
  #client?: Promise<KubeClient>;

  constructor(options: KubernetesPlatformOptions) {
    this.#o = options;
    this.#names = kubeNames(options.labelPrefix, options.namespace);
    this.#call = options.callTimeout ?? minutes(2);
  }

  #kube(): Promise<KubeClient> {
    return this.#client ??= this.#o.connect();
  }

  get #pods(): string {
    return `/api/v1/namespaces/${this.#names.namespace}/pods`;
  }

  #opts(options?: PlatformCallOptions) {
    return { timeout: options?.timeout ?? this.#call, signal: options?.signal };
  }

  async createSlice(
    request: CreateSliceRequest,
    options?: PlatformCallOptions,
  ): Promise<SliceInfo> {
    const { sliceId, scaleGroup, config } = request;
    if (config.provider?.kind.case !== "kubernetes") {
      throw new PlatformError(
        `Cannot create slice '${sliceId}' as scale group '${scaleGroup}' has no kubernetes provider`,
      );
    }
    const kube = await this.#kube();
    const created: string[] = [];
    try {
      for (let i = 0; i < Math.max(1, request.vmCount); i++) {
        const pod = workerPodManifest(this.#o, request, i);
        const name = pod.metadata!.name!;
        try {
          await kube.create(
            this.#pods,
            pod,
            `create Pod ${this.#names.namespace}/${name}`,
            this.#opts(options),
          );
        } catch (err) {
          if (!(err instanceof KubeAlreadyExistsError)) throw err;
        }
        created.push(name);
      }
    } catch (err) {
      // Nothing half-created: the Pods made so far go again.
      await Promise.allSettled(created.map((name) => this.#deletePod(kube, name)));
      throw err;
    }
    return await this.describeSlice(sliceId, options);
  }

  #deletePod(kube: KubeClient, name: string, options?: PlatformCallOptions) {
    return kube.delete(
      `${this.#pods}/${name}`,
      `delete Pod ${this.#names.namespace}/${name}`,
      this.#opts(options),
    );
  }

  async #listPods(selector: string, options?: PlatformCallOptions): Promise<Pod[]> {
    const kube = await this.#kube();
    const list = await kube.list<Pod>(this.#pods, `list Pods in ${this.#names.namespace}`, {
      ...this.#opts(options),
      labelSelector: selector,
    });
    return [...list.items];
  }

  #selector(extra: Record<string, string> = {}): string {
    return Object.entries({ [this.#names.managed]: "true", [this.#names.app]: "worker", ...extra })
      .map(([k, v]) => `${k}=${v}`).join(",");
  }

  async listSlices(options?: PlatformCallOptions & { scaleGroup?: string }): Promise<SliceInfo[]> {
    const extra = options?.scaleGroup
      ? { [this.#names.scaleGroup]: labelValue(options.scaleGroup) }
      : {};
    const bySlice = new Map<string, Pod[]>();
    for (const pod of await this.#listPods(this.#selector(extra), options)) {
      const id = sliceIdOf(this.#names, pod);
      bySlice.set(id, [...(bySlice.get(id) ?? []), pod]);
    }
    return [...bySlice].map(([id, pods]) => podsToSlice(this.#names, id, pods))
      .sort((a, b) => a.sliceId.localeCompare(b.sliceId));
  }

  async describeSlice(sliceId: string, options?: PlatformCallOptions): Promise<SliceInfo> {
    const pods = await this.#listPods(
      this.#selector({ [this.#names.sliceId]: labelValue(sliceId) }),
      options,
    );
    const mine = pods.filter((p) => sliceIdOf(this.#names, p) === sliceId);
    if (mine.length === 0) {
      throw new ResourceNotFoundError(
        `Cannot describe slice '${sliceId}' as no Pod of it exists in namespace ${this.#names.namespace}`,
      );
    }
    return podsToSlice(this.#names, sliceId, mine);
  }

  async terminateSlice(sliceId: string, options?: PlatformCallOptions): Promise<void> {
    const kube = await this.#kube();
    const pods = await this.#listPods(
      this.#selector({ [this.#names.sliceId]: labelValue(sliceId) }),
      options,
    );
    const outcomes = await Promise.allSettled(
      pods.filter((p) => sliceIdOf(this.#names, p) === sliceId)
        .map((p) => this.#deletePod(kube, p.metadata!.name!, options)),
    );
    const failed = outcomes.flatMap((o) => o.status === "rejected" ? [String(o.reason)] : []);
    if (failed.length) {
      throw new PlatformError(`Cannot terminate slice '${sliceId}': ${failed.join("; ")}`);
    }
  }

  async startupLogs(sliceId: string, vmId: string, options?: PlatformCallOptions): Promise<string> {
    const kube = await this.#kube();
    try {
      return await kube.podLog(this.#names.namespace, vmId, {
        ...this.#opts(options),
        tailLines: 300,
      });
    } catch (err) {
      if (err instanceof ResourceNotFoundError) {
        throw new ResourceNotFoundError(
          `Cannot read startup logs of slice '${sliceId}' as Pod ${vmId} does not exist`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  /**
   * Follows the logs of every worker Pod (`GET …/pods/NAME/log?follow=true`) until `signal`
   * aborts, calling `onLine(podName, line)`. Resolves when every follower has ended.
   */
  async followLogs(
    onLine: (pod: string, line: string) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const kube = await this.#kube();
    const pods = await this.#listPods(this.#selector(), { signal });
    await Promise.allSettled(pods.map((p) => {
      const name = p.metadata!.name!;
      return kube.followLog(this.#names.namespace, name, (line) => onLine(name, line), { signal });
    }));
  }

  /** Every worker Pod's log as a followed target, for startLogStreaming's discovery. */
  async logTargets(options?: PlatformCallOptions): Promise<FollowedLogTarget[]> {
    const kube = await this.#kube();
    const ns = this.#names.namespace;
    return (await this.#listPods(this.#selector(), options)).map((p) => {
      const name = p.metadata!.name!;
      return {
        name,
        follow: (onLine, signal) => kube.followLog(ns, name, onLine, { signal }),
      };
    });
  }

  /** Nothing is held: Pods outlive the process and are found again by label. */
  shutdown(): Promise<void> {
    return Promise.resolve();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (client) (await client.catch(() => undefined))?.[Symbol.dispose]();
  }
}

/** Options of {@linkcode KubernetesControllerLifecycle}. */
export interface KubernetesControllerOptions {
  readonly connect: () => Promise<KubeClient>;
  readonly labelPrefix: string;
  readonly namespace?: string;
  readonly flavour?: "coreweave" | "generic";
  readonly image: string;
  /** @default 10000 */
  readonly port?: number;
  /** CoreWeave: instance type of the controller's NodePool (none made when empty). */
  readonly controllerInstanceType?: string;
  readonly controllerNodeSelector?: Readonly<Record<string, string>>;
  /** The scale groups (NodePools on coreweave). */
  readonly scaleGroups: Readonly<Record<string, ScaleGroupConfig>>;
  /** Cluster config YAML, stored in the ConfigMap the controller reads. */
  readonly clusterConfig?: string;
  /** Health RPC of a controller URL (injected: this layer never imports the controller). */
  readonly checkHealth: HealthCheck;
  /** How long start() waits for the Deployment to become available. @default 10m */
  readonly readyTimeout?: Duration;
  /** Limit of one API call. @default 2m */
  readonly callTimeout?: Duration;
}

/** The Role the controller's service account gets: Pods (workers, task Pods) and their logs. */
export const CONTROLLER_RULES = [
  {
    apiGroups: [""],
    resources: ["pods"],
    verbs: ["get", "list", "watch", "create", "delete", "patch"],
  },
  { apiGroups: [""], resources: ["pods/log", "pods/status"], verbs: ["get"] },
  { apiGroups: [""], resources: ["configmaps", "events"], verbs: ["get", "list", "watch"] },
];

/** Each object `cluster start` makes, in order: [collection path, manifest, description]. */
export function clusterManifests(o: KubernetesControllerOptions): [string, KubeObject, string][] {
  const names = kubeNames(o.labelPrefix, o.namespace);
  const ns = names.namespace;
  const port = o.port || 10000;
  const labels = { [names.managed]: "true" };
  const meta = (name: string, extra: Record<string, string> = {}) => ({
    name,
    namespace: ns,
    labels: { ...labels, ...extra },
  });
  const out: [string, KubeObject, string][] = [
    ["/api/v1/namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: ns, labels },
    }, `Namespace ${ns}`],
    [`/api/v1/namespaces/${ns}/serviceaccounts`, {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: meta(names.serviceAccount),
    }, `ServiceAccount ${ns}/${names.serviceAccount}`],
    [`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: meta(names.role),
      rules: CONTROLLER_RULES,
    }, `Role ${ns}/${names.role}`],
    [`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: meta(names.role),
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: names.role },
      subjects: [{ kind: "ServiceAccount", name: names.serviceAccount, namespace: ns }],
    }, `RoleBinding ${ns}/${names.role}`],
  ];
  if (o.flavour !== "generic") {
    const pools: [string, string, number][] = Object.entries(o.scaleGroups).flatMap(([g, c]) =>
      c.provider?.kind.case === "kubernetes" && c.provider.kind.value.instanceType
        ? [[nodePoolName(o.labelPrefix, g), c.provider.kind.value.instanceType, c.maxSlices]]
        : []
    );
    if (o.controllerInstanceType) {
      pools.unshift([nodePoolName(o.labelPrefix, "controller"), o.controllerInstanceType, 1]);
    }
    for (const [name, instanceType, max] of pools) {
      out.push([NODEPOOL_API, {
        apiVersion: "compute.coreweave.com/v1alpha1",
        kind: "NodePool",
        metadata: { name, labels },
        spec: {
          instanceType,
          autoscaling: true,
          targetNodes: 0,
          minNodes: 0,
          maxNodes: Math.max(1, max),
          nodeLabels: { [names.nodePoolLabel]: name },
        },
      }, `NodePool ${name}`]);
    }
  }
  const appLabels = { [names.app]: "controller" };
  const nodeSelector: Record<string, string> = { ...o.controllerNodeSelector };
  if (o.flavour !== "generic" && o.controllerInstanceType) {
    nodeSelector[names.nodePoolLabel] = nodePoolName(o.labelPrefix, "controller");
  }
  const args = [
    "run",
    "-A",
    `${IMAGE_IRIS_DIR}/cli.ts`,
    "controller",
    "serve",
    "--config",
    `${CONFIG_MOUNT}/config.yaml`,
    "--host",
    "0.0.0.0",
    "--port",
    String(port),
    "--advertise-url",
    controllerServiceUrl(names, port),
  ];
  out.push(
    [`/apis/apps/v1/namespaces/${ns}/deployments`, {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: meta(names.deployment, appLabels),
      spec: {
        replicas: 1,
        // One controller at a time: it owns the state directory.
        strategy: { type: "Recreate" },
        selector: { matchLabels: appLabels },
        template: {
          metadata: { labels: { ...labels, ...appLabels } },
          spec: {
            serviceAccountName: names.serviceAccount,
            nodeSelector,
            containers: [{
              name: "controller",
              image: o.image,
              command: ["deno"],
              args,
              env: [{ name: "IRIS_HOME", value: "/var/lib/iris" }],
              ports: [{ name: "rpc", containerPort: port }],
              readinessProbe: { tcpSocket: { port }, periodSeconds: 5 },
              volumeMounts: [{ name: "config", mountPath: CONFIG_MOUNT, readOnly: true }],
            }],
            volumes: [{ name: "config", configMap: { name: names.configMap } }],
          },
        },
      },
    }, `Deployment ${ns}/${names.deployment}`],
    [`/api/v1/namespaces/${ns}/services`, {
      apiVersion: "v1",
      kind: "Service",
      metadata: meta(names.service, appLabels),
      spec: {
        type: "ClusterIP",
        selector: appLabels,
        ports: [{ name: "rpc", port, targetPort: port, protocol: "TCP" }],
      },
    }, `Service ${ns}/${names.service}`],
  );
  return out;
}

interface Deployment extends KubeObject {
  readonly status?: { readonly availableReplicas?: number; readonly readyReplicas?: number };
}

/**
 * The controller as a Deployment (one replica, Recreate) with a ClusterIP Service. start()
 * creates what is missing (namespace, RBAC, ConfigMap, NodePools, Deployment, Service), updates
 * the ConfigMap, and waits (watch) until the Deployment is available; the URL it returns is
 * the Service's in-cluster DNS name, which workers use.
 */
export class KubernetesControllerLifecycle implements ControllerLifecycle {
  readonly #o: KubernetesControllerOptions;
  readonly #names: KubeNames;
  readonly #port: number;
  readonly #call: Duration;
  #client?: Promise<KubeClient>;

  constructor(options: KubernetesControllerOptions) {
    this.#o = options;
    this.#names = kubeNames(options.labelPrefix, options.namespace);
    this.#port = options.port || 10000;
    this.#call = options.callTimeout ?? minutes(2);
  }

  #kube(): Promise<KubeClient> {
    return this.#client ??= this.#o.connect();
  }

  get url(): string {
    return controllerServiceUrl(this.#names, this.#port);
  }

  get #deploymentPath(): string {
    return `/apis/apps/v1/namespaces/${this.#names.namespace}/deployments/${this.#names.deployment}`;
  }

  async #ensureConfigMap(kube: KubeClient): Promise<void> {
    const ns = this.#names.namespace;
    const name = this.#names.configMap;
    const body = {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name, namespace: ns, labels: { [this.#names.managed]: "true" } },
      data: { "config.yaml": this.#o.clusterConfig ?? "" },
    };
    const what = `ConfigMap ${ns}/${name}`;
    const collection = `/api/v1/namespaces/${ns}/configmaps`;
    const opts = { timeout: this.#call };
    const made = await kube.ensure(collection, body, `create ${what}`, opts);
    // Without a config (a lifecycle made for stop/status) the stored one is kept.
    if (made === "exists" && this.#o.clusterConfig !== undefined) {
      await kube.request("PUT", `${collection}/${name}`, `replace ${what}`, { ...opts, body });
    }
  }

  async start(): Promise<string> {
    const kube = await this.#kube();
    const manifests = clusterManifests(this.#o);
    // Namespace and RBAC first, then the config, then the rest.
    for (const [path, body, what] of manifests.slice(0, 4)) {
      await kube.ensure(path, body, `create ${what}`, { timeout: this.#call });
    }
    await this.#ensureConfigMap(kube);
    for (const [path, body, what] of manifests.slice(4)) {
      await kube.ensure(path, body, `create ${what}`, { timeout: this.#call });
    }
    await this.#waitAvailable(kube);
    return this.url;
  }

  async #waitAvailable(kube: KubeClient): Promise<void> {
    const available = (d: Deployment) => (d.status?.availableReplicas ?? 0) >= 1;
    const what = `Deployment ${this.#names.namespace}/${this.#names.deployment}`;
    const current = await kube.get<Deployment>(this.#deploymentPath, `read ${what}`, {
      timeout: this.#call,
    });
    if (available(current)) return;
    const timeout = this.#o.readyTimeout ?? minutes(10);
    const signal = AbortSignal.timeout(timeout);
    let ready = false;
    try {
      while (!ready && !signal.aborted) {
        await kube.watch<Deployment>(
          `/apis/apps/v1/namespaces/${this.#names.namespace}/deployments`,
          `watch ${what}`,
          (e) => {
            if (e.object.metadata?.name !== this.#names.deployment) return;
            ready = available(e.object);
            return ready;
          },
          { signal, resourceVersion: current.metadata?.resourceVersion },
        );
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    }
    if (!ready) {
      throw new PlatformError(
        `Cannot start the controller: ${what} not available after ${timeout / 1000}s`,
      );
    }
  }

  /** Deletes the Deployment, the Service and every worker Pod; NodePools scale to zero. */
  async stop(options?: { readonly signal?: AbortSignal }): Promise<void> {
    const kube = await this.#kube();
    const ns = this.#names.namespace;
    const opts = { timeout: this.#call, signal: options?.signal };
    const pods = await kube.list(`/api/v1/namespaces/${ns}/pods`, `list Pods in ${ns}`, {
      ...opts,
      labelSelector: `${this.#names.managed}=true,${this.#names.app}=worker`,
    }).catch((err) => {
      if (err instanceof ResourceNotFoundError) return { items: [] as KubeObject[] };
      throw err;
    });
    const steps = [
      kube.delete(this.#deploymentPath, `delete Deployment ${ns}/${this.#names.deployment}`, opts),
      kube.delete(
        `/api/v1/namespaces/${ns}/services/${this.#names.service}`,
        `delete Service ${ns}/${this.#names.service}`,
        opts,
      ),
      ...pods.items.map((p) =>
        kube.delete(
          `/api/v1/namespaces/${ns}/pods/${p.metadata?.name}`,
          `delete Pod ${ns}/${p.metadata?.name}`,
          opts,
        )
      ),
    ];
    const failed = (await Promise.allSettled(steps)).flatMap((o) =>
      o.status === "rejected" ? [String(o.reason)] : []
    );
    if (failed.length) throw new PlatformError(`Cannot stop the controller: ${failed.join("; ")}`);
  }

  async restart(): Promise<string> {
    await this.stop();
    return await this.start();
  }

  /** Updates the ConfigMap and rolls the Deployment (a new Pod reads the new config). */
  async reload(): Promise<string> {
    const kube = await this.#kube();
    await this.#ensureConfigMap(kube);
    await kube.request(
      "PATCH",
      this.#deploymentPath,
      `restart Deployment ${this.#names.namespace}/${this.#names.deployment}`,
      {
        timeout: this.#call,
        contentType: "application/merge-patch+json",
        body: {
          spec: {
            template: {
              metadata: { annotations: { "iris/restarted-at": new Date().toISOString() } },
            },
          },
        },
      },
    );
    return this.url;
  }

  async discover(): Promise<string | undefined> {
    const kube = await this.#kube();
    try {
      const d = await kube.get<Deployment>(
        this.#deploymentPath,
        `read Deployment ${this.#names.namespace}/${this.#names.deployment}`,
        { timeout: this.#call },
      );
      return (d.status?.availableReplicas ?? 0) >= 1 ? this.url : undefined;
    } catch (err) {
      if (err instanceof ResourceNotFoundError) return undefined;
      throw err;
    }
  }

  async fetchStartupLogs(): Promise<string> {
    const kube = await this.#kube();
    const ns = this.#names.namespace;
    const pods = await kube.list(`/api/v1/namespaces/${ns}/pods`, `list Pods in ${ns}`, {
      timeout: this.#call,
      labelSelector: `${this.#names.app}=controller`,
    });
    const pod = pods.items[0]?.metadata?.name;
    if (!pod) return "(no controller Pod)";
    return await kube.podLog(ns, pod, { timeout: this.#call, tailLines: 300 });
  }

  /**
   * A loopback URL that reaches the controller from outside the cluster: a local HTTP server on
   * `localPort` forwarding every request through the API server's service proxy
   * (`/api/v1/namespaces/NS/services/NAME:PORT/proxy/…`) with the kubeconfig's credentials, like
   * `kubectl proxy`. Closing stops the server.
   */
  async tunnel(localPort: number): Promise<Tunnel> {
    const kube = await this.#kube();
    const ns = this.#names.namespace;
    const base = `/api/v1/namespaces/${ns}/services/${this.#names.service}:${this.#port}/proxy`;
    const what = `reach Service ${ns}/${this.#names.service} through the API server proxy`;
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: localPort, onListen: () => {} },
      async (req) => {
        const url = new URL(req.url);
        const headers = new Headers(req.headers);
        headers.delete("host");
        try {
          const res = await kube.raw(`${base}${url.pathname}${url.search}`, {
            what,
            method: req.method,
            headers,
            body: req.body,
            signal: req.signal,
          });
          return new Response(res.body, { status: res.status, headers: res.headers });
        } catch (err) {
          return new Response(String(err), { status: 502 });
        }
      },
    );
    const close = () => server.shutdown();
    return { url: `http://127.0.0.1:${server.addr.port}`, close, [Symbol.asyncDispose]: close };
  }

  /** The controller Pod's log as a followed target (undefined without a controller Pod). */
  async logTarget(): Promise<FollowedLogTarget | undefined> {
    const kube = await this.#kube();
    const ns = this.#names.namespace;
    const pods = await kube.list(`/api/v1/namespaces/${ns}/pods`, `list Pods in ${ns}`, {
      timeout: this.#call,
      labelSelector: `${this.#names.app}=controller`,
    });
    const pod = pods.items[0]?.metadata?.name;
    if (!pod) return undefined;
    return {
      name: "controller",
      follow: (onLine, signal) => kube.followLog(ns, pod, onLine, { signal }),
    };
  }

  async status(): Promise<ControllerStatus> {
    const url = await this.discover();
    if (!url) {
      return { running: false, url: "", healthy: false, message: "no available controller Pod" };
    }
    return { running: true, url, healthy: await checkOnce(url, this.#o.checkHealth) };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (client) (await client.catch(() => undefined))?.[Symbol.dispose]();
  }
}
