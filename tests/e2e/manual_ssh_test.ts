/**
 * The manual platform against real ssh servers (tests/e2e/_ns_lab.ts: network namespaces on a
 * bridge, one `sshd` each, throwaway keys):
 * - ManualPlatform bootstraps real `iris worker serve` daemons on two hosts over ssh for a
 *   controller bound to the bridge address, and a 2-replica job runs one task on each;
 * - `iris smoke --config examples/manual.yaml` (its addresses, users and keys pointed at a
 *   three-host lab) starts the controller on one host over ssh, whose autoscaler bootstraps
 *   workers on the others, and passes the CPU smoke jobs, endpoint and child jobs across hosts;
 * - with `auth.mode: token` the worker token reaches every host over ssh stdin only: a job with
 *   a user token runs on two hosts, calls without one are refused, no file or `ps` line holds it;
 * - `known_hosts_file` refuses a host whose key is not the one in the file.
 * - a host without Deno (no deno_path, none on its PATH, no registry) fails its bootstrap at
 *   once with the line naming defaults.runtime.deno_path. The other tests give the hosts this
 *   test's Deno through defaults.runtime.deno_path, as a fresh machine's hosts need.
 * Then everything is torn down: no sshd, worker, controller, namespace, bridge or veth is left.
 * Needs root, `ip` and /usr/sbin/sshd (scripts/install_openssh.sh); skips with the reason when
 * the machine cannot make namespaces or has no sshd.
 * @module
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { parseConfig } from "../../src/config/mod.ts";
import { startCluster } from "../../src/cluster/cluster.ts";
import { manualHostsFromConfig, workerHealthy } from "../../src/cluster/platforms.ts";
import { DenoCommandRunner } from "../../src/platform/command.ts";
import { ManualPlatform } from "../../src/platform/manual.ts";
import { IrisClient } from "../../src/client/client.ts";
import { hashToken, newToken } from "../../src/auth/tokens.ts";
import { Code, ConnectError } from "@connectrpc/connect";
import { JobState } from "../../src/rpc/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { type Lab, type LabHost, labSkipReason, makeLab, must, REPO } from "./_ns_lab.ts";
import { pumpLines } from "../_helpers/iris_process.ts";

const SKIP = await labSkipReason();
if (SKIP) console.log(`manual_ssh_test: skipped: ${SKIP}`);

/** Nothing of the lab was left: no process to kill, no namespace, no link. */
async function assertLabGone(lab: Lab, leftovers: string[]): Promise<void> {
  assertEquals(leftovers, [], "processes the test left running");
  const netns = await must("ip", "netns", "list");
  assert(!netns.includes(`iris-${lab.id}`), netns);
  const links = await must("ip", "-o", "link", "show");
  assert(!links.includes(lab.bridge) && !links.includes(`iv${lab.id}`), links);
}

async function daemonLogs(lab: Lab): Promise<string> {
  const logs = await Promise.all(
    lab.hosts.flatMap((h) =>
      ["controller", "worker"].map(async (d) =>
        `--- ${h.name} ${d}.log\n${await Deno.readTextFile(`${h.home}/${d}.log`).catch(() => "")}`
      )
    ),
  );
  return logs.join("\n");
}

