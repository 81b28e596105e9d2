/**
 * ManualPlatform and ManualControllerLifecycle over a ScriptedRunner: pool exhaustion, a failed
 * bootstrap releasing every host, terminate returning hosts (golden ssh transcripts), aborts,
 * plus the Platform contract suite.
 * @module
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { PlatformError, QuotaExhaustedError } from "../../src/errors.ts";
import {
  ManualControllerLifecycle,
  type ManualHostSpec,
  ManualPlatform,
} from "../../src/platform/manual.ts";
import type { CreateSliceRequest } from "../../src/platform/platform.ts";
import { ScaleGroupConfigSchema } from "../../src/rpc/gen/iris/v1/config_pb.ts";
import { AcceleratorType } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";
import { assertGolden, ScriptedRunner } from "../fakes/scripted_runner.ts";
import { runPlatformContract } from "./platform_contract.ts";
import { parseConfig } from "../../src/config/mod.ts";
import { platformFromConfig, runtimeFromConfig } from "../../src/cluster/platforms.ts";

const HOSTS: ManualHostSpec[] = [
  { host: "host-a", user: "iris", keyFile: "/keys/iris" },
  { host: "host-b" },
  { host: "host-c", port: 2222 },
];
const SSH_DEFAULTS = { user: "ops", keyFile: "/keys/default" };

function manual(
  runner: ScriptedRunner,
  opts: { hosts?: ManualHostSpec[]; healthy?: (url: string) => boolean } = {},
): ManualPlatform {
  return new ManualPlatform({
    runner,
    hosts: opts.hosts ?? HOSTS,
    ssh: SSH_DEFAULTS,
    checkHealth: (url) => Promise.resolve(opts.healthy?.(url) ?? true),
    timeouts: { health: ms(150) },
  });
}

function request(sliceId: string, hosts: string[] = [], vmCount = 1): CreateSliceRequest {
  const config = create(ScaleGroupConfigSchema, {
    provider: { kind: { case: "manual", value: { hosts: hosts.map((host) => ({ host })) } } },
    attributes: { region: "lab" },
  });
  return {
    sliceId,
    scaleGroup: "cpu",
    config,
    vmCount,
    controllerUrl: "http://10.0.0.1:10000",
    labels: {},
  };
}

runPlatformContract({
  name: "manual",
  create: () =>
    Promise.resolve({
      platform: manual(new ScriptedRunner().on(["ssh"], {})),
      groupConfig: () => create(ScaleGroupConfigSchema, {}),
    }),
});

Deno.test("defaults.runtime.deno_path and a host's deno_path reach the bootstrap scripts", async () => {
  const config = parseConfig(
    `
controller: { bundle_prefix: "file:///shared/b", manual: { host: 10.0.0.1 } }
defaults: { runtime: { deno_path: /opt/deno/bin/deno } }
scale_groups:
  m:
    provider:
      manual: { hosts: [10.0.0.2, { host: 10.0.0.3, deno_path: /usr/local/bin/deno }] }
    vm_resources: { cpu: 1, memory: 1GiB }
`,
    "rt.yaml",
  );
  assert.deepEqual(runtimeFromConfig(config), {
    denoPath: "/opt/deno/bin/deno",
    denoFromNpm: undefined,
  });
  const runner = new ScriptedRunner().on(["ssh"], {});
  const platform = platformFromConfig(config, { runner });
  assert.ok(platform instanceof ManualPlatform);
  // One slice of both hosts: the first gets the shared Deno, the second its own. No worker
  // answers here, so the create fails after its (scripted) bootstraps.
  const m = config.scaleGroups.m!;
  await platform.createSlice({
    sliceId: "s-1",
    scaleGroup: "m",
    config: m,
    vmCount: 2,
    controllerUrl: "http://c:1",
    labels: {},
  }, { timeout: ms(300) }).catch(() => {});
  const scripts = runner.calls.map((c) => c.cmd.stdin ?? "").filter((s) =>
    s.includes("worker bootstrap")
  );
  assert.equal(scripts.length, 2);
  assert.match(scripts[0]!, /DENO=\('?\/opt\/deno\/bin\/deno'?\)/);
  assert.match(scripts[1]!, /DENO=\('?\/usr\/local\/bin\/deno'?\)/);
  for (const s of scripts) assert.doesNotMatch(s, /npx/);
});

Deno.test("createSlice() takes free hosts and fails with QuotaExhaustedError when the pool is empty", async () => {
  const runner = new ScriptedRunner().on(["ssh"], {});
  const p = manual(runner, { hosts: HOSTS.slice(0, 2) });
  const [one, two] = await Promise.all([
    p.createSlice(request("s-1")),
    p.createSlice(request("s-2")),
  ]);
  assert.notEqual(
    one.vms[0]!.address,
    two.vms[0]!.address,
    "concurrent creates never share a host",
  );
  assert.deepEqual(p.hostsInUse(), ["host-a", "host-b"]);
  await assert.rejects(p.createSlice(request("s-3")), (e) => {
    return e instanceof QuotaExhaustedError && /no free hosts \(2 of 2 in use\)/.test(e.message);
  });
  assert.equal(runner.calls.length, 2, "no ssh for the refused slice");
});

Deno.test("createSlice() bootstraps every host and reports the workers (golden)", async () => {
  const runner = new ScriptedRunner().on(["ssh"], {});
  const slice = await manual(runner).createSlice(request("s-1", [], 2));
  assert.equal(slice.state, "ready");
  assert.equal(slice.zone, "manual");
  assert.deepEqual(slice.vms.map((v) => [v.workerId, v.address, v.state]), [
    ["s-1-w0", "host-a", "ready"],
    ["s-1-w1", "host-b", "ready"],
  ]);
  assert.deepEqual(slice.vms[1]!.attributes, {
    region: "lab",
    zone: "manual",
    "manual-host": "host-b",
  });
  assert.match(runner.calls[1]!.cmd.stdin ?? "", /--worker-id s-1-w"\$IRIS_WORKER_INDEX"/);
  assert.match(runner.calls[1]!.cmd.stdin ?? "", /IRIS_WORKER_INDEX=1/);
  await assertGolden("manual_slice_create", runner.transcript());
});

Deno.test("createSlice() uses only the hosts its scale group lists", async () => {
  const p = manual(new ScriptedRunner().on(["ssh"], {}));
  assert.equal((await p.createSlice(request("s-1", ["host-c"]))).vms[0]!.address, "host-c");
  await assert.rejects(
    p.createSlice(request("s-2", ["host-c"])),
    /no free hosts \(1 of 1 in use\)/,
  );
});

Deno.test("a failed bootstrap tears down every host of the slice and releases them (golden)", async () => {
  const runner = new ScriptedRunner()
    .on(/@host-b /, { code: 1, stderr: "iris: deno is not installed and npx is missing\n" }, 1)
    .on(["ssh"], {});
  const p = manual(runner);
  await assert.rejects(p.createSlice(request("s-1", [], 2)), (e) => {
    return e instanceof PlatformError && !(e instanceof QuotaExhaustedError) &&
      /bootstrap failed: host-b: .*deno is not installed/.test(e.message);
  });
  assert.deepEqual(p.hostsInUse(), []);
  assert.deepEqual(await p.listSlices(), []);
  await assertGolden("manual_bootstrap_failure", runner.transcript());
});

Deno.test("a worker that never answers fails the slice and releases its hosts", async () => {
  const runner = new ScriptedRunner().on(["ssh"], {});
  const p = manual(runner, { healthy: (url) => !url.includes("host-a") });
  await assert.rejects(
    p.createSlice(request("s-1", [], 2)),
    /host-a: Cannot reach http:\/\/host-a:10001/,
  );
  assert.deepEqual(p.hostsInUse(), []);
  assert.equal(
    runner.calls.filter((c) => (c.cmd.stdin ?? "").includes("Stops the iris worker")).length,
    2,
  );
});

Deno.test("terminateSlice() runs the teardown script and returns the hosts (golden)", async () => {
  const runner = new ScriptedRunner().on(["ssh"], {});
  const p = manual(runner);
  await p.createSlice(request("s-1"));
  assert.deepEqual(p.hostsInUse(), ["host-a"]);
  await p.terminateSlice("s-1");
  assert.deepEqual(p.hostsInUse(), []);
  await p.terminateSlice("s-1");
  await assertGolden("manual_terminate", runner.transcript());
  assert.equal(
    (await p.createSlice(request("s-2"))).vms[0]!.address,
    "host-a",
    "the host is reusable",
  );
});

Deno.test("terminateSlice() during bootstrap aborts it and cleans up", async () => {
  const routed = new ScriptedRunner().respond(
    ["ssh"],
    (cmd) => (cmd.stdin ?? "").includes("worker bootstrap") ? { hang: true } : {},
  );
  const p = manual(routed);
  const creating = p.createSlice(request("s-1"));
  await waitFor(() => routed.calls.length === 1, {
    timeout: seconds(5),
    what: "the bootstrap to start",
  });
  await p.terminateSlice("s-1");
  await assert.rejects(creating, (e) => e instanceof PlatformError && /cancelled/.test(e.message));
  assert.deepEqual(p.hostsInUse(), []);
  assert.equal(routed.calls.length, 2, "bootstrap, then teardown");
});

Deno.test("shutdown() aborts slices being created", async () => {
  const runner = new ScriptedRunner().respond(
    ["ssh"],
    (cmd) => (cmd.stdin ?? "").includes("worker bootstrap") ? { hang: true } : {},
  );
  const p = manual(runner);
  const creating = p.createSlice(request("s-1"));
  await waitFor(() => runner.calls.length === 1, {
    timeout: seconds(5),
    what: "the bootstrap to start",
  });
  await p.shutdown();
  await assert.rejects(creating, PlatformError);
  assert.deepEqual(p.hostsInUse(), []);
});

Deno.test("startupLogs() and logTargets() read the worker log over ssh", async () => {
  const runner = new ScriptedRunner()
    .on(["ssh"], { stdout: "worker log line\n" });
  const p = manual(runner);
  await p.createSlice(request("s-1"));
  assert.equal(await p.startupLogs("s-1", "s-1-w0"), "worker log line\n");
  assert.match(
    runner.calls.at(-1)!.line,
    /tail -n 200 "\$\{IRIS_HOME:-\$\{HOME:-\/root\}\/.iris\}"\/worker.log/,
  );
  const [target] = await p.logTargets();
  assert.equal(target!.name, "s-1-w0");
  assert.match(target!.command.argv.at(-1)!, /tail -n \+1 -F/);
});

function controller(runner: ScriptedRunner, healthy: () => boolean) {
  return new ManualControllerLifecycle({
    runner,
    host: { host: "ctl-host" },
    ssh: SSH_DEFAULTS,
    clusterConfig: "name: lab\n",
    checkHealth: () => Promise.resolve(healthy()),
    healthTimeout: seconds(5),
  });
}

Deno.test("controller start() boots `iris controller serve` over ssh, then reuses it (golden)", async () => {
  let started = false;
  const runner = new ScriptedRunner().respond(["ssh"], () => {
    started = true;
    return { stdout: "iris controller started\n" };
  });
  const lifecycle = controller(runner, () => started);
  assert.equal(await lifecycle.start(), "http://ctl-host:10000");
  assert.match(
    runner.calls[0]!.cmd.stdin ?? "",
    /controller serve --port 10000 --host 0\.0\.0\.0 --advertise-url http:\/\/ctl-host:10000 --config "\$IRIS_HOME\/cluster.yaml"/,
  );
  assert.equal(await lifecycle.start(), "http://ctl-host:10000");
  assert.equal(await lifecycle.discover(), "http://ctl-host:10000");
  assert.deepEqual(await lifecycle.status(), {
    running: true,
    url: "http://ctl-host:10000",
    healthy: true,
    message: undefined,
  });
  await lifecycle.stop();
  await assertGolden("manual_controller", runner.transcript());
});

Deno.test("controller tunnel() forwards over raw ssh and close() kills it", async () => {
  const runner = new ScriptedRunner().on(["ssh"], { hang: true });
  const tunnel = await controller(runner, () => true).tunnel(18081);
  assert.ok(runner.calls[0]!.cmd.argv.includes("18081:localhost:10000"));
  assert.equal(runner.activeStreams, 1);
  await tunnel.close();
  assert.equal(runner.activeStreams, 0);
});

/** A worker token as `iris auth new-token` makes them, for the auth tests. */
const TOKEN = "iris-test-worker-token-6f1c0d9a2b7e4c5f8a3d";

