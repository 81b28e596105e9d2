/**
 * Light worker mode (`platform.kubernetes.runtime: kubernetes`): a task attempt as its own Pod.
 * The Pod requests the task's GPUs (`nvidia.com/gpu`) and RDMA (`rdma/ib`) from the device
 * plugins (the worker Pod requests none), runs on the worker's node (`nodeName`) with the
 * attempt directory mounted at the same path, `hostNetwork` with
 * `dnsPolicy: ClusterFirstWithHostNet`, the cluster's service account, the object-storage
 * Secret as environment (`envFrom`), and an emptyDir cache. {@linkcode KubeTaskPod} creates the
 * Pod, follows its log as output lines, watches it to the end and reports a {@linkcode TaskExit}
 * the way a local process would: exit code, `OOMKilled` → out of memory, eviction or deletion
 * by someone else → evicted (a worker failure, retried under the preemption budget),
 * `activeDeadlineSeconds` → timeout, an image or config that cannot start → spawnError.
 * @module
 */
import type { Duration, Timestamp } from "../time.ts";
import { FailedPreconditionError } from "../errors.ts";
import {
  boundedKubeName,
  GPU_RESOURCE,
  KubeClient,
  kubeName,
  type KubeObject,
  loadKubeCredentials,
  RDMA_RESOURCE,
  type WatchEvent,
} from "../kube/mod.ts";
import type { KillCause, OutputLine, TaskExit } from "./task_runner.ts";

/** Light worker mode: how a worker makes its tasks' Pods (WorkerOptions.taskPods). */
export interface TaskPodRuntime {
  readonly client: KubeClient;
  /** The parts of every task Pod that are the worker's, not the task's. */
  readonly base: Pick<
    TaskPodSpec,
    | "namespace"
    | "labelPrefix"
    | "image"
    | "nodeName"
    | "serviceAccount"
    | "s3SecretName"
    | "cacheDir"
    | "rdma"
    | "tolerations"
  >;
}

/**
 * The runtime the kubernetes platform configures on a light worker's Pod, from its environment:
 * `IRIS_TASK_RUNTIME=kubernetes`, `IRIS_NAMESPACE`, `IRIS_TASK_IMAGE`, `IRIS_LABEL_PREFIX`,
 * `IRIS_NODE_NAME`, `IRIS_SERVICE_ACCOUNT_NAME`, `IRIS_S3_SECRET_NAME`, `IRIS_TASK_RDMA`; the
 * API client uses the Pod's service account. Undefined when the runtime is not kubernetes.
 * @throws {FailedPreconditionError} a required variable is missing
 */
export async function taskPodRuntimeFromEnv(
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): Promise<TaskPodRuntime | undefined> {
  if (env("IRIS_TASK_RUNTIME") !== "kubernetes") return undefined;
  const need = (name: string) => {
    const value = env(name);
    if (!value) {
      throw new FailedPreconditionError(
        `Cannot run tasks as Pods (IRIS_TASK_RUNTIME=kubernetes) as ${name} is not set; the kubernetes platform sets it on worker Pods`,
      );
    }
    return value;
  };
  const base = {
    namespace: need("IRIS_NAMESPACE"),
    image: need("IRIS_TASK_IMAGE"),
    labelPrefix: need("IRIS_LABEL_PREFIX"),
    nodeName: env("IRIS_NODE_NAME") || undefined,
    serviceAccount: env("IRIS_SERVICE_ACCOUNT_NAME") || undefined,
    s3SecretName: env("IRIS_S3_SECRET_NAME") || undefined,
    rdma: env("IRIS_TASK_RDMA") === "true",
    tolerations: parseTolerations(env("IRIS_TASK_TOLERATIONS")),
  };
  return { client: new KubeClient(await loadKubeCredentials({ env })), base };
}

/** `IRIS_TASK_TOLERATIONS`: a JSON list of tolerations. @throws {FailedPreconditionError} */
function parseTolerations(text: string | undefined): Record<string, string>[] {
  if (!text) return [];
  try {
    const list = JSON.parse(text);
    if (Array.isArray(list) && list.every((t) => typeof t === "object" && t !== null)) {
      return list as Record<string, string>[];
    }
  } catch { /* reported below */ }
  throw new FailedPreconditionError(
    `Cannot run tasks as Pods as IRIS_TASK_TOLERATIONS is not a JSON list of tolerations (got ${
      JSON.stringify(text.slice(0, 100))
    })`,
  );
}

/** What a task Pod is made from. */
export interface TaskPodSpec {
  readonly namespace: string;
  /** Label prefix of the cluster (`<prefix>-managed=true`, `<prefix>-app=task`). */
  readonly labelPrefix: string;
  readonly taskId: string;
  readonly attemptId: number;
  readonly image: string;
  readonly argv: readonly string[];
  /** The attempt directory: the working directory, mounted from the node at the same path. */
  readonly cwd: string;
  readonly env: Readonly<Record<string, string>>;
  /** The worker's node: the task uses that node's devices. */
  readonly nodeName?: string;
  readonly serviceAccount?: string;
  /** Secret with object-storage credentials, given to the task as environment. */
  readonly s3SecretName?: string;
  /** Where the emptyDir cache is mounted. @default /var/cache/iris */
  readonly cacheDir?: string;
  readonly gpus?: number;
  readonly rdma?: boolean;
  readonly cpuMillicores?: number;
  readonly memoryBytes?: number;
  readonly timeout?: Duration;
  readonly tolerations?: readonly Record<string, string>[];
}

