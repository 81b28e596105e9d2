/**
 * Canned ControllerService and WorkerService implementations for the dashboard tests: jobs in
 * every interesting state (a parent with children, a pending job with a reason, hostile names
 * and log lines), workers with snapshots, an autoscaler status, endpoints and controller logs.
 * @module
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { ControllerService } from "../../src/rpc/gen/iris/v1/controller_pb.ts";
import type { WorkerService } from "../../src/rpc/gen/iris/v1/worker_pb.ts";
import {
  AcceleratorType,
  ConstraintMode,
  ConstraintOp,
  type EndpointSchema,
  JobState,
  type JobStatusSchema,
  type LogLineSchema,
  PriorityBand,
  TaskState,
  type TaskStatusSchema,
  type WorkerInfoSchema,
} from "../../src/rpc/gen/iris/v1/types_pb.ts";
import type { WorkerTaskInfoSchema } from "../../src/rpc/gen/iris/v1/worker_pb.ts";
import { queryJobs } from "../../src/controller/job_query.ts";
import type { JobRecord } from "../../src/controller/state.ts";
import { toConnectError } from "../../src/rpc/errors.ts";

type JobInit = MessageInitShape<typeof JobStatusSchema>;
type TaskInit = MessageInitShape<typeof TaskStatusSchema>;
type LogInit = MessageInitShape<typeof LogLineSchema> & { seq: number; taskId: string };
type WorkerInit = MessageInitShape<typeof WorkerInfoSchema>;
type EndpointInit = MessageInitShape<typeof EndpointSchema>;
type WorkerTaskInit = MessageInitShape<typeof WorkerTaskInfoSchema>;

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;

/** A job name that would execute script if inserted as markup. */
export const HOSTILE_JOB = "/mallory/<img src=x onerror=alert(1)>";
/** A log line that would execute script if inserted as markup. */
export const HOSTILE_LOG = "<script>window.__pwned=1</script>";
/** The marker a worker writes in place of lines its rate limit dropped. */
export const DROPPED_MARKER =
  "… 12,345 lines dropped (log rate limit: 1,000 lines/s and 256.0 KiB/s per task, 5,000 lines/s and 1.0 MiB/s per worker)";
/** A worker attribute value that would execute script if inserted as markup. */
export const HOSTILE_ATTR = "<svg onload=alert(3)>";
/** The pending job and its reason text. */
export const PENDING_JOB = "/bob/sweep-lr";
/** Text of the pending job's reason. */
export const PENDING_REASON =
  "Waiting for 8 × tpu v5p-8: no worker has free chips (3 workers considered)";
/** The running parent job (with children, tasks and logs). */
export const PARENT_JOB = "/alice/train";
/** A child of {@linkcode PARENT_JOB}. */
export const CHILD_JOB = "/alice/train/eval";
/** Number of filler jobs (to exercise paging). */
export const FILLER_JOBS = 30;

/** A scriptable fake of the controller's API with fixed data relative to `now`. */
export class FakeController {
  readonly now: number;
  readonly jobs: JobInit[] = [];
  readonly tasks = new Map<string, TaskInit[]>();
  readonly logs: LogInit[] = [];
  /** Jobs submitted through LaunchJob (the dashboard's Resubmit). */
  readonly launched: { jobId: string; spec: unknown }[] = [];
  readonly workers: WorkerInit[];
  /** Job ids passed to TerminateJob, in call order. */
  readonly terminated: string[] = [];
  #seq = 0;

  constructor(now = Date.now()) {
    this.now = now;
    this.#addJobs();
    this.workers = this.#workers();
  }

  /** Appends a log line to a task (for follow tests). */
  appendLog(taskId: string, text: string, stream = "stdout", timestampMs = Date.now()): void {
    this.logs.push({
      seq: ++this.#seq,
      taskId,
      attemptId: 0,
      text,
      stream,
      timestampMs,
    });
  }

