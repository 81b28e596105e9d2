/**
 * ControllerService routes: each handler validates, calls the Controller, converts the result.
 * Errors are translated to Connect codes here and nowhere else.
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
import { DEFAULT_MAX_PACK_BYTES } from "../bundle/limits.ts";
import { InvalidArgumentError, NotFoundError, toConnectError } from "../errors.ts";
import type { Controller } from "./controller.ts";
import { jobStatus, recentAttempts, taskStatus, workerInfo } from "./convert.ts";
import { queryJobs } from "./job_query.ts";
import { isTaskActive } from "./job_rules.ts";
import {
  authorizeJobAction,
  authorizeLaunch,
  endpointName,
  endpointTrusted,
  PRINCIPAL,
} from "../auth/mod.ts";
import { parseAttemptKey } from "./workers.ts";

/** Stores uploaded bundles (src/bundle's FileBundleStore implements it). */
export interface BundleStorage {
  put(data: Uint8Array): Promise<{ bundleId: string; sizeBytes: number }>;
  get(bundleId: string): Promise<Uint8Array>;
}

/** What the routes need besides the controller. */
export interface ServiceDeps {
  readonly controller: Controller;
  readonly bundles?: BundleStorage;
  readonly autoscalerStatus?: () => GetAutoscalerStatusResponse;
  readonly version?: string;
  /** The cluster's bundle size limit (`controller.max_bundle_size`), told to clients and workers. */
  readonly maxBundleBytes?: number;
}

function wrap<A extends unknown[], R>(
  fn: (...args: A) => R | Promise<R>,
): (...args: A) => Promise<R> {
  return async (...args: A) => {
    try {
      return await fn(...args);
    } catch (err) {
      throw toConnectError(err);
    }
  };
}

