/**
 * Every change of persisted state goes through the tables, which mark what they touched: a seeded
 * random sequence of controller operations (submits, registrations, heartbeats with updates,
 * ports and peak memory, scheduling passes, reservations, budgets, timeouts, terminations,
 * worker deaths) runs against a controller with a state store, and after each operation the jobs,
 * tasks, workers and endpoints loaded from the store (as a restart would) equal those in memory,
 * except the fields listed as volatile (VOLATILE_TASK_FIELDS). A field changed without being
 * marked fails this test with the seed and the step that changed it.
 * @module
 */
import { create, toJson } from "@bufbuild/protobuf";
import { assertEquals } from "../_helpers/assert.ts";
import { rng } from "../_helpers/rng.ts";
import { Controller } from "../../src/controller/controller.ts";
import { StateStore } from "../../src/controller/store.ts";
import {
  type JobRecord,
  JobTable,
  type TaskRecord,
  VOLATILE_TASK_FIELDS,
} from "../../src/controller/state.ts";
import { EndpointTable } from "../../src/controller/endpoints.ts";
import { isTaskActive } from "../../src/controller/job_rules.ts";
import { Accounts } from "../../src/controller/accounts.ts";
import {
  AcceleratorType,
  EndpointSchema,
  HeartbeatRequestSchema,
  JobSpecSchema,
  RegisterWorkerRequestSchema,
  type RunTaskRequest,
  RunTaskResponseSchema,
  type RunTasksRequest,
  RunTasksResponseSchema,
  TaskState,
  TaskUpdateSchema,
  type WorkerClient,
} from "../../src/rpc/mod.ts";
import { FakeClock, ms } from "../../src/time.ts";

/** JSON with sorted keys, so records compare whatever order their fields were set in. */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v).filter(([, x]) => x !== undefined).sort(([a], [b]) => a < b ? -1 : 1)
        .map(([k, x]) => [k, canonical(x)]),
    );
  }
  return v;
}

function jobView(j: JobRecord): unknown {
  return canonical({
    ...j,
    spec: toJson(JobSpecSchema, j.spec),
    childIds: [...j.childIds].sort(),
    counts: Object.fromEntries(Object.entries(j.counts).filter(([, n]) => n)),
  });
}

function taskView(t: TaskRecord): unknown {
  const copy: Record<string, unknown> = { ...t, attempts: t.attempts.map((a) => ({ ...a })) };
  for (const f of VOLATILE_TASK_FIELDS) delete copy[f];
  return canonical(copy);
}

/** Memory and store agree on everything persisted. */
function assertPersisted(c: Controller, store: StateStore, where: string): void {
  const loaded = new JobTable();
  store.load(loaded);
  assertEquals(
    [...loaded.jobs.keys()].sort(),
    [...c.jobs.jobs.keys()].sort(),
    `${where}: job ids`,
  );
  for (const [id, job] of c.jobs.jobs) {
    assertEquals(jobView(loaded.job(id)), jobView(job), `${where}: job ${id}`);
  }
  for (const [id, task] of c.jobs.tasks) {
    assertEquals(taskView(loaded.task(id)), taskView(task), `${where}: task ${id}`);
  }
  const workers = store.loadWorkers().sort((a, b) => a.workerId < b.workerId ? -1 : 1);
  assertEquals(
    canonical(workers),
    canonical([...c.workers.workers.keys()].sort().map((id) => c.workers.persisted(id))),
    `${where}: workers`,
  );
  const endpoints = new EndpointTable();
  store.loadEndpoints(endpoints);
  const list = (t: EndpointTable) =>
    t.list("", false).map((e) => toJson(EndpointSchema, e)).sort((a, b) =>
      JSON.stringify(a) < JSON.stringify(b) ? -1 : 1
    );
  assertEquals(list(endpoints), list(c.endpoints), `${where}: endpoints`);
}

const acceptAll = (): WorkerClient =>
  ({
    runTask: (_req: RunTaskRequest) =>
      Promise.resolve(create(RunTaskResponseSchema, { accepted: true })),
    runTasks: (req: RunTasksRequest) =>
      Promise.resolve(create(RunTasksResponseSchema, {
        results: req.attempts.map(() => create(RunTaskResponseSchema, { accepted: true })),
      })),
    killTask: () => Promise.resolve({}),
  }) as unknown as WorkerClient;

