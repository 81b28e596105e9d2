/**
 * What the manual-platform tests over namespace hosts share (tests/e2e/manual_ssh*_test.ts, split
 * so that `deno test --parallel` runs them side by side; each makes its own lab): the skip
 * reason, the teardown check, daemon logs, examples/manual.yaml pointed at a lab, a two-host
 * barrier command and `iris` run inside a host's namespace.
 * @module
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { type Lab, type LabHost, labSkipReason, must, REPO } from "./_ns_lab.ts";
import { pumpLines } from "../_helpers/iris_process.ts";

const SKIP = await labSkipReason();
if (SKIP) console.log(`manual_ssh tests: skipped: ${SKIP}`);
export { SKIP };

/** Nothing of the lab was left: no process to kill, no namespace, no link. */
export async function assertLabGone(lab: Lab, leftovers: string[]): Promise<void> {
  assertEquals(leftovers, [], "processes the test left running");
  const netns = await must("ip", "netns", "list");
  assert(!netns.includes(`iris-${lab.id}`), netns);
  const links = await must("ip", "-o", "link", "show");
  assert(!links.includes(lab.bridge) && !links.includes(`iv${lab.id}`), links);
}

export async function daemonLogs(lab: Lab): Promise<string> {
  const logs = await Promise.all(
    lab.hosts.flatMap((h) =>
      ["controller", "worker"].map(async (d) =>
        `--- ${h.name} ${d}.log\n${await Deno.readTextFile(`${h.home}/${d}.log`).catch(() => "")}`
      )
    ),
  );
  return logs.join("\n");
}

/**
 * examples/manual.yaml with its placeholders pointed at the lab, fast autoscaling, `extra`
 * appended and, given `hostCpu`, that many CPUs per host.
 */
export async function labConfig(
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
export function pairBarrierCommand(barrier: string): string[] {
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
export function irisIn(
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

export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