/** Asserts `text` nowhere contains the token. */
function assertNoToken(text: string, what: string) {
  assert.ok(!text.includes(TOKEN), `${what} contains the worker token`);
}

Deno.test("with a worker token, bootstrap sends it on ssh stdin only, redacted in the transcript (golden)", async () => {
  const runner = new ScriptedRunner().on(["ssh"], {});
  const p = new ManualPlatform({
    runner,
    hosts: HOSTS,
    ssh: SSH_DEFAULTS,
    checkHealth: () => Promise.resolve(true),
    workerToken: TOKEN,
  });
  await p.createSlice(request("s-1", [], 2));
  await p.terminateSlice("s-1");
  const [boot] = runner.calls;
  assert.equal(boot!.cmd.secretStdin, `${TOKEN}\n`);
  assert.match(boot!.cmd.stdin!, /--worker-token-file "\$IRIS_HOME\/worker\.token"/);
  for (const call of runner.calls) {
    assertNoToken(call.cmd.argv.join(" "), "an argv");
    assertNoToken(call.cmd.stdin ?? "", "a script");
  }
  const transcript = runner.transcript();
  assertNoToken(transcript, "the transcript");
  assert.match(transcript, /< <secret: 44 bytes redacted> \+ stdin \(# Iris worker bootstrap/);
  await assertGolden("manual_slice_create_token", transcript);

  const ctlRunner = new ScriptedRunner().on(["ssh"], {});
  const lifecycle = new ManualControllerLifecycle({
    runner: ctlRunner,
    host: { host: "ctl-host" },
    ssh: SSH_DEFAULTS,
    clusterConfig: "name: lab\n",
    workerToken: TOKEN,
    checkHealth: (() => {
      let calls = 0;
      return () => Promise.resolve(calls++ > 0);
    })(),
  });
  await lifecycle.start();
  const [start] = ctlRunner.calls;
  assert.equal(start!.cmd.secretStdin, `${TOKEN}\n`);
  assert.match(start!.cmd.stdin!, /export IRIS_WORKER_TOKEN_FILE="\$IRIS_HOME\/worker\.token"/);
  assertNoToken(start!.cmd.argv.join(" ") + start!.cmd.stdin, "the controller bootstrap");
  assertNoToken(ctlRunner.transcript(), "the controller transcript");
});

Deno.test("without a worker token, nothing secret is sent", async () => {
  const runner = new ScriptedRunner().on(["ssh"], {});
  await manual(runner).createSlice(request("s-1"));
  assert.equal(runner.calls[0]!.cmd.secretStdin, undefined);
  assert.doesNotMatch(runner.calls[0]!.cmd.stdin!, /worker-token-file|worker\.token/);
});

Deno.test("workers advertise the group's region and zone, so region constraints reach them", async () => {
  const runner = new ScriptedRunner().on(["ssh"], {});
  const base = request("s-1");
  const config = create(ScaleGroupConfigSchema, {
    ...base.config,
    attributes: { rack: "r1" },
    region: "lab",
    zone: "lab-rack-1",
  });
  const slice = await manual(runner).createSlice({ ...base, config });
  assert.deepEqual(slice.vms[0]!.attributes, {
    region: "lab",
    rack: "r1",
    zone: "lab-rack-1",
    "manual-host": "host-a",
  });
  const script = runner.calls[0]!.cmd.stdin!;
  for (const a of ["region=lab", "zone=lab-rack-1", "rack=r1", "manual-host=host-a"]) {
    assert.ok(script.includes(`--attribute ${a}`), a);
  }
});

Deno.test("manual hosts declare their group's accelerator; CPU groups declare none", async () => {
  const runner = new ScriptedRunner().on(["ssh"], {});
  const base = request("s-1");
  const gpu = create(ScaleGroupConfigSchema, {
    provider: base.config.provider,
    acceleratorType: AcceleratorType.GPU,
    acceleratorVariant: "h100",
    vmResources: { accelerator: { count: 8 } },
  });
  await manual(runner).createSlice({ ...base, config: gpu });
  const script = runner.calls[0]!.cmd.stdin!;
  assert.ok(
    script.includes("--accelerator-type gpu --accelerator-variant h100 --accelerator-count 8"),
    script,
  );
  assert.ok(!script.includes("--accelerator-check"), "only GCP VMs check against metadata");

  const tpuRunner = new ScriptedRunner().on(["ssh"], {});
  const tpu = create(ScaleGroupConfigSchema, {
    provider: base.config.provider,
    acceleratorType: AcceleratorType.TPU,
    acceleratorVariant: "v5litepod-4",
  });
  await manual(tpuRunner).createSlice({ ...base, config: tpu });
  assert.match(
    tpuRunner.calls[0]!.cmd.stdin!,
    /--accelerator-type tpu --accelerator-variant v5litepod-4 --accelerator-count 4 /,
  );

  const cpuRunner = new ScriptedRunner().on(["ssh"], {});
  await manual(cpuRunner).createSlice(base);
  assert.doesNotMatch(cpuRunner.calls[0]!.cmd.stdin!, /--accelerator/);
});
