/**
 * Light worker mode: a task attempt as its own Pod (src/worker/kube_task.ts) against the API
 * server stand-in: the Pod's devices, network, account, secret and cache; its log as output
 * lines; exit codes, OOMKilled, eviction, deadline, unstartable images and kills mapped onto
 * Iris task states through classifyExit.
 * @module
 */
import assert from "node:assert/strict";
import { KubeClient, parseKubeconfig } from "../../src/kube/kube_client.ts";
import {
  KubeTaskPod,
  type TaskPod,
  taskPodExit,
  taskPodManifest,
  taskPodRuntimeFromEnv,
  type TaskPodSpec,
} from "../../src/worker/kube_task.ts";
import { classifyExit } from "../../src/worker/outcome.ts";
import type { OutputLine } from "../../src/worker/task_runner.ts";
import { AcceleratorType, TaskState } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { commandTask, startHarness } from "./harness.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { KubeApiStandIn } from "../fakes/kube_api.ts";

const SPEC: TaskPodSpec = {
  namespace: "iris",
  labelPrefix: "iris",
  taskId: "/alice/train/0",
  attemptId: 2,
  image: "registry.example/iris:0.1.0",
  argv: ["python", "train.py", "--steps", "10"],
  cwd: "/var/lib/iris/tasks/alice-train-0-2",
  env: { IRIS_TASK_ID: "/alice/train/0", B: "2" },
  nodeName: "gpu-node-7",
  serviceAccount: "iris",
  s3SecretName: "s3-creds",
  cacheDir: "/mnt/cache",
  gpus: 8,
  rdma: true,
  cpuMillicores: 16_000,
  memoryBytes: 64 * 2 ** 30,
  timeout: seconds(3600),
};

type Spec = {
  hostNetwork: boolean;
  dnsPolicy: string;
  serviceAccountName: string;
  nodeName: string;
  restartPolicy: string;
  activeDeadlineSeconds: number;
  containers: {
    command: string[];
    args: string[];
    workingDir: string;
    resources: { limits: Record<string, string>; requests: Record<string, string> };
    envFrom: unknown;
    env: { name: string; value: string }[];
    volumeMounts: { name: string; mountPath: string }[];
  }[];
  volumes: unknown[];
};

Deno.test("a task Pod requests its GPUs and RDMA, with hostNetwork, account, secret and cache", () => {
  const pod = taskPodManifest(SPEC);
  assert.equal(pod.metadata?.name, "iris-task-alice-train-0-2");
  // A long task id keeps its attempt suffix and stays a valid, distinct name.
  const longId = `/alice/${"a-very-long-job-name".repeat(4)}/17`;
  const names = [1, 2].map((attemptId) =>
    taskPodManifest({ ...SPEC, taskId: longId, attemptId }).metadata!.name!
  );
  assert.ok(names.every((n) => n.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(n)));
  assert.ok(names[0]!.endsWith("-1") && names[1]!.endsWith("-2"), String(names));
  const spec = pod.spec as Spec;
  assert.equal(spec.hostNetwork, true);
  assert.equal(spec.dnsPolicy, "ClusterFirstWithHostNet");
  assert.equal(spec.serviceAccountName, "iris");
  assert.equal(spec.nodeName, "gpu-node-7");
  assert.equal(spec.restartPolicy, "Never");
  assert.equal(spec.activeDeadlineSeconds, 3600);
  const c = spec.containers[0]!;
  assert.deepEqual([c.command, c.args], [["python"], ["train.py", "--steps", "10"]]);
  assert.equal(c.workingDir, SPEC.cwd);
  assert.deepEqual(c.resources.limits, {
    "nvidia.com/gpu": "8",
    "rdma/ib": "1",
    memory: String(64 * 2 ** 30),
  });
  assert.deepEqual(c.resources.requests, { cpu: "16000m", memory: String(64 * 2 ** 30) });
  assert.deepEqual(c.envFrom, [{ secretRef: { name: "s3-creds" } }]);
  assert.deepEqual(c.env.map((e) => e.name), ["B", "IRIS_TASK_ID"]);
  assert.deepEqual(spec.volumes, [
    { name: "workdir", hostPath: { path: SPEC.cwd, type: "Directory" } },
    { name: "cache", emptyDir: {} },
  ]);
  assert.deepEqual(c.volumeMounts.map((m) => m.mountPath), [SPEC.cwd, "/mnt/cache"]);
  // A CPU task requests no devices.
  const cpu = taskPodManifest({ ...SPEC, gpus: 0, rdma: false, memoryBytes: 0 }).spec as Spec;
  assert.deepEqual(cpu.containers[0]!.resources, { requests: { cpu: "16000m" } });
});

const terminated = (exitCode: number, reason = "Error", message?: string) => ({
  containerStatuses: [{ state: { terminated: { exitCode, reason, message } } }],
});

