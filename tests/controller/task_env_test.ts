/**
 * The distributed env of coscheduled GPU and TPU jobs (#19): torch.distributed's variables for
 * GPU gangs and JAX's for TPU slices.
 * @module
 */
import assert from "node:assert/strict";
import { create, toJson } from "@bufbuild/protobuf";
import {
  AcceleratorType,
  ConstraintSchema,
  JobSpecSchema,
} from "../../src/rpc/gen/iris/v1/types_pb.ts";
import {
  gangTaskEnv,
  MASTER_PORT_RANGE,
  masterPort,
  taskEnv,
  type TaskEnvInput,
  tpuBounds,
} from "../../src/controller/task_env.ts";
import { PortAllocator } from "../../src/worker/ports.ts";

const spec = (type: AcceleratorType, variant: string, count: number, groupBy = "pool") =>
  create(JobSpecSchema, {
    resources: { accelerator: { type, variant, count } },
    coscheduling: groupBy ? { groupBy } : undefined,
  });

Deno.test("a GPU gang gets MASTER_ADDR/PORT, WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK", () => {
  // Four tasks on three workers: tasks 1 and 2 share gpu-b.
  const members = [
    { host: "10.0.0.1", workerId: "gpu-a" },
    { host: "10.0.0.2", workerId: "gpu-b" },
    { host: "10.0.0.2", workerId: "gpu-b" },
    { host: "10.0.0.3", workerId: "gpu-c" },
  ];
  const s = spec(AcceleratorType.GPU, "H100", 8);
  const envs = members.map((_, i) => gangTaskEnv("/alice/train", s, i, members, 0).env);
  const port = masterPort("/alice/train", 0);
  assert.ok(port >= MASTER_PORT_RANGE.min && port <= MASTER_PORT_RANGE.max);
  for (const [i, env] of envs.entries()) {
    assert.equal(env.MASTER_ADDR, "10.0.0.1");
    assert.equal(env.MASTER_PORT, String(port));
    assert.equal(env.WORLD_SIZE, "4");
    assert.equal(env.RANK, String(i));
  }
  assert.deepEqual(envs.map((e) => e.LOCAL_RANK), ["0", "0", "1", "0"]);
  assert.deepEqual(envs.map((e) => e.LOCAL_WORLD_SIZE), ["1", "2", "2", "1"]);
  assert.deepEqual(envs.map((e) => e.NODE_RANK), ["0", "1", "1", "2"]);
  assert.deepEqual(gangTaskEnv("/alice/train", s, 0, members, 0).endpoint, {
    name: "torch-master",
    address: `10.0.0.1:${port}`,
  });
  // A retried gang (task 0's next attempt) gets another port.
  assert.notEqual(masterPort("/alice/train", 1), port);
  // Only task 0's worker holds it (RunTaskRequest.reserved_ports).
  assert.deepEqual(gangTaskEnv("/alice/train", s, 0, members, 0).reservedPorts, {
    MASTER_PORT: port,
  });
  assert.equal(gangTaskEnv("/alice/train", s, 1, members, 0).reservedPorts, undefined);
});

Deno.test("masterPort() skips the ports held on task 0's worker and stays in the workers' port table", () => {
  const port = masterPort("/alice/train", 0);
  const next = masterPort("/alice/train", 0, new Set([port]));
  assert.notEqual(next, port);
  assert.ok(next >= MASTER_PORT_RANGE.min && next <= MASTER_PORT_RANGE.max);
  const all = new Set<number>();
  for (let p = MASTER_PORT_RANGE.min; p <= MASTER_PORT_RANGE.max; p++) all.add(p);
  all.delete(MASTER_PORT_RANGE.min + 7);
  assert.equal(masterPort("/alice/train", 0, all), MASTER_PORT_RANGE.min + 7);
  const table = new PortAllocator();
  assert.deepEqual([table.min, table.max], [MASTER_PORT_RANGE.min, MASTER_PORT_RANGE.max]);
});

Deno.test("a TPU gang gets the JAX set: platforms, bounds, accelerator type, hostnames, coordinator endpoint", () => {
  const members = [0, 1, 2, 3].map((i) => ({ host: `t1-w${i}`, workerId: `t1-w${i}` }));
  const got = gangTaskEnv(
    "/bob/jax",
    spec(AcceleratorType.TPU, "v4-32", 4, "tpu-name"),
    2,
    members,
    0,
  );
  assert.deepEqual(got.env, {
    JAX_PLATFORMS: "tpu",
    PJRT_DEVICE: "TPU",
    TPU_ACCELERATOR_TYPE: "v4-32",
    TPU_WORKER_HOSTNAMES: "t1-w0,t1-w1,t1-w2,t1-w3",
    TPU_CHIPS_PER_HOST_BOUNDS: "2,2,1",
    TPU_HOST_BOUNDS: "1,1,4",
    IRIS_JAX_COORDINATOR_ENDPOINT: "/bob/jax/jax-coordinator",
  });
  assert.deepEqual(got.endpoint, { name: "jax-coordinator", address: "t1-w0:8476" });
});

