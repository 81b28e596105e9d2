/**
 * The smoke test's jobs. Each runs through the public client API only, exactly as a user would,
 * and returns pass/fail with a reason. Names are those `--only` takes.
 * @module
 */
import { type IrisClient, WaitTimeoutError } from "../client/mod.ts";
import type { JobRequest } from "../client/mod.ts";
import { JobState, type JobStatus, type LogLine, TaskState } from "../rpc/mod.ts";
import { type Duration, seconds, waitFor } from "../time.ts";
import { tpuShape } from "../config/mod.ts";
import { writeTinyWheel } from "./wheel.ts";

/** What a smoke job can use. */
export interface SmokeContext {
  readonly client: IrisClient;
  /** Unique per run, appended to job names. */
  readonly runId: string;
  /** Per-job wait limit. */
  readonly jobTimeout: Duration;
  readonly signal: AbortSignal;
  /** Argv that runs this iris binary (for tasks that use the CLI). */
  readonly irisArgv: readonly string[];
  /** The slice variant of the TPU jobs (`--tpu-type`), e.g. "v5litepod-16". */
  readonly tpuVariant: string;
  /** Scale groups the region jobs can target, CPU groups first (config order). */
  readonly regionTargets: readonly RegionTarget[];
  /** Submits and remembers the job for cleanup, progress and task-log collection. */
  submit(test: string, request: JobRequest): Promise<string>;
  /** Waits for a job, streaming its status to the progress display. */
  wait(jobId: string): Promise<JobStatus>;
}

/** A region served by a scale group, and the TPU variant that reaches it (none: CPU). */
export interface RegionTarget {
  readonly region: string;
  readonly tpuVariant?: string;
}

/** One smoke job. */
export interface SmokeJob {
  readonly name: string;
  readonly description: string;
  run(ctx: SmokeContext): Promise<string>;
}

/** A failed check: the message is the reason shown in the results. */
export class SmokeFailure extends Error {}

function check(cond: unknown, message: string): asserts cond {
  if (!cond) throw new SmokeFailure(message);
}

function expectState(job: JobStatus, state: JobState): void {
  check(
    job.state === state,
    `${job.jobId} ended ${JobState[job.state]}, expected ${JobState[state]}${
      job.error ? `: ${job.error}` : ""
    }`,
  );
}

async function stdout(ctx: SmokeContext, id: string): Promise<string[]> {
  return (await ctx.client.logs(id)).filter((l: LogLine) => l.stream === "stdout").map((l) =>
    l.text
  );
}

const small = { cpu: 0.2, memory: 64 * 2 ** 20 };

const hello: SmokeJob = {
  name: "hello",
  description: "one task prints a line; its logs come back through the API",
  async run(ctx) {
    const id = await ctx.submit("hello", {
      ...small,
      name: `smoke-hello-${ctx.runId}`,
      command: ["sh", "-c", "echo Hello from Iris!"],
    });
    expectState(await ctx.wait(id), JobState.SUCCEEDED);
    const lines = await stdout(ctx, id);
    check(lines.includes("Hello from Iris!"), `log line missing (got ${JSON.stringify(lines)})`);
    return "printed and fetched 'Hello from Iris!'";
  },
};

