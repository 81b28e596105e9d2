/**
 * The distributed-training environment of a coscheduled job's tasks: what `torchrun` and
 * `torch.distributed` read for GPU gangs, and what JAX on a multi-host TPU slice reads. Pure: the
 * controller passes the gang's placement, this returns variables (docs/job-model.md lists them).
 * {@linkcode taskEnv} builds a task's whole environment: the IRIS_* variables, the TPU host's and
 * the gang's.
 * @module
 */
import { toJson } from "@bufbuild/protobuf";
import { AcceleratorType, ConstraintSchema, type JobSpec } from "../rpc/gen/iris/v1/types_pb.ts";
import type { AttributeScalar } from "../types.ts";
import { tpuTopology } from "../tpu.ts";

/** Port of the JAX coordinator on task 0's host. */
export const JAX_COORDINATOR_PORT = 8476;
/**
 * Range MASTER_PORT is chosen from: the workers' port table (src/worker/ports.ts, 20000-29999,
 * below Linux's ephemeral ports), so task 0's worker holds it like a named port and no other task
 * on that host is handed it.
 */
export const MASTER_PORT_RANGE = { min: 20000, max: 29999 } as const;

/** One task of a gang as placed. */
export interface GangMember {
  /** Host name of its worker ("" when not placed). */
  readonly host: string;
  readonly workerId: string;
}

/**
 * MASTER_PORT of a gang attempt: a port in {@linkcode MASTER_PORT_RANGE} derived from the job and
 * task 0's attempt (a retried gang gets another), moved past the ports in `taken` (those the
 * controller knows are held on task 0's worker: named ports and other gangs' master ports).
 */