/** The ControllerService implementation. */
export function controllerService(deps: ServiceDeps): ServiceImpl<typeof ControllerService> {
  const c = deps.controller;
  const tasksOf = (jobId: string, usageHistory = false) =>
    c.jobs.job(jobId).taskIds.map((id) =>
      taskStatus(c.jobs, c.jobs.task(id), c.workers.workers, usageHistory)
    );
  return {
    launchJob: wrap((req, ctx) => {
      if (!req.spec) throw new InvalidArgumentError("spec", "is required");
      if (req.requestId.length > 256) {
        throw new InvalidArgumentError("request_id", "at most 256 characters");
      }
      const requestId = authorizeLaunch(ctx.values.get(PRINCIPAL), req.spec, req.requestId);
      return c.launchJob(req.spec, requestId);
    }),
    getJobStatus: wrap((req) => {
      const job = c.jobs.job(req.jobId);
      const claimed = c.reservationProgress(job.jobId).claimed;
      return { job: jobStatus(c.jobs, job, claimed), tasks: tasksOf(job.jobId) };
    }),
    listJobs: wrap((req) => {
      const page = queryJobs(c.jobs.jobs, req, c.clock.now());
      return {
        jobs: page.jobs.map((j) => jobStatus(c.jobs, j, c.reservationProgress(j.jobId).claimed)),
        totalCount: page.totalCount,
        hasMore: page.hasMore,
        users: page.users,
      };
    }),
    terminateJob: wrap((req, ctx) => {
      authorizeJobAction(ctx.values.get(PRINCIPAL), c.jobs.job(req.jobId).jobId);
      return { terminatedJobIds: c.terminateJob(req.jobId, req.reason) };
    }),
    listTasks: wrap((req) => ({ tasks: tasksOf(req.jobId, req.includeUsageHistory) })),
    getTaskLogs: wrap(async (req) => {
      const id = req.id;
      let taskIds: string[];
      if (c.jobs.tasks.has(id)) taskIds = [id];
      else if (c.jobs.jobs.has(id)) taskIds = c.jobs.job(id).taskIds;
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
      return { lines: res.lines, nextCursor: res.nextCursor };
    }),
    registerWorker: wrap((req) => {
      const res = c.registerWorker(req);
      return {
        workerId: res.workerId,
        heartbeatIntervalMs: c.heartbeatInterval,
        kill: res.kill,
        reconnectMaxBackoffMs: c.workerReconnectMax,
      };
    }),
    heartbeat: wrap((req) => c.heartbeat(req)),
    listWorkers: wrap(() => ({ workers: [...c.workers.workers.values()].map(workerInfo) })),
    getWorkerStatus: wrap((req) => {
      if (!req.workerId) throw new InvalidArgumentError("worker_id", "must not be empty");
      const worker = c.workers.workers.get(req.workerId);
      if (!worker) throw new NotFoundError(`No worker ${req.workerId}`);
      const tasks = [...worker.active.keys()].flatMap((key) => {
        const task = c.jobs.tasks.get(parseAttemptKey(key).taskId);
        return task ? [taskStatus(c.jobs, task, c.workers.workers, true)] : [];
      });
      return {
        worker: workerInfo(worker),
        tasks,
        recentAttempts: recentAttempts(c.jobs, worker),
      };
    }),
    getAutoscalerStatus: wrap(() =>
      deps.autoscalerStatus?.() ?? create(GetAutoscalerStatusResponseSchema, { enabled: false })
    ),
    getControllerStatus: wrap(() => {
      let tasks = 0;
      for (const j of c.jobs.jobs.values()) tasks += j.taskIds.length;
      const health = c.health;
      return {
        healthy: health.healthy,
        statusMessage: health.message,
        startedAtMs: c.startedAtMs,
        version: deps.version ?? "",
        jobCount: c.jobs.jobs.size,
        taskCount: tasks,
        workerCount: c.workers.workers.size,
        rssBytes: Deno.memoryUsage().rss,
        recentLogs: c.recentLogs.slice(-200),
        logMemoryBytes: c.logs.stats.memoryBytes,
        logLinesEvicted: c.logs.stats.evictedLines,
        maxBundleBytes: deps.maxBundleBytes ?? DEFAULT_MAX_PACK_BYTES,
      };
    }),
    registerEndpoint: wrap((req, ctx) => {
      if (!req.name) throw new InvalidArgumentError("name", "must not be empty");
      if (!req.address) throw new InvalidArgumentError("address", "must not be empty");
      c.ensureWritable();
      const task = c.jobs.task(req.taskId);
      authorizeJobAction(ctx.values.get(PRINCIPAL), task.jobId, "register endpoints for");
      const cur = c.jobs.currentAttempt(task);
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
    }),
    unregisterEndpoint: wrap((req, ctx) => {
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
    }),
    // Only names under their registering job's owner: nobody's address shows up under another's.
    listEndpoints: wrap((req) => ({
      endpoints: c.endpoints.list(req.prefix, req.exact).filter(endpointTrusted),
    })),
    uploadBundle: wrap(async (req) => {
      if (!deps.bundles) {
        throw new InvalidArgumentError("data", "this controller has no bundle storage configured");
      }
      return await deps.bundles.put(req.data);
    }),
    readJobOutput: wrap(async (req, ctx) => {
      const job = c.jobs.job(req.jobId);
      authorizeJobAction(ctx.values.get(PRINCIPAL), job.jobId, "download outputs of");
      return await readJobOutput(c, job.jobId, req);
    }),
    getBundle: wrap(async (req) => {
      if (!deps.bundles) throw new NotFoundError(`No bundle ${req.bundleId}`);
      return {
        data: await deps.bundles.get(req.bundleId),
        maxBundleBytes: deps.maxBundleBytes ?? DEFAULT_MAX_PACK_BYTES,
      };
    }),
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
  c: Controller,
  jobId: string,
  req: ReadJobOutputRequest,
): Promise<ReadJobOutputResponse> {
  const workerIds: string[] = [];
  for (const taskId of c.jobs.job(jobId).taskIds) {
    const attempts = c.jobs.tasks.get(taskId)?.attempts ?? [];
    for (const a of [...attempts].reverse()) {
      if (a.workerId && !workerIds.includes(a.workerId)) workerIds.push(a.workerId);
    }
  }
  const files = new Map<string, OutputFile>();
  let listed = false;
  let gone = 0;
  const errors: string[] = [];
  for (const workerId of workerIds) {
    const worker = c.workers.workers.get(workerId);
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