/** The Pod of one task attempt. */
export function taskPodManifest(spec: TaskPodSpec): KubeObject {
  const p = kubeName(spec.labelPrefix);
  const limits: Record<string, string> = {};
  const requests: Record<string, string> = {};
  if (spec.gpus) limits[GPU_RESOURCE] = String(spec.gpus);
  if (spec.rdma) limits[RDMA_RESOURCE] = "1";
  if (spec.memoryBytes) limits.memory = requests.memory = String(spec.memoryBytes);
  if (spec.cpuMillicores) requests.cpu = `${spec.cpuMillicores}m`;
  const cacheDir = spec.cacheDir ?? "/var/cache/iris";
  const [command, ...args] = spec.argv;
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: boundedKubeName(`${p}-task${spec.taskId.replaceAll("/", "-")}`, `-${spec.attemptId}`),
      namespace: spec.namespace,
      labels: {
        [`${p}-managed`]: "true",
        [`${p}-app`]: "task",
        [`${p}-attempt`]: String(spec.attemptId),
      },
      annotations: { "iris/task-id": spec.taskId, "iris/attempt-id": String(spec.attemptId) },
    },
    spec: {
      restartPolicy: "Never",
      ...(spec.nodeName ? { nodeName: spec.nodeName } : {}),
      hostNetwork: true,
      dnsPolicy: "ClusterFirstWithHostNet",
      ...(spec.serviceAccount ? { serviceAccountName: spec.serviceAccount } : {}),
      ...(spec.timeout ? { activeDeadlineSeconds: Math.ceil(spec.timeout / 1000) } : {}),
      tolerations: spec.tolerations ?? [],
      containers: [{
        name: "task",
        image: spec.image,
        command: command === undefined ? [] : [command],
        args,
        workingDir: spec.cwd,
        env: Object.entries(spec.env).sort(([a], [b]) => a.localeCompare(b))
          .map(([name, value]) => ({ name, value })),
        ...(spec.s3SecretName ? { envFrom: [{ secretRef: { name: spec.s3SecretName } }] } : {}),
        resources: {
          ...(Object.keys(limits).length ? { limits } : {}),
          ...(Object.keys(requests).length ? { requests } : {}),
        },
        volumeMounts: [
          { name: "workdir", mountPath: spec.cwd },
          { name: "cache", mountPath: cacheDir },
        ],
      }],
      volumes: [
        { name: "workdir", hostPath: { path: spec.cwd, type: "Directory" } },
        { name: "cache", emptyDir: {} },
      ],
    },
  };
}

interface ContainerState {
  readonly waiting?: { readonly reason?: string; readonly message?: string };
  readonly terminated?: {
    readonly exitCode?: number;
    readonly signal?: number;
    readonly reason?: string;
    readonly message?: string;
  };
}

/** A Pod with the status fields the mapping reads. */
export interface TaskPod extends KubeObject {
  readonly status?: {
    readonly phase?: string;
    readonly reason?: string;
    readonly message?: string;
    readonly containerStatuses?: readonly { readonly state?: ContainerState }[];
  };
}

/** Waiting reasons that mean the container will never start as it is. */
const CANNOT_START = new Set([
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "CreateContainerConfigError",
  "CreateContainerError",
]);

const SIGNALS: Record<number, string> = {
  9: "SIGKILL",
  15: "SIGTERM",
  6: "SIGABRT",
  11: "SIGSEGV",
};

function exitOf(
  code: number,
  extra: Partial<Omit<TaskExit, "exitCode">> = {},
): TaskExit {
  return { exitCode: code, signal: "", peakMemoryBytes: 0, stderrTail: [], ...extra };
}

/**
 * How a task Pod ended, or undefined while it has not: phases Succeeded/Failed with the task
 * container's termination (OOMKilled → oom), the Pod's `Evicted` → evicted,
 * `DeadlineExceeded` → timeout, a container that cannot start → spawnError.
 */
