/**
 * JobRequest → JobSpec: multi-host TPU fill-in, child-job inheritance from the enclosing task,
 * and reading the job context back from a task's environment.
 */
import { toJson } from "@bufbuild/protobuf";
import assert from "node:assert/strict";
import {
  constraint,
  type JobContext,
  jobContext,
  jobSpecFromRequest,
  multiHostTpuDefaults,
} from "../../src/client/mod.ts";
import { ConstraintMode, ConstraintOp, ConstraintSchema } from "../../src/rpc/mod.ts";

const cmd = { name: "j", command: ["true"] };

Deno.test("a multi-host TPU variant runs one task per host, coscheduled by tpu-name", () => {
  const spec = jobSpecFromRequest({
    ...cmd,
    accelerator: { kind: "tpu", variant: "v5litepod-16" },
  });
  assert.equal(spec.replicas, 4);
  assert.equal(spec.coscheduling?.groupBy, "tpu-name");
  const v4 = jobSpecFromRequest({ ...cmd, accelerator: { kind: "tpu", variant: "v4-32" } });
  assert.deepEqual([v4.replicas, v4.coscheduling?.groupBy], [4, "tpu-name"]);
});

Deno.test("single-host, unknown and non-TPU requests get no fill-in", () => {
  for (
    const accelerator of [
      { kind: "tpu" as const, variant: "v5litepod-4" },
      { kind: "tpu" as const, variant: "" },
      { kind: "tpu" as const, variant: "v9-banana" },
      { kind: "gpu" as const, variant: "H100" },
      undefined,
    ]
  ) {
    const spec = jobSpecFromRequest({ ...cmd, accelerator });
    assert.equal(spec.replicas, 1, JSON.stringify(accelerator));
    assert.equal(spec.coscheduling, undefined, JSON.stringify(accelerator));
    assert.equal(multiHostTpuDefaults(accelerator), undefined);
  }
});

Deno.test("the user's replicas and groupBy override the TPU fill-in", () => {
  const tpu = { kind: "tpu" as const, variant: "v5litepod-16" };
  const two = jobSpecFromRequest({ ...cmd, accelerator: tpu, replicas: 2 });
  assert.deepEqual([two.replicas, two.coscheduling?.groupBy], [2, "tpu-name"]);
  const pool = jobSpecFromRequest({ ...cmd, accelerator: tpu, groupBy: "pool" });
  assert.deepEqual([pool.replicas, pool.coscheduling?.groupBy], [4, "pool"]);
  const off = jobSpecFromRequest({ ...cmd, accelerator: tpu, groupBy: "" });
  assert.deepEqual([off.replicas, off.coscheduling], [4, undefined]);
});

function parentContext(overrides: Partial<JobContext> = {}): JobContext {
  return {
    jobId: "/alice/parent",
    taskId: "/alice/parent/0",
    taskIndex: 0,
    numTasks: 1,
    attemptId: 0,
    workerId: "w1",
    controllerUrl: "http://127.0.0.1:1",
    user: "alice",
    ports: {},
    jobEnv: { SHARED: "parent", ONLY_PARENT: "p" },
    constraints: [
      constraint({ key: "region", op: "eq", value: "europe-west4" }),
      constraint({ key: "zone", op: "in", values: ["europe-west4-a", "europe-west4-b"] }),
      constraint({ key: "device-type", op: "eq", value: "tpu" }),
      constraint({ key: "device-variant", op: "eq", value: "v5litepod-16" }),
      constraint({ key: "taint:spot", op: "not_exists" }),
    ].map((c) => toJson(ConstraintSchema, c)),
    ...overrides,
  };
}

Deno.test("a child job inherits env (its own values win) and only region/zone constraints", () => {
  const spec = jobSpecFromRequest(
    { name: "child", command: ["true"], env: { SHARED: "child" }, cpu: 0.5 },
    { context: parentContext() },
  );
  assert.equal(spec.parentJobId, "/alice/parent");
  assert.equal(spec.user, "alice");
  assert.deepEqual(spec.env, { SHARED: "child", ONLY_PARENT: "p" });
  assert.deepEqual(spec.constraints.map((c) => [c.key, c.op]), [
    ["region", ConstraintOp.EQ],
    ["zone", ConstraintOp.IN],
  ]);
  // Device constraints are not inherited: the child's own resources decide its device.
  assert.equal(spec.resources?.accelerator, undefined);
  assert.equal(spec.resources?.cpuMillicores, 500);
});

Deno.test("a child's own region constraint replaces the inherited one", () => {
  const spec = jobSpecFromRequest(
    {
      name: "child",
      command: ["true"],
      constraints: [{ key: "region", op: "eq", value: "us-central1", preferred: true }],
    },
    { context: parentContext() },
  );
  const region = spec.constraints.filter((c) => c.key === "region");
  assert.equal(region.length, 1);
  assert.equal(region[0]!.value?.kind.value, "us-central1");
  assert.equal(region[0]!.mode, ConstraintMode.PREFERRED);
  assert.deepEqual(spec.constraints.map((c) => c.key), ["zone", "region"]);
});

Deno.test("a job submitted under another parent inherits nothing from the task", () => {
  const spec = jobSpecFromRequest(
    { name: "other", command: ["true"], parentJobId: "/alice/elsewhere" },
    { context: parentContext() },
  );
  assert.deepEqual(spec.constraints, []);
  assert.deepEqual(spec.env, {});
});

Deno.test("jobContext() reads a task's environment back as an object", () => {
  const ctx = jobContext({
    IRIS_JOB_ID: "/alice/train",
    IRIS_TASK_ID: "/alice/train/2",
    IRIS_TASK_INDEX: "2",
    IRIS_NUM_TASKS: "4",
    IRIS_ATTEMPT_ID: "1",
    IRIS_WORKER_ID: "w7",
    IRIS_CONTROLLER_URL: "http://10.0.0.1:10000",
    IRIS_USER: "alice",
    IRIS_PORT_HTTP: "12001",
    IRIS_PORT_GRPC: "12002",
    IRIS_JOB_ENV: '{"A":"1"}',
    IRIS_JOB_CONSTRAINTS: "not json",
  });
  assert.deepEqual(ctx, {
    jobId: "/alice/train",
    taskId: "/alice/train/2",
    taskIndex: 2,
    numTasks: 4,
    attemptId: 1,
    workerId: "w7",
    controllerUrl: "http://10.0.0.1:10000",
    user: "alice",
    ports: { http: 12001, grpc: 12002 },
    jobEnv: { A: "1" },
    constraints: [],
  });
  assert.equal(jobContext({ PATH: "/bin" }), undefined, "outside a task there is no context");
});

Deno.test("the default user is looked up only for a request that names none", () => {
  let lookups = 0;
  const lookup = () => {
    lookups++;
    return "os-user";
  };
  assert.equal(jobSpecFromRequest({ ...cmd, user: "bob" }, { defaultUser: lookup }).user, "bob");
  assert.equal(
    jobSpecFromRequest(cmd, { context: parentContext(), defaultUser: lookup }).user,
    "alice",
  );
  assert.equal(lookups, 0);
  assert.equal(jobSpecFromRequest(cmd, { defaultUser: lookup }).user, "os-user");
  assert.equal(lookups, 1);
  assert.equal(jobSpecFromRequest(cmd, { defaultUser: "carol" }).user, "carol");
});
