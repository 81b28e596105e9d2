/**
 * Dispatch (dispatch.ts) against a recording worker client: RunTask carries the task env, a gang's
 * task 0 registers its endpoint, in-flight calls are known, failures and refusals are reported;
 * attempts for one worker in one turn go in one RunTasks, or one RunTask each to an older worker.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { assertEquals } from "../_helpers/assert.ts";
import { AcceleratorType, MAX_RUN_TASKS_ATTEMPTS, TaskState } from "../../src/rpc/mod.ts";
import {
  type RunTaskRequest,
  RunTaskResponseSchema,
  RunTasksResponseSchema,
  WorkerService,
} from "../../src/rpc/gen/iris/v1/worker_pb.ts";
import type { WorkerClient } from "../../src/rpc/client.ts";
import { JobTable, noEffects } from "../../src/controller/state.ts";
import { EndpointTable } from "../../src/controller/endpoints.ts";
import { Dispatcher, gangMembers, type Placed } from "../../src/controller/dispatch.ts";
import { attemptKey } from "../../src/controller/workers.ts";
import { spec, workerTable } from "./_concern_fixtures.ts";

function fakeClient(calls: { address: string; req: RunTaskRequest }[], address: string) {
  const runTask = (req: RunTaskRequest) => {
    calls.push({ address, req });
    return Promise.resolve({ accepted: !req.env.REFUSE, error: "no room" });
  };
  const killTask = () => Promise.reject(new Error("unreachable"));
  return { runTask, killTask } as unknown as WorkerClient;
}

function placeAll(jobs: JobTable, jobId: string, workerIds: string[]): Placed[] {
  return jobs.job(jobId).taskIds.map((tid, i) => {
    const attempt = jobs.assign(tid, workerIds[i]!, 1);
    return { task: jobs.task(tid), attempt };
  });
}

Deno.test("dispatch: a GPU gang's RunTasks carry the env; task 0 registers torch-master", async () => {
  const jobs = new JobTable();
  const workers = workerTable(2);
  const endpoints = new EndpointTable();
  const calls: { address: string; req: RunTaskRequest }[] = [];
  const logs: string[] = [];
  const d = new Dispatcher({
    clientFactory: (a) => fakeClient(calls, a),
    log: (l) => logs.push(l),
  });
  const { jobId } = jobs.submit(
    spec({
      replicas: 2,
      coscheduling: { groupBy: "pool" },
      resources: { accelerator: { type: AcceleratorType.GPU, variant: "H100", count: 8 } },
      env: { A: "1" },
    }),
    "",
    0,
    noEffects(),
  );
  const placed = placeAll(jobs, jobId, ["w0", "w1"]);
  assertEquals(gangMembers(jobs, workers, jobs.job(jobId)), [
    { host: "10.0.0.1", workerId: "w0" },
    { host: "10.0.0.2", workerId: "w1" },
  ]);
  const failed: string[] = [];
  d.dispatchJob(
    { jobs, workers, endpoints, baseEnv: { BASE: "b", A: "0" }, controllerUrl: "http://c:1" },
    jobs.job(jobId),
    placed,
    (taskId) => failed.push(taskId),
  );
  assertEquals(
    d.isDispatching(attemptKey(placed[0]!.task.taskId, placed[0]!.attempt.attemptId)),
    true,
  );
  await d.drain();
  assertEquals(
    d.isDispatching(attemptKey(placed[0]!.task.taskId, placed[0]!.attempt.attemptId)),
    false,
  );
  assertEquals(failed, []);
  assertEquals(calls.map((c) => c.address), ["http://10.0.0.1:9000", "http://10.0.0.2:9000"]);
  const env = calls[1]!.req.env;
  assertEquals(env.BASE, "b");
  assertEquals(env.A, "1", "the job's env wins over the base");
  assertEquals(env.IRIS_TASK_INDEX, "1");
  assertEquals(env.IRIS_CONTROLLER_URL, "http://c:1");
  assertEquals(env.IRIS_GANG_HOSTS, "10.0.0.1,10.0.0.2");
  assertEquals(env.RANK, "1");
  assertEquals(env.MASTER_ADDR, "10.0.0.1");
  assertEquals(
    endpoints.list(`${jobId}/`, false).map((e) => [e.name, e.taskId]),
    [[`${jobId}/torch-master`, placed[0]!.task.taskId]],
  );
});

Deno.test("dispatch: a refused task and a failed kill are reported", async () => {
  const jobs = new JobTable();
  const workers = workerTable(1);
  const calls: { address: string; req: RunTaskRequest }[] = [];
  const logs: string[] = [];
  const d = new Dispatcher({
    clientFactory: (a) => fakeClient(calls, a),
    log: (l) => logs.push(l),
  });
  const { jobId } = jobs.submit(spec({ env: { REFUSE: "1" } }), "", 0, noEffects());
  const placed = placeAll(jobs, jobId, ["w0"]);
  const failed: string[] = [];
  d.dispatchJob(
    { jobs, workers, endpoints: new EndpointTable(), controllerUrl: "" },
    jobs.job(jobId),
    placed,
    (taskId, attemptId, workerId, err) =>
      failed.push(`${taskId} ${attemptId} ${workerId}: ${(err as Error).message}`),
  );
  d.kill("http://10.0.0.1:9000", { workerId: "w0", taskId: "t", attemptId: 1, reason: "x" });
  await d.drain();
  assertEquals(failed, [`${placed[0]!.task.taskId} ${placed[0]!.attempt.attemptId} w0: no room`]);
  assertEquals(logs, ["kill of t on w0 failed: unreachable"]);
  assertEquals(placed[0]!.attempt.state, TaskState.ASSIGNED);
});

/** Records each call; refuses task index 1; answers RunTasks Unimplemented unless `batches`. */
function batchingClient(calls: string[], opts: { batches: boolean }): WorkerClient {
  const answer = (req: RunTaskRequest) =>
    create(RunTaskResponseSchema, {
      accepted: req.taskIndex !== 1,
      error: "no room",
      state: TaskState.RUNNING,
    });
  return createClient(
    WorkerService,
    createRouterTransport((router) =>
      router.service(WorkerService, {
        runTask: (req) => {
          calls.push(`RunTask ${req.taskIndex}`);
          return answer(req);
        },
        runTasks: (req) => {
          calls.push(`RunTasks ${req.attempts.map((a) => a.taskIndex).join(",")}`);
          if (!opts.batches) throw new ConnectError("an older worker", Code.Unimplemented);
          return create(RunTasksResponseSchema, { results: req.attempts.map(answer) });
        },
      })
    ),
  );
}