Deno.test("Pod status maps onto Iris task states and reasons", () => {
  const cases: [TaskPod["status"], TaskState | undefined, RegExp | string][] = [
    [{ phase: "Pending" }, undefined, ""],
    [{ phase: "Running" }, undefined, ""],
    [{ phase: "Succeeded", ...terminated(0, "Completed") }, TaskState.SUCCEEDED, ""],
    [{ phase: "Failed", ...terminated(3, "Error", "boom") }, TaskState.FAILED, /code 3.*boom/s],
    [{ phase: "Failed", ...terminated(137, "OOMKilled") }, TaskState.FAILED, /OOMKilled/],
    [
      { phase: "Failed", reason: "Evicted", message: "The node was low on resource: memory." },
      TaskState.WORKER_FAILED,
      /evicted: The node was low/,
    ],
    [
      { phase: "Failed", reason: "DeadlineExceeded", message: "Pod was active too long" },
      TaskState.KILLED,
      /timed out/,
    ],
    [
      {
        phase: "Pending",
        containerStatuses: [{
          state: { waiting: { reason: "ImagePullBackOff", message: "pull access denied" } },
        }],
      },
      TaskState.FAILED,
      // A start that failed is reported as such (not as the 127 exit it is given).
      /^ImagePullBackOff: pull access denied$/,
    ],
  ];
  for (const [status, state, error] of cases) {
    const exit = taskPodExit({ status });
    if (state === undefined) {
      assert.equal(exit, undefined, JSON.stringify(status));
      continue;
    }
    assert.ok(exit, JSON.stringify(status));
    const outcome = classifyExit(exit);
    assert.equal(TaskState[outcome.state], TaskState[state], JSON.stringify(status));
    if (error) assert.match(outcome.error, error instanceof RegExp ? error : new RegExp(error));
  }
  const pull = taskPodExit({
    status: { containerStatuses: [{ state: { waiting: { reason: "ErrImagePull" } } }] },
  });
  assert.match(pull?.spawnError ?? "", /ErrImagePull/);
});

async function standIn() {
  const api = new KubeApiStandIn();
  const client = new KubeClient(await parseKubeconfig("/k", api.kubeconfig()));
  await client.create("/api/v1/namespaces", { metadata: { name: "iris" } }, "create Namespace");
  return { api, client };
}

const POD = "/api/v1/namespaces/iris/pods/iris-task-alice-train-0-2";

Deno.test("a task Pod's log becomes output lines and its exit code the attempt's", async () => {
  const { api, client } = await standIn();
  await using _api = api;
  using _client = client;
  const lines: OutputLine[] = [];
  const task = KubeTaskPod.start({ client, spec: SPEC, onLine: (l) => lines.push(l) });
  await waitFor(() => api.get(POD) !== undefined && api.transcript().includes("watch=true"), {
    timeout: seconds(10),
    what: "the task Pod and its watch",
  });
  api.appendLog("iris", task.name, "step 1");
  api.setStatus(POD, { phase: "Running" });
  await waitFor(() => lines.length === 1, { timeout: seconds(10), what: "the first line" });
  api.appendLog("iris", task.name, "step 2");
  await waitFor(() => lines.length === 2, { timeout: seconds(10), what: "the second line" });
  api.setStatus(POD, { phase: "Failed", ...terminated(3, "Error", "bad input") });
  const exit = await task.exited;
  assert.deepEqual(lines.map((l) => l.text), ["step 1", "step 2"]);
  assert.equal(exit.exitCode, 3);
  assert.equal(classifyExit(exit).state, TaskState.FAILED);
  assert.equal(api.get(POD), undefined, "the finished Pod is deleted");
});

Deno.test("an evicted task Pod is a worker failure; an OOMKilled one fails out of memory", async () => {
  const { api, client } = await standIn();
  await using _api = api;
  using _client = client;
  for (
    const [status, state] of [
      [{ phase: "Failed", reason: "Evicted", message: "node drained" }, TaskState.WORKER_FAILED],
      [{ phase: "Failed", ...terminated(137, "OOMKilled") }, TaskState.FAILED],
    ] as const
  ) {
    api.clearTranscript();
    const task = KubeTaskPod.start({ client, spec: SPEC });
    await waitFor(() => api.get(POD) !== undefined && api.transcript().includes("watch=true"), {
      timeout: seconds(10),
      what: "the task Pod",
    });
    api.setStatus(POD, status);
    const outcome = classifyExit(await task.exited);
    assert.equal(TaskState[outcome.state], TaskState[state]);
  }
});

Deno.test("kill deletes the task Pod; a refused create (quota) cannot start", async () => {
  const { api, client } = await standIn();
  await using _api = api;
  using _client = client;
  const task = KubeTaskPod.start({ client, spec: SPEC });
  await waitFor(() => api.get(POD) !== undefined && api.transcript().includes("watch=true"), {
    timeout: seconds(10),
    what: "the task Pod",
  });
  const exit = await task.kill("job cancelled");
  assert.equal(exit.killedBy, "kill");
  const outcome = classifyExit(exit, { state: TaskState.KILLED, reason: "job cancelled" });
  assert.equal(outcome.state, TaskState.KILLED);
  assert.equal(api.get(POD), undefined);

  api.failNext("POST", /\/pods$/, 403, "Forbidden", "pods is forbidden: exceeded quota: gpus");
  const refused = await KubeTaskPod.start({ client, spec: SPEC }).exited;
  assert.match(refused.spawnError ?? "", /create task Pod iris\/.*exceeded quota/);
});

