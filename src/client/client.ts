/**
 * The Iris client: submit, watch, stream logs of and cancel jobs over the controller's RPC API.
 * Transient errors (controller unreachable or restarting) are retried with backoff; submits carry
 * a request id so a retried submit never creates a second job.
 * @module
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type ControllerClient,
  controllerClient,
  type Endpoint,
  type GetAutoscalerStatusResponse,
  type GetJobStatusResponse,
  isConnectionFailure,
  type JobSpec,
  JobState,
  type JobStatus,
  type LogLine,
  type TaskStatus,
  type WorkerInfo,
} from "../rpc/mod.ts";
import { Backoff, Deadline, type Duration, ms, seconds, sleep } from "../time.ts";
import { formatDuration } from "../format.ts";
import { IrisError } from "../errors.ts";
import { packDirectory } from "../bundle/mod.ts";
import { type JobRequest, jobSpecFromRequest } from "./job_request.ts";
import { defaultUser, envUser } from "./user.ts";

/** The controller could not be reached (after retries). */
export class ControllerUnreachableError extends IrisError {
  constructor(readonly url: string, cause: unknown) {
    super(
      `Cannot reach the controller at ${url}: ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
      { cause },
    );
  }
}

/** A job did not finish in time. */
export class WaitTimeoutError extends IrisError {}

/** Options for {@linkcode IrisClient}. */
export interface IrisClientOptions {
  /** How long to keep retrying a call while the controller is unreachable. @default 10s */
  retryFor?: Duration;
  /**
   * Bearer token for a controller with auth on. @default the IRIS_TOKEN environment variable
   * when readable (tasks get one from their worker), else none
   */
  token?: string;
}

/** IRIS_TOKEN from the environment, or undefined (also when env access is not permitted). */
export function envToken(): string | undefined {
  try {
    return Deno.env.get("IRIS_TOKEN") || undefined;
  } catch {
    return undefined;
  }
}

/** Job states after which the job will not change. */
export function isFinished(state: JobState): boolean {
  return state === JobState.SUCCEEDED || state === JobState.FAILED || state === JobState.KILLED ||
    state === JobState.WORKER_FAILED || state === JobState.UNSCHEDULABLE;
}

/** Filters for log queries; every given filter must hold. */
export interface LogFilter {
  /** Only lines containing this text. */
  substring?: string;
  /** Only this attempt. */
  attemptId?: number;
  /** Only lines stamped at or after this time (epoch ms). */
  sinceMs?: number;
  /** Only lines at this level or above: debug, info, warning, error, critical. */
  minLevel?: string;
}

/** Options for {@linkcode IrisClient.streamLogs}. */
export interface StreamLogsOptions extends LogFilter {
  /** Receives each line; returning false stops the stream. */
  onLine: (line: LogLine) => boolean | void;
  /** Start with the last `tail` matching lines instead of all of them. */
  tail?: number;
  /** Keep streaming until the job finishes. */
  follow?: boolean;
  /** Longest pause between polls while following. @default 250ms */
  pollInterval?: Duration;
  signal?: AbortSignal;
}

/** Options for {@linkcode IrisClient.wait}. */
export interface WaitOptions {
  /** Give up after this long. @default no limit */
  timeout?: Duration;
  /** Called with each new log line of the job's tasks. */
  onLog?: (line: LogLine) => void;
  /** Called with the job's status on every poll. */
  onProgress?: (job: JobStatus) => void;
  /** Poll period. @default 100ms (lines are fetched with a cursor, so polls are cheap) */
  pollInterval?: Duration;
  signal?: AbortSignal;
}

/** Filters, order and page of {@linkcode IrisClient.list}. */
export interface ListJobsOptions {
  readonly prefix?: string;
  readonly states?: JobState[];
  readonly user?: string;
  readonly nameContains?: string;
  /** name, state, user, tasks, age or duration; empty keeps submission order. */
  readonly sortBy?: string;
  readonly descending?: boolean;
  readonly limit?: number;
  readonly offset?: number;
}

/** A client of one controller. */
export class IrisClient {
  readonly url: string;
  readonly rpc: ControllerClient;
  readonly #retryFor: Duration;
  /** With a token the controller knows who we are; an OS user name is then not sent. */
  readonly #hasToken: boolean;

  constructor(url: string, options: IrisClientOptions = {}) {
    this.url = url.replace(/\/+$/, "");
    const token = options.token ?? envToken();
    this.#hasToken = !!token;
    this.rpc = controllerClient(this.url, { token });
    this.#retryFor = options.retryFor ?? seconds(10);
  }

  /** Runs an RPC, retrying transient failures with backoff until `retryFor` passes. */
  async call<T>(fn: (rpc: ControllerClient) => Promise<T>): Promise<T> {
    const deadline = Deadline.after(this.#retryFor);
    const backoff = new Backoff({ initial: ms(50), max: seconds(1) });
    while (true) {
      try {
        return await fn(this.rpc);
      } catch (err) {
        if (!isConnectionFailure(err)) throw err;
        if (deadline.expired()) {
          throw new ControllerUnreachableError(
            this.url,
            err instanceof ConnectError ? (err.cause ?? err) : err,
          );
        }
        await sleep(Math.min(backoff.next(), deadline.remaining()) as Duration);
      }
    }
  }

  /** Submits a job; returns its id. The same `requestId` always yields the same job. */
  async submit(
    request: JobRequest | JobSpec,
    options: { requestId?: string } = {},
  ): Promise<string> {
    const spec = "$typeName" in request ? request : jobSpecFromRequest(request, {
      context: safeJobContext(),
      // Looked up only for a request that names no user.
      defaultUser: this.#hasToken ? envUser : defaultUser,
    });
    const requestId = options.requestId ?? crypto.randomUUID();
    const res = await this.call((rpc) => rpc.launchJob({ spec, requestId }));
    return res.jobId;
  }

  /** A job's status and its tasks. */
  status(jobId: string): Promise<GetJobStatusResponse> {
    return this.call((rpc) => rpc.getJobStatus({ jobId }));
  }

  /**
   * Jobs, filtered and sorted by the controller: under a name prefix, in some states, of one user,
   * with a name substring; `sortBy` is one of name, state, user, tasks, age, duration.
   */
  async list(options: ListJobsOptions = {}): Promise<{ jobs: JobStatus[]; total: number }> {
    const res = await this.call((rpc) =>
      rpc.listJobs({
        prefix: options.prefix ?? "",
        states: options.states ?? [],
        limit: options.limit ?? 0,
        offset: options.offset ?? 0,
        user: options.user ?? "",
        nameContains: options.nameContains ?? "",
        sortBy: options.sortBy ?? "",
        descending: options.descending ?? false,
      })
    );
    return { jobs: res.jobs, total: res.totalCount };
  }

  /** Tasks of a job. */
  async tasks(jobId: string): Promise<TaskStatus[]> {
    return (await this.call((rpc) => rpc.listTasks({ jobId }))).tasks;
  }

  /** Cancels a job and its children; returns the ids that were terminated. */
  async cancel(jobId: string, reason = "cancelled by user"): Promise<string[]> {
    return (await this.call((rpc) => rpc.terminateJob({ jobId, reason }))).terminatedJobIds;
  }

  /** One page of log lines of a job or task after `cursor`, filtered (see {@linkcode LogFilter}). */
  logsPage(
    id: string,
    options: LogFilter & { cursor?: number; maxLines?: number; tail?: boolean } = {},
  ): Promise<{ lines: LogLine[]; nextCursor: number; more: boolean }> {
    return this.call((rpc) =>
      rpc.getTaskLogs({
        id,
        cursor: options.cursor ?? 0,
        maxLines: options.maxLines ?? 0,
        substring: options.substring ?? "",
        attemptId: options.attemptId,
        sinceMs: options.sinceMs ?? 0,
        minLevel: options.minLevel ?? "",
        tail: options.tail ?? false,
      })
    );
  }

  /** All log lines of a job or task so far that pass the filter. */
  async logs(id: string, options: LogFilter = {}): Promise<LogLine[]> {
    const out: LogLine[] = [];
    let cursor = 0;
    while (true) {
      const page = await this.logsPage(id, { ...options, cursor, maxLines: 10_000 });
      out.push(...page.lines);
      if (!page.more || page.lines.length === 0) return out;
      cursor = page.nextCursor;
    }
  }

  /**
   * Prints (via `onLine`) the log lines of a job or task that pass the filter: everything so far,
   * or with `tail` the last `tail` matching lines first. With `follow`, keeps polling until the
   * job finishes, and then delivers every line up to its end. `onLine` returning false stops.
   */
  async streamLogs(id: string, options: StreamLogsOptions): Promise<void> {
    const jobId = await this.#jobOf(id);
    const filter: LogFilter = {
      substring: options.substring,
      attemptId: options.attemptId,
      sinceMs: options.sinceMs,
      minLevel: options.minLevel,
    };
    const page = 5000;
    let cursor = 0;
    const deliver = (lines: readonly LogLine[]): boolean => {
      for (const line of lines) if (options.onLine(line) === false) return false;
      return true;
    };
    if (options.tail !== undefined) {
      const last = await this.logsPage(id, { ...filter, maxLines: options.tail, tail: true });
      if (!deliver(last.lines)) return;
      cursor = last.nextCursor;
    }
    const backoff = new Backoff({ initial: ms(50), max: options.pollInterval ?? ms(250) });
    while (true) {
      // Status before the pages: a job seen finished here has no line after these pages.
      let finished = true;
      if (options.follow) {
        const { job } = await this.status(jobId);
        finished = !job || isFinished(job.state);
      }
      let got = 0;
      while (true) {
        const res = await this.logsPage(id, { ...filter, cursor, maxLines: page });
        if (!deliver(res.lines)) return;
        got += res.lines.length;
        cursor = res.nextCursor;
        if (!res.more || res.lines.length === 0) break;
      }
      if (finished || options.signal?.aborted) return;
      if (got > 0) backoff.reset();
      try {
        await sleep(backoff.next(), options.signal);
      } catch {
        return;
      }
    }
  }

  /** The job id of a job or task id. */
  async #jobOf(id: string): Promise<string> {
    try {
      await this.status(id);
      return id;
    } catch (err) {
      const slash = id.lastIndexOf("/");
      if (!(err instanceof ConnectError) || err.code !== Code.NotFound || slash <= 0) throw err;
      return id.slice(0, slash);
    }
  }

  /**
   * Waits until the job finishes, streaming its log lines to `onLog`. Returns the final status.
   * @throws {WaitTimeoutError} when `timeout` passes first
   */
  async wait(jobId: string, options: WaitOptions = {}): Promise<JobStatus> {
    const deadline = options.timeout ? Deadline.after(options.timeout) : undefined;
    const backoff = new Backoff({
      initial: ms(20),
      max: options.pollInterval ?? ms(250),
      jitter: 0,
    });
    let cursor = 0;
    while (true) {
      const { job } = await this.status(jobId);
      if (options.onLog) {
        // Drain every line before declaring the job finished, so no output is lost.
        while (true) {
          const page = await this.logsPage(jobId, { cursor, maxLines: 5000 });
          for (const line of page.lines) options.onLog(line);
          const advanced = page.nextCursor !== cursor;
          cursor = page.nextCursor;
          if (!page.more || !advanced) break;
        }
      }
      if (!job) throw new IrisError(`No status for job ${jobId}`);
      options.onProgress?.(job);
      if (isFinished(job.state)) {
        if (options.onLog) {
          for (let more = true; more;) {
            const page = await this.logsPage(jobId, { cursor, maxLines: 100_000 });
            for (const line of page.lines) options.onLog(line);
            more = page.more && page.nextCursor !== cursor;
            cursor = page.nextCursor;
          }
        }
        return job;
      }
      if (deadline?.expired()) {
        throw new WaitTimeoutError(
          `Job ${jobId} did not finish within ${formatDuration(options.timeout!)} (state ${
            JobState[job.state]
          })`,
        );
      }
      await sleep(
        deadline ? Math.min(backoff.next(), deadline.remaining()) as Duration : backoff.next(),
        options.signal,
      );
    }
  }

  /** Registered workers. */
  async workers(): Promise<WorkerInfo[]> {
    return (await this.call((rpc) => rpc.listWorkers({}))).workers;
  }

  /** The autoscaler's state. */
  autoscalerStatus(): Promise<GetAutoscalerStatusResponse> {
    return this.call((rpc) => rpc.getAutoscalerStatus({}));
  }

  /** Registers a named endpoint for a running task. */
  async registerEndpoint(
    e: {
      name: string;
      address: string;
      taskId: string;
      attemptId?: number;
      metadata?: Record<string, string>;
    },
  ): Promise<string> {
    const res = await this.call((rpc) =>
      rpc.registerEndpoint({ ...e, attemptId: e.attemptId ?? 0, metadata: e.metadata ?? {} })
    );
    return res.endpointId;
  }

  /** Endpoints named exactly `name`. */
  async lookupEndpoint(name: string): Promise<Endpoint[]> {
    return (await this.call((rpc) => rpc.listEndpoints({ prefix: name, exact: true }))).endpoints;
  }

  /**
   * Packs a workspace directory (honouring its .irisignore) into a bundle and uploads it.
   * Returns the bundle id to put in a job's `bundleId`.
   */
  async uploadWorkspace(
    dir: string,
    options: { ignoreFile?: string; maxBytes?: number } = {},
  ): Promise<string> {
    // The cluster's limit (controller.max_bundle_size), so a too-big workspace fails here with
    // its largest entries named, before anything is uploaded.
    const maxBytes = options.maxBytes ??
      ((await this.call((rpc) => rpc.getControllerStatus({}))).maxBundleBytes || undefined);
    const packed = await packDirectory(dir, { ignoreFile: options.ignoreFile, maxBytes });
    return await this.uploadBundle(packed.data);
  }

  /** Uploads a bundle archive; returns its id. */
  async uploadBundle(data: Uint8Array): Promise<string> {
    return (await this.call((rpc) => rpc.uploadBundle({ data }))).bundleId;
  }
}

/** The context a task runs in, read from the IRIS_* environment; undefined outside a task. */
export interface JobContext {
  readonly jobId: string;
  readonly taskId: string;
  readonly taskIndex: number;
  readonly numTasks: number;
  readonly attemptId: number;
  readonly workerId: string;
  readonly controllerUrl: string;
  readonly user: string;
  /** Named ports allocated for the task (IRIS_PORT_<NAME>), keyed by lower-case name. */
  readonly ports: Readonly<Record<string, number>>;
  /** The job's env (inherited by child jobs). */
  readonly jobEnv: Readonly<Record<string, string>>;
  /** The job's constraints in proto JSON form. */
  readonly constraints: readonly unknown[];
}

/** The job context, or undefined when not in a task or when env access is not permitted. */
export function safeJobContext(): JobContext | undefined {
  try {
    // Outside a task (the usual submitter) without copying the whole environment per submit.
    if (!Deno.env.get("IRIS_JOB_ID")) return undefined;
    return jobContext();
  } catch {
    return undefined;
  }
}

/** Reads the job context from an environment map (default: this process's env). */
export function jobContext(
  env: Record<string, string> = Deno.env.toObject(),
): JobContext | undefined {
  if (!env.IRIS_JOB_ID || !env.IRIS_TASK_ID) return undefined;
  const ports: Record<string, number> = {};
  for (const [k, v] of Object.entries(env)) {
    if (k.startsWith("IRIS_PORT_")) ports[k.slice(10).toLowerCase()] = Number(v);
  }
  const parse = <T>(text: string | undefined, fallback: T): T => {
    try {
      return text ? JSON.parse(text) as T : fallback;
    } catch {
      return fallback;
    }
  };
  return {
    jobId: env.IRIS_JOB_ID,
    taskId: env.IRIS_TASK_ID,
    taskIndex: Number(env.IRIS_TASK_INDEX ?? 0),
    numTasks: Number(env.IRIS_NUM_TASKS ?? 1),
    attemptId: Number(env.IRIS_ATTEMPT_ID ?? 0),
    workerId: env.IRIS_WORKER_ID ?? "",
    controllerUrl: env.IRIS_CONTROLLER_URL ?? "",
    user: env.IRIS_USER ?? "",
    ports,
    jobEnv: parse<Record<string, string>>(env.IRIS_JOB_ENV, {}),
    constraints: parse<unknown[]>(env.IRIS_JOB_CONSTRAINTS, []),
  };
}

export type { JobRequest };