/**
 * Dispatches a job of `replicas` tasks, all placed on w0, in one turn and waits for the calls;
 * returns the failures as "<task index>: <message>".
 */
async function dispatchToW0(d: Dispatcher, replicas: number): Promise<string[]> {
  const jobs = new JobTable();
  const { jobId } = jobs.submit(spec({ replicas }), "", 0, noEffects());
  const placed = placeAll(jobs, jobId, Array(replicas).fill("w0"));
  const failed: string[] = [];
  d.dispatchJob(
    { jobs, workers: workerTable(1), endpoints: new EndpointTable(), controllerUrl: "" },
    jobs.job(jobId),
    placed,
    (taskId, _attemptId, _workerId, err) =>
      failed.push(`${jobs.task(taskId).index}: ${(err as Error).message}`),
  );
  await d.drain();
  for (const { task, attempt } of placed) {
    assertEquals(d.isDispatching(attemptKey(task.taskId, attempt.attemptId)), false);
  }
  return failed;
}

/** Task indexes (of attempt keys "<job>/<index>#<attempt>") that left setup. */
function leftSetupRecorder(): { indexes: number[]; onLeftSetup: (w: string, key: string) => void } {
  const indexes: number[] = [];
  return {
    indexes,
    onLeftSetup: (_workerId, key) => indexes.push(Number(key.split("/").at(-1)!.split("#")[0])),
  };
}

Deno.test("dispatch: attempts for one worker in one turn go in one RunTasks; a refused one fails alone", async () => {
  const calls: string[] = [];
  const left = leftSetupRecorder();
  const d = new Dispatcher({
    clientFactory: () => batchingClient(calls, { batches: true }),
    log: () => {},
    onLeftSetup: left.onLeftSetup,
  });
  assertEquals(await dispatchToW0(d, 3), ["1: no room"]);
  assertEquals(calls, ["RunTasks 0,1,2"]);
  assertEquals(left.indexes, [0, 2]);
  // One attempt alone goes in a plain RunTask.
  calls.length = 0;
  assertEquals(await dispatchToW0(d, 1), []);
  assertEquals(calls, ["RunTask 0"]);
});

Deno.test("dispatch: a failed RunTasks fails each attempt in it", async () => {
  const failing = {
    runTasks: () => Promise.reject(new ConnectError("worker gone", Code.Unavailable)),
  } as unknown as WorkerClient;
  const d = new Dispatcher({ clientFactory: () => failing, log: () => {} });
  assertEquals(await dispatchToW0(d, 2), [
    "0: [unavailable] worker gone",
    "1: [unavailable] worker gone",
  ]);
});

Deno.test("dispatch: a worker without RunTasks gets one RunTask per attempt, remembered", async () => {
  const calls: string[] = [];
  const left = leftSetupRecorder();
  const d = new Dispatcher({
    clientFactory: () => batchingClient(calls, { batches: false }),
    log: () => {},
    onLeftSetup: left.onLeftSetup,
  });
  assertEquals(await dispatchToW0(d, 2), ["1: no room"]);
  assertEquals(calls, ["RunTasks 0,1", "RunTask 0", "RunTask 1"]);
  assertEquals(left.indexes, [0]);
  calls.length = 0;
  assertEquals(await dispatchToW0(d, 2), ["1: no room"]);
  assertEquals(calls, ["RunTask 0", "RunTask 1"]);
});

Deno.test("dispatch: more attempts for one worker than a RunTasks may carry go in several", async () => {
  const calls: string[] = [];
  const d = new Dispatcher({
    clientFactory: () => batchingClient(calls, { batches: true }),
    log: () => {},
  });
  const replicas = 2 * MAX_RUN_TASKS_ATTEMPTS + 1;
  assertEquals(await dispatchToW0(d, replicas), ["1: no room"]);
  assertEquals(calls.map((c) => c.startsWith("RunTasks ") ? c.split(",").length : c), [
    MAX_RUN_TASKS_ATTEMPTS,
    MAX_RUN_TASKS_ATTEMPTS,
    `RunTask ${replicas - 1}`,
  ]);
});
