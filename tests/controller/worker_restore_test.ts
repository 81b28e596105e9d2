/**
 * Workers across a controller restart (store.ts, workers table): after the restart the
 * registered workers are listed at once as reconnecting, are not schedulable and must
 * re-register; one that never comes back is declared dead after the post-restart grace, its
 * attempt is WORKER_FAILED and retried, and its row is gone from the state file.
 */
import { create } from "@bufbuild/protobuf";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { Controller } from "../../src/controller/controller.ts";
import { StateStore } from "../../src/controller/store.ts";
import { parseAttemptKey, RECONNECTING_MESSAGE } from "../../src/controller/workers.ts";
import {
  HeartbeatRequestSchema,
  JobSpecSchema,
  RegisterWorkerRequestSchema,
  RunTaskResponseSchema,
  RunTasksResponseSchema,
  TaskState,
  type WorkerClient,
} from "../../src/rpc/mod.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";

/** A worker client whose RunTask is always accepted; nothing else is called here. */
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

function controller(store: StateStore): Controller {
  return new Controller({
    store,
    heartbeatInterval: ms(100),
    workerReconnectMax: ms(200),
    reclaimMargin: ms(200),
    workerClientFactory: acceptingClient,
  });
}

function register(c: Controller, workerId: string, cpuMillicores: number): void {
  c.registerWorker(create(RegisterWorkerRequestSchema, {
    workerId,
    address: `http://127.0.0.1:${cpuMillicores}`,
    resources: { cpuMillicores, memoryBytes: 2 ** 30 },
    sliceId: `slice-${workerId}`,
  }));
}

const job = (name: string) =>
  create(JobSpecSchema, {
    name,
    user: "alice",
    entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
    resources: { cpuMillicores: 1000 },
  });

Deno.test("workers survive a controller restart as reconnecting; one that never re-registers is declared dead after the grace", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-worker-restore-" });
  try {
    // Before the restart: two workers; a task runs on the one that will not come back.
    let store = StateStore.open(dir);
    const before = controller(store);
    register(before, "w-gone", 1000);
    const { jobId: firstJob } = before.launchJob(job("first"), "");
    // Placed at its submit (the scheduler was idle).
    const placed = before.jobs.currentAttempt(before.jobs.task(`${firstJob}/0`));
    assertEquals(placed?.workerId, "w-gone");
    register(before, "w-back", 4000);
    before.commitState();
    await before.stop();
    store.close();

    store = StateStore.open(dir);
    const after = controller(store);
    try {
      // Listed at once, but not healthy and not schedulable.
      const listed = [...after.workers.workers.values()];
      assertEquals(listed.map((w) => w.workerId).sort(), ["w-back", "w-gone"]);
      assertEquals(listed.map((w) => [w.healthy, w.statusMessage]), [
        [false, RECONNECTING_MESSAGE],
        [false, RECONNECTING_MESSAGE],
      ]);
      assertEquals(after.workers.workers.get("w-back")!.total.cpuMillicores, 4000);
      const { jobId: secondJob } = after.launchJob(job("second"), "");
      assertEquals(after.scheduleOnce().assignments, [], "no placement on unconfirmed workers");
      // A heartbeat is not enough: the worker must re-register (and re-claim its attempts).
      // Like a real worker, it lists what it runs: every attempt placed on it.
      const beat = () =>
        after.heartbeat(create(HeartbeatRequestSchema, {
          workerId: "w-back",
          running: [...(after.workers.workers.get("w-back")?.active.keys() ?? [])].map((k) =>
            parseAttemptKey(k)
          ),
        }));
      assertEquals(beat().reregister, true);
      register(after, "w-back", 4000);
      assertEquals(after.workers.workers.get("w-back")!.healthy, true);
      assertEquals(after.scheduleOnce().assignments.map((a) => [a.jobId, a.workerId]), [
        [secondJob, "w-back"],
      ]);

      // w-gone never comes back: dead after the grace, its attempt failed and retried on w-back.
      after.start();
      const task = await waitFor(() => {
        assertEquals(beat().reregister, false);
        const t = after.jobs.task(after.jobs.job(firstJob).taskIds[0]!);
        return !after.workers.workers.has("w-gone") && t.attempts.length === 2 ? t : undefined;
      }, { timeout: seconds(20), what: "w-gone to be declared dead and its task retried" });
      assertEquals(task.attempts[0]!.state, TaskState.WORKER_FAILED);
      assertEquals(task.attempts[0]!.workerId, "w-gone");
      assertEquals(task.attempts[1]!.workerId, "w-back");
      assert(
        after.recentLogs.some((l) =>
          l.includes(
            "worker w-gone declared dead: did not re-register within 440ms of a controller",
          )
        ),
        after.recentLogs.join("\n"),
      );
    } finally {
      await after.stop();
      store.close();
    }
    // Its row is gone: a third start knows only w-back.
    store = StateStore.open(dir);
    try {
      assertEquals(store.loadWorkers().map((w) => w.workerId), ["w-back"]);
    } finally {
      store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
