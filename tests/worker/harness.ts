/**
 * Test harness: a FakeController, a worker registered with it, a WorkerService client, and
 * helpers to build RunTask requests.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type RunTaskRequest, RunTaskRequestSchema } from "../../src/rpc/gen/iris/v1/worker_pb.ts";
import { type WorkerClient, workerClient } from "../../src/rpc/client.ts";
import { ms, seconds } from "../../src/time.ts";
import { startWorker, type WorkerHandle, type WorkerOptions } from "../../src/worker/mod.ts";
import { FakeController } from "./fake_controller.ts";

/** A worker wired to a fake controller. Dispose to stop both. */
export interface Harness extends AsyncDisposable {
  readonly fake: FakeController;
  readonly worker: WorkerHandle;
  readonly client: WorkerClient;
  /** The worker's own log lines. */
  readonly logs: string[];
}

/** Starts a fake controller and a worker (fast heartbeats and sampling) registered with it. */
export async function startHarness(options: Partial<WorkerOptions> = {}): Promise<Harness> {
  const fake = new FakeController();
  const logs: string[] = [];
  const worker = await startWorker({
    controllerUrl: fake.url,
    resources: { cpuMillicores: 2000, memoryBytes: 4 * 1024 ** 3 },
    heartbeatInterval: ms(200),
    sampleInterval: ms(50),
    killGrace: seconds(2),
    log: (line) => logs.push(line),
    ...options,
  });
  return {
    fake,
    worker,
    client: workerClient(worker.url),
    logs,
    async [Symbol.asyncDispose]() {
      await worker.stop();
      await fake[Symbol.asyncDispose]();
    },
  };
}

/** A RunTask request for a command task (attempt 0 unless given). */
export function commandTask(
  taskId: string,
  argv: string[],
  extra: Omit<MessageInitShape<typeof RunTaskRequestSchema>, "$typeName"> = {},
): RunTaskRequest {
  return create(RunTaskRequestSchema, {
    taskId,
    jobId: taskId.slice(0, taskId.lastIndexOf("/")) || "/job",
    attemptId: 0,
    numTasks: 1,
    entrypoint: { kind: { case: "command", value: { argv } } },
    ...extra,
  });
}
