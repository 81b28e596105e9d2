/**
 * A controller on a {@linkcode FakeClock} with fake workers, all over Connect's in-memory transport
 * (createRouterTransport): workers call the real ControllerService routes, the controller calls
 * each worker's WorkerService fake. No socket, no process and no real wait: a test moves time.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { Controller, type ControllerOptions } from "../../src/controller/controller.ts";
import { controllerRoutes } from "../../src/controller/service.ts";
import { errorInterceptor } from "../../src/rpc/errors.ts";
import {
  type ControllerClient,
  ControllerService,
  KillTaskResponseSchema,
  type RunTaskRequest,
  type RunTaskResponse,
  RunTaskResponseSchema,
  RunTasksResponseSchema,
  TaskState,
  type TaskUpdate,
  TaskUpdateSchema,
  type WorkerClient,
  WorkerService,
} from "../../src/rpc/mod.ts";
import { type Duration, FakeClock } from "../../src/time.ts";

/** One attempt a fake worker holds. */
export interface HeldAttempt {
  readonly taskId: string;
  readonly attemptId: number;
  readonly request: RunTaskRequest;
}

/** A worker that accepts RunTask and RunTasks, honours KillTask and heartbeats only when told to. */
export class FakeWorker {
  readonly running = new Map<string, HeldAttempt>();
  readonly runs: RunTaskRequest[] = [];
  readonly kills: { taskId: string; attemptId: number }[] = [];
  /** The state RunTask answers with (RunTaskResponse.state); unset by default, as older workers. */
  runTaskState: TaskState = TaskState.UNSPECIFIED;
  /** Calls to it fail as a dead host's do (no connection), as long as this is set. */
  unreachable = false;
  #updates: TaskUpdate[] = [];
  #beating?: AbortController;

  constructor(
    readonly cluster: FakeClockCluster,
    readonly workerId: string,
    readonly address: string,
    readonly resources: { cpuMillicores: number; memoryBytes: number },
    readonly attributes: Record<string, string> = {},
    readonly sliceId = "",
  ) {}

  /** The WorkerService the controller reaches over the in-memory transport. */
  client(): WorkerClient {
    return createClient(
      WorkerService,
      createRouterTransport((router) =>
        router.service(WorkerService, {
          runTask: (req) => this.#runTask(req),
          runTasks: (req) =>
            create(RunTasksResponseSchema, { results: req.attempts.map((a) => this.#runTask(a)) }),
          killTask: (req) => {
            this.kills.push({ taskId: req.taskId, attemptId: req.attemptId });
            if (this.running.delete(`${req.taskId}#${req.attemptId}`)) {
              this.#updates.push(this.#update(req.taskId, req.attemptId, TaskState.KILLED));
            }
            return create(KillTaskResponseSchema, {});
          },
        })
      ),
    );
  }

  #runTask(req: RunTaskRequest): RunTaskResponse {
    if (this.unreachable) {
      throw new ConnectError("error sending request: Connection refused", Code.Unavailable);
    }
    this.runs.push(req);
    this.running.set(`${req.taskId}#${req.attemptId}`, {
      taskId: req.taskId,
      attemptId: req.attemptId,
      request: req,
    });
    this.#updates.push(this.#update(req.taskId, req.attemptId, TaskState.RUNNING));
    return create(RunTaskResponseSchema, { accepted: true, state: this.runTaskState });
  }

  /** Registers (or re-registers) with the controller, listing what it runs. */
  async register(): Promise<void> {
    await this.cluster.rpc.registerWorker({
      workerId: this.workerId,
      address: this.address,
      resources: this.resources,
      attributes: Object.fromEntries(
        Object.entries(this.attributes).map(([k, v]) => [k, {
          kind: { case: "stringValue", value: v },
        }]),
      ),
      sliceId: this.sliceId,
      running: [...this.running.values()].map(({ taskId, attemptId }) => ({ taskId, attemptId })),
    });
  }

  /** Sends one heartbeat with the updates queued since the last one. */
  async beat(): Promise<{ reregister: boolean }> {
    const updates = this.#updates;
    this.#updates = [];
    const res = await this.cluster.rpc.heartbeat({
      workerId: this.workerId,
      updates,
      running: [...this.running.values()].map(({ taskId, attemptId }) => ({ taskId, attemptId })),
    });
    for (const k of res.kill) this.running.delete(`${k.taskId}#${k.attemptId}`);
    if (res.reregister) await this.register();
    return res;
  }

  /** Heartbeats on the fake clock every `interval` until {@linkcode FakeWorker.stopBeating}. */
  startBeating(interval: Duration): void {
    const stop = this.#beating = new AbortController();
    (async () => {
      while (!stop.signal.aborted) {
        try {
          await this.cluster.clock.sleep(interval, stop.signal);
        } catch {
          return;
        }
        await this.beat();
      }
    })();
  }

  /** Goes silent (as a dead host would). */
  stopBeating(): void {
    this.#beating?.abort();
  }

  /** Ends an attempt it runs (reported on the next heartbeat). */
  finish(taskId: string, state: TaskState, exitCode = 0): void {
    const held = [...this.running.values()].find((a) => a.taskId === taskId);
    if (!held) throw new Error(`${this.workerId} does not run ${taskId}`);
    this.running.delete(`${held.taskId}#${held.attemptId}`);
    this.#updates.push(this.#update(held.taskId, held.attemptId, state, exitCode));
  }

  #update(taskId: string, attemptId: number, state: TaskState, exitCode = 0): TaskUpdate {
    const now = this.cluster.clock.now();
    return create(TaskUpdateSchema, {
      taskId,
      attemptId,
      state,
      exitCode,
      startedAtMs: now,
      finishedAtMs: state === TaskState.RUNNING ? 0 : now,
    });
  }
}

/** A controller plus fake workers sharing one FakeClock. */
export class FakeClockCluster implements AsyncDisposable {
  readonly clock: FakeClock;
  readonly controller: Controller;
  readonly rpc: ControllerClient;
  readonly workers = new Map<string, FakeWorker>();

  constructor(options: ControllerOptions & { clock?: FakeClock } = {}) {
    this.clock = options.clock ?? new FakeClock();
    this.controller = new Controller({
      ...options,
      clock: this.clock,
      log: options.log ?? (() => {}),
      workerClientFactory: (address) => {
        const w = [...this.workers.values()].find((x) => x.address === address);
        if (!w) throw new Error(`no fake worker at ${address}`);
        return w.client();
      },
    });
    const controller = this.controller;
    this.rpc = createClient(
      ControllerService,
      // The error interceptor serveRpc installs: handlers' Iris errors reach clients as codes.
      createRouterTransport(controllerRoutes({ controller }), {
        router: { interceptors: [errorInterceptor] },
      }),
    );
    this.controller.start();
  }

  /** Adds a worker (not yet registered). */
  worker(
    workerId: string,
    options: {
      cpu?: number;
      attributes?: Record<string, string>;
      sliceId?: string;
    } = {},
  ): FakeWorker {
    const w = new FakeWorker(
      this,
      workerId,
      `http://${workerId}.test:1`,
      { cpuMillicores: (options.cpu ?? 4) * 1000, memoryBytes: 2 ** 34 },
      options.attributes,
      options.sliceId,
    );
    this.workers.set(workerId, w);
    return w;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const w of this.workers.values()) w.stopBeating();
    await this.controller.stop();
    await this.clock.settle();
  }
}
