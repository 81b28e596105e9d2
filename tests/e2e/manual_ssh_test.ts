/**
 * The manual platform against real ssh servers: two "hosts" made of Linux network namespaces on
 * a bridge (each with its own address and its own `sshd` from openssh-server), a throwaway key,
 * and a controller bound to the bridge address. ManualPlatform bootstraps real
 * `iris worker serve` daemons on both hosts over ssh, a 2-replica job runs one task on each,
 * then everything is torn down: no sshd, worker, namespace, bridge or veth is left.
 *
 * Needs root, `ip` and /usr/sbin/sshd (scripts/install_openssh.sh); skips with the reason when
 * the machine cannot make namespaces or has no sshd.
 * @module
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { listProcesses } from "../_helpers/iris_process.ts";
import { parseConfig } from "../../src/config/mod.ts";
import { startCluster } from "../../src/cluster/cluster.ts";
import { manualHostsFromConfig, workerHealthy } from "../../src/cluster/platforms.ts";
import { DenoCommandRunner } from "../../src/platform/command.ts";
import { ManualPlatform } from "../../src/platform/manual.ts";
import { IrisClient } from "../../src/client/client.ts";
import { JobState } from "../../src/rpc/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";

const REPO = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const SSHD = "/usr/sbin/sshd";

async function sh(cmd: string, ...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
  } catch (err) {
    return { code: 127, out: String(err) };
  }
}

async function must(cmd: string, ...args: string[]): Promise<string> {
  const r = await sh(cmd, ...args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.out}`);
  return r.out;
}

/** Why this machine cannot run the test, or undefined when it can. */
async function skipReason(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "network namespaces need Linux";
  if (Deno.uid() !== 0) return "making network namespaces needs root";
  try {
    await Deno.stat(SSHD);
  } catch {
    return `${SSHD} is missing (install openssh-server: scripts/install_openssh.sh)`;
  }
  const probe = `iris-probe-${crypto.randomUUID().slice(0, 6)}`;
  const made = await sh("ip", "netns", "add", probe);
  if (made.code !== 0) return `cannot make a network namespace: ${made.out.trim()}`;
  await sh("ip", "netns", "del", probe);
  return undefined;
}

const SKIP = await skipReason();
if (SKIP) console.log(`manual_ssh_test: skipped: ${SKIP}`);

/** Two hosts on a bridge: names and addresses unique per run. */
function topology() {
  const id = crypto.randomUUID().replaceAll("-", "").slice(0, 6);
  const net = `10.213.${Math.floor(Math.random() * 250) + 1}`;
  return {
    id,
    bridge: `irbr${id}`,
    gateway: `${net}.1`,
    hosts: ["a", "b"].map((h, i) => ({
      name: h,
      netns: `iris-${id}-${h}`,
      veth: `iv${id}${h}`,
      address: `${net}.${i + 2}`,
    })),
  };
}