Deno.test({
  name: "manual platform: real workers bootstrapped over ssh on two namespace hosts run a job",
  ignore: SKIP !== undefined,
  async fn() {
    const lab = await makeLab(["a", "b"]);
    let leftovers: string[] = [];
    try {
      const config = parseConfig(
        `
name: ns-lab
controller:
  bundle_prefix: file://${lab.dir}/bundles
  manual:
    host: ${lab.gateway}
  heartbeat_interval: 500ms
defaults:
  autoscaler:
    evaluation_interval: 200ms
    scale_up_cooldown: 200ms
scale_groups:
  hosts:
    provider:
      manual:
        hosts: [${lab.hosts.map((h) => h.address).join(", ")}]
    accelerator_type: cpu
    min_slices: 0
    max_slices: 2
    vm_resources:
      cpu: 1
      memory: 1GiB
`,
        "ns-lab.yaml",
      );
      const platform = new ManualPlatform({
        runner: new DenoCommandRunner(),
        hosts: manualHostsFromConfig(config),
        ssh: {
          user: "root",
          keyFile: lab.keyFile,
          knownHostsFile: lab.knownHostsFile,
          connectTimeout: seconds(5),
        },
        checkHealth: workerHealthy,
        // The namespaces share this filesystem: workers run this checkout with this Deno.
        runtime: { entry: `${REPO}/cli.ts`, denoPath: Deno.execPath() },
        timeouts: { bootstrap: seconds(30), health: seconds(30), teardown: seconds(20) },
      });
      // The controller listens on the bridge address, which the namespaces reach.
      const cluster = await startCluster(config, {
        workDir: lab.dir,
        host: lab.gateway,
        port: 0,
        platform,
      });
      try {
        const client = new IrisClient(cluster.url);
        // A barrier on the shared filesystem: each task waits until both have started, which
        // (one CPU per host, one per task) only happens when they run on different hosts.
        const barrier = `${lab.dir}/barrier`;
        await Deno.mkdir(barrier);
        const id = await client.submit({
          name: "ns-lab-pair",
          command: pairBarrierCommand(barrier),
          replicas: 2,
          cpu: 1,
          memory: 256 * 2 ** 20,
        });
        const job = await client.wait(id, { timeout: seconds(60) });
        assertEquals(job.state, JobState.SUCCEEDED, await daemonLogs(lab));
        const tasks = await client.tasks(id);
        assertEquals(new Set(tasks.map((task) => task.workerId)).size, 2, "one task per host");
        const lines = (await client.logs(id)).map((l) => l.text).join("\n");
        for (const h of lab.hosts) assert(lines.includes(`host=${h.address} together=2`), lines);
        assertEquals(platform.hostsInUse(), lab.hosts.map((h) => h.address).sort());
      } finally {
        for (const s of await platform.listSlices()) await platform.terminateSlice(s.sliceId);
        await cluster.stop();
      }
      assertEquals(platform.hostsInUse(), []);
    } finally {
      leftovers = await lab.close();
    }
    await assertLabGone(lab, leftovers);
  },
});

/**
 * examples/manual.yaml with its placeholders pointed at the lab, fast autoscaling, `extra`
 * appended and, given `hostCpu`, that many CPUs per host.
 */
async function labConfig(
  lab: Lab,
  opts: { extra?: string; hostCpu?: number } = {},
): Promise<string> {
  const [ctl, w1, w2] = lab.hosts as [LabHost, LabHost, LabHost];
  const example = await Deno.readTextFile(`${REPO}/examples/manual.yaml`);
  let config = example
    .replaceAll("10.200.0.1", ctl.address)
    .replaceAll("10.200.0.2", w1.address)
    .replaceAll("10.200.0.3", w2.address)
    .replace(/user: (iris|admin)\b/g, "user: root")
    .replace(/key_file: ~\/\.ssh\/\w+/g, `key_file: ${lab.keyFile}`)
    .replace(/known_hosts_file: ~\/\.ssh\/known_hosts\b/, `known_hosts_file: ${lab.knownHostsFile}`)
    .replace(/bundle_prefix: gs:\/\/\S+/, `bundle_prefix: file://${lab.dir}/bundles`)
    // The hosts share this filesystem: they run this test's Deno, offline.
    .replace(/deno_path: \/usr\/local\/bin\/deno\b/, `deno_path: ${Deno.execPath()}`)
    .replace(
      /\ndefaults:\n/,
      "\ndefaults:\n  autoscaler:\n    evaluation_interval: 500ms\n    scale_up_cooldown: 1s\n",
    ) + (opts.extra ?? "");
  assert(!/10\.200\.0\.|~\/\.ssh|gs:\/\/|\/usr\/local\/bin\/deno/.test(config), config);
  if (opts.hostCpu !== undefined) {
    assert(/\n {6}cpu: 32\n/.test(config), config);
    config = config.replace(/\n {6}cpu: 32\n/, `\n      cpu: ${opts.hostCpu}\n`);
  }
  const path = `${lab.dir}/manual.yaml`;
  await Deno.writeTextFile(path, config);
  return path;
}

/**
 * A task command that waits (up to 60 s) until both tasks of a 2-replica job have started, then
 * prints its host's address: with one task's worth of CPU per host, both can only be running at
 * once on different hosts.
 */
