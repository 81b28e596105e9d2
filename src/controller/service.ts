/**
 * ControllerService routes: each handler validates, calls the controller (through
 * {@linkcode ControllerCore}), converts the result. Handlers throw Iris errors (src/errors.ts);
 * serveRpc's interceptor (src/rpc/errors.ts) turns them into Connect codes.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import {
  type OutputFile,
  type ReadJobOutputRequest,
  type ReadJobOutputResponse,
  ReadJobOutputResponseSchema,
} from "../rpc/gen/iris/v1/worker_pb.ts";
import {
  ControllerService,
  type GetAutoscalerStatusResponse,
  GetAutoscalerStatusResponseSchema,
} from "../rpc/gen/iris/v1/controller_pb.ts";
import { DEFAULT_MAX_PACK_BYTES } from "../bundle/mod.ts";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../errors.ts";
import type { ControllerCore } from "./core.ts";
import { VERSION } from "../version.ts";
import { workerInfo } from "./convert.ts";
import { queryJobs } from "./job_query.ts";
import { isTaskActive } from "./job_rules.ts";
import {
  authorizeJobAction,
  authorizeLaunch,
  endpointName,
  endpointTrusted,
  PRINCIPAL,
  requireAdmin,
} from "../auth/mod.ts";
import { parseAttemptKey } from "./workers.ts";
import { budgetHandlers } from "./budget_service.ts";
import { accountHandlers } from "./account_service.ts";
import type { AuthPolicy } from "../auth/mod.ts";
import {
  type JobSpec,
  type JobStatus,
  TaskState,
  type TaskStatus,
} from "../rpc/gen/iris/v1/types_pb.ts";
import { withScalingNote } from "./scaling_note.ts";
import { processInfo } from "../process_info.ts";
import { queryLimits, runRawQuery } from "./raw_query.ts";

/** Stores uploaded bundles (src/bundle's FileBundleStore implements it). */
export interface BundleStorage {
  put(data: Uint8Array): Promise<{ bundleId: string; sizeBytes: number }>;
  get(bundleId: string): Promise<Uint8Array>;
}

/** What the routes need besides the controller. */
export interface ServiceDeps {
  readonly controller: ControllerCore;
  readonly bundles?: BundleStorage;
  readonly autoscalerStatus?: () => GetAutoscalerStatusResponse;
  readonly version?: string;
  /** The auth policy (its tokens are the config's users). */
  readonly auth?: AuthPolicy;
  /** The cluster's bundle size limit (`controller.max_bundle_size`), told to clients and workers. */
  readonly maxBundleBytes?: number;
}

