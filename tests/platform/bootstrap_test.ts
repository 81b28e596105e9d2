/**
 * Bootstrap scripts: golden files for the generated text, and a real run with bash and a fake
 * `iris` launcher (start, pid file, log, re-run replaces the daemon, teardown leaves nothing),
 * and how a host gets its Deno on a bare host (PATH=/usr/bin:/bin, empty HOME): a missing Deno
 * fails at once naming the fix, deno_path is used or refused, deno_from_npm is bounded offline.
 * @module
 */
import assert from "node:assert/strict";
import {
  controllerBootstrapScript,
  type IrisRuntime,
  NO_DENO_MESSAGE,
  teardownScript,
  workerBootstrapScript,
} from "../../src/platform/bootstrap.ts";
import { DenoCommandRunner } from "../../src/command/command.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { assertGolden } from "../fakes/scripted_runner.ts";
import { isAlive } from "./_proc.ts";

Deno.test("workerBootstrapScript() for a manual host (golden)", async () => {
  const script = workerBootstrapScript({
    controllerUrl: "http://10.0.0.1:10000",
    sliceId: "iris-cpu-1",
    scaleGroup: "cpu",
    workerIndex: 0,
    attributes: { "manual-host": "10.0.0.5", region: "eu", zone: "manual" },
    port: 10001,
  });
  await assertGolden("bootstrap_worker_manual", script);
});

Deno.test("workerBootstrapScript() for a GCP TPU startup script (golden)", async () => {
  const script = workerBootstrapScript({
    controllerUrl: "http://10.128.0.7:10000",
    sliceId: "iris-tpu_v4_16-1",
    scaleGroup: "tpu_v4_16",
    workerIndex: "tpu-metadata",
    attributes: { "tpu-name": "iris-tpu-v4-16-1", "tpu-topology": "v4-16", zone: "us-central2-b" },
    workerIndexAttribute: "tpu-worker-id",
    // As gcp.ts passes them: the group's TPU, checked against the VM's metadata at start.
    accelerator: { kind: "tpu", variant: "v4-16", count: 4 },
    acceleratorCheck: "gce-metadata",
    runtime: {
      home: "/var/lib/iris",
      fetchCode: "gsutil cat gs://b/iris.tar.gz | tar xz -C /var/lib/iris",
    },
  });
  await assertGolden("bootstrap_worker_gcp", script);
});

Deno.test("controllerBootstrapScript() writes the config and starts the controller (golden)", async () => {
  const script = controllerBootstrapScript({
    port: 10000,
    config: "name: demo\nplatform: { gcp: { project_id: p } }\n",
    runtime: { launcher: "/opt/iris/bin/iris", env: { IRIS_LOG_LEVEL: "info" } },
  });
  await assertGolden("bootstrap_controller", script);
});

Deno.test("teardownScript() stops the daemon of the pid file (golden)", async () => {
  await assertGolden("bootstrap_teardown_worker", teardownScript("worker"));
});