function pairBarrierCommand(barrier: string): string[] {
  return [
    "sh",
    "-c",
    `touch ${barrier}/$IRIS_TASK_INDEX; for i in $(seq 600); do ` +
    `[ "$(ls ${barrier} | wc -l)" -ge 2 ] && break; sleep 0.1; done; ` +
    `echo "host=$(hostname -I | tr -d ' ') together=$(ls ${barrier} | wc -l)"`,
  ];
}

/**
 * `iris <args>` inside a lab namespace (the namespace of the host it runs on).
 * `ip netns exec` execs the command, so the child's pid is iris itself.
 */
function irisIn(
  lab: Lab,
  host: LabHost,
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
) {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", host.netns, Deno.execPath(), "run", "-A", `${REPO}/cli.ts`, ...args],
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0", IRIS_HOME: `${lab.dir}/cli-home`, ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const status = Promise.all([
    child.status,
    pumpLines(child.stdout, lines),
    pumpLines(child.stderr, lines),
  ]).then(([s]) => s);
  return {
    lines,
    status,
    output: async () => ({ code: (await status).code, text: lines.join("\n") }),
    waitForLine: (re: RegExp, timeout = seconds(30)) =>
      waitFor(() => lines.find((l) => re.test(l)), { timeout, what: `a line matching ${re}` }),
    stop: async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      return await status;
    },
  };
}

Deno.test({
  name: "iris cluster start/status/logs/stop --config examples/manual.yaml over namespace hosts",
  ignore: SKIP !== undefined,
  async fn() {
    const lab = await makeLab(["ctl", "w1", "w2"]);
    let leftovers: string[] = [];
    try {
      const [ctl, w1, w2] = lab.hosts as [LabHost, LabHost, LabHost];
      const config = await labConfig(lab);
      const start = await irisIn(lab, ctl, ["cluster", "start", "--config", config]).output();
      assertEquals(start.code, 0, `${start.text}\n${await daemonLogs(lab)}`);
      const url = `http://${ctl.address}:10000`;
      assertMatch(start.text, new RegExp(`controller running at ${url.replaceAll(".", "\\.")}`));

      const logDir = `${lab.dir}/cluster-logs`;
      const logs = irisIn(lab, ctl, ["cluster", "logs", "--config", config, "--log-dir", logDir]);
      try {
        await logs.waitForLine(/following controller ->/);
        await logs.waitForLine(new RegExp(`following worker-${w2.address.replaceAll(".", "\\.")}`));
        const job = await irisIn(lab, ctl, [
          "job",
          "run",
          "--controller",
          url,
          "--cpu",
          "0.5",
          "--",
          "echo",
          "hello-from-the-lab",
        ]).output();
        assertEquals(job.code, 0, `${job.text}\n${await daemonLogs(lab)}`);
        assertMatch(job.text, /hello-from-the-lab/);
        const status = await irisIn(lab, ctl, ["cluster", "status", "--config", config]).output();
        assertEquals(status.code, 0, status.text);
        assertMatch(status.text, /healthy/);
        assertMatch(status.text, /cpu-hosts/);
        await waitFor(async () => {
          const text = (await Promise.all([w1, w2].map((h) =>
            Deno.readTextFile(`${logDir}/worker-${h.address}.log`).catch(() =>
              ""
            )
          ))).join("");
          return text.includes("registered with controller");
        }, { timeout: seconds(20), what: "a worker log streamed into the log dir" }).catch(
          async (e) => {
            throw new Error(`${e}\n${logs.lines.join("\n")}\n${await daemonLogs(lab)}`);
          },
        );
      } finally {
        assertEquals((await logs.stop()).code, 0);
      }

      const stop = await irisIn(lab, ctl, ["cluster", "stop", "--config", config]).output();
      assertEquals(stop.code, 0, stop.text);
      for (
        const name of ["controller", `worker on host ${w1.address}`, `worker on host ${w2.address}`]
      ) {
        assertMatch(stop.text, new RegExp(`stopped: ${name.replaceAll(".", "\\.")}`));
      }
      const after = await irisIn(lab, ctl, ["cluster", "status", "--config", config]).output();
      assertEquals(after.code, 1, after.text);
      assertMatch(after.text, /not running/);
    } finally {
      leftovers = await lab.close();
    }
    await assertLabGone(lab, leftovers);
  },
});

/**
 * The smoke jobs a manual cluster of CPU hosts runs (docs/platforms.md says why the others
 * do not: tpu-hello and coscheduled need a TPU scale group).
 */
