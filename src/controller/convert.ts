/**
 * Conversions between the controller's records and the wire messages: job/task/worker statuses
 * for responses, and proto constraints for the scheduler. The only place both shapes meet.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  AcceleratorType,
  type Attempt,
  AttemptSchema,
  type Constraint,
  ConstraintMode,
  ConstraintOp,
  type JobStatus,
  JobStatusSchema,
  PendingReasonSchema,
  PriorityBand,
  TaskState,
  type TaskStatus,
  TaskStatusSchema,
  type WorkerInfo,
  WorkerInfoSchema,
} from "../rpc/gen/iris/v1/types_pb.ts";
import type {
  AcceleratorKind,
  AttributeScalar,
  ConstraintOp as Op,
  ConstraintSpec,
} from "../types.ts";
import { attributesFromProto, attributesToProto } from "../rpc/mod.ts";
import { taskStateName } from "./job_rules.ts";
import type { JobRecord, JobTable, TaskRecord } from "./state.ts";
import { attemptKey, parseAttemptKey, type WorkerRecord } from "./workers.ts";

const OPS: Record<ConstraintOp, Op | undefined> = {
  [ConstraintOp.UNSPECIFIED]: undefined,
  [ConstraintOp.EQ]: "eq",
  [ConstraintOp.NE]: "ne",
  [ConstraintOp.EXISTS]: "exists",
  [ConstraintOp.NOT_EXISTS]: "not_exists",
  [ConstraintOp.GT]: "gt",
  [ConstraintOp.GE]: "ge",
  [ConstraintOp.LT]: "lt",
  [ConstraintOp.LE]: "le",
  [ConstraintOp.IN]: "in",
};

/** Proto constraints → the scheduler's plain constraints (unknown operators are dropped). */
export function constraintsFromProto(constraints: readonly Constraint[]): ConstraintSpec[] {
  const out: ConstraintSpec[] = [];
  for (const c of constraints) {
    const op = OPS[c.op];
    if (!op) continue;
    const scalar = (v: Constraint["value"]): AttributeScalar | undefined =>
      v?.kind.case === undefined ? undefined : v.kind.value;
    out.push({
      key: c.key,
      op,
      value: scalar(c.value),
      values: c.values.map((v) => scalar(v)).filter((v): v is AttributeScalar => v !== undefined),
      preferred: c.mode === ConstraintMode.PREFERRED,
    });
  }
  return out;
}

/** A task's wire status; with `usageHistory`, also the current attempt's usage samples. */
export function taskStatus(
  jobs: JobTable,
  task: TaskRecord,
  workers: ReadonlyMap<string, WorkerRecord>,
  usageHistory = false,
): TaskStatus {
  const cur = jobs.currentAttempt(task);
  const pendingReason = jobs.pendingReasonOf(task);
  const worker = cur ? workers.get(cur.workerId) : undefined;
  const samples = cur && worker?.taskUsage.get(attemptKey(task.taskId, cur.attemptId));
  return create(TaskStatusSchema, {
    taskId: task.taskId,
    jobId: task.jobId,
    index: task.index,
    state: task.state,
    workerId: cur?.workerId ?? "",
    workerAddress: worker?.address ?? "",
    exitCode: cur?.exitCode ?? 0,
    error: task.error,
    startedAtMs: cur?.startedAtMs ?? 0,
    finishedAtMs: cur?.finishedAtMs ?? 0,
    currentAttemptId: cur?.attemptId ?? -1,
    attempts: task.attempts.map((a) => create(AttemptSchema, a)),
    pendingReason: pendingReason ? create(PendingReasonSchema, pendingReason) : undefined,
    ports: task.ports,
    failureCount: task.failureCount,
    preemptionCount: task.preemptionCount,
    stderrTail: task.stderrTail,
    resourceUsage: samples ? samples[samples.length - 1] : undefined,
    usageHistory: usageHistory && samples ? samples : [],
  });
}