const workspace: SmokeJob = {
  name: "workspace",
  description: "ships a directory (a script and a data file) as a bundle; the task runs the script",
  async run(ctx) {
    const dir = await Deno.makeTempDir({ prefix: "iris-smoke-workspace-" });
    try {
      await Deno.mkdir(`${dir}/data`);
      await Deno.writeTextFile(`${dir}/data/words.txt`, "alpha\nbeta\ngamma\n");
      await Deno.writeTextFile(
        `${dir}/run.sh`,
        '#!/bin/sh\nset -e\necho "workspace: $(wc -l < data/words.txt) words, first $(head -n 1 data/words.txt)"\n',
      );
      await Deno.chmod(`${dir}/run.sh`, 0o755);
      const bundleId = await ctx.client.uploadWorkspace(dir);
      const id = await ctx.submit("workspace", {
        ...small,
        name: `smoke-workspace-${ctx.runId}`,
        command: ["./run.sh"],
        bundleId,
      });
      expectState(await ctx.wait(id), JobState.SUCCEEDED);
      const lines = await stdout(ctx, id);
      const want = "workspace: 3 words, first alpha";
      check(
        lines.includes(want),
        `expected ${JSON.stringify(want)} (got ${JSON.stringify(lines)})`,
      );
      return `ran ./run.sh from bundle ${bundleId.slice(0, 19)}…: '${want}'`;
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
};

const concurrent: SmokeJob = {
  name: "concurrent",
  description: "three independent jobs at once on the CPU group; all succeed",
  async run(ctx) {
    const ids = await Promise.all([0, 1, 2].map((i) =>
      ctx.submit("concurrent", {
        ...small,
        name: `smoke-concurrent-${ctx.runId}-${i}`,
        command: ["sh", "-c", `sleep 1; echo Task ${i} completed`],
        constraints: [{ key: "device-type", op: "eq", value: "cpu" }],
      })
    ));
    const jobs = await Promise.all(ids.map((id) => ctx.wait(id)));
    jobs.forEach((j) => expectState(j, JobState.SUCCEEDED));
    return "3/3 succeeded";
  },
};

const tpuHello: SmokeJob = {
  name: "tpu-hello",
  description:
    "a single TPU task lands on a worker of a --tpu-type slice and sees its accelerator attributes",
  async run(ctx) {
    const id = await ctx.submit("tpu-hello", {
      ...small,
      name: `smoke-tpu-hello-${ctx.runId}`,
      command: [
        "sh",
        "-c",
        'echo "tpu_name=$TPU_NAME worker_id=$TPU_WORKER_ID topology=$TPU_TOPOLOGY"',
      ],
      // One task, not a gang, even on a multi-host variant.
      accelerator: { kind: "tpu", variant: ctx.tpuVariant },
      replicas: 1,
      groupBy: "",
    });
    expectState(await ctx.wait(id), JobState.SUCCEEDED);
    const line = (await stdout(ctx, id)).find((l) => l.startsWith("tpu_name="));
    check(
      line && /^tpu_name=\S+ worker_id=\d+ topology=\S+$/.test(line),
      `TPU attributes missing (got ${JSON.stringify(line)})`,
    );
    return line!;
  },
};

const coscheduled: SmokeJob = {
  name: "coscheduled",
  description:
    "a gang on one --tpu-type slice, one task per host (filled in from the variant); each task sees its worker id and all hosts",
  async run(ctx) {
    const hosts = tpuShape(ctx.tpuVariant)?.vmCount ?? 1;
    const id = await ctx.submit("coscheduled", {
      ...small,
      name: `smoke-coscheduled-${ctx.runId}`,
      command: [
        "sh",
        "-c",
        'echo "task=$IRIS_TASK_INDEX of=$IRIS_NUM_TASKS worker=$TPU_WORKER_ID slice=$TPU_NAME hosts=$TPU_WORKER_HOSTNAMES"',
      ],
      // No replicas or groupBy: a multi-host variant fills in one task per host, by tpu-name.
      accelerator: { kind: "tpu", variant: ctx.tpuVariant },
    });
    expectState(await ctx.wait(id), JobState.SUCCEEDED);
    const lines = (await stdout(ctx, id)).filter((l) => l.startsWith("task=")).sort((a, b) =>
      a.localeCompare(b, "en", { numeric: true })
    );
    check(lines.length === hosts, `expected ${hosts} task lines, got ${lines.length}`);
    const slices = new Set<string>();
    for (const [i, line] of lines.entries()) {
      const m = /^task=(\d+) of=(\d+) worker=(\d+) slice=(\S+) hosts=(\S+)$/.exec(line);
      check(m, `unexpected line ${JSON.stringify(line)}`);
      check(m[2] === String(hosts), `task ${m[1]} saw ${m[2]} tasks, expected ${hosts}`);
      check(m[1] === String(i) && m[3] === m[1], `task ${m[1]} ran on tpu-worker-id ${m[3]}`);
      check(m[5]!.split(",").length === hosts, `task ${i} saw hosts ${m[5]}`);
      slices.add(m[4]!);
    }
    check(slices.size === 1, `tasks ran on ${slices.size} slices`);
    const { tasks } = await ctx.client.status(id);
    const starts = tasks.map((t) => t.startedAtMs);
    const spread = Math.max(...starts) - Math.min(...starts);
    check(spread < 5000, `tasks started ${spread} ms apart`);
    return `${hosts} tasks on ${ctx.tpuVariant} slice ${
      [...slices][0]
    }, started within ${spread} ms`;
  },
};

const retry: SmokeJob = {
  name: "retry",
  description:
    "a task that fails once runs twice and succeeds; one that always fails ends FAILED with its exit code and stderr",
  async run(ctx) {
    const flaky = await ctx.submit("retry", {
      ...small,
      name: `smoke-retry-${ctx.runId}`,
      command: [
        "sh",
        "-c",
        'if [ "$IRIS_ATTEMPT_ID" = "0" ]; then echo "first attempt fails" >&2; exit 3; fi; echo "second attempt succeeds"',
      ],
      maxRetriesFailure: 1,
    });
    const broken = await ctx.submit("retry", {
      ...small,
      name: `smoke-always-fails-${ctx.runId}`,
      command: ["sh", "-c", "echo 'boom: something broke' >&2; exit 42"],
    });
    expectState(await ctx.wait(flaky), JobState.SUCCEEDED);
    const task = (await ctx.client.status(flaky)).tasks[0]!;
    check(
      task.attempts.length === 2,
      `flaky task ran ${task.attempts.length} attempt(s), expected 2`,
    );
    check(task.attempts[0]!.exitCode === 3, `first attempt exit ${task.attempts[0]!.exitCode}`);
    const failed = await ctx.wait(broken);
    expectState(failed, JobState.FAILED);
    const bt = (await ctx.client.status(broken)).tasks[0]!;
    check(failed.exitCode === 42 && bt.exitCode === 42, `exit code ${bt.exitCode}, expected 42`);
    check(bt.state === TaskState.FAILED, `task state ${TaskState[bt.state]}`);
    check(
      bt.stderrTail.some((l) => l.includes("boom")) || bt.error.includes("boom"),
      `stderr tail missing (got ${JSON.stringify(bt.stderrTail)})`,
    );
    return "flaky: 2 attempts then SUCCEEDED; broken: FAILED exit 42 with stderr tail";
  },
};

/**
 * Argv of the endpoints job's task program (src/smoke/endpoint_task.ts), which registers and
 * looks up the endpoint through the client. It runs with this checkout's deno.json (imports).
 */
function endpointTaskArgv(role: "serve" | "call", name: string): string[] {
  const script = new URL("./endpoint_task.ts", import.meta.url);
  const config = new URL("../../deno.json", import.meta.url);
  return [
    Deno.execPath(),
    "run",
    "-A",
    "--config",
    config.pathname,
    script.pathname,
    role,
    name,
  ];
}

const endpoints: SmokeJob = {
  name: "endpoints",
  description:
    "a server task registers a named endpoint on an allocated port; a client task looks it up and calls it",
  async run(ctx) {
    const name = `smoke-echo-${ctx.runId}`;
    const server = await ctx.submit("endpoints", {
      ...small,
      name: `smoke-endpoint-server-${ctx.runId}`,
      command: endpointTaskArgv("serve", name),
      ports: ["http"],
      // The task program is a Deno process: reuse this process's module cache.
      memory: 512 * 2 ** 20,
      env: { DENO_DIR: denoDir() },
    });
    try {
      const client = await ctx.submit("endpoints", {
        ...small,
        name: `smoke-endpoint-client-${ctx.runId}`,
        // The server registered a relative name, which lives under its job's id.
        command: endpointTaskArgv("call", `${server}/${name}`),
        memory: 512 * 2 ** 20,
        env: { DENO_DIR: denoDir() },
      });
      expectState(await ctx.wait(client), JobState.SUCCEEDED);
      const lines = await stdout(ctx, client);
      check(lines.includes("reply=pong"), `client output ${JSON.stringify(lines)}`);
      const port = (await ctx.client.status(server)).tasks[0]?.ports.http;
      return `endpoint ${name} on allocated port ${port} answered 'pong'`;
    } finally {
      await ctx.client.cancel(server, "smoke test done with the server");
    }
  },
};

const cancel: SmokeJob = {
  name: "cancel",
  description: "a long job is cancelled; it ends KILLED and its processes are gone",
  async run(ctx) {
    const marker = 10000 + Math.floor(Math.random() * 9000);
    const id = await ctx.submit("cancel", {
      ...small,
      name: `smoke-cancel-${ctx.runId}`,
      command: ["sh", "-c", `sleep ${marker} & sleep ${marker}; wait`],
    });
    await waitFor(async () => (await ctx.client.status(id)).job?.state === JobState.RUNNING, {
      timeout: ctx.jobTimeout,
      what: "the job to run",
      signal: ctx.signal,
    });
    await waitFor(async () => (await psArgs()).some((a) => a === `sleep ${marker}`), {
      timeout: seconds(20),
      what: "its processes",
      signal: ctx.signal,
    });
    await ctx.client.cancel(id, "smoke test cancel");
    expectState(await ctx.wait(id), JobState.KILLED);
    await waitFor(async () => !(await psArgs()).some((a) => a === `sleep ${marker}`), {
      timeout: seconds(20),
      what: "its processes to be gone",
      signal: ctx.signal,
    });
    return "KILLED, no process left";
  },
};

async function psArgs(): Promise<string[]> {
  const out = await new Deno.Command("ps", { args: ["-eo", "args="], stdout: "piped" }).output();
  return new TextDecoder().decode(out.stdout).split("\n").map((l) => l.trim());
}

const childJob: SmokeJob = {
  name: "child-job",
  description:
    "a task submits a child job through the client API; cancelling the parent cancels the child",
  async run(ctx) {
    const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    const submitChild = [
      ...ctx.irisArgv,
      "job",
      "run",
      "--detach",
      "--name",
      "child",
      "--cpu",
      "0.2",
      "--memory",
      "64MiB",
      "--",
      "sleep",
      "1000",
    ]
      .map(quote).join(" ");
    const parent = await ctx.submit("child-job", {
      cpu: 0.2,
      // The parent runs the iris CLI, a Deno process.
      memory: 512 * 2 ** 20,
      name: `smoke-parent-${ctx.runId}`,
      command: ["sh", "-c", `${submitChild} && exec sleep 1000`],
      // Reuse this process's module cache: a task's clean env would otherwise start an empty one.
      env: { DENO_DIR: denoDir() },
    });
    const childId = `${parent}/child`;
    await waitFor(async () => {
      const p = (await ctx.client.status(parent)).job;
      if (p && p.state !== JobState.RUNNING && p.state !== JobState.PENDING) {
        throw new SmokeFailure(
          `parent ended ${JobState[p.state]} before its child ran: ${p.error}`,
        );
      }
      const st = await ctx.client.status(childId).catch(() => undefined);
      return st?.job?.state === JobState.RUNNING;
    }, { timeout: ctx.jobTimeout, what: `child ${childId} to run`, signal: ctx.signal });
    const child = (await ctx.client.status(childId)).job!;
    check(child.parentJobId === parent, `child's parent is ${child.parentJobId}`);
    await ctx.client.cancel(parent, "smoke test cancels the parent");
    expectState(await ctx.wait(parent), JobState.KILLED);
    expectState(await ctx.wait(childId), JobState.KILLED);
    return `child ${childId} KILLED with its parent`;
  },
};

/**
 * What the region jobs target: the last CPU group's region (in examples/local.yaml not where
 * unconstrained CPU work goes, so landing there proves routing), else the first TPU group's,
 * with a single task on that group's variant.
 */
function regionTarget(ctx: SmokeContext): RegionTarget {
  const cpu = ctx.regionTargets.filter((t) => !t.tpuVariant);
  const target = cpu[cpu.length - 1] ?? ctx.regionTargets[0];
  check(target, "the config has no CPU or TPU scale group with a region");
  return target;
}

/** Resources that reach a target: nothing extra for CPU; one TPU task, not a gang, for TPU. */
function targetResources(t: RegionTarget): Partial<JobRequest> {
  return t.tpuVariant
    ? { accelerator: { kind: "tpu", variant: t.tpuVariant }, replicas: 1, groupBy: "" }
    : {};
}

/** The region attribute of the worker that ran a job's first task. */
async function workerRegion(ctx: SmokeContext, jobId: string): Promise<string> {
  const task = (await ctx.client.status(jobId)).tasks[0];
  check(task?.workerId, `${jobId} has no worker`);
  const worker = (await ctx.client.workers()).find((w) => w.workerId === task.workerId);
  check(worker, `worker ${task.workerId} of ${jobId} is gone`);
  return String(worker.attributes.region?.kind.value ?? "(none)");
}

const region: SmokeJob = {
  name: "region",
  description: "a job constrained to one region lands only on a worker of that region",
  async run(ctx) {
    const target = regionTarget(ctx);
    const want = target.region;
    const id = await ctx.submit("region", {
      ...small,
      ...targetResources(target),
      name: `smoke-region-${ctx.runId}`,
      command: ["sh", "-c", "echo Hello from $IRIS_WORKER_ID"],
      constraints: [{ key: "region", op: "eq", value: want }],
    });
    expectState(await ctx.wait(id), JobState.SUCCEEDED);
    const got = await workerRegion(ctx, id);
    check(got === want, `ran in region ${got}, expected ${want}`);
    const regions = [...new Set(ctx.regionTargets.map((t) => t.region))];
    return `ran in ${want} (regions: ${regions.join(", ")})`;
  },
};

const nestedConstraint: SmokeJob = {
  name: "nested-constraint",
  description:
    "a region-constrained parent submits a child without constraints; the child inherits the region and runs there",
  async run(ctx) {
    const target = regionTarget(ctx);
    const want = target.region;
    const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    // Not detached: the parent waits for the child and exits with its exit code.
    const submitChild = [
      ...ctx.irisArgv,
      "job",
      "run",
      "--name",
      "inherited-child",
      "--cpu",
      "0.2",
      "--memory",
      "64MiB",
      // The child asks for the same device as the parent (devices are not inherited).
      ...(target.tpuVariant ? ["--tpu", target.tpuVariant, "--replicas", "1"] : []),
      "--",
      "sh",
      "-c",
      "echo child constraints: $IRIS_JOB_CONSTRAINTS",
    ].map(quote).join(" ");
    const parent = await ctx.submit("nested-constraint", {
      cpu: 0.2,
      // The parent runs the iris CLI, a Deno process.
      memory: 512 * 2 ** 20,
      name: `smoke-nested-${ctx.runId}`,
      command: ["sh", "-c", submitChild],
      ...targetResources(target),
      constraints: [{ key: "region", op: "eq", value: want }],
      env: { DENO_DIR: denoDir() },
    });
    expectState(await ctx.wait(parent), JobState.SUCCEEDED);
    const childId = `${parent}/inherited-child`;
    const child = (await ctx.client.status(childId)).job;
    check(child, `no child job ${childId}`);
    expectState(child, JobState.SUCCEEDED);
    const inherited = (child.spec?.constraints ?? []).map((c) => `${c.key}=${c.value?.kind.value}`);
    check(
      inherited.length === 1 && inherited[0] === `region=${want}`,
      `child constraints ${JSON.stringify(inherited)}, expected only region=${want}`,
    );
    const got = await workerRegion(ctx, childId);
    check(got === want, `child ran in region ${got}, expected ${want}`);
    return `child ${childId} inherited region=${want} and ran there`;
  },
};

function denoDir(): string {
  return Deno.env.get("DENO_DIR") || `${Deno.env.get("HOME") ?? "/root"}/.cache/deno`;
}

const PYTHON_TRAIN_SCRIPT = `import os, smokepkg
from iris_client import IrisClient, iris_ctx

ctx = iris_ctx()
out = os.environ["IRIS_OUTPUT_DIR"]
os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
with open(os.path.join(out, "checkpoints", "step-10.txt"), "w") as f:
    f.write("step=10 value=%s\\n" % smokepkg.VALUE)
print("train: wrote checkpoint step-10 with", smokepkg.VALUE)
client = IrisClient()
child = client.submit(
    ["python", "-c", "import smokepkg; print('eval:', smokepkg.VALUE)"],
    name="eval",
    cpu=0.2,
    memory=512 * 1024 * 1024,
    environment={"requirementsFile": "requirements.txt", "pipArgs": ["--no-index", "--find-links=wheels"]},
)
state = client.wait(child, timeout=600)["state"]
print("train: eval", child, state)
raise SystemExit(0 if state == "SUCCEEDED" else 1)
`;

const pythonTrain: SmokeJob = {
  name: "python-train",
  description:
    "a Python workspace: requirements.txt names a local wheel; train.py imports it, writes a checkpoint to IRIS_OUTPUT_DIR and submits an eval child with the Python client; the checkpoint is downloaded",
  async run(ctx) {
    const dir = await Deno.makeTempDir({ prefix: "iris-smoke-python-" });
    try {
      await writeTinyWheel(`${dir}/wheels`, "smokepkg", "0.1", '"smoke-ok"');
      await Deno.writeTextFile(`${dir}/requirements.txt`, "smokepkg==0.1\n");
      await Deno.writeTextFile(`${dir}/train.py`, PYTHON_TRAIN_SCRIPT);
      const bundleId = await ctx.client.uploadWorkspace(dir);
      const id = await ctx.submit("python-train", {
        cpu: 0.2,
        memory: 512 * 2 ** 20,
        name: `smoke-python-train-${ctx.runId}`,
        command: ["python", "train.py"],
        bundleId,
        environment: {
          requirementsFile: "requirements.txt",
          pipArgs: ["--no-index", "--find-links=wheels"],
        },
      });
      expectState(await ctx.wait(id), JobState.SUCCEEDED);
      const lines = await stdout(ctx, id);
      check(
        lines.some((l) => /^train: eval \S+ SUCCEEDED$/.test(l)),
        `the eval child did not succeed (got ${JSON.stringify(lines)})`,
      );
      const ckpt = await ctx.client.call((rpc) =>
        rpc.readJobOutput({ jobId: id, path: "checkpoints/step-10.txt", offset: 0, length: 0 })
      );
      const text = new TextDecoder().decode(ckpt.data);
      check(text === "step=10 value=smoke-ok\n", `checkpoint holds ${JSON.stringify(text)}`);
      return `venv from a local wheel, eval child succeeded, checkpoint downloaded from ${ckpt.workerId}`;
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
};

/** Every smoke job in run order. */
export const SMOKE_JOBS: readonly SmokeJob[] = [
  hello,
  workspace,
  concurrent,
  tpuHello,
  coscheduled,
  retry,
  endpoints,
  cancel,
  childJob,
  region,
  nestedConstraint,
  pythonTrain,
];

/** True when the error means the job did not finish in time. */
export function isTimeout(err: unknown): boolean {
  return err instanceof WaitTimeoutError;
}