Deno.test({
  name: "manual platform: real workers bootstrapped over ssh on two namespace hosts run a job",
  ignore: SKIP !== undefined,
  async fn() {
    const t = topology();
    const dir = await Deno.makeTempDir({ prefix: "iris-manual-ssh-" });
    const sshds: Deno.ChildProcess[] = [];
    try {
      // Network: a bridge on this host, one namespace per host, joined by veth pairs.
      await must("ip", "link", "add", t.bridge, "type", "bridge");
      await must("ip", "addr", "add", `${t.gateway}/24`, "dev", t.bridge);
      await must("ip", "link", "set", t.bridge, "up");
      for (const h of t.hosts) {
        await must("ip", "netns", "add", h.netns);
        await must(
          "ip",
          "link",
          "add",
          h.veth,
          "type",
          "veth",
          "peer",
          "name",
          "eth0",
          "netns",
          h.netns,
        );
        await must("ip", "link", "set", h.veth, "master", t.bridge, "up");
        await must("ip", "-n", h.netns, "addr", "add", `${h.address}/24`, "dev", "eth0");
        await must("ip", "-n", h.netns, "link", "set", "eth0", "up");
        await must("ip", "-n", h.netns, "link", "set", "lo", "up");
      }
      // Keys: one throwaway host key and one client key, known only to this run.
      await must("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", `${dir}/host_key`);
      await must("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", `${dir}/client_key`);
      await Deno.copyFile(`${dir}/client_key.pub`, `${dir}/authorized_keys`);
      await Deno.mkdir("/run/sshd", { recursive: true });
      for (const h of t.hosts) {
        // Hosts share this filesystem: each gets its own IRIS_HOME (pid file, log) and TMPDIR
        // (worker dirs) via SetEnv.
        await Deno.mkdir(`${dir}/home-${h.name}`);
        await Deno.writeTextFile(
          `${dir}/sshd_${h.name}.conf`,
          [
            `ListenAddress ${h.address}`,
            "Port 22",
            `HostKey ${dir}/host_key`,
            `AuthorizedKeysFile ${dir}/authorized_keys`,
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PidFile none",
            `SetEnv IRIS_HOME=${dir}/home-${h.name} TMPDIR=${dir}/home-${h.name}`,
            "",
          ].join("\n"),
        );
        sshds.push(
          new Deno.Command("ip", {
            args: ["netns", "exec", h.netns, SSHD, "-D", "-e", "-f", `${dir}/sshd_${h.name}.conf`],
            stdin: "null",
            stdout: "null",
            stderr: "null",
          }).spawn(),
        );
      }
      for (const h of t.hosts) {
        await waitFor(async () => {
          try {
            (await Deno.connect({ hostname: h.address, port: 22 })).close();
            return true;
          } catch {
            return false;
          }
        }, { timeout: seconds(10), what: `sshd on ${h.address}` });
      }

      const config = parseConfig(
        `
name: ns-lab
controller:
  bundle_prefix: file://${dir}/bundles
  manual:
    host: ${t.gateway}
  heartbeat_interval: 500ms
defaults:
  autoscaler:
    evaluation_interval: 200ms
    scale_up_cooldown: 200ms
scale_groups:
  hosts:
    provider:
      manual:
        hosts: [${t.hosts.map((h) => h.address).join(", ")}]
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
          keyFile: `${dir}/client_key`,
          knownHostsFile: `${dir}/known_hosts`,
          connectTimeout: seconds(5),
        },
        checkHealth: workerHealthy,
        // The namespaces share this filesystem: workers run this checkout with this Deno.
        runtime: { entry: `${REPO}/cli.ts`, denoPath: Deno.execPath() },
        timeouts: { bootstrap: seconds(30), health: seconds(30), teardown: seconds(20) },
      });
      // The controller listens on the bridge address, which the namespaces reach.
      const cluster = await startCluster(config, {
        workDir: dir,
        host: t.gateway,
        port: 0,
        platform,
      });
      try {
        const client = new IrisClient(cluster.url);
        const id = await client.submit({
          name: "ns-lab-pair",
          command: ["sh", "-c", "echo host=$(hostname -I | tr -d ' ')"],
          replicas: 2,
          cpu: 1,
          memory: 256 * 2 ** 20,
        });
        const job = await client.wait(id, { timeout: seconds(60) });
        const logs = async () =>
          (await Promise.all(
            t.hosts.map((h) =>
              Deno.readTextFile(`${dir}/home-${h.name}/worker.log`).catch(() => "")
            ),
          )).join("\n");
        assertEquals(job.state, JobState.SUCCEEDED, await logs());
        const tasks = await client.tasks(id);
        assertEquals(new Set(tasks.map((task) => task.workerId)).size, 2, "one task per host");
        const lines = (await client.logs(id)).map((l) => l.text).join("\n");
        for (const h of t.hosts) assert(lines.includes(`host=${h.address}`), lines);
        assertEquals(platform.hostsInUse(), t.hosts.map((h) => h.address).sort());
      } finally {
        for (const s of await platform.listSlices()) await platform.terminateSlice(s.sliceId);
        await cluster.stop();
      }
      assertEquals(platform.hostsInUse(), []);
    } finally {
      for (const s of sshds) {
        try {
          s.kill("SIGTERM");
        } catch { /* gone */ }
        await s.status;
      }
      for (const h of t.hosts) await sh("ip", "netns", "del", h.netns);
      await sh("ip", "link", "del", t.bridge);
      for (const h of t.hosts) await sh("ip", "link", "del", h.veth);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
    // Nothing is left: no worker or sshd of this run, no namespace, no link.
    const left = (await listProcesses()).filter((p) => p.args.includes(dir));
    assertEquals(left.map((p) => p.args), []);
    const netns = await must("ip", "netns", "list");
    assert(!netns.includes(`iris-${t.id}`), netns);
    const links = await must("ip", "-o", "link", "show");
    assert(!links.includes(t.bridge) && !links.includes(`iv${t.id}`), links);
  },
});