  /** Twenty samples ending at the task's current usage. */
  #usageHistory(t: TaskInit): TaskInit["usageHistory"] {
    const u = t.resourceUsage;
    if (!u) return [];
    return Array.from({ length: 20 }, (_, i) => ({
      ...u,
      timestampMs: (u.timestampMs ?? 0) - (19 - i) * 5 * SEC,
      cpuMillicores: Math.round((u.cpuMillicores ?? 0) * (0.5 + (i % 5) / 8)),
      memoryBytes: (u.memoryBytes ?? 0) * (0.6 + i / 50),
    }));
  }

  #job(j: JobInit & { jobId: string }, tasks: TaskInit[] = []): void {
    const counts: Record<string, number> = {};
    for (const t of tasks) {
      const name = TaskState[t.state ?? 0]!.toLowerCase();
      counts[name] = (counts[name] ?? 0) + 1;
    }
    this.jobs.push({
      user: j.jobId.split("/")[1],
      taskStateCounts: counts,
      taskCount: tasks.length,
      completedCount: tasks.filter((t) => t.state === TaskState.SUCCEEDED).length,
      ...j,
    });
    this.tasks.set(
      j.jobId,
      tasks.map((t, i) =>
        ({
          jobId: j.jobId,
          taskId: `${j.jobId}/${i}`,
          index: i,
          ...t,
          resourceUsage: t.state === TaskState.RUNNING
            ? {
              taskId: `${j.jobId}/${i}`,
              attemptId: t.currentAttemptId ?? 0,
              timestampMs: this.now - 2 * SEC,
              cpuMillicores: 1500 + 2500 * i,
              memoryBytes: (3 + 5 * i) * GiB,
              peakMemoryBytes: (4 + 6 * i) * GiB,
              processCount: 3 + i,
            }
            : undefined,
        }) as TaskInit
      ),
    );
  }

  #addJobs(): void {
    const now = this.now;
    this.#job({
      jobId: PARENT_JOB,
      state: JobState.RUNNING,
      hasChildren: true,
      submittedAtMs: now - 2 * HOUR - 5 * MIN,
      startedAtMs: now - 2 * HOUR,
      spec: {
        name: PARENT_JOB,
        entrypoint: {
          kind: {
            case: "command",
            value: { argv: ["python", "-m", "train", "--lr", "3e-4", "--run name"] },
          },
        },
        resources: {
          cpuMillicores: 8000,
          memoryBytes: 32 * GiB,
          accelerator: { type: AcceleratorType.TPU, variant: "v5litepod-16", count: 4 },
        },
        replicas: 4,
        coscheduling: { groupBy: "tpu-name" },
        constraints: [
          {
            key: "region",
            op: ConstraintOp.EQ,
            value: { kind: { case: "stringValue", value: "us-central2" } },
          },
          { key: "tpu-name", op: ConstraintOp.EXISTS },
          {
            key: "zone",
            op: ConstraintOp.IN,
            values: [
              { kind: { case: "stringValue", value: "us-central2-a" } },
              { kind: { case: "stringValue", value: "us-central2-b" } },
            ],
            mode: ConstraintMode.PREFERRED,
          },
        ],
        ports: ["coordinator", "metrics"],
        env: { WANDB_PROJECT: "iris", XLA_FLAGS: "--xla_dump_to=/tmp" },
        maxRetriesFailure: 2,
        maxRetriesPreemption: 100,
        priority: PriorityBand.PRODUCTION,
        bundleId: "sha256-5f1c0de2a9b7",
        user: "alice",
      },
    }, [
      {
        state: TaskState.RUNNING,
        workerId: "tpu-slice-a-0",
        startedAtMs: now - 2 * HOUR,
        attempts: [{ attemptId: 0 }],
      },
      {
        state: TaskState.RUNNING,
        workerId: "tpu-slice-a-1",
        startedAtMs: now - 40 * MIN,
        currentAttemptId: 1,
        preemptionCount: 1,
        attempts: [{ attemptId: 0, state: TaskState.PREEMPTED, isWorkerFailure: true }, {
          attemptId: 1,
        }],
      },
      {
        state: TaskState.RUNNING,
        workerId: "tpu-slice-a-2",
        startedAtMs: now - 2 * HOUR,
        attempts: [{ attemptId: 0 }],
      },
      {
        state: TaskState.BUILDING,
        workerId: "tpu-slice-a-3",
        startedAtMs: now - 20 * SEC,
        attempts: [{ attemptId: 0 }],
      },
    ]);
    this.#job({
      jobId: CHILD_JOB,
      parentJobId: PARENT_JOB,
      state: JobState.RUNNING,
      hasChildren: true,
      submittedAtMs: now - 30 * MIN,
      startedAtMs: now - 29 * MIN,
      spec: {
        name: "eval",
        entrypoint: { kind: { case: "command", value: { argv: ["python", "eval.py"] } } },
      },
    }, [{ state: TaskState.RUNNING, workerId: "cpu-pool-1", startedAtMs: now - 29 * MIN }]);
    this.#job({
      jobId: `${CHILD_JOB}/shard-0`,
      parentJobId: CHILD_JOB,
      state: JobState.SUCCEEDED,
      submittedAtMs: now - 28 * MIN,
      startedAtMs: now - 28 * MIN,
      finishedAtMs: now - 20 * MIN,
    }, [{ state: TaskState.SUCCEEDED, finishedAtMs: now - 20 * MIN, startedAtMs: now - 28 * MIN }]);
    this.#job({
      jobId: PENDING_JOB,
      state: JobState.PENDING,
      submittedAtMs: now - 12 * MIN,
      pendingReason: {
        code: "insufficient_accelerator",
        message: PENDING_REASON,
        workersConsidered: 3,
      },
      spec: {
        resources: {
          cpuMillicores: 4000,
          memoryBytes: 16 * GiB,
          accelerator: { type: AcceleratorType.TPU, variant: "v5p-8", count: 8 },
        },
        replicas: 2,
      },
    }, [
      { state: TaskState.PENDING, pendingReason: { message: PENDING_REASON } },
      { state: TaskState.PENDING, pendingReason: { message: PENDING_REASON } },
    ]);
    this.#job({
      jobId: "/bob/preprocess",
      state: JobState.FAILED,
      submittedAtMs: now - 55 * MIN,
      startedAtMs: now - 54 * MIN,
      finishedAtMs: now - 41 * MIN,
      error: "Task 2 failed: exit code 1 (ValueError: bad shard <b>17</b>)",
      exitCode: 1,
      failureCount: 1,
    }, [
      {
        state: TaskState.SUCCEEDED,
        exitCode: 0,
        startedAtMs: now - 54 * MIN,
        finishedAtMs: now - 45 * MIN,
      },
      {
        state: TaskState.SUCCEEDED,
        exitCode: 0,
        startedAtMs: now - 54 * MIN,
        finishedAtMs: now - 44 * MIN,
      },
      {
        state: TaskState.FAILED,
        exitCode: 1,
        error: "ValueError: bad shard <b>17</b>",
        startedAtMs: now - 54 * MIN,
        finishedAtMs: now - 41 * MIN,
      },
    ]);
    this.#job({
      jobId: HOSTILE_JOB,
      state: JobState.RUNNING,
      submittedAtMs: now - 8 * MIN,
      startedAtMs: now - 7 * MIN,
    }, [{ state: TaskState.RUNNING, workerId: "cpu-pool-1", startedAtMs: now - 7 * MIN }]);
    this.#job({
      jobId: "/carol/report",
      state: JobState.SUCCEEDED,
      submittedAtMs: now - 3 * HOUR,
      startedAtMs: now - 3 * HOUR + 10 * SEC,
      finishedAtMs: now - 2 * HOUR - 40 * MIN,
    }, [{
      state: TaskState.SUCCEEDED,
      startedAtMs: now - 3 * HOUR,
      finishedAtMs: now - 2 * HOUR - 40 * MIN,
    }]);
    this.#job({
      jobId: "/dave/h100-finetune",
      state: JobState.UNSCHEDULABLE,
      submittedAtMs: now - 70 * MIN,
      finishedAtMs: now - 10 * MIN,
      pendingReason: {
        code: "scheduling_timeout",
        message: "No scale group offers gpu H100 ×8 (scheduling timeout 1h)",
      },
      error: "scheduling timeout",
    }, [{ state: TaskState.UNSCHEDULABLE }]);
    this.#job({
      jobId: "/erin/notebook",
      state: JobState.KILLED,
      submittedAtMs: now - 5 * HOUR,
      startedAtMs: now - 5 * HOUR,
      finishedAtMs: now - 4 * HOUR,
      error: "terminated by user",
    }, [{
      state: TaskState.KILLED,
      startedAtMs: now - 5 * HOUR,
      finishedAtMs: now - 4 * HOUR,
      exitCode: 143,
    }]);
    this.#job({
      jobId: "/frank/tokenize",
      state: JobState.BUILDING,
      submittedAtMs: now - 40 * SEC,
      startedAtMs: now - 30 * SEC,
    }, [{ state: TaskState.BUILDING, workerId: "cpu-pool-1" }, {
      state: TaskState.ASSIGNED,
      workerId: "cpu-pool-1",
    }]);
    this.#job({
      jobId: "/grace/flaky",
      state: JobState.WORKER_FAILED,
      submittedAtMs: now - 6 * HOUR,
      startedAtMs: now - 6 * HOUR,
      finishedAtMs: now - 5 * HOUR,
      error: "worker tpu-slice-z-0 died 101 times (preemption budget exhausted)",
    }, [{ state: TaskState.WORKER_FAILED }]);
    for (let i = 0; i < FILLER_JOBS; i++) {
      const ok = i % 7 !== 3;
      this.#job({
        jobId: `/erin/hparam-${String(i).padStart(2, "0")}`,
        state: ok ? JobState.SUCCEEDED : JobState.FAILED,
        submittedAtMs: now - 8 * HOUR - i * 7 * MIN,
        startedAtMs: now - 8 * HOUR - i * 7 * MIN + 5 * SEC,
        finishedAtMs: now - 8 * HOUR - i * 7 * MIN + (20 + i) * MIN,
        error: ok ? "" : "exit code 2",
      }, [{ state: ok ? TaskState.SUCCEEDED : TaskState.FAILED }]);
    }

    const t0 = now - 2 * HOUR;
    const lines: Array<[string, string, string]> = [
      [`${PARENT_JOB}/0`, "system", "attempt 0 started on tpu-slice-a-0"],
      [`${PARENT_JOB}/0`, "stdout", "Loading checkpoint gs://bucket/ckpt/step-12000"],
      [`${PARENT_JOB}/1`, "stdout", "Compiling train_step (this can take a minute)"],
      [`${PARENT_JOB}/0`, "stdout", "step 12001 loss=2.3141 lr=3.0e-4 tokens/s=182k"],
      [`${PARENT_JOB}/2`, "stderr", "WARNING: slow host-to-device transfer (412 ms)"],
      [`${PARENT_JOB}/0`, "stdout", HOSTILE_LOG],
      // What a worker writes for a flooding task (issue #16): a cut line and a dropped marker.
      [`${PARENT_JOB}/0`, "stdout", `${"y".repeat(16384)} … [49,151 bytes truncated]`],
      [`${PARENT_JOB}/0`, "system", DROPPED_MARKER],
      [`${PARENT_JOB}/0`, "stdout", "step 12002 loss=2.3098 lr=3.0e-4 tokens/s=185k"],
    ];
    lines.forEach(([taskId, stream, text], i) =>
      this.logs.push({
        seq: ++this.#seq,
        taskId,
        attemptId: 0,
        stream,
        text,
        timestampMs: t0 + i * 1500,
      })
    );
    this.logs.push({
      seq: ++this.#seq,
      taskId: `${HOSTILE_JOB}/0`,
      attemptId: 0,
      stream: "stdout",
      text: HOSTILE_LOG,
      timestampMs: now - 6 * MIN,
    });
  }

  #workers(): WorkerInit[] {
    const now = this.now;
    // Host figures: the whole VM (every process); absent = the worker could not read them.
    const host = (cpuMillicores: number, memUsedGiB: number) => ({
      hostCpuMillicores: cpuMillicores,
      hostCpuTotalMillicores: 112_000,
      hostMemoryUsedBytes: memUsedGiB * GiB,
      hostMemoryTotalBytes: 192 * GiB,
    });
    const hostOf = [host(40_000, 80), host(90_000, 150), host(110_000, 180), {}];
    const tpu = (i: number, cpu: number, memUsed: number): WorkerInit => ({
      workerId: `tpu-slice-a-${i}`,
      address: `10.128.0.${10 + i}:10001`,
      scaleGroup: "tpu-v5e-16",
      sliceId: "tpu-slice-a",
      healthy: true,
      lastHeartbeatMs: now - (2 + i) * SEC,
      registeredAtMs: now - 3 * HOUR,
      resources: {
        cpuMillicores: 112_000,
        memoryBytes: 192 * GiB,
        diskBytes: 100 * GiB,
        accelerator: { type: AcceleratorType.TPU, variant: "v5litepod-16", count: 4 },
      },
      committed: {
        cpuMillicores: 8000,
        memoryBytes: 32 * GiB,
        accelerator: { type: AcceleratorType.TPU, variant: "v5litepod-16", count: 4 },
      },
      attributes: {
        "tpu-name": { kind: { case: "stringValue", value: "tpu-slice-a" } },
        "tpu-worker-id": { kind: { case: "intValue", value: i } },
        region: { kind: { case: "stringValue", value: "us-central2" } },
        preemptible: { kind: { case: "boolValue", value: true } },
      },
      runningTaskIds: [`${PARENT_JOB}/${i}`],
      snapshot: {
        timestampMs: now - 3 * SEC,
        cpuPercent: cpu,
        memoryUsedBytes: memUsed,
        memoryTotalBytes: 192 * GiB,
        runningTasks: 1,
        processCount: 14 + i,
        ...hostOf[i],
      },
    });
    return [
      tpu(0, 45.2, 61 * GiB),
      tpu(1, 78.5, 150 * GiB),
      tpu(2, 96.1, 185 * GiB),
      { ...tpu(3, 12, 20 * GiB), runningTaskIds: [`${PARENT_JOB}/3`] },
      {
        workerId: "cpu-pool-1",
        address: "10.128.1.7:10001",
        scaleGroup: "cpu-pool",
        sliceId: "cpu-pool-1",
        healthy: true,
        lastHeartbeatMs: now - 1 * SEC,
        registeredAtMs: now - 26 * HOUR,
        resources: { cpuMillicores: 16_000, memoryBytes: 64 * GiB },
        committed: { cpuMillicores: 3000, memoryBytes: 6 * GiB },
        attributes: { region: { kind: { case: "stringValue", value: "us-central2" } } },
        runningTaskIds: [
          `${CHILD_JOB}/0`,
          `${HOSTILE_JOB}/0`,
          "/frank/tokenize/0",
          "/frank/tokenize/1",
        ],
        snapshot: {
          timestampMs: now - 1 * SEC,
          cpuPercent: 31,
          memoryUsedBytes: 9 * GiB,
          memoryTotalBytes: 64 * GiB,
          runningTasks: 4,
          processCount: 37,
          hostCpuMillicores: 4000,
          hostCpuTotalMillicores: 16_000,
          hostMemoryUsedBytes: 20 * GiB,
          hostMemoryTotalBytes: 64 * GiB,
        },
      },
      {
        workerId: "cpu-pool-2",
        address: "10.128.1.8:10001",
        scaleGroup: "cpu-pool",
        sliceId: "cpu-pool-2",
        healthy: false,
        statusMessage: "heartbeat timeout",
        lastHeartbeatMs: now - 3 * MIN,
        registeredAtMs: now - 26 * HOUR,
        resources: { cpuMillicores: 16_000, memoryBytes: 64 * GiB },
        attributes: { note: { kind: { case: "stringValue", value: HOSTILE_ATTR } } },
      },
    ];
  }

  /** The ControllerService implementation over this data. */
  impl(): Partial<ServiceImpl<typeof ControllerService>> {
    const now = this.now;
    return {
      listJobs: (req) => {
        // The controller's own query over job records shaped from the canned statuses, so the
        // fake sorts, scopes and pages exactly like the real thing.
        const records = new Map<string, JobRecord>();
        for (const j of this.jobs) {
          const id = j.jobId!;
          records.set(id, {
            jobId: id,
            user: j.user ?? "",
            state: j.state ?? JobState.UNSPECIFIED,
            parentJobId: j.parentJobId ?? "",
            childIds: new Set(this.jobs.filter((c) => c.parentJobId === id).map((c) => c.jobId!)),
            taskIds: Array.from({ length: j.taskCount ?? 0 }, (_, i) => `${id}/${i}`),
            submittedAtMs: j.submittedAtMs ?? 0,
            startedAtMs: j.startedAtMs ?? 0,
            finishedAtMs: j.finishedAtMs ?? 0,
          } as unknown as JobRecord);
        }
        let page;
        try {
          page = queryJobs(records, req, now);
        } catch (err) {
          throw toConnectError(err);
        }
        return {
          jobs: page.jobs.map((r) => this.jobs.find((j) => j.jobId === r.jobId)!),
          totalCount: page.totalCount,
          hasMore: page.hasMore,
          users: page.users,
        };
      },
      getJobStatus: (req) => {
        const job = this.jobs.find((j) => j.jobId === req.jobId);
        if (!job) throw new ConnectError(`job ${req.jobId} not found`, Code.NotFound);
        return { job, tasks: this.tasks.get(req.jobId) ?? [] };
      },
      listTasks: (req) => {
        if (!this.tasks.has(req.jobId)) {
          throw new ConnectError(`job ${req.jobId} not found`, Code.NotFound);
        }
        const tasks = this.tasks.get(req.jobId) ?? [];
        return {
          tasks: req.includeUsageHistory
            ? tasks.map((t) => ({ ...t, usageHistory: this.#usageHistory(t) }) as TaskInit)
            : tasks,
        };
      },
      launchJob: (req) => {
        const spec = req.spec!;
        const jobId = spec.name.startsWith("/") ? spec.name : `/${spec.user}/${spec.name}`;
        this.launched.push({ jobId, spec });
        this.#job({ jobId, state: JobState.PENDING, submittedAtMs: Date.now(), spec }, [{
          state: TaskState.PENDING,
        }]);
        return { jobId, created: true };
      },
      terminateJob: (req) => {
        this.terminated.push(req.jobId);
        const ids = this.jobs.filter((j) =>
          j.jobId === req.jobId || j.jobId!.startsWith(`${req.jobId}/`)
        )
          .filter((j) =>
            j.state === JobState.RUNNING || j.state === JobState.PENDING ||
            j.state === JobState.BUILDING
          );
        for (const j of ids) {
          j.state = JobState.KILLED;
          j.finishedAtMs = Date.now();
          j.error = req.reason;
        }
        return { terminatedJobIds: ids.map((j) => j.jobId!) };
      },
      getTaskLogs: (req) => {
        const isJob = this.jobs.some((j) => j.jobId === req.id);
        const max = req.maxLines || 10_000;
        const matched = this.logs.filter((l) =>
          l.seq > req.cursor &&
          (isJob ? l.taskId.slice(0, l.taskId.lastIndexOf("/")) === req.id : l.taskId === req.id) &&
          (!req.substring || l.text!.includes(req.substring)) &&
          (req.attemptId === undefined || l.attemptId === req.attemptId)
        ).slice(0, max);
        return {
          lines: matched.map(({ seq: _seq, ...l }) => l),
          nextCursor: matched.at(-1)?.seq ?? req.cursor,
        };
      },
      listWorkers: () => ({ workers: this.workers }),
      getWorkerStatus: (req) => {
        const worker = this.workers.find((w) => w.workerId === req.workerId);
        if (!worker) throw new ConnectError(`No worker ${req.workerId}`, Code.NotFound);
        const tasks = (worker.runningTaskIds ?? []).flatMap((id) =>
          [...this.tasks.values()].flat().filter((t) => t.taskId === id)
        ).map((t) => ({ ...t, usageHistory: this.#usageHistory(t) }) as TaskInit);
        return {
          worker,
          tasks,
          recentAttempts: worker.workerId === "tpu-slice-a-1"
            ? [{
              taskId: `${PARENT_JOB}/1`,
              jobId: PARENT_JOB,
              attempt: {
                attemptId: 0,
                workerId: "tpu-slice-a-1",
                state: TaskState.PREEMPTED,
                isWorkerFailure: true,
                error: "worker preempted",
                startedAtMs: now - 2 * HOUR,
                finishedAtMs: now - 41 * MIN,
                peakMemoryBytes: 40 * GiB,
              },
            }]
            : [],
        };
      },
      getAutoscalerStatus: () => ({
        enabled: true,
        lastEvaluationMs: now - 4 * SEC,
        groups: [
          {
            name: "tpu-v5e-16",
            minSlices: 0,
            maxSlices: 4,
            acceleratorType: AcceleratorType.TPU,
            acceleratorVariant: "v5litepod-16",
            demandSlices: 1,
            availability: "available",
            lastScaleUpMs: now - 6 * MIN,
            lastScaleDownMs: now - 5 * HOUR,
            slices: [
              {
                sliceId: "tpu-slice-a",
                scaleGroup: "tpu-v5e-16",
                state: "ready",
                workerIds: ["tpu-slice-a-0", "tpu-slice-a-1", "tpu-slice-a-2", "tpu-slice-a-3"],
                createdAtMs: now - 3 * HOUR,
              },
              {
                sliceId: "tpu-slice-b",
                scaleGroup: "tpu-v5e-16",
                state: "booting",
                createdAtMs: now - 6 * MIN,
              },
            ],
          },
          {
            name: "tpu-v5p-8",
            minSlices: 0,
            maxSlices: 2,
            acceleratorType: AcceleratorType.TPU,
            acceleratorVariant: "v5p-8",
            demandSlices: 2,
            availability: "backoff",
            backoffUntilMs: now + 90 * SEC,
            consecutiveFailures: 3,
            lastScaleUpMs: now - 4 * MIN,
            slices: [{
              sliceId: "tpu-slice-c",
              scaleGroup: "tpu-v5p-8",
              state: "failed",
              createdAtMs: now - 4 * MIN,
              error: "QUOTA_EXCEEDED: Quota 'TPUV5P_PER_PROJECT' exceeded in us-east5",
            }],
          },
          {
            name: "cpu-pool",
            minSlices: 1,
            maxSlices: 8,
            acceleratorType: AcceleratorType.CPU,
            demandSlices: 0,
            availability: "cooldown",
            lastScaleUpMs: now - 26 * HOUR,
            lastScaleDownMs: now - 2 * MIN,
            slices: [
              {
                sliceId: "cpu-pool-1",
                scaleGroup: "cpu-pool",
                state: "ready",
                workerIds: ["cpu-pool-1"],
                createdAtMs: now - 26 * HOUR,
              },
              {
                sliceId: "cpu-pool-2",
                scaleGroup: "cpu-pool",
                state: "ready",
                workerIds: ["cpu-pool-2"],
                createdAtMs: now - 26 * HOUR,
                idleSinceMs: now - 9 * MIN,
              },
              {
                sliceId: "cpu-pool-3",
                scaleGroup: "cpu-pool",
                state: "terminating",
                createdAtMs: now - 5 * HOUR,
              },
            ],
          },
        ],
        recentActions: [
          {
            timestampMs: now - 6 * MIN,
            action: "scale_up",
            scaleGroup: "tpu-v5e-16",
            sliceId: "tpu-slice-b",
            reason: `demand: 1 slice for ${PARENT_JOB}`,
          },
          {
            timestampMs: now - 4 * MIN,
            action: "create_failed",
            scaleGroup: "tpu-v5p-8",
            sliceId: "tpu-slice-c",
            reason: "QUOTA_EXCEEDED: Quota 'TPUV5P_PER_PROJECT' exceeded",
          },
          {
            timestampMs: now - 4 * MIN + 1000,
            action: "backoff",
            scaleGroup: "tpu-v5p-8",
            reason: "3 consecutive failures; retry in 2m",
          },
          {
            timestampMs: now - 2 * MIN,
            action: "scale_down",
            scaleGroup: "cpu-pool",
            sliceId: "cpu-pool-3",
            reason: "idle for 10m",
          },
        ],
        unmetDemand: [
          `${PENDING_JOB}: 2 × tpu v5p-8 — group tpu-v5p-8 is in backoff`,
          "/dave/h100-finetune: no scale group offers gpu H100",
        ],
      }),
      getControllerStatus: () => ({
        healthy: true,
        startedAtMs: now - 3 * HOUR - 12 * MIN,
        version: "0.1.0 (fake)",
        jobCount: this.jobs.length,
        taskCount: [...this.tasks.values()].reduce((s, t) => s + t.length, 0),
        workerCount: this.workers.length,
        rssBytes: 183 * MiB,
        recentLogs: [
          "2026-11-23T09:00:01Z INFO controller listening on 0.0.0.0:10000",
          "2026-11-23T09:00:02Z INFO restored 41 jobs from state db",
          "2026-11-23T09:14:10Z INFO event=worker_registered worker=tpu-slice-a-3",
          `2026-11-23T09:20:31Z WARN job name rejected: ${HOSTILE_LOG}`,
          "2026-11-23T09:21:07Z ERROR worker cpu-pool-2 missed 6 heartbeats; marking unhealthy",
          "2026-11-23T09:21:08Z INFO event=autoscaler action=scale_down group=cpu-pool slice=cpu-pool-3",
        ],
      }),
      listEndpoints: (req) => {
        const endpoints: EndpointInit[] = [
          {
            endpointId: "ep-1",
            name: `${PARENT_JOB}/coordinator`,
            address: "10.128.0.10:8476",
            taskId: `${PARENT_JOB}/0`,
            jobId: PARENT_JOB,
            metadata: { protocol: "grpc" },
          },
          {
            endpointId: "ep-2",
            name: `${PARENT_JOB}/metrics`,
            address: "10.128.0.10:9090",
            taskId: `${PARENT_JOB}/0`,
            jobId: PARENT_JOB,
            metadata: { protocol: "http", path: "/metrics" },
          },
          {
            endpointId: "ep-3",
            name: `${HOSTILE_JOB}/actor`,
            address: "10.128.1.7:7001",
            taskId: `${HOSTILE_JOB}/0`,
            jobId: HOSTILE_JOB,
            metadata: { note: HOSTILE_ATTR },
          },
        ];
        return {
          endpoints: endpoints.filter((e) =>
            req.exact ? e.name === req.prefix : e.name!.startsWith(req.prefix)
          ),
        };
      },
    };
  }
}

/** A scriptable fake of one worker's API. */
export class FakeWorker {
  readonly now: number;
  readonly tasks: WorkerTaskInit[];
  readonly lines: Array<{ taskId: string; timestampMs: number; stream: string; text: string }> = [];

  constructor(now = Date.now()) {
    this.now = now;
    this.tasks = [
      {
        taskId: `${PARENT_JOB}/0`,
        attemptId: 0,
        state: TaskState.RUNNING,
        pid: 4242,
        startedAtMs: now - 2 * HOUR,
        memoryBytes: 21 * GiB,
        peakMemoryBytes: 24 * GiB,
        cpuMillicores: 3250,
        ports: { coordinator: 8476 },
      },
      {
        taskId: `${HOSTILE_JOB}/0`,
        attemptId: 1,
        state: TaskState.FAILED,
        pid: 4100,
        startedAtMs: now - 3 * HOUR,
        finishedAtMs: now - 2 * HOUR - 30 * MIN,
        exitCode: 1,
        error: HOSTILE_LOG,
        peakMemoryBytes: 3 * GiB,
      },
      {
        taskId: "/carol/report/0",
        attemptId: 0,
        state: TaskState.SUCCEEDED,
        startedAtMs: now - 3 * HOUR,
        finishedAtMs: now - 2 * HOUR - 40 * MIN,
        exitCode: 0,
        peakMemoryBytes: 512 * MiB,
      },
    ];
    const t0 = now - 10 * SEC;
    ["booting", "step 1 loss=2.31", HOSTILE_LOG, "step 2 loss=2.30"].forEach((text, i) =>
      this.lines.push({
        taskId: `${PARENT_JOB}/0`,
        timestampMs: t0 + i * 1000,
        stream: "stdout",
        text,
      })
    );
  }

  /** Appends a log line (for follow tests). */
  appendLog(taskId: string, text: string): void {
    this.lines.push({ taskId, timestampMs: Date.now(), stream: "stdout", text });
  }

  /** The WorkerService implementation over this data. */
  impl(): Partial<ServiceImpl<typeof WorkerService>> {
    return {
      health: () => ({
        healthy: true,
        workerId: "tpu-slice-a-0",
        controllerUrl: "http://127.0.0.1:10000",
        uptimeMs: 3 * HOUR + 5 * MIN,
        runningTasks: 1,
        snapshot: {
          timestampMs: Date.now(),
          cpuPercent: 45.2,
          memoryUsedBytes: 61 * GiB,
          memoryTotalBytes: 192 * GiB,
          runningTasks: 1,
          hostCpuMillicores: 100_800,
          hostCpuTotalMillicores: 112_000,
          hostMemoryUsedBytes: 80 * GiB,
          hostMemoryTotalBytes: 192 * GiB,
        },
      }),
      listTasks: () => ({ tasks: this.tasks }),
      getTaskStatus: (req) => {
        const task = this.tasks.find((t) => t.taskId === req.taskId);
        if (!task) throw new ConnectError(`task ${req.taskId} not found`, Code.NotFound);
        return { task };
      },
      fetchTaskLogs: (req) => ({
        lines: this.lines.filter((l) => l.taskId === req.taskId && l.timestampMs >= req.sinceMs)
          .slice(0, req.maxLines || 1000),
      }),
    };
  }
}
