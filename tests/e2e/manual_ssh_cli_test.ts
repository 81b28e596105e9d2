/**
 * `iris cluster start/status/logs/stop --config examples/manual.yaml` over namespace hosts
 * (tests/e2e/_ns_lab.ts): the controller starts on one host over ssh, its autoscaler bootstraps
 * workers on the others, a job runs, logs stream into a log dir, and stop removes everything.
 * Then everything is torn down: no sshd, worker, controller, namespace, bridge or veth is left.
 * Needs root, `ip` and /usr/sbin/sshd (scripts/install_openssh.sh); skips with the reason when
 * the machine cannot make namespaces or has no sshd. Shared helpers: tests/e2e/_manual_ssh.ts.
 * @module
 */
import { assertEquals, assertMatch } from "../_helpers/assert.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { type LabHost, makeLab } from "./_ns_lab.ts";
import { assertLabGone, daemonLogs, irisIn, labConfig, SKIP } from "./_manual_ssh.ts";

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
