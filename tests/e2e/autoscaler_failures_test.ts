/**
 * The autoscaler on a local cluster whose platform fails the way clouds fail (#24): a slice whose
 * workers never boot (init timeout), a create call that never returns (boot timeout), a quota
 * error in one zone of a multi-zone group (quota_exceeded, demand moves to the other zone), the
 * scale-up token bucket, and buffer_slices warm spares. Shown in `iris cluster status`.
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { IrisClient, JobState } from "../../mod.ts";
import { parseConfig } from "../../src/config/mod.ts";
import { type RunningCluster, startCluster } from "../../src/cluster/cluster.ts";
import { LocalPlatform } from "../../src/platform/local.ts";
import type { CreateSliceRequest, Platform, SliceInfo } from "../../src/platform/platform.ts";
import { QuotaExhaustedError } from "../../src/errors.ts";
import { seconds, timestamp, waitFor } from "../../src/time.ts";
import { runIris } from "../_helpers/iris_process.ts";

type Failure = "never_boots" | "hangs" | "quota";

/** The local platform, failing createSlice per scale group as scripted in `failures`. */
function flakyPlatform(inner: LocalPlatform, failures: Map<string, Failure>) {
  const creates: string[] = [];
  const platform: Platform = {
    kind: "local",
    createSlice: (req: CreateSliceRequest, opts): Promise<SliceInfo> => {
      creates.push(req.scaleGroup);
      const failure = failures.get(req.scaleGroup);
      if (failure === "quota") {
        return Promise.reject(
          new QuotaExhaustedError(`Quota 'TPUS_PER_PROJECT' exceeded in ${req.config.zone}`),
        );
      }
      if (failure === "hangs") {
        // A create that never finishes: only the caller's abort ends it.
        return new Promise((_, reject) => {
          opts?.signal?.addEventListener("abort", () => reject(opts.signal!.reason), {
            once: true,
          });
        });
      }
      if (failure === "never_boots") {
        // Created, but its VM never runs a worker (a bad image, a broken startup script).
        return Promise.resolve({
          sliceId: req.sliceId,
          scaleGroup: req.scaleGroup,
          zone: req.config.zone || "local",
          state: "bootstrapping",
          labels: req.labels,
          createdAt: timestamp(Date.now()),
          vms: [{
            vmId: `${req.sliceId}-vm0`,
            workerId: `${req.sliceId}-w0`,
            address: "",
            state: "booting",
            attributes: {},
          }],
        });
      }
      return inner.createSlice(req, opts);
    },
    listSlices: (opts) => inner.listSlices(opts),
    describeSlice: (id) => inner.describeSlice(id),
    terminateSlice: (id, opts) => inner.terminateSlice(id, opts),
    startupLogs: () => inner.startupLogs(),
    shutdown: () => inner.shutdown(),
    [Symbol.asyncDispose]: () => inner.shutdown(),
  };
  return { platform, creates };
}

const CONFIG = `
controller: {local: {}}
defaults:
  autoscaler:
    evaluation_interval: 200ms
    scale_up_cooldown: 0s
    backoff_initial: 1s
    backoff_max: 2s
    quota_backoff: 1m
scale_groups:
  stuck:
    provider: {local: {}}
    max_slices: 1
    priority: 1
    init_timeout: 1s
    attributes: {pool: stuck}
    vm_resources: {cpu: 1, memory: 1GiB}
  slow:
    provider: {local: {}}
    max_slices: 1
    priority: 1
    boot_timeout: 1s
    attributes: {pool: slow}
    vm_resources: {cpu: 1, memory: 1GiB}
  cpu:
    provider: {local: {}}
    max_slices: 1
    zones: [zone-a, zone-b]
    attributes: {pool: cpu}
    vm_resources: {cpu: 1, memory: 1GiB}
  spare:
    provider: {local: {}}
    max_slices: 3
    buffer_slices: 1
    scale_up_rate: 1
    attributes: {pool: spare}
    vm_resources: {cpu: 1, memory: 1GiB}
`;