Deno.test("tpuBounds for single- and multi-host TPU types", () => {
  assert.deepEqual(tpuBounds("v5litepod-16"), { chipsPerHost: "2,2,1", hosts: "2,2,1" });
  assert.deepEqual(tpuBounds("v5litepod-8"), { chipsPerHost: "2,4,1", hosts: "1,1,1" });
  assert.deepEqual(tpuBounds("v4-8"), { chipsPerHost: "2,2,1", hosts: "1,1,1" });
  assert.deepEqual(tpuBounds("v5litepod-1"), { chipsPerHost: "1,1,1", hosts: "1,1,1" });
  assert.equal(tpuBounds("v9-7"), undefined);
});

Deno.test("jobs that are not coscheduled or have no accelerator get no distributed env", () => {
  const m = [{ host: "h", workerId: "w" }];
  assert.deepEqual(gangTaskEnv("/j", spec(AcceleratorType.GPU, "H100", 1, ""), 0, m, 0).env, {});
  assert.deepEqual(
    gangTaskEnv("/j", create(JobSpecSchema, { coscheduling: { groupBy: "x" } }), 0, m, 0).env,
    {},
  );
});

Deno.test("taskEnv(): IRIS_* variables, the base env under the job's, TPU host attributes", async () => {
  const { taskEnv } = await import("../../src/controller/task_env.ts");
  const s = create(JobSpecSchema, { env: { A: "job" }, bundleId: "b1" });
  const { env, endpoint } = taskEnv({
    base: { A: "base", B: "base" },
    jobId: "/alice/j",
    user: "alice",
    spec: s,
    taskId: "/alice/j/0",
    taskIndex: 0,
    numTasks: 1,
    attemptId: 3,
    workerId: "w0",
    workerAttributes: { "tpu-name": "slice-1", "tpu-worker-id": 2, other: "x" },
    controllerUrl: "http://c:1",
    members: [{ host: "h0", workerId: "w0" }],
    attempt0: 3,
  });
  assert.equal(endpoint, undefined);
  assert.equal(env.A, "job");
  assert.equal(env.B, "base");
  assert.equal(env.IRIS_ATTEMPT_ID, "3");
  assert.equal(env.IRIS_USER, "alice");
  assert.equal(env.IRIS_BUNDLE_ID, "b1");
  assert.equal(env.IRIS_JOB_ENV, JSON.stringify({ A: "job" }));
  assert.equal(env.TPU_NAME, "slice-1");
  assert.equal(env.TPU_WORKER_ID, "2");
  assert.equal(env.IRIS_GANG_HOSTS, undefined, "not coscheduled");
});

Deno.test("taskEnv(): a TPU gang's tasks get JAX's variables; task 0 serves the coordinator", async () => {
  const { taskEnv } = await import("../../src/controller/task_env.ts");
  const s = spec(AcceleratorType.TPU, "v4-16", 4);
  const members = [{ host: "h0", workerId: "w0" }, { host: "h1", workerId: "w1" }];
  const at = (taskIndex: number) =>
    taskEnv({
      jobId: "/alice/t",
      user: "alice",
      spec: s,
      taskId: `/alice/t/${taskIndex}`,
      taskIndex,
      numTasks: 2,
      attemptId: 0,
      workerId: members[taskIndex]!.workerId,
      workerAttributes: {},
      controllerUrl: "",
      members,
      attempt0: 0,
    });
  const [t0, t1] = [at(0), at(1)];
  assert.equal(t1.env.JAX_COORDINATOR_ADDRESS, "h0:8476");
  assert.equal(t1.env.JAX_PROCESS_ID, "1");
  assert.equal(t1.env.JAX_NUM_PROCESSES, "2");
  assert.equal(t1.env.TPU_WORKER_HOSTNAMES, "h0,h1");
  assert.equal(t1.endpoint, undefined, "only task 0 registers the endpoint");
  assert.deepEqual(t0.endpoint, { name: "jax-coordinator", address: "h0:8476" });
});

Deno.test("IRIS_JOB_CONSTRAINTS and IRIS_JOB_ENV carry the job's own, for every task of the job", () => {
  const input = (s: TaskEnvInput["spec"], taskIndex: number): TaskEnvInput => ({
    jobId: "/alice/j",
    user: "alice",
    spec: s,
    taskId: `/alice/j/${taskIndex}`,
    taskIndex,
    numTasks: 2,
    attemptId: 0,
    workerId: "w1",
    workerAttributes: {},
    controllerUrl: "http://c",
    members: [],
    attempt0: 0,
  });
  const constrained = create(JobSpecSchema, {
    env: { A: "1" },
    constraints: [{ key: "zone", op: 1, values: [{ kind: { case: "stringValue", value: "a" } }] }],
  });
  const want = JSON.stringify(constrained.constraints.map((c) => toJson(ConstraintSchema, c)));
  assert.notEqual(want, "[]");
  for (const i of [0, 1]) {
    const env = taskEnv(input(constrained, i)).env;
    assert.equal(env.IRIS_JOB_CONSTRAINTS, want);
    assert.equal(env.IRIS_JOB_ENV, '{"A":"1"}');
    assert.equal(env.IRIS_TASK_INDEX, String(i));
  }
  assert.equal(taskEnv(input(create(JobSpecSchema, {}), 0)).env.IRIS_JOB_CONSTRAINTS, "[]");
});