Deno.test("a light worker runs each task as its own Pod: lines, exit, OOMKilled and kills reach the controller", async () => {
  const { api, client } = await standIn();
  await using _api = api;
  using _client = client;
  await using h = await startHarness({
    taskPods: {
      client,
      base: {
        namespace: "iris",
        labelPrefix: "iris",
        image: "registry.example/iris:0.1.0",
        nodeName: "gpu-node-7",
        serviceAccount: "iris",
        s3SecretName: "s3-creds",
        rdma: true,
      },
    },
  });
  const podOf = async (taskId: string) => {
    const name = await waitFor(
      () =>
        api.paths("/api/v1/namespaces/iris/pods/").find((p) =>
          api.get(p)?.metadata?.annotations &&
          (api.get(p)!.metadata!.annotations as Record<string, string>)["iris/task-id"] === taskId
        ),
      { timeout: seconds(10), what: `the Pod of ${taskId}` },
    );
    await waitFor(() => api.transcript().includes("pods?watch=true"), {
      timeout: seconds(10),
      what: "the task Pod watch",
    });
    return name;
  };
  const gpus = { accelerator: { type: AcceleratorType.GPU, variant: "H100", count: 2 } };
  await h.client.runTask(commandTask("/u/train/0", ["python", "train.py"], { resources: gpus }));
  const path = await podOf("/u/train/0");
  const spec = api.get(path)!.spec as Spec;
  assert.deepEqual(spec.containers[0]!.resources.limits, { "nvidia.com/gpu": "2", "rdma/ib": "1" });
  assert.equal(spec.nodeName, "gpu-node-7");
  const name = path.slice(path.lastIndexOf("/") + 1);
  api.appendLog("iris", name, "epoch 1");
  api.setStatus(path, { phase: "Running" });
  await waitFor(() => h.fake.logsOf("/u/train/0").some((l) => l.text === "epoch 1"), {
    timeout: seconds(10),
    what: "the task's line at the controller",
  });
  api.setStatus(path, { phase: "Succeeded", ...terminated(0, "Completed") });
  const done = await h.fake.waitForState("/u/train/0", TaskState.SUCCEEDED);
  assert.equal(done.exitCode, 0);

  api.clearTranscript();
  await h.client.runTask(commandTask("/u/big/0", ["python", "big.py"]));
  const big = await podOf("/u/big/0");
  api.setStatus(big, { phase: "Failed", ...terminated(137, "OOMKilled") });
  const oom = await h.fake.waitForState("/u/big/0", TaskState.FAILED);
  assert.match(oom.error, /OOMKilled/);

  api.clearTranscript();
  await h.client.runTask(commandTask("/u/long/0", ["sleep", "infinity"]));
  const long = await podOf("/u/long/0");
  await h.client.killTask({ taskId: "/u/long/0", attemptId: 0, reason: "cancelled by alice" });
  const killed = await h.fake.waitForState("/u/long/0", TaskState.KILLED);
  assert.match(killed.error, /cancelled by alice/);
  assert.equal(api.get(long), undefined);
});

Deno.test("a light worker's task Pod runtime comes from the environment the platform sets", async () => {
  assert.equal(await taskPodRuntimeFromEnv(() => undefined), undefined);
  const vars: Record<string, string> = {
    IRIS_TASK_RUNTIME: "kubernetes",
    IRIS_NAMESPACE: "iris",
    IRIS_LABEL_PREFIX: "iris",
    IRIS_NODE_NAME: "gpu-node-7",
    IRIS_TASK_RDMA: "true",
    IRIS_TASK_TOLERATIONS: '[{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}]',
    KUBECONFIG: "/nonexistent/kubeconfig",
  };
  await assert.rejects(
    taskPodRuntimeFromEnv((n) => vars[n]),
    /IRIS_TASK_IMAGE is not set; the kubernetes platform sets it on worker Pods/,
  );
  vars.IRIS_TASK_IMAGE = "registry.example/iris:0.1.0";
  await assert.rejects(taskPodRuntimeFromEnv((n) => vars[n]), /Cannot read kubeconfig/);
  const api = new KubeApiStandIn();
  await using _api = api;
  const dir = await Deno.makeTempDir();
  try {
    vars.KUBECONFIG = `${dir}/kubeconfig`;
    await Deno.writeTextFile(vars.KUBECONFIG, api.kubeconfig());
    const runtime = (await taskPodRuntimeFromEnv((n) => vars[n]))!;
    runtime.client[Symbol.dispose]();
    assert.deepEqual(runtime.base, {
      namespace: "iris",
      image: "registry.example/iris:0.1.0",
      labelPrefix: "iris",
      nodeName: "gpu-node-7",
      serviceAccount: undefined,
      s3SecretName: undefined,
      rdma: true,
      tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }],
    });
    vars.IRIS_TASK_TOLERATIONS = "not json";
    await assert.rejects(
      taskPodRuntimeFromEnv((n) => vars[n]),
      /IRIS_TASK_TOLERATIONS is not a JSON list of tolerations/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
