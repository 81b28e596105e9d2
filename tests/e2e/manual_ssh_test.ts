/**
 * The manual platform against real ssh servers (tests/e2e/_ns_lab.ts: network namespaces on a
 * bridge, one `sshd` each, throwaway keys):
 * - ManualPlatform bootstraps real `iris worker serve` daemons on two hosts over ssh for a
 *   controller bound to the bridge address, and a 2-replica job runs one task on each;
 * - `known_hosts_file` refuses a host whose key is not the one in the file;
 * - a host without Deno (no deno_path, none on its PATH, no registry) fails its bootstrap at
 *   once with the line naming defaults.runtime.deno_path. The other tests give the hosts this
 *   test's Deno through defaults.runtime.deno_path, as a fresh machine's hosts need.
 * The CLI, smoke and auth paths over namespace hosts: manual_ssh_{cli,smoke,auth}_test.ts.
 * Then everything is torn down: no sshd, worker, controller, namespace, bridge or veth is left.
 * Needs root, `ip` and /usr/sbin/sshd (scripts/install_openssh.sh); skips with the reason when
 * the machine cannot make namespaces or has no sshd. Shared helpers: tests/e2e/_manual_ssh.ts.
 * @module
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { parseConfig } from "../../src/config/mod.ts";
import { startCluster } from "../../src/cluster/cluster.ts";
import { manualHostsFromConfig, workerHealthy } from "../../src/cluster/platforms.ts";
import { DenoCommandRunner } from "../../src/command/command.ts";
import { ManualPlatform } from "../../src/platform/manual.ts";
import { IrisClient } from "../../src/client/client.ts";
import { JobState } from "../../src/rpc/mod.ts";
import { seconds } from "../../src/time.ts";
import { type LabHost, makeLab, must, REPO } from "./_ns_lab.ts";
import { assertLabGone, daemonLogs, exists, pairBarrierCommand, SKIP } from "./_manual_ssh.ts";

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
  heartbeat_failure_threshold: 30 # no liveness test here: load must not fake a death
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
