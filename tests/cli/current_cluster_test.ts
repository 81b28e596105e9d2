/**
 * A local cluster through the real CLI: `cluster start` prints the export line and records its
 * URL in $IRIS_HOME/current-cluster, which `job run` uses with no URL given (the env var still
 * wins); an idle worker's removal is logged as a scale-down, not a death; `cluster stop` removes
 * the file. Also the pending line's wording while a scale group boots a slice.
 */
import { create } from "@bufbuild/protobuf";
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { runIris, spawnIris } from "../_helpers/iris_process.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { scalingNote, withScalingNote } from "../../src/controller/scaling_note.ts";
import {
  AcceleratorType,
  GetAutoscalerStatusResponseSchema,
  JobStatusSchema,
  PendingReasonSchema,
} from "../../src/rpc/mod.ts";

const CONFIG = (name: string) => `
name: ${name}
controller:
  local:
    port: 0
  heartbeat_interval: 500ms
  heartbeat_failure_threshold: 30 # no liveness test here: load must not fake a death
defaults:
  autoscaler:
    evaluation_interval: 200ms
    scale_up_cooldown: 200ms
    scale_down_delay: 1s
scale_groups:
  cpu:
    provider:
      local: {}
    accelerator_type: cpu
    min_slices: 0
    max_slices: 1
`;

Deno.test("cluster start records the current cluster; job run uses it; stop removes it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-current-" });
  const name = `cur-${crypto.randomUUID().slice(0, 8)}`;
  const config = `${dir}/cluster.yaml`;
  await Deno.writeTextFile(config, CONFIG(name));
  const home = `${dir}/home`;
  const env = { IRIS_HOME: home, TMPDIR: dir, IRIS_CONTROLLER_URL: "", USER: "cur" };
  try {
    await using start = spawnIris(["cluster", "start", "--config", config], { env });
    const url =
      (await start.waitForLine(/^export IRIS_CONTROLLER_URL=(http:\/\/\S+)$/, seconds(60)))[1]!;
    assertEquals((await Deno.readTextFile(`${home}/current-cluster`)).trim(), url);

    const job = await runIris(["job", "run", "--cpu", "0.1", "--", "echo", "via-current"], {
      env,
      timeout: seconds(90),
    });
    assertEquals(job.code, 0, job.stderr);
    assertEquals(job.stdout, "via-current\n");
    const pending = job.stderr.split("\n").filter((l) => l.startsWith("[iris] pending"));
    for (const l of pending) {
      // While the cpu slice comes up the line names the group, not "no healthy workers".
      if (/no healthy workers/.test(l)) continue;
      assertMatch(
        l,
        /waiting for scale group cpu: 1 slice (booting|requested) \(\d+ s\)|pending: /,
      );
    }

    const wrong = await runIris(["job", "list"], {
      env: { ...env, IRIS_CONTROLLER_URL: "http://127.0.0.1:9" },
      timeout: seconds(30),
    });
    assertEquals(wrong.code, 1, "the env var wins over the file");
    assertMatch(wrong.stderr, /127\.0\.0\.1:9/);

    const logFile = `${home}/clusters/${name}-logs/controller.log`;
    const log = await waitFor(async () => {
      const text = await Deno.readTextFile(logFile).catch(() => "");
      return /removed: scale-down of group cpu \(idle for/.test(text) ? text : undefined;
    }, { timeout: seconds(30), what: "the idle worker to be scaled down" });
    assert(!/declared dead/.test(log), log);

    const stop = await runIris(["cluster", "stop", "--config", config], { env });
    assertEquals(stop.code, 0, stop.stdout + stop.stderr);
    assertEquals((await start.status).code, 0);
    assert(!(await Deno.stat(`${home}/current-cluster`).then(() => true, () => false)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the pending line names the scale group and its booting slices", () => {
  const now = 100_000;
  const autoscaler = create(GetAutoscalerStatusResponseSchema, {
    groups: [
      {
        name: "tpu",
        acceleratorType: AcceleratorType.TPU,
        acceleratorVariant: "v5litepod-16",
        slices: [{ sliceId: "t1", state: "booting", createdAtMs: now - 30_000 }],
      },
      {
        name: "cpu",
        acceleratorType: AcceleratorType.CPU,
        slices: [
          { sliceId: "c1", state: "booting", createdAtMs: now - 12_000 },
          { sliceId: "c2", state: "ready", createdAtMs: now - 60_000 },
        ],
      },
    ],
  });
  const cpuJob = create(JobStatusSchema, { spec: { resources: { cpuMillicores: 1000 } } });
  assertEquals(
    scalingNote(cpuJob.spec, autoscaler, now),
    "waiting for scale group cpu: 1 slice booting (12 s)",
  );
  const tpuJob = create(JobStatusSchema, {
    spec: {
      resources: { accelerator: { type: AcceleratorType.TPU, variant: "v5litepod-16" } },
    },
  });
  assertEquals(
    scalingNote(tpuJob.spec, autoscaler, now),
    "waiting for scale group tpu: 1 slice booting (30 s)",
  );
  const gpuJob = create(JobStatusSchema, {
    spec: { resources: { accelerator: { type: AcceleratorType.GPU } } },
  });
  assertEquals(scalingNote(gpuJob.spec, autoscaler, now), undefined);
  // The controller's status RPCs put it in place of a capacity reason, and only of one.
  const enabled = create(GetAutoscalerStatusResponseSchema, { ...autoscaler, enabled: true });
  const noWorkers = create(PendingReasonSchema, {
    code: "no_workers",
    message: "no healthy workers",
  });
  assertEquals(
    withScalingNote(noWorkers, cpuJob.spec, () => enabled, now),
    create(PendingReasonSchema, {
      code: "scaling_up",
      message: "waiting for scale group cpu: 1 slice booting (12 s)",
    }),
  );
  const timeout = create(PendingReasonSchema, { code: "scheduling_timeout", message: "x" });
  assertEquals(withScalingNote(timeout, cpuJob.spec, () => enabled, now), timeout);
  assertEquals(withScalingNote(noWorkers, gpuJob.spec, () => enabled, now), noWorkers);
});