Deno.test("autoscaler: init and boot timeouts, quota_exceeded across zones, rate limit, buffer", async () => {
  const workDir = await Deno.makeTempDir({ prefix: "iris-autoscaler-fail-" });
  const inner = new LocalPlatform({ rootDir: `${workDir}/vms`, heartbeatInterval: seconds(1) });
  const failures = new Map<string, Failure>([
    ["stuck", "never_boots"],
    ["slow", "hangs"],
    ["cpu-zone-a", "quota"],
  ]);
  const { platform, creates } = flakyPlatform(inner, failures);
  const config = parseConfig(CONFIG, "failures.yaml");
  let cluster: RunningCluster | undefined;
  try {
    cluster = await startCluster(config, { workDir, platform, log: () => {}, vmLog: () => {} });
    const client = new IrisClient(cluster.url, { retryFor: seconds(30) });
    const group = async (name: string) =>
      (await client.autoscalerStatus()).groups.find((g) => g.name === name)!;
    const actions = async (action: string, name: string) =>
      (await client.autoscalerStatus()).recentActions.filter((a) =>
        a.action === action && a.scaleGroup === name
      );

    // buffer_slices: a warm spare comes up with no demand at all.
    await waitFor(async () => (await group("spare")).slices.some((s) => s.state === "ready"), {
      timeout: seconds(60),
      what: "the spare group's buffer slice to be ready",
    });

    const submit = (pool: string, replicas = 1, command = ["true"]) =>
      client.submit({
        name: `on-${pool}`,
        command,
        cpu: 1,
        replicas,
        constraints: [{ key: "pool", op: "eq", value: pool }],
      });

    // A slice whose workers never register: terminated at init_timeout, the group backs off.
    await submit("stuck");
    const [init] = await waitFor(async () => {
      const a = await actions("init_timeout", "stuck");
      return a.length ? a : undefined;
    }, { timeout: seconds(30), what: "an init_timeout action for the stuck group" });
    assertMatch(init!.reason, /init_timeout: its workers did not all register within 1(\.0)?s/);
    const stuck = await waitFor(async () => {
      const g = await group("stuck");
      return g.backoffReason.startsWith("init_timeout") ? g : undefined;
    }, { timeout: seconds(10), what: "the stuck group's backoff reason" });
    assert(stuck.consecutiveFailures >= 1);

    // A create call that never returns: aborted at boot_timeout, the group backs off.
    await submit("slow");
    const [boot] = await waitFor(async () => {
      const a = await actions("boot_timeout", "slow");
      return a.length ? a : undefined;
    }, { timeout: seconds(30), what: "a boot_timeout action for the slow group" });
    assertMatch(
      boot!.reason,
      /boot_timeout: the platform did not create the slice within 1(\.0)?s/,
    );
    await waitFor(async () => (await group("slow")).slices.length === 0, {
      timeout: seconds(10),
      what: "the slow group's hung slice to be gone",
    });

    // Quota error in zone-a: that group is quota_exceeded; the job runs in zone-b.
    const job = await submit("cpu");
    assertEquals((await client.wait(job, { timeout: seconds(60) })).state, JobState.SUCCEEDED);
    const zoneA = await group("cpu-zone-a");
    assertEquals(zoneA.availability, "quota_exceeded");
    assertMatch(zoneA.quotaReason, /Quota 'TPUS_PER_PROJECT' exceeded in zone-a/);
    assertEquals(zoneA.consecutiveFailures, 0, "a quota error is not a generic failure");
    const [task] = await client.tasks(job);
    const worker = (await client.workers()).find((w) => w.workerId === task!.workerId)!;
    assertEquals(worker.scaleGroup, "cpu-zone-b");
    assertEquals((await actions("quota_exceeded", "cpu-zone-a")).length, 1);
    assertEquals(
      creates.filter((g) => g === "cpu-zone-a").length,
      1,
      "no retry within the quota backoff",
    );

    // Token bucket: 3 slices of demand beyond the spare, scale_up_rate 1/min: only the spare's
    // replacement is allowed this minute (the bucket's one token went to the spare).
    const busy = await submit("spare", 3, ["sleep", "60"]);
    const evaluated = (await client.autoscalerStatus()).lastEvaluationMs;
    await waitFor(
      async () => (await client.autoscalerStatus()).lastEvaluationMs >= evaluated + 1000,
      { timeout: seconds(20), what: "five more evaluations" },
    );
    assertEquals(creates.filter((g) => g === "spare").length, 1, "rate limited to 1 per minute");
    assertEquals((await group("spare")).demandSlices, 2, "the demand is seen, only not served yet");
    await client.cancel(busy);

    // `iris cluster status` names the blocked groups and why.
    const status = await runIris(["cluster", "status", "--controller", cluster.url]);
    assertEquals(status.code, 0, status.stderr);
    assertMatch(status.stdout, /cpu-zone-a +cpu +- +0\.\.1 +\d+ +quota_exceeded/);
    assertMatch(
      status.stdout,
      /Blocked groups:\n(.*\n)* {2}cpu-zone-a: quota_exceeded for [\d.]+s: Quota/,
    );
  } finally {
    await cluster?.stop();
    await inner.shutdown();
    await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }
});