const SMOKE_ON_MANUAL = [
  "hello",
  "workspace",
  "concurrent",
  "retry",
  "endpoints",
  "cancel",
  "child-job",
  "region",
  "nested-constraint",
  "python-train",
];

Deno.test({
  name: "iris smoke --config examples/manual.yaml passes over namespace hosts and stops them all",
  ignore: SKIP !== undefined,
  async fn() {
    const lab = await makeLab(["ctl", "w1", "w2"]);
    let leftovers: string[] = [];
    try {
      const [ctl, w1, w2] = lab.hosts as [LabHost, LabHost, LabHost];
      // 0.3 CPU per host: two 0.2-CPU tasks never share one, so the endpoint client calls a
      // server on the other host and child jobs run on another host than their parent.
      const config = await labConfig(lab, { hostCpu: 0.3 });
      // The smoke CLI runs inside the controller's namespace, like an operator on that host.
      const smoke = await irisIn(lab, ctl, [
        "smoke",
        "--config",
        config,
        "--log-dir",
        `${lab.dir}/smoke-logs`,
        // Phase 0 (the clean start: teardown on every host over ssh) and the controller's
        // bootstrap both take seconds on a loaded machine.
        "--timeout",
        "300s",
        ...SMOKE_ON_MANUAL.flatMap((j) => ["--only", j]),
      ]).output();
      const out = smoke.text;
      assertEquals(smoke.code, 0, `${out}\n${await daemonLogs(lab)}`);
      for (const job of SMOKE_ON_MANUAL) {
        assertMatch(out, new RegExp(`\\[PASS\\] ${job}\\b`));
      }
      // Phase 0's clean start stopped whatever an earlier run could have left on every host.
      assertMatch(
        out,
        /stopping any controller and worker an earlier run left on the controller host/,
      );
      assertMatch(out, /removed: controller, worker on host \S+, worker on host \S+/);
      assertMatch(
        out,
        new RegExp(`${SMOKE_ON_MANUAL.length}/${SMOKE_ON_MANUAL.length} jobs passed`),
      );
      // The remote daemons' logs were streamed into the smoke log dir over ssh.
      const daemons = `${lab.dir}/smoke-logs/daemons`;
      assertMatch(await Deno.readTextFile(`${daemons}/controller.log`), /controller listening/);
      // The pairs really crossed hosts: each worker log names the tasks it accepted.
      const workerLogs = await Promise.all(
        [w1, w2].map((h) => Deno.readTextFile(`${daemons}/worker-${h.address}.log`)),
      );
      const hostOf = (task: RegExp) => workerLogs.findIndex((l) => task.test(l));
      for (
        const [a, b] of [
          [/accepted \S+\/smoke-endpoint-server-/, /accepted \S+\/smoke-endpoint-client-/],
          [/accepted \S+\/smoke-parent-\d+\/0 /, /accepted \S+\/smoke-parent-\d+\/child\/0 /],
        ] as const
      ) {
        assert(
          hostOf(a) >= 0 && hostOf(b) >= 0 && hostOf(a) !== hostOf(b),
          `${a} ${b}\n${workerLogs.join("\n")}`,
        );
      }
      assertMatch(
        await Deno.readTextFile(`${daemons}/worker-${w1.address}.log`).catch(() => "") +
          await Deno.readTextFile(`${daemons}/worker-${w2.address}.log`).catch(() => ""),
        /registered with controller/,
      );
    } finally {
      leftovers = await lab.close();
    }
    await assertLabGone(lab, leftovers);
  },
});

/** Where `text` occurs: files under `dir` (grep -r, symlinks not followed) and `ps` lines. */
async function tokenSightings(dir: string, text: string): Promise<string[]> {
  const grep = await new Deno.Command("grep", { args: ["-rlF", text, dir], stdout: "piped" })
    .output();
  const files = new TextDecoder().decode(grep.stdout).split("\n").filter((l) => l !== "");
  const ps = (await must("ps", "-eo", "pid,args")).split("\n").filter((l) => l.includes(text));
  return [...files.map((f) => `file ${f}`), ...ps.map((l) => `ps ${l}`)];
}