export function masterPort(
  jobId: string,
  attemptId: number,
  taken: ReadonlySet<number> = new Set(),
): number {
  let h = 0x811c9dc5;
  for (const ch of `${jobId}#${attemptId}`) {
    h ^= ch.codePointAt(0)!;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  const size = MASTER_PORT_RANGE.max - MASTER_PORT_RANGE.min + 1;
  for (let i = 0; i < size; i++) {
    const port = MASTER_PORT_RANGE.min + ((h + i) % size);
    if (!taken.has(port)) return port;
  }
  return MASTER_PORT_RANGE.min + (h % size);
}

/**
 * TPU_CHIPS_PER_HOST_BOUNDS and TPU_HOST_BOUNDS of a TPU type: the chips of one host as an
 * x,y,z box, and the slice's hosts as a box of such boxes ("2,2,1" and "1,1,4" for v4-32).
 */
export function tpuBounds(
  variant: string,
): { chipsPerHost: string; hosts: string } | undefined {
  const t = tpuTopology(variant);
  if (!t) return undefined;
  const dims = t.topology.split("x").map(Number);
  while (dims.length < 3) dims.push(1);
  const perHost = t.chipsPerHost === 1
    ? [1, 1, 1]
    : t.chipsPerHost === 2
    ? [1, 2, 1]
    : t.chipsPerHost === 4
    ? [2, 2, 1]
    : t.hosts === 1
    ? dims
    : [2, t.chipsPerHost / 2, 1];
  const hosts = dims.map((d, i) => Math.max(1, Math.round(d / perHost[i]!)));
  return { chipsPerHost: perHost.join(","), hosts: hosts.join(",") };
}

/** Variables for one task of a coscheduled job, and the endpoint task 0 serves, if any. */
export interface GangTaskEnv {
  readonly env: Record<string, string>;
  /** Ports task 0's worker must hold for the attempt (RunTaskRequest.reserved_ports). */
  readonly reservedPorts?: Record<string, number>;
  /** Registered for task 0 in the endpoint registry (name relative to the job). */
  readonly endpoint?: { readonly name: string; readonly address: string };
}

/**
 * The distributed env of task `taskIndex` of a coscheduled job whose tasks are placed on
 * `members` (by task index); empty for jobs that are not coscheduled or have no accelerator.
 * @param attemptId task 0's current attempt (picks MASTER_PORT)
 * @param port MASTER_PORT when the caller already chose it (see {@linkcode masterPort})
 */
export function gangTaskEnv(
  jobId: string,
  spec: JobSpec,
  taskIndex: number,
  members: readonly GangMember[],
  attemptId: number,
  port: number = masterPort(jobId, attemptId),
): GangTaskEnv {
  const acc = spec.resources?.accelerator;
  if (!spec.coscheduling?.groupBy || !acc) return { env: {} };
  const hosts = members.map((m) => m.host);
  const host0 = hosts[0] ?? "";
  if (acc.type === AcceleratorType.GPU) {
    const me = members[taskIndex];
    const local = members.map((m, i) => ({ m, i })).filter(({ m }) => m.workerId === me?.workerId);
    const workers = [...new Set(members.map((m) => m.workerId))];
    return {
      env: {
        MASTER_ADDR: host0,
        MASTER_PORT: String(port),
        WORLD_SIZE: String(members.length),
        RANK: String(taskIndex),
        LOCAL_RANK: String(Math.max(0, local.findIndex(({ i }) => i === taskIndex))),
        LOCAL_WORLD_SIZE: String(Math.max(1, local.length)),
        NODE_RANK: String(Math.max(0, workers.indexOf(me?.workerId ?? ""))),
      },
      endpoint: { name: "torch-master", address: `${host0}:${port}` },
      ...(taskIndex === 0 ? { reservedPorts: { MASTER_PORT: port } } : {}),
    };
  }
  if (acc.type === AcceleratorType.TPU) {
    const bounds = tpuBounds(acc.variant);
    return {
      env: {
        JAX_PLATFORMS: "tpu",
        PJRT_DEVICE: "TPU",
        TPU_ACCELERATOR_TYPE: acc.variant,
        TPU_WORKER_HOSTNAMES: hosts.join(","),
        ...(bounds
          ? { TPU_CHIPS_PER_HOST_BOUNDS: bounds.chipsPerHost, TPU_HOST_BOUNDS: bounds.hosts }
          : {}),
        IRIS_JAX_COORDINATOR_ENDPOINT: `${jobId}/jax-coordinator`,
      },
      endpoint: { name: "jax-coordinator", address: `${host0}:${JAX_COORDINATOR_PORT}` },
    };
  }
  return { env: {} };
}

/** What {@linkcode taskEnv} reads: one placed attempt of a job, and where its gang is. */
export interface TaskEnvInput {
  /** The environment every task gets (the controller's `taskEnv`), before the job's own. */
  readonly base?: Readonly<Record<string, string>>;
  readonly jobId: string;
  readonly user: string;
  readonly spec: JobSpec;
  readonly taskId: string;
  readonly taskIndex: number;
  readonly numTasks: number;
  readonly attemptId: number;
  readonly workerId: string;
  /** The worker's attributes (a TPU host's name, worker id and topology become TPU_*). */
  readonly workerAttributes: Readonly<Record<string, AttributeScalar>>;
  /** The URL tasks reach the controller at. */
  readonly controllerUrl: string;
  /** The job's tasks as placed, by index (read for coscheduled jobs). */
  readonly members: readonly GangMember[];
  /** Task 0's current attempt (picks MASTER_PORT). */
  readonly attempt0: number;
  /** MASTER_PORT when the caller chose it (past the ports held on task 0's host). */
  readonly masterPort?: number;
}

/** A spec's constraints as IRIS_JOB_CONSTRAINTS carries them, made once per spec (per job). */
const constraintsJsonOf = new WeakMap<JobSpec, string>();

function constraintsJson(spec: JobSpec): string {
  if (spec.constraints.length === 0) return "[]";
  let json = constraintsJsonOf.get(spec);
  if (json === undefined) {
    json = JSON.stringify(spec.constraints.map((c) => toJson(ConstraintSchema, c)));
    constraintsJsonOf.set(spec, json);
  }
  return json;
}

/**
 * The environment of one attempt as sent in RunTask, and the endpoint it registers (task 0 of a
 * gang that serves one).
 */
export function taskEnv(i: TaskEnvInput): GangTaskEnv {
  const spec = i.spec;
  const env: Record<string, string> = {
    ...i.base,
    ...spec.env,
    IRIS_JOB_ID: i.jobId,
    IRIS_TASK_ID: i.taskId,
    IRIS_TASK_INDEX: String(i.taskIndex),
    IRIS_NUM_TASKS: String(i.numTasks),
    IRIS_ATTEMPT_ID: String(i.attemptId),
    IRIS_WORKER_ID: i.workerId,
    IRIS_USER: i.user,
    IRIS_CONTROLLER_URL: i.controllerUrl,
    IRIS_JOB_ENV: JSON.stringify(spec.env),
    // Child jobs submitted from the task (python/iris_client.py) reuse the workspace.
    ...(spec.bundleId ? { IRIS_BUNDLE_ID: spec.bundleId } : {}),
    IRIS_JOB_CONSTRAINTS: constraintsJson(spec),
  };
  for (const [k, v] of Object.entries(i.workerAttributes)) {
    if (k === "tpu-name") env.TPU_NAME = String(v);
    if (k === "tpu-worker-id") env.TPU_WORKER_ID = String(v);
    if (k === "tpu-topology") env.TPU_TOPOLOGY = String(v);
  }
  if (!spec.coscheduling?.groupBy) return { env };
  const hosts = i.members.map((m) => m.host);
  env.IRIS_GANG_HOSTS = hosts.join(",");
  env.TPU_WORKER_HOSTNAMES = hosts.join(",");
  env.JAX_COORDINATOR_ADDRESS = `${hosts[0]}:${JAX_COORDINATOR_PORT}`;
  env.JAX_NUM_PROCESSES = String(i.numTasks);
  env.JAX_PROCESS_ID = String(i.taskIndex);
  const gang = gangTaskEnv(
    i.jobId,
    spec,
    i.taskIndex,
    i.members,
    i.attempt0,
    i.masterPort ?? masterPort(i.jobId, i.attempt0),
  );
  Object.assign(env, gang.env);
  return {
    env,
    ...(gang.endpoint && i.taskIndex === 0 ? { endpoint: gang.endpoint } : {}),
    ...(gang.reservedPorts ? { reservedPorts: gang.reservedPorts } : {}),
  };
}