async function run(seed: number, steps: number): Promise<void> {
  const random = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const dir = await Deno.makeTempDir({ prefix: "iris-persisted-state-" });
  const store = StateStore.open(dir);
  const clock = new FakeClock();
  const c = new Controller({
    store,
    clock,
    heartbeatInterval: ms(1000),
    workerClientFactory: acceptAll,
    accounts: new Accounts([{ users: ["bob"], maxTasks: 2 }]),
  });
  let workerSeq = 0;
  let jobSeq = 0;
  const live = () => [...c.workers.workers.values()].filter((w) => !w.reconnecting);
  const ops: Record<string, () => void> = {
    submit: () => {
      const gang = random() < 0.2;
      c.launchJob(
        create(JobSpecSchema, {
          name: `j${jobSeq++}`,
          user: pick(["alice", "bob"]),
          replicas: 1 + Math.floor(random() * 3),
          priority: pick([0, 1, 2, 3]),
          entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
          resources: {
            cpuMillicores: pick([500, 1000, 3000]),
            ...(gang ? { accelerator: { type: AcceleratorType.GPU, variant: "", count: 0 } } : {}),
          },
          ...(gang ? { coscheduling: { groupBy: "scale-group" } } : {}),
          ...(random() < 0.15 ? { reservation: [{ resources: { cpuMillicores: 100 } }] } : {}),
          ...(random() < 0.2 ? { schedulingTimeoutMs: 3000 } : {}),
          ...(random() < 0.3 ? { ports: ["http"] } : {}),
          maxRetriesFailure: pick([0, 1]),
        }),
        random() < 0.2 ? `req-${Math.floor(random() * 3)}` : "",
      );
    },
    register: () => {
      const id = random() < 0.3 && workerSeq > 0
        ? `w${Math.floor(random() * workerSeq)}`
        : `w${workerSeq++}`;
      const held = c.workers.workers.get(id);
      // A re-registering worker lists what it runs, except now and then (it restarted).
      const running = random() < 0.8 && held
        ? [...held.active.keys()].map((k) => {
          const i = k.lastIndexOf("#");
          return { taskId: k.slice(0, i), attemptId: Number(k.slice(i + 1)) };
        })
        : [];
      c.registerWorker(create(RegisterWorkerRequestSchema, {
        workerId: id,
        address: `http://10.0.0.${(Number(id.slice(1)) % 250) + 1}:9000`,
        resources: { cpuMillicores: 4000, memoryBytes: 2 ** 33 },
        scaleGroup: "g",
        running,
      }));
    },
    heartbeat: () => {
      const ws = live();
      if (!ws.length) return;
      const w = pick(ws);
      const updates = [];
      const running = [];
      for (const key of w.active.keys()) {
        const i = key.lastIndexOf("#");
        const ref = { taskId: key.slice(0, i), attemptId: Number(key.slice(i + 1)) };
        if (random() < 0.15) continue; // missing from this heartbeat
        const state = pick([
          TaskState.BUILDING,
          TaskState.RUNNING,
          TaskState.RUNNING,
          TaskState.SUCCEEDED,
          TaskState.FAILED,
        ]);
        if (isTaskActive(state)) running.push(ref);
        if (random() < 0.7) {
          updates.push(create(TaskUpdateSchema, {
            ...ref,
            state,
            exitCode: state === TaskState.FAILED ? 1 : 0,
            startedAtMs: clock.now() - 10,
            finishedAtMs: isTaskActive(state) ? 0 : clock.now(),
            peakMemoryBytes: random() < 0.5 ? Math.floor(random() * 2 ** 30) : 0,
            ports: random() < 0.3 ? { http: 20000 + Math.floor(random() * 3) } : {},
            logs: random() < 0.3 ? [{ timestampMs: clock.now(), stream: "stderr", text: "x" }] : [],
          }));
        }
      }
      c.heartbeat(create(HeartbeatRequestSchema, { workerId: w.workerId, updates, running }));
    },
    schedule: () => {
      c.scheduleOnce();
    },
    terminate: () => {
      const ids = [...c.jobs.jobs.keys()];
      if (ids.length) c.terminateJob(pick(ids), "test");
    },
    dead: () => {
      const ws = [...c.workers.workers.keys()];
      if (ws.length) c.workerDead(pick(ws), "test", { scaleDown: random() < 0.5 });
    },
    time: () => clock.jump(ms(Math.floor(random() * 2000))),
  };
  const weights: [string, number][] = [
    ["submit", 4],
    ["register", 2],
    ["heartbeat", 6],
    ["schedule", 4],
    ["terminate", 1],
    ["dead", 1],
    ["time", 2],
  ];
  const total = weights.reduce((s, [, w]) => s + w, 0);
  try {
    assertPersisted(c, store, `seed ${seed} start`);
    for (let step = 0; step < steps; step++) {
      let r = random() * total;
      const [name] = weights.find(([, w]) => (r -= w) < 0) ?? weights[0]!;
      ops[name]!();
      assertPersisted(c, store, `seed ${seed} step ${step} (${name})`);
    }
  } finally {
    await c.stop();
    // A scheduling pass requested by the last operation runs on a zero timer; let it pass.
    await new Promise((resolve) => setTimeout(resolve, 5));
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

for (const seed of [1, 2, 3, 4]) {
  Deno.test(`persisted state: memory equals the store after every operation (seed ${seed})`, async () => {
    await run(seed, 250);
  });
}