Deno.test({
  name:
    "auth on: cluster start delivers the worker token over ssh stdin; jobs need a token; it leaks nowhere",
  ignore: SKIP !== undefined,
  async fn() {
    const lab = await makeLab(["ctl", "w1", "w2"]);
    // The operator's secrets live outside the lab dir, so any copy inside it is a leak.
    const operator = await Deno.makeTempDir({ prefix: "iris-ns-operator-" });
    let leftovers: string[] = [];
    try {
      const [ctl, w1, w2] = lab.hosts as [LabHost, LabHost, LabHost];
      const workerToken = newToken();
      const aliceToken = newToken();
      await Deno.writeTextFile(`${operator}/worker.token`, workerToken + "\n", { mode: 0o600 });
      const config = await labConfig(lab, {
        extra: `
auth:
  mode: token
  tokens: [{ user: alice, sha256: ${hashToken(aliceToken)} }]
`,
      });
      // No auth.worker_token_file: the hosts share this filesystem, and a path in the config
      // would let the remote controller read the operator's file instead of the delivered one.
      const env = { IRIS_WORKER_TOKEN_FILE: `${operator}/worker.token` };
      const start = await irisIn(lab, ctl, ["cluster", "start", "--config", config], env).output();
      assertEquals(start.code, 0, `${start.text}\n${await daemonLogs(lab)}`);
      const url = `http://${ctl.address}:10000`;

      // Without a token (or with a wrong one) every call is refused.
      for (const token of ["", "not-a-token"]) {
        const err = await new IrisClient(url, { token }).rpc.listJobs({}).then(
          () => undefined,
          (e) => e,
        );
        assert(err instanceof ConnectError && err.code === Code.Unauthenticated, String(err));
      }

      // A 2-replica job with alice's token: the barrier makes its tasks run on both hosts.
      const client = new IrisClient(url, { token: aliceToken });
      const barrier = `${lab.dir}/barrier`;
      await Deno.mkdir(barrier);
      const id = await client.submit({
        name: "auth-pair",
        command: pairBarrierCommand(barrier),
        replicas: 2,
        cpu: 20,
        memory: 256 * 2 ** 20,
      });
      assertMatch(id, /^\/alice\//);
      // While the tasks run, the token is in no process's argv.
      await waitFor(() => [...Deno.readDirSync(barrier)].length > 0, {
        timeout: seconds(90),
        what: "a task of the job to start",
      });
      const running = await tokenSightings(lab.dir, workerToken);
      assertEquals(running.filter((l) => l.startsWith("ps")), []);
      const job = await client.wait(id, { timeout: seconds(90) });
      assertEquals(job.state, JobState.SUCCEEDED, await daemonLogs(lab));
      const lines = (await client.logs(id)).map((l) => l.text).join("\n");
      for (const h of [w1, w2]) assert(lines.includes(`host=${h.address} together=2`), lines);

      // Each host got the token as a 0600 file in its IRIS_HOME.
      for (const h of [ctl, w1, w2]) {
        const info = await Deno.stat(`${h.home}/worker.token`);
        assertEquals(info.mode! & 0o777, 0o600, `${h.name}'s worker.token`);
        assertEquals((await Deno.readTextFile(`${h.home}/worker.token`)).trim(), workerToken);
      }

      const stop = await irisIn(lab, ctl, ["cluster", "stop", "--config", config], env).output();
      assertEquals(stop.code, 0, stop.text);
      // The token left every host with its last daemon; nothing else ever held it: no log, no
      // config, no transcript, no argv.
      for (const h of [ctl, w1, w2]) {
        assert(!(await exists(`${h.home}/worker.token`)), `${h.name} kept worker.token`);
      }
      assertEquals(await tokenSightings(lab.dir, workerToken), []);
      assertEquals(await tokenSightings(lab.dir, aliceToken), []);
      assertMatch(await daemonLogs(lab), /registered with controller/);
    } finally {
      leftovers = await lab.close();
      await Deno.remove(operator, { recursive: true });
    }
    await assertLabGone(lab, leftovers);
  },
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name: "known_hosts_file: a host whose key is not in the file is refused before anything runs",
  ignore: SKIP !== undefined,
  async fn() {
    const lab = await makeLab(["a"]);
    let leftovers: string[] = [];
    try {
      const [a] = lab.hosts as [LabHost];
      // A file that knows another key for the host's address: a man in the middle, as ssh sees it.
      await must("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", `${lab.dir}/other_key`);
      const other = (await Deno.readTextFile(`${lab.dir}/other_key.pub`)).split(" ");
      const wrong = `${lab.dir}/wrong_known_hosts`;
      await Deno.writeTextFile(wrong, `${a.address} ${other[0]} ${other[1]}\n`);
      const platform = new ManualPlatform({
        runner: new DenoCommandRunner(),
        hosts: [{ host: a.address, knownHostsFile: wrong }],
        ssh: { user: "root", keyFile: lab.keyFile, connectTimeout: seconds(5) },
        checkHealth: workerHealthy,
        runtime: { entry: `${REPO}/cli.ts`, denoPath: Deno.execPath() },
        timeouts: { bootstrap: seconds(20), health: seconds(5), teardown: seconds(10) },
      });
      const config = parseConfig(
        `
controller: { bundle_prefix: "file://${lab.dir}/b", manual: { host: ${lab.gateway} } }
scale_groups:
  h: { provider: { manual: { hosts: [${a.address}] } }, vm_resources: { cpu: 1, memory: 1GiB } }
`,
        "kh.yaml",
      );
      const err = await platform.createSlice({
        sliceId: "kh-1",
        scaleGroup: "h",
        config: config.scaleGroups.h!,
        vmCount: 1,
        controllerUrl: `http://${lab.gateway}:1`,
        labels: {},
      }).then(() => undefined, (e) => e);
      assert(err instanceof Error, "the bootstrap was refused");
      assertMatch(err.message, /host key|Host key verification failed/i);
      assertEquals(platform.hostsInUse(), []);
      assert(!(await exists(`${a.home}/worker.log`)), "nothing ran on the host");
    } finally {
      leftovers = await lab.close();
    }
    await assertLabGone(lab, leftovers);
  },
});

/** A `deno` a namespace host's ssh session would find on its default PATH, if any. */
async function sessionDeno(): Promise<string | undefined> {
  const dirs = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];
  for (const d of [...dirs, "/root/.deno/bin"]) {
    if (await exists(`${d}/deno`)) return `${d}/deno`;
  }
  return undefined;
}

