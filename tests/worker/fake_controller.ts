/**
 * A tiny in-test controller: implements RegisterWorker and Heartbeat only, records every request,
 * and can be told to answer `reregister`, order kills, or fail heartbeats.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type AttemptRef,
  ControllerService,
  type HeartbeatRequest,
  HeartbeatResponseSchema,
  type RegisterWorkerRequest,
  RegisterWorkerResponseSchema,
  type TaskUpdate,
} from "../../src/rpc/gen/iris/v1/controller_pb.ts";
import type { LogLine, TaskState } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { type RpcServer, serveRpc } from "../../src/rpc/server.ts";
import { type Duration, seconds, waitFor } from "../../src/time.ts";

/** A recording controller on loopback. */
export class FakeController implements AsyncDisposable {
  readonly registrations: RegisterWorkerRequest[] = [];
  readonly heartbeats: HeartbeatRequest[] = [];
  readonly updates: TaskUpdate[] = [];
  /** Answer the next heartbeat with `reregister: true`. */
  reregisterNext = false;
  /** Attempts to order killed in the next heartbeat answer. */
  killNext: { taskId: string; attemptId: number }[] = [];
  /** Fail this many heartbeats (Unavailable) before accepting again. */
  failHeartbeats = 0;
  /** Answer `updates_deferred: true` to every heartbeat this returns true for. */
  deferIf?: (req: HeartbeatRequest) => boolean;
  /** Answer `reregister: true` to every heartbeat this returns true for. */
  reregisterIf?: (req: HeartbeatRequest) => boolean;
  readonly server: RpcServer;

  constructor(port = 0) {
    this.server = serveRpc((router) =>
      router.service(ControllerService, {
        registerWorker: (req) => {
          this.registrations.push(req);
          return create(RegisterWorkerResponseSchema, { workerId: req.workerId });
        },
        heartbeat: (req) => {
          if (this.failHeartbeats > 0) {
            this.failHeartbeats--;
            throw new ConnectError("fake controller is unavailable", Code.Unavailable);
          }
          this.heartbeats.push(req);
          this.updates.push(...req.updates);
          const reregister = this.reregisterNext || (this.reregisterIf?.(req) ?? false);
          this.reregisterNext = false;
          const kill: AttemptRef[] = this.killNext.map((k) => ({
            ...k,
            $typeName: "iris.v1.AttemptRef",
          }));
          this.killNext = [];
          const updatesDeferred = this.deferIf?.(req) ?? false;
          return create(HeartbeatResponseSchema, { reregister, kill, updatesDeferred });
        },
      }), { port });
  }

  get url(): string {
    return this.server.url;
  }

  /** Updates of one task, in arrival order. */
  updatesOf(taskId: string): TaskUpdate[] {
    return this.updates.filter((u) => u.taskId === taskId);
  }

  /** Every log line received for a task. */
  logsOf(taskId: string): LogLine[] {
    return this.updatesOf(taskId).flatMap((u) => u.logs);
  }

  /** Waits until an update of `taskId` has `state`; returns it. */
  waitForState(
    taskId: string,
    state: TaskState,
    timeout: Duration = seconds(10),
  ): Promise<TaskUpdate> {
    return waitFor(() => this.updatesOf(taskId).find((u) => u.state === state), {
      timeout,
      what: `task ${taskId} to reach state ${state}`,
    });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.server.shutdown();
  }
}