export function taskPodExit(pod: TaskPod): TaskExit | undefined {
  const s = pod.status;
  const state = s?.containerStatuses?.[0]?.state;
  const waiting = state?.waiting;
  if (waiting?.reason && CANNOT_START.has(waiting.reason)) {
    return exitOf(127, { spawnError: `${waiting.reason}: ${waiting.message ?? ""}`.trim() });
  }
  if (s?.reason === "Evicted") {
    return exitOf(137, {
      killedBy: "evicted",
      killReason: `task Pod evicted: ${s.message ?? "node pressure"}`,
    });
  }
  if (s?.phase !== "Succeeded" && s?.phase !== "Failed") return undefined;
  if (s.reason === "DeadlineExceeded") {
    return exitOf(137, {
      signal: "SIGKILL",
      killedBy: "timeout",
      killReason: `timed out: ${s.message ?? "activeDeadlineSeconds reached"}`,
    });
  }
  const t = state?.terminated;
  const code = t?.exitCode ?? (s.phase === "Succeeded" ? 0 : 1);
  const signal = t?.signal ? SIGNALS[t.signal] ?? `signal ${t.signal}` : "";
  if (t?.reason === "OOMKilled") {
    return exitOf(code, {
      signal: signal || "SIGKILL",
      killedBy: "oom",
      killReason: "out of memory: the task Pod exceeded its memory limit (OOMKilled)",
    });
  }
  return exitOf(code, {
    signal,
    stderrTail: t?.message ? t.message.split("\n").slice(-50) : [],
  });
}

/** Options of {@linkcode KubeTaskPod.start}. */
export interface KubeTaskPodOptions {
  readonly client: KubeClient;
  readonly spec: TaskPodSpec;
  readonly onLine?: (line: OutputLine) => void;
  /** Time of a log line. @default Date.now */
  readonly now?: () => Timestamp;
}

/** A running task Pod. Start with {@linkcode KubeTaskPod.start}; it never throws. */
export class KubeTaskPod {
  /** Resolves once the Pod ended (or could not be created) and its log is drained. */
  readonly exited: Promise<TaskExit>;
  readonly name: string;
  readonly #o: KubeTaskPodOptions;
  readonly #stop = new AbortController();
  #kill?: { reason: string; cause: KillCause };

  static start(options: KubeTaskPodOptions): KubeTaskPod {
    return new KubeTaskPod(options);
  }

  private constructor(options: KubeTaskPodOptions) {
    this.#o = options;
    const manifest = taskPodManifest(options.spec);
    this.name = manifest.metadata!.name!;
    this.exited = this.#run(manifest);
  }

  get #path(): string {
    return `/api/v1/namespaces/${this.#o.spec.namespace}/pods`;
  }

  async #run(manifest: KubeObject): Promise<TaskExit> {
    const { client, spec } = this.#o;
    const what = `Pod ${spec.namespace}/${this.name}`;
    try {
      await client.create(this.#path, manifest, `create task ${what}`);
    } catch (err) {
      return exitOf(127, { spawnError: err instanceof Error ? err.message : String(err) });
    }
    let logs: Promise<void> | undefined;
    const follow = () =>
      logs ??= client.followLog(spec.namespace, this.name, (text) => {
        this.#o.onLine?.({
          stream: "stdout",
          text,
          timestampMs: (this.#o.now?.() ?? Date.now()) as Timestamp,
        });
      }, { signal: this.#stop.signal }).catch(() => {});
    let exit: TaskExit | undefined;
    try {
      while (!exit && !this.#stop.signal.aborted) {
        await client.watch<TaskPod>(this.#path, `watch task ${what}`, (e: WatchEvent<TaskPod>) => {
          if (e.object.metadata?.name !== this.name) return;
          if (e.type === "DELETED") {
            exit = taskPodExit(e.object) ?? this.#goneExit();
            return true;
          }
          const phase = e.object.status?.phase;
          if (phase && phase !== "Pending") void follow();
          exit = taskPodExit(e.object);
          return exit !== undefined;
        }, { signal: this.#stop.signal });
      }
    } catch (err) {
      exit ??= this.#kill ? this.#goneExit() : exitOf(1, {
        killedBy: "evicted",
        killReason: `lost the task Pod's watch: ${err instanceof Error ? err.message : err}`,
      });
    }
    exit ??= this.#goneExit();
    // The log ends with the container; a Pod that never ran has none.
    await Promise.race([logs, new Promise((r) => setTimeout(r, 2000))]);
    this.#stop.abort();
    await logs;
    await client.delete(`${this.#path}/${this.name}`, `delete task ${what}`).catch(() => {});
    return this.#kill
      ? { ...exit, killedBy: this.#kill.cause, killReason: this.#kill.reason }
      : exit;
  }

  #goneExit(): TaskExit {
    return this.#kill
      ? exitOf(137, {
        signal: "SIGKILL",
        killedBy: this.#kill.cause,
        killReason: this.#kill.reason,
      })
      : exitOf(137, { killedBy: "evicted", killReason: "task Pod deleted by someone else" });
  }

  /** Deletes the Pod (the kubelet sends SIGTERM, then SIGKILL after the grace period). */
  async kill(reason: string, cause: KillCause = "kill"): Promise<TaskExit> {
    this.#kill ??= { reason, cause };
    const { client, spec } = this.#o;
    await client.delete(
      `${this.#path}/${this.name}`,
      `delete task Pod ${spec.namespace}/${this.name}`,
    ).catch(() => {});
    return await this.exited;
  }
}
