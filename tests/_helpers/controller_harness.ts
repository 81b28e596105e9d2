/**
 * An in-process controller on a state dir with four fake workers that finish every task at their
 * next heartbeat, no RPC: shared by tests/controller/big_job_test.ts and bench/state_bench.ts.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { Controller } from "../../src/controller/controller.ts";
import { StateStore } from "../../src/controller/store.ts";
import {
  HeartbeatRequestSchema,
  JobSpecSchema,
  RegisterWorkerRequestSchema,
  RunTaskResponseSchema,
  RunTasksResponseSchema,
  TaskState,
  type WorkerClient,
} from "../../src/rpc/mod.ts";
import { seconds } from "../../src/time.ts";

const WORKERS = 4;
const CPUS = 8;

function acceptingClient(): WorkerClient {
  const client: Partial<WorkerClient> = {
    runTask: () => Promise.resolve(create(RunTaskResponseSchema, { accepted: true })),
    runTasks: (req: { attempts?: readonly unknown[] }) =>
      Promise.resolve(create(RunTasksResponseSchema, {
        results: (req.attempts ?? []).map(() => create(RunTaskResponseSchema, { accepted: true })),
      })),
    killTask: () => Promise.reject(new Error("not used")),
  };
  return client as WorkerClient;
}

/** A command job of `replicas` tasks, 1 CPU each. */
export const spec = (user: string, name: string, replicas: number) =>
  create(JobSpecSchema, {
    name,
    user,
    replicas,
    entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
    resources: { cpuMillicores: 1000, memoryBytes: 2 ** 20 },
  });

/** An in-process controller with a state dir and four fake workers. */
export interface Harness {
  readonly c: Controller;
  readonly store: StateStore;
  /** One round: a scheduling pass, then every worker reports its attempts finished. */
  round(): { assigned: readonly { jobId: string; taskIndex: number }[]; completed: number };
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts a {@linkcode Harness} on state dir `dir`. */
export function harness(dir: string): Harness {
  const store = StateStore.open(dir);
  const c = new Controller({
    store,
    heartbeatInterval: seconds(60),
    workerClientFactory: acceptingClient,
  });
  for (let i = 0; i < WORKERS; i++) {
    c.registerWorker(create(RegisterWorkerRequestSchema, {
      workerId: `w${i}`,
      address: `http://127.0.0.1:${20000 + i}`,
      resources: { cpuMillicores: CPUS * 1000, memoryBytes: 2 ** 34 },
      sliceId: `s${i}`,
    }));
  }
  return {
    c,
    store,
    round() {
      const plan = c.scheduleOnce();
      let completed = 0;
      for (const w of c.workers.workers.values()) {
        const updates = [...w.active.keys()].map((key) => {
          const [taskId, attempt] = key.split("#") as [string, string];
          return { taskId, attemptId: Number(attempt), state: TaskState.SUCCEEDED };
        });
        completed += updates.length;
        c.heartbeat(create(HeartbeatRequestSchema, { workerId: w.workerId, updates }));
      }
      return { assigned: plan.assignments, completed };
    },
    async [Symbol.asyncDispose]() {
      await c.stop();
      store.close();
    },
  };
}