/** The ControllerService implementation. */
export function controllerService(deps: ServiceDeps): ServiceImpl<typeof ControllerService> {
  const c = deps.controller;
  const budgets = budgetHandlers(c);
  const accounts = accountHandlers(c, deps.auth);
  /** Interactive execs being proxied: session id → the worker holding it and who opened it. */
  const execSessions = new Map<string, { address: string; user: string }>();
  /** The worker running `taskId`'s current attempt, for the task's owner or an admin. */
  const runningTaskWorker = (
    principal: Parameters<typeof authorizeJobAction>[0],
    taskId: string,
    action: string,
  ) => {
    const task = c.task(taskId);
    authorizeJobAction(principal, task.jobId, action);
    const cur = c.currentAttempt(task);
    if (task.state !== TaskState.RUNNING || !cur) {
      throw new FailedPreconditionError(`task ${taskId} is not running`);
    }
    const worker = c.worker(cur.workerId);
    if (!worker) throw new FailedPreconditionError(`the worker of ${taskId} is gone`);
    return worker;
  };
  /** The autoscaler's status at most once per call (for pending reasons; see scaling_note.ts). */
  const autoscalerOnce = () => {
    let status: GetAutoscalerStatusResponse | undefined;
    let asked = false;
    return () => {
      if (!asked) {
        asked = true;
        try {
          status = deps.autoscalerStatus?.();
        } catch {
          status = undefined; // the plain scheduler reason stays
        }
      }
      return status;
    };
  };
  const scaling = <T extends JobStatus | TaskStatus>(
    s: T,
    spec: JobSpec | undefined,
    autoscaler: () => GetAutoscalerStatusResponse | undefined,
  ): T => {
    // A copy: these are wire messages, not the tables' records.
    return s.pendingReason
      ? { ...s, pendingReason: withScalingNote(s.pendingReason, spec, autoscaler) }
      : s;
  };
  const tasksOf = (jobId: string, usageHistory = false, autoscaler = autoscalerOnce()) => {
    const job = c.job(jobId);
    return job.taskIds.map((id) =>
      scaling(c.taskStatus(c.task(id), usageHistory), job.spec, autoscaler)
    );
  };
  return {
    launchJob: async (req, ctx) => {
      if (!req.spec) throw new InvalidArgumentError("spec", "is required");
      if (req.requestId.length > 256) {
        throw new InvalidArgumentError("request_id", "at most 256 characters");
      }
      const principal = ctx.values.get(PRINCIPAL);
      const requestId = authorizeLaunch(principal, req.spec, req.requestId);
      const res = await c.launchJobInGroup(req.spec, requestId);
      if (res.created) {
        c.transactions.record({
          action: "submit",
          entity: res.jobId,
          user: principal?.user ?? req.spec.user,
          details: `${req.spec.replicas || 1} task(s)`,
        });
      }
      return res;
    },
    getJobStatus: (req) => {
      const job = c.job(req.jobId);
      const autoscaler = autoscalerOnce();
      return {
        job: scaling(c.jobStatus(job), job.spec, autoscaler),
        tasks: tasksOf(job.jobId, false, autoscaler),
      };
    },
    listJobs: (req) => {
      const page = queryJobs(c.jobIndex(), req, c.clock.now());
      const autoscaler = autoscalerOnce();
      return {
        jobs: page.jobs.map((j) => scaling(c.jobStatus(j), j.spec, autoscaler)),
        totalCount: page.totalCount,
        hasMore: page.hasMore,
        users: page.users,
      };
    },
    terminateJob: (req, ctx) => {
      const principal = ctx.values.get(PRINCIPAL);
      authorizeJobAction(principal, c.job(req.jobId).jobId);
      const ids = c.terminateJob(req.jobId, req.reason);
      if (ids.length) {
        c.transactions.record({
          action: "cancel",
          entity: req.jobId,
          user: principal?.user ?? "",
          details: req.reason || "terminated by user",
        });
      }
      return { terminatedJobIds: ids };
    },
    listTasks: (req) => ({ tasks: tasksOf(req.jobId, req.includeUsageHistory) }),
    getTaskLogs: async (req) => {
      const id = req.id;
      let taskIds: string[];
      if (c.hasTask(id)) taskIds = [id];
      else if (c.hasJob(id)) taskIds = c.job(id).taskIds;
      else throw new NotFoundError(`No job or task ${id}`);
      const res = await c.logs.query(taskIds, {
        cursor: req.cursor,
        maxLines: req.maxLines,
        substring: req.substring,
        attemptId: req.attemptId,
        sinceMs: req.sinceMs,
        minLevel: req.minLevel,
        tail: req.tail,
      });
      return { lines: res.lines, nextCursor: res.nextCursor, more: res.more };
    },
    registerWorker: (req) => {
      const res = c.registerWorker(req);
      return {
        workerId: res.workerId,
        heartbeatIntervalMs: res.heartbeatIntervalMs,
        kill: res.kill,
        reconnectMaxBackoffMs: c.workerReconnectMax,
      };
    },
    heartbeat: (req) => c.heartbeatInGroup(req),
    listWorkers: () => ({ workers: [...c.allWorkers()].map(workerInfo) }),
    getWorkerStatus: (req) => {
      if (!req.workerId) throw new InvalidArgumentError("worker_id", "must not be empty");
      const worker = c.worker(req.workerId);
      if (!worker) throw new NotFoundError(`No worker ${req.workerId}`);
      const tasks = [...worker.active.keys()].flatMap((key) => {
        const taskId = parseAttemptKey(key).taskId;
        return c.hasTask(taskId) ? [c.taskStatus(c.task(taskId), true)] : [];
      });
      return {
        worker: workerInfo(worker),
        tasks,
        recentAttempts: c.recentAttempts(worker),
      };
    },
    getAutoscalerStatus: () =>
      deps.autoscalerStatus?.() ?? create(GetAutoscalerStatusResponseSchema, { enabled: false }),
    getControllerStatus: () => {
      let tasks = 0;
      for (const j of c.jobIndex().values()) tasks += j.taskIds.length;
      const health = c.health;
      return {
        healthy: health.healthy,
        statusMessage: health.message,
        startedAtMs: c.startedAtMs,
        version: deps.version ?? "",
        jobCount: c.jobIndex().size,
        taskCount: tasks,
        workerCount: c.workerCount,
        rssBytes: Deno.memoryUsage().rss,
        recentLogs: c.recentLogs.slice(-200),
        logMemoryBytes: c.logs.stats.memoryBytes,
        logLinesEvicted: c.logs.stats.evictedLines,
        maxBundleBytes: deps.maxBundleBytes ?? DEFAULT_MAX_PACK_BYTES,
      };
    },
    registerEndpoint: (req, ctx) => {
      if (!req.name) throw new InvalidArgumentError("name", "must not be empty");
      if (!req.address) throw new InvalidArgumentError("address", "must not be empty");
      c.ensureWritable();
      const task = c.task(req.taskId);
      authorizeJobAction(ctx.values.get(PRINCIPAL), task.jobId, "register endpoints for");
      const cur = c.currentAttempt(task);
      if (!isTaskActive(task.state) || !cur) {
        throw new InvalidArgumentError("task_id", `task ${req.taskId} is not running`);
      }
      if (req.attemptId && req.attemptId !== cur.attemptId) {
        throw new InvalidArgumentError(
          "attempt_id",
          `attempt ${req.attemptId} is not the current attempt (${cur.attemptId})`,
        );
      }
      const e = c.endpoints.register({
        name: endpointName(req.name, task.jobId),
        address: req.address,
        taskId: req.taskId,
        jobId: task.jobId,
        metadata: req.metadata,
      });
      c.commitState(); // acknowledged once durable
      return { endpointId: e.endpointId };
    },
    unregisterEndpoint: (req, ctx) => {
      c.ensureWritable();
      const principal = ctx.values.get(PRINCIPAL);
      const owned = principal &&
        c.endpoints.list("", false).find((e) => e.endpointId === req.endpointId);
      if (owned) authorizeJobAction(principal, owned.jobId, "unregister endpoints of");
      if (!c.endpoints.unregister(req.endpointId)) {
        throw new NotFoundError(`No endpoint ${req.endpointId}`);
      }
      c.commitState();
      return {};
    },
    // Only names under their registering job's owner: nobody's address shows up under another's.
    listEndpoints: (req) => ({
      endpoints: c.endpoints.list(req.prefix, req.exact).filter(endpointTrusted),
    }),
    uploadBundle: async (req) => {
      if (!deps.bundles) {
        throw new InvalidArgumentError("data", "this controller has no bundle storage configured");
      }
      return await deps.bundles.put(req.data);
    },
    readJobOutput: async (req, ctx) => {
      const job = c.job(req.jobId);
      authorizeJobAction(ctx.values.get(PRINCIPAL), job.jobId, "download outputs of");
      return await readJobOutput(c, job.jobId, req);
    },
    getBundle: async (req) => {
      if (!deps.bundles) throw new NotFoundError(`No bundle ${req.bundleId}`);
      return {
        data: await deps.bundles.get(req.bundleId),
        maxBundleBytes: deps.maxBundleBytes ?? DEFAULT_MAX_PACK_BYTES,
      };
    },
    setUserBudget: budgets.setUserBudget,
    getUserBudget: budgets.getUserBudget,
    listUserBudgets: budgets.listUserBudgets,
    getCurrentUser: accounts.getCurrentUser,
    createApiKey: accounts.createApiKey,
    listApiKeys: accounts.listApiKeys,
    revokeApiKey: accounts.revokeApiKey,
    createUser: accounts.createUser,
    listUsers: accounts.listUsers,
    deleteUser: accounts.deleteUser,
    enrolWorker: accounts.enrolWorker,
    executeRawQuery: async (req, ctx) => {
      requireAdmin(ctx.values.get(PRINCIPAL), "run raw SQL queries");
      const limits = queryLimits(req.sql, req.maxRows, req.timeoutMs);
      const path = c.statePath;
      if (!path) {
        throw new FailedPreconditionError(
          "this controller keeps its state in memory only (no state dir): there is no database to " +
            "query; start it with a state dir (controller.state_dir) to use iris query",
        );
      }
      return await runRawQuery(path, req.sql, limits);
    },
    async *execInTask(req, ctx) {
      const principal = ctx.values.get(PRINCIPAL);
      const task = c.task(req.taskId);
      authorizeJobAction(principal, task.jobId, "exec in");
      if (req.command.length === 0 || req.command[0] === "") {
        throw new InvalidArgumentError("command", "must not be empty");
      }
      if (req.timeoutMs < -1) {
        throw new InvalidArgumentError("timeout_ms", `must be -1 or more (got ${req.timeoutMs})`);
      }
      if (req.timeoutMs === -1) requireAdmin(principal, "exec without a time limit");
      const cur = c.currentAttempt(task);
      if (task.state !== TaskState.RUNNING || !cur) {
        throw new FailedPreconditionError(`task ${req.taskId} is not running`);
      }
      const worker = c.worker(cur.workerId);
      if (!worker) throw new FailedPreconditionError(`the worker of ${req.taskId} is gone`);
      const user = principal?.user ?? "";
      c.transactions.record({
        action: "exec",
        entity: req.taskId,
        user,
        details: JSON.stringify(req.command).slice(0, 1000),
      });
      c.log(
        `exec in ${req.taskId} by ${user || "(no auth)"}: ${req.command.join(" ").slice(0, 200)}`,
      );
      const address = worker.address;
      let session = "";
      try {
        for await (
          const m of c.workerClient(address).execInTask(
            {
              taskId: req.taskId,
              command: req.command,
              timeoutMs: req.timeoutMs,
              interactive: req.interactive,
              tty: req.tty,
              rows: req.rows,
              cols: req.cols,
            },
            { signal: ctx.signal },
          )
        ) {
          if (m.sessionId && !session) {
            session = m.sessionId;
            execSessions.set(session, { address, user });
          }
          yield m;
        }
      } finally {
        if (session) execSessions.delete(session);
      }
    },
    execInput: async (req, ctx) => {
      const principal = ctx.values.get(PRINCIPAL);
      let address: string;
      if (req.sessionId.startsWith("task:")) {
        address = runningTaskWorker(principal, req.sessionId.slice(5), "send input to").address;
      } else {
        const s = execSessions.get(req.sessionId);
        if (!s) {
          throw new NotFoundError(`No interactive session ${req.sessionId} (it ended?)`);
        }
        if (s.user !== (principal?.user ?? "")) {
          requireAdmin(principal, "send input to another user's session");
        }
        address = s.address;
      }
      return await c.workerClient(address).execInput(req, {
        signal: AbortSignal.any([ctx.signal, AbortSignal.timeout(30_000)]),
      });
    },
    async *attachTask(req, ctx) {
      const address = runningTaskWorker(ctx.values.get(PRINCIPAL), req.taskId, "attach to")
        .address;
      yield* c.workerClient(address).attachTask({ taskId: req.taskId }, { signal: ctx.signal });
    },
    profileTask: async (req, ctx) => {
      const principal = ctx.values.get(PRINCIPAL);
      const task = c.task(req.taskId);
      authorizeJobAction(principal, task.jobId, "profile");
      if (req.seconds < 0 || req.seconds > 60) {
        throw new InvalidArgumentError("seconds", `must be 0..60 (got ${req.seconds})`);
      }
      const cur = c.currentAttempt(task);
      if (task.state !== TaskState.RUNNING || !cur) {
        throw new FailedPreconditionError(`task ${req.taskId} is not running`);
      }
      const worker = c.worker(cur.workerId);
      if (!worker) throw new FailedPreconditionError(`the worker of ${req.taskId} is gone`);
      c.transactions.record({
        action: "profile",
        entity: req.taskId,
        user: principal?.user ?? "",
        details: `${req.seconds || 5}s`,
      });
      return await c.workerClient(worker.address).profileTask(
        { taskId: req.taskId, seconds: req.seconds },
        { signal: AbortSignal.any([ctx.signal, AbortSignal.timeout(120_000)]) },
      );
    },
    getTransactions: (req, ctx) => {
      requireAdmin(ctx.values.get(PRINCIPAL), "read the transactions log");
      if (req.limit < 0) throw new InvalidArgumentError("limit", `must be >= 0 (got ${req.limit})`);
      return {
        transactions: c.transactions.list({
          limit: req.limit,
          actions: req.actions,
          entityPrefix: req.entityPrefix,
          afterSeq: req.afterSeq,
        }),
      };
    },
    getProcessStatus: async (req, ctx) => {
      requireAdmin(ctx.values.get(PRINCIPAL), "read process status");
      if (req.maxLogLines < 0) {
        throw new InvalidArgumentError("max_log_lines", `must be >= 0 (got ${req.maxLogLines})`);
      }
      if (req.workerId) {
        const worker = c.worker(req.workerId);
        if (!worker) throw new NotFoundError(`No worker ${req.workerId}`);
        return await c.workerClient(worker.address).getProcessStatus(
          { maxLogLines: req.maxLogLines },
          { signal: AbortSignal.timeout(10_000) },
        );
      }
      return {
        process: processInfo({
          role: "controller",
          startedAtMs: c.startedAtMs,
          version: deps.version ?? VERSION,
          logs: c.recentLogs,
          maxLogLines: req.maxLogLines,
        }),
      };
    },
  };
}