Deno.test("bootstrap and teardown really start and stop a daemon", async () => {
  const home = await Deno.makeTempDir({ prefix: "iris_bootstrap_" });
  const launcher = `${home}/fake-iris`;
  // A fake `iris`: records its arguments, then runs until killed.
  await Deno.writeTextFile(launcher, `#!/bin/sh\necho "args: $*"\nsleep 300\n`);
  await Deno.chmod(launcher, 0o755);
  const runtime = { home, launcher };
  const runner = new DenoCommandRunner();
  const bash = (script: string) =>
    runner.run({ argv: ["bash", "-c", script] }, { timeout: seconds(30) });
  const script = workerBootstrapScript({
    controllerUrl: "http://127.0.0.1:1",
    sliceId: "s-1",
    scaleGroup: "g",
    workerIndex: 2,
    attributes: { "has space": "a b" },
    runtime,
  });
  try {
    const first = await bash(script);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /iris worker started: pid \d+/);
    const pid1 = Number(await Deno.readTextFile(`${home}/worker.pid`));
    assert.ok(isAlive(pid1));
    await waitFor(async () => (await Deno.readTextFile(`${home}/worker.log`)).includes("args:"), {
      timeout: seconds(5),
      what: "the launcher to log",
    });
    assert.match(
      await Deno.readTextFile(`${home}/worker.log`),
      /args: worker serve --controller http:\/\/127.0.0.1:1 --worker-id s-1-w2 --slice-id s-1 --scale-group g --attribute has space=a b/,
    );

    const second = await bash(script);
    assert.equal(second.code, 0, second.stderr);
    const pid2 = Number(await Deno.readTextFile(`${home}/worker.pid`));
    assert.notEqual(pid2, pid1);
    assert.ok(!isAlive(pid1), "re-running the bootstrap replaced the old daemon");

    const down = await bash(teardownScript("worker", runtime));
    assert.equal(down.code, 0, down.stderr);
    assert.equal(down.stdout, "iris worker stopped\n");
    await waitFor(() => !isAlive(pid2), { timeout: seconds(5), what: "the daemon to exit" });
    await assert.rejects(Deno.stat(`${home}/worker.pid`), Deno.errors.NotFound);
    assert.equal((await bash(teardownScript("worker", runtime))).code, 0, "teardown is idempotent");
  } finally {
    await bash(teardownScript("worker", runtime));
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("bootstrap fails and shows the log when the daemon dies at once", async () => {
  const home = await Deno.makeTempDir({ prefix: "iris_bootstrap_" });
  try {
    const launcher = `${home}/broken-iris`;
    await Deno.writeTextFile(launcher, `#!/bin/sh\necho "bad flag" >&2\nexit 2\n`);
    await Deno.chmod(launcher, 0o755);
    const script = workerBootstrapScript({
      controllerUrl: "http://x",
      sliceId: "s",
      scaleGroup: "g",
      workerIndex: 0,
      runtime: { home, launcher },
    });
    const r = await new DenoCommandRunner().run({ argv: ["bash", "-c", script] }, {
      timeout: seconds(30),
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /iris worker exited at once[\s\S]*bad flag/);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("with auth on, the worker and controller scripts read $IRIS_HOME/worker.token (golden)", async () => {
  const worker = workerBootstrapScript({
    controllerUrl: "http://10.0.0.1:10000",
    sliceId: "iris-cpu-1",
    scaleGroup: "cpu",
    workerIndex: 0,
    advertiseAddress: "10.0.0.5",
    workerTokenFile: true,
  });
  await assertGolden("bootstrap_worker_manual_token", worker);
  const ctl = controllerBootstrapScript({
    port: 10000,
    config: "name: x\n",
    workerTokenFile: true,
  });
  assert.match(ctl, /export IRIS_WORKER_TOKEN_FILE="\$IRIS_HOME\/worker\.token"/);
  assert.match(ctl, /\[ ! -s "\$IRIS_HOME\/worker\.token" \]/);
});

Deno.test("a daemon script with auth on refuses to start without the token file", async () => {
  const home = await Deno.makeTempDir({ prefix: "iris_bootstrap_" });
  try {
    const script = workerBootstrapScript({
      controllerUrl: "http://127.0.0.1:1",
      sliceId: "s",
      scaleGroup: "g",
      workerIndex: 0,
      workerTokenFile: true,
      runtime: { home, launcher: "/bin/false" },
    });
    const r = await new DenoCommandRunner().run({ argv: ["bash", "-c", script] }, {
      timeout: seconds(10),
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /worker\.token is missing or empty: with auth\.mode token/);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

/**
 * Runs `script` with bash as a fresh host would: PATH=/usr/bin:/bin (no deno there), an empty
 * HOME (no ~/.deno, ~/.npm or ~/.cache/deno) and nothing else inherited. `prefix` runs it
 * inside something (e.g. `ip netns exec NS`). The runner's hard timeout fails a hang.
 */
async function runOnBareHost(script: string, home: string, prefix: readonly string[] = []) {
  const userHome = `${home}/user-home`;
  await Deno.mkdir(userHome, { recursive: true });
  return await new DenoCommandRunner().run({
    argv: [...prefix, "env", "-i", "PATH=/usr/bin:/bin", `HOME=${userHome}`, "bash", "-c", script],
  }, { timeout: seconds(30) });
}

function bareWorkerScript(home: string, runtime: IrisRuntime = {}): string {
  return workerBootstrapScript({
    controllerUrl: "http://127.0.0.1:1",
    sliceId: "s",
    scaleGroup: "g",
    workerIndex: 0,
    runtime: { home, ...runtime },
  });
}

Deno.test("a host without Deno: the bootstrap fails at once naming the fix (PATH stripped, empty caches)", async () => {
  const home = await Deno.makeTempDir({ prefix: "iris_bootstrap_" });
  try {
    const r = await runOnBareHost(bareWorkerScript(home), home);
    assert.ok(!r.timedOut, "the bootstrap hung");
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr.trim(), `iris: ${NO_DENO_MESSAGE}`);
    assert.match(r.stderr, /defaults\.runtime\.deno_path/);
    await assert.rejects(Deno.stat(`${home}/worker.pid`), Deno.errors.NotFound);
    // Nothing reached for a network: no npm cache appeared.
    await assert.rejects(Deno.stat(`${home}/user-home/.npm`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("deno_path that is not executable on the host fails at once naming it", async () => {
  const home = await Deno.makeTempDir({ prefix: "iris_bootstrap_" });
  try {
    const r = await runOnBareHost(bareWorkerScript(home, { denoPath: `${home}/no/deno` }), home);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`deno_path ${home}/no/deno is not an executable file`));
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("deno_path: the daemon runs `<deno_path> run -A <entry> worker serve …` on a bare host", async () => {
  const home = await Deno.makeTempDir({ prefix: "iris_bootstrap_" });
  const fakeDeno = `${home}/bin/deno`;
  await Deno.mkdir(`${home}/bin`);
  // No exec: the daemon must keep a "worker serve" command line, or teardown leaves it running.
  await Deno.writeTextFile(fakeDeno, `#!/bin/sh\necho "args: $*"\nsleep 300\n`);
  await Deno.chmod(fakeDeno, 0o755);
  const runtime = { home, denoPath: fakeDeno, entry: "/opt/iris/cli.ts" };
  try {
    const r = await runOnBareHost(bareWorkerScript(home, runtime), home);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(async () => (await Deno.readTextFile(`${home}/worker.log`)).includes("args:"), {
      timeout: seconds(5),
      what: "the fake deno to log",
    });
    assert.match(
      await Deno.readTextFile(`${home}/worker.log`),
      /args: run -A \/opt\/iris\/cli\.ts worker serve --controller http:\/\/127\.0\.0\.1:1 /,
    );
  } finally {
    await runOnBareHost(teardownScript("worker", runtime), home);
    await Deno.remove(home, { recursive: true });
  }
});

/** A network namespace with no network (only a down loopback), or why none can be made. */
async function isolatedNetns(): Promise<{ name: string } | { skip: string }> {
  if (Deno.build.os !== "linux" || Deno.uid() !== 0) return { skip: "needs root on Linux" };
  const name = `iris-nonet-${crypto.randomUUID().slice(0, 6)}`;
  const r = await new DenoCommandRunner().run({ argv: ["ip", "netns", "add", name] }, {
    timeout: seconds(10),
  });
  return r.code === 0 ? { name } : { skip: `cannot make a network namespace: ${r.stderr.trim()}` };
}

Deno.test("deno_from_npm on a host that reaches no registry fails with its message, bounded", async (t) => {
  const ns = await isolatedNetns();
  if ("skip" in ns) {
    console.log(`skipped: ${ns.skip}`);
    return;
  }
  const home = await Deno.makeTempDir({ prefix: "iris_bootstrap_" });
  try {
    const hasNpx = (await new DenoCommandRunner().run({
      argv: ["env", "PATH=/usr/bin:/bin", "sh", "-c", "command -v npx"],
    }, { timeout: seconds(5) })).code === 0;
    await t.step(`npx ${hasNpx ? "in /usr/bin" : "missing"}`, async () => {
      const script = bareWorkerScript(home, { denoFromNpm: true });
      const r = await runOnBareHost(script, home, ["ip", "netns", "exec", ns.name]);
      assert.ok(!r.timedOut, "the bootstrap hung");
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /deno_from_npm: could not get deno@2\.9\.6 with npx within 120s/);
      assert.match(r.stderr, /set defaults\.runtime\.deno_path/);
    });
  } finally {
    await new DenoCommandRunner().run({ argv: ["ip", "netns", "del", ns.name] }, {
      timeout: seconds(10),
    });
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("workerBootstrapScript() for gcp with auth carries a one-time enrolment token, not the worker token (golden)", async () => {
  const script = workerBootstrapScript({
    controllerUrl: "http://10.128.0.7:10000",
    sliceId: "iris-tpu_v4_16-1",
    scaleGroup: "tpu_v4_16",
    workerIndex: "tpu-metadata",
    attributes: { "tpu-name": "iris-tpu-v4-16-1", "tpu-topology": "v4-16", zone: "us-central2-b" },
    workerIndexAttribute: "tpu-worker-id",
    accelerator: { kind: "tpu", variant: "v4-16", count: 4 },
    acceleratorCheck: "gce-metadata",
    runtime: { home: "/var/lib/iris" },
    enrolmentToken: "iris-enrol-v1.GOLDEN-ENROLMENT-TOKEN",
  });
  await assertGolden("bootstrap_worker_gcp_enrol", script);
  // Written 0600 only while no worker token exists; the worker token is never in the script.
  assert.match(script, /if \[ ! -s "\$IRIS_HOME\/worker.token" \]; then \(umask 077; printf/);
  assert.match(script, /--enrol-token-file "\$IRIS_HOME\/enrol.token"/);
  assert.doesNotMatch(script, /worker\.token is missing or empty/);
});
