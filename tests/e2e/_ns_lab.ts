/**
 * A lab of ssh hosts on this machine: Linux network namespaces on a bridge, each with its own
 * address and its own `sshd` (openssh-server) using a throwaway host key, a throwaway client
 * key, and per-host `IRIS_HOME`/`TMPDIR` (the namespaces share the filesystem) with
 * `$IRIS_HOME/iris` linked to this checkout. The lab writes a known-hosts file with every host's
 * key, for `known_hosts_file` (so ssh checks host keys strictly and never touches ~/.ssh).
 * Disposing stops every sshd and removes namespaces, links and files.
 * @module
 */
import { seconds, waitFor } from "../../src/time.ts";
import { listProcesses } from "../_helpers/iris_process.ts";

async function processesMentioning(text: string): Promise<{ pid: number; args: string }[]> {
  return (await listProcesses()).filter((p) => p.args.includes(text) && p.pid !== Deno.pid);
}

export const REPO = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const SSHD = "/usr/sbin/sshd";

/** Runs a command to completion; never throws. */
export async function sh(cmd: string, ...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
  } catch (err) {
    return { code: 127, out: String(err) };
  }
}

/** Runs a command; throws with its output when it fails. */
export async function must(cmd: string, ...args: string[]): Promise<string> {
  const r = await sh(cmd, ...args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.out}`);
  return r.out;
}

/** Why this machine cannot make a lab, or undefined when it can. */
export async function labSkipReason(): Promise<string | undefined> {
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

/** One host of the lab. */
export interface LabHost {
  readonly name: string;
  readonly netns: string;
  readonly veth: string;
  readonly address: string;
  /** Its IRIS_HOME (pid files, daemon logs, worker temp dirs). */
  readonly home: string;
}

/** A running lab. */
export interface Lab extends AsyncDisposable {
  readonly id: string;
  /** Scratch directory of the run (keys, configs, homes). */
  readonly dir: string;
  readonly bridge: string;
  /** This machine's address on the bridge (the namespaces reach it). */
  readonly gateway: string;
  readonly hosts: readonly LabHost[];
  /** The client private key every sshd accepts (user root). */
  readonly keyFile: string;
  /** Every host's key (`<address> <key>` lines), for `known_hosts_file`. */
  readonly knownHostsFile: string;
  /**
   * Stops every sshd, kills whatever else still runs from the lab's dir (daemons a test failed
   * to stop), removes namespaces, links and the scratch dir. Resolves to the
   * command lines it had to kill, so tests can assert nothing was left. Idempotent.
   */
  close(): Promise<string[]>;
}

/** Makes a lab with hosts named `names` (addresses .2, .3, … of a random unused 10.213.N.0/24). */
export async function makeLab(names: readonly string[]): Promise<Lab> {
  const id = crypto.randomUUID().replaceAll("-", "").slice(0, 6);
  // A /24 no other lab on this machine uses (labs of parallel test files run side by side).
  const used = new Set(
    [...(await sh("ip", "-o", "-4", "addr", "show")).out.matchAll(/\b10\.213\.(\d+)\./g)]
      .map((m) => Number(m[1])),
  );
  const free = Array.from({ length: 250 }, (_, i) => i + 1).filter((n) => !used.has(n));
  const net = `10.213.${free[Math.floor(Math.random() * free.length)] ?? 250}`;
  const dir = await Deno.makeTempDir({ prefix: "iris-ns-lab-" });
  const bridge = `irbr${id}`;
  const gateway = `${net}.1`;
  const hosts: LabHost[] = names.map((name, i) => ({
    name,
    netns: `iris-${id}-${name}`,
    veth: `iv${id}${name}`,
    address: `${net}.${i + 2}`,
    home: `${dir}/home-${name}`,
  }));
  const sshds: Deno.ChildProcess[] = [];
  let closing: Promise<string[]> | undefined;
  const close = () => closing ??= closeLab();
  const closeLab = async () => {
    for (const s of sshds) {
      try {
        s.kill("SIGTERM");
      } catch { /* gone */ }
      await s.status;
    }
    const leftovers = await processesMentioning(dir);
    for (const p of leftovers) {
      try {
        Deno.kill(p.pid, "SIGKILL");
      } catch { /* gone */ }
    }
    for (const h of hosts) await sh("ip", "netns", "del", h.netns);
    await sh("ip", "link", "del", bridge);
    for (const h of hosts) await sh("ip", "link", "del", h.veth);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    return leftovers.map((p) => p.args);
  };
  const lab: Lab = {
    id,
    dir,
    bridge,
    gateway,
    hosts,
    keyFile: `${dir}/client_key`,
    knownHostsFile: `${dir}/known_hosts`,
    close,
    [Symbol.asyncDispose]: async () => void await close(),
  };
  try {
    await must("ip", "link", "add", bridge, "type", "bridge");
    await must("ip", "addr", "add", `${gateway}/24`, "dev", bridge);
    await must("ip", "link", "set", bridge, "up");
    await must("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", `${dir}/host_key`);
    await must("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", lab.keyFile);
    await Deno.copyFile(`${lab.keyFile}.pub`, `${dir}/authorized_keys`);
    const hostKey = (await Deno.readTextFile(`${dir}/host_key.pub`)).split(" ").slice(0, 2);
    await Deno.writeTextFile(
      lab.knownHostsFile,
      hosts.map((h) => `${h.address} ${hostKey.join(" ")}\n`).join(""),
    );
    await Deno.mkdir("/run/sshd", { recursive: true });
    for (const h of hosts) {
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
      await must("ip", "link", "set", h.veth, "master", bridge, "up");
      await must("ip", "-n", h.netns, "addr", "add", `${h.address}/24`, "dev", "eth0");
      await must("ip", "-n", h.netns, "link", "set", "eth0", "up");
      await must("ip", "-n", h.netns, "link", "set", "lo", "up");
      await Deno.mkdir(h.home);
      await Deno.symlink(REPO, `${h.home}/iris`);
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
          `SetEnv IRIS_HOME=${h.home} TMPDIR=${h.home}`,
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
    for (const h of hosts) {
      await waitFor(async () => {
        try {
          (await Deno.connect({ hostname: h.address, port: 22 })).close();
          return true;
        } catch {
          return false;
        }
      }, { timeout: seconds(10), what: `sshd on ${h.address}` });
    }
  } catch (err) {
    await close();
    throw err;
  }
  return lab;
}