/** Registers ControllerService on a router. */
export function controllerRoutes(deps: ServiceDeps): (router: ConnectRouter) => void {
  return (router) => router.service(ControllerService, controllerService(deps));
}

/**
 * A job's outputs from the workers that ran its tasks, latest attempts first: a directory lists
 * the files of all of them (the newest copy of a path wins); a file comes from the first that has
 * it. NotFoundError when none has it.
 */
async function readJobOutput(
  c: ControllerCore,
  jobId: string,
  req: ReadJobOutputRequest,
): Promise<ReadJobOutputResponse> {
  const workerIds: string[] = [];
  for (const taskId of c.job(jobId).taskIds) {
    const attempts = c.hasTask(taskId) ? c.task(taskId).attempts : [];
    for (const a of [...attempts].reverse()) {
      if (a.workerId && !workerIds.includes(a.workerId)) workerIds.push(a.workerId);
    }
  }
  const files = new Map<string, OutputFile>();
  let listed = false;
  let gone = 0;
  const errors: string[] = [];
  for (const workerId of workerIds) {
    const worker = c.worker(workerId);
    if (!worker) {
      gone++;
      continue;
    }
    try {
      const res = await c.workerClient(worker.address).readJobOutput(
        { jobId, path: req.path, offset: req.offset, length: req.length },
        { signal: AbortSignal.timeout(60_000) },
      );
      if (!res.isDir) return { ...res, workerId };
      listed = true;
      for (const f of res.files) {
        const had = files.get(f.path);
        if (!had || had.modifiedMs < f.modifiedMs) files.set(f.path, f);
      }
    } catch (err) {
      if (ConnectError.from(err).code !== Code.NotFound) errors.push(`${workerId}: ${err}`);
    }
  }
  if (listed) {
    return create(ReadJobOutputResponseSchema, {
      isDir: true,
      files: [...files.values()].sort((a, b) => (a.path < b.path ? -1 : 1)),
    });
  }
  const what = req.path ? `output ${JSON.stringify(req.path)}` : "outputs";
  throw new NotFoundError(
    `No ${what} of job ${jobId} on the ${workerIds.length - gone} worker(s) that ran it` +
      (gone ? ` (${gone} more are gone, with their outputs)` : "") +
      (errors.length ? `; errors: ${errors.join("; ")}` : ""),
  );
}