Deno.test({
  name:
    "a namespace host without Deno fails its bootstrap at once, naming defaults.runtime.deno_path",
  ignore: SKIP !== undefined,
  async fn(t) {
    const found = await sessionDeno();
    if (found) {
      console.log(`skipped: this machine has ${found}, which the namespace hosts would use`);
      return;
    }
    const lab = await makeLab(["a"]);
    let leftovers: string[] = [];
    try {
      const [a] = lab.hosts as [LabHost];
      const config = parseConfig(
        `
controller: { bundle_prefix: "file://${lab.dir}/b", manual: { host: ${lab.gateway} } }
scale_groups:
  h: { provider: { manual: { hosts: [${a.address}] } }, vm_resources: { cpu: 1, memory: 1GiB } }
`,
        "nodeno.yaml",
      );
      // No deno_path: the host has no deno on PATH and reaches no registry.
      const platform = new ManualPlatform({
        runner: new DenoCommandRunner(),
        hosts: manualHostsFromConfig(config),
        ssh: {
          user: "root",
          keyFile: lab.keyFile,
          knownHostsFile: lab.knownHostsFile,
          connectTimeout: seconds(5),
        },
        checkHealth: workerHealthy,
        runtime: { entry: `${REPO}/cli.ts` },
        timeouts: { bootstrap: seconds(60), health: seconds(5), teardown: seconds(20) },
      });
      await t.step("createSlice fails with the bootstrap's line", async () => {
        const err = await platform.createSlice({
          sliceId: "nd-1",
          scaleGroup: "h",
          config: config.scaleGroups.h!,
          vmCount: 1,
          controllerUrl: `http://${lab.gateway}:1`,
          labels: {},
        }).then(() => undefined, (e) => e);
        assert(err instanceof Error, "the bootstrap failed");
        assertMatch(err.message, /bootstrap failed/);
        assertMatch(err.message, /iris: no Deno on this host: set defaults\.runtime\.deno_path/);
        assert(!/timed out/.test(err.message), err.message);
        assertEquals(platform.hostsInUse(), []);
      });
    } finally {
      leftovers = await lab.close();
    }
    await assertLabGone(lab, leftovers);
  },
});