/** A job's wire status. */
export function jobStatus(jobs: JobTable, job: JobRecord, reservationClaimed = 0): JobStatus {
  const counts: Record<string, number> = {};
  for (const [state, n] of Object.entries(job.counts)) {
    if (n) counts[taskStateName(Number(state))] = n;
  }
  let failures = 0, preemptions = 0, completed = 0;
  for (const tid of job.taskIds) {
    const t = jobs.tasks.get(tid)!;
    failures += t.failureCount;
    preemptions += t.preemptionCount;
    if (t.state === TaskState.SUCCEEDED) completed++;
  }
  const reason = jobs.jobPendingReason(job);
  return create(JobStatusSchema, {
    jobId: job.jobId,
    user: job.user,
    state: job.state,
    spec: job.spec,
    submittedAtMs: job.submittedAtMs,
    startedAtMs: job.startedAtMs,
    finishedAtMs: job.finishedAtMs,
    taskStateCounts: counts,
    taskCount: job.taskIds.length,
    completedCount: completed,
    failureCount: failures,
    preemptionCount: preemptions,
    error: job.error,
    pendingReason: reason ? create(PendingReasonSchema, reason) : undefined,
    parentJobId: job.parentJobId,
    hasChildren: job.childIds.size > 0,
    exitCode: job.exitCode,
    effectivePriority: job.band ?? (job.spec.priority || PriorityBand.INTERACTIVE),
    priorityReason: job.bandReason ?? "",
    reservationClaimed,
  });
}

/** A worker's wire info. */
export function workerInfo(w: WorkerRecord): WorkerInfo {
  return create(WorkerInfoSchema, {
    workerId: w.workerId,
    address: w.address,
    resources: {
      cpuMillicores: w.total.cpuMillicores,
      memoryBytes: w.total.memoryBytes,
      accelerator: {
        type: acceleratorType(w.accelerator.kind),
        variant: w.accelerator.variant,
        count: w.accelerator.count,
      },
    },
    attributes: attributesToProto(w.attributes),
    scaleGroup: w.scaleGroup,
    sliceId: w.sliceId,
    healthy: w.healthy,
    lastHeartbeatMs: w.lastHeartbeatMs,
    registeredAtMs: w.registeredAtMs,
    runningTaskIds: [...w.active.keys()].map((k) => k.slice(0, k.lastIndexOf("#"))),
    committed: {
      cpuMillicores: w.committed.cpuMillicores,
      memoryBytes: w.committed.memoryBytes,
      accelerator: { type: acceleratorType(w.accelerator.kind), count: w.committed.accelerators },
    },
    snapshot: w.snapshot,
    history: w.history,
    statusMessage: w.statusMessage,
  });
}

/** Attempts that ended on `worker`, newest first, with their task and job ids. */
export function recentAttempts(
  jobs: JobTable,
  worker: WorkerRecord,
): { taskId: string; jobId: string; attempt: Attempt }[] {
  const out: { taskId: string; jobId: string; attempt: Attempt }[] = [];
  for (let i = worker.recentAttempts.length - 1; i >= 0; i--) {
    const { taskId, attemptId } = parseAttemptKey(worker.recentAttempts[i]!);
    const task = jobs.tasks.get(taskId);
    const attempt = task?.attempts.find((a) => a.attemptId === attemptId);
    if (task && attempt) {
      out.push({ taskId, jobId: task.jobId, attempt: create(AttemptSchema, attempt) });
    }
  }
  return out;
}

/** Maps a proto accelerator type to our kind. */
export function acceleratorKind(type: AcceleratorType | undefined): AcceleratorKind {
  if (type === AcceleratorType.TPU) return "tpu";
  if (type === AcceleratorType.GPU) return "gpu";
  return "cpu";
}

/** Maps our accelerator kind to the proto type. */
export function acceleratorType(kind: AcceleratorKind): AcceleratorType {
  return kind === "tpu"
    ? AcceleratorType.TPU
    : kind === "gpu"
    ? AcceleratorType.GPU
    : AcceleratorType.CPU;
}

export { attributesFromProto, attributesToProto };
