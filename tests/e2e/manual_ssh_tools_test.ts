/**
 * The cluster tools over namespace hosts (tests/e2e/_ns_lab.ts) with examples/manual.yaml: after
 * `cluster start`, `cluster debug validate|discover|health|bootstrap-logs controller` find the
 * controller host over ssh; `cluster restart` restarts it with its state dir, so a job submitted
 * before is still there; `cluster debug cleanup` lists what it would delete, deletes it only with --yes, and then
 * nothing answers. Everything is torn down: no sshd, worker, controller, namespace or link left.
 * Needs root, `ip` and /usr/sbin/sshd; skips with the reason otherwise.
 * @module
 */
import { assertEquals, assertMatch } from "../_helpers/assert.ts";
import { type LabHost, makeLab } from "./_ns_lab.ts";
import { assertLabGone, daemonLogs, irisIn, labConfig, SKIP } from "./_manual_ssh.ts";

Deno.test({
  name:
    "cluster restart, dashboard and debug validate|discover|health|cleanup over namespace hosts",
  ignore: SKIP !== undefined,
  async fn() {
    const lab = await makeLab(["ctl", "w1", "w2"]);
    let leftovers: string[] = [];
    try {
      const [ctl] = lab.hosts as [LabHost, LabHost, LabHost];
      const config = await labConfig(lab);
      // The state a restart keeps lives in the controller's state dir (hosts share this disk).
      const yaml = await Deno.readTextFile(config);
      assertMatch(yaml, /^controller:\n/m);
      await Deno.writeTextFile(
        config,
        yaml.replace(/^controller:\n/m, `controller:\n  state_dir: ${lab.dir}/controller-state\n`),
      );
      const iris = (args: string[]) => irisIn(lab, ctl, args).output();
      const url = `http://${ctl.address}:10000`;
      const esc = (s: string) => s.replaceAll(".", "\\.");

      const before = await iris(["cluster", "debug", "validate", "--config", config]);
      assertEquals(before.code, 0, before.text);
      assertMatch(before.text, /valid manual config/);
      assertMatch(before.text, /controller: ok \(none running\)/);

      const start = await iris(["cluster", "start", "--config", config]);
      assertEquals(start.code, 0, `${start.text}\n${await daemonLogs(lab)}`);

      const validate = await iris(["cluster", "debug", "validate", "--config", config]);
      assertEquals(validate.code, 0, validate.text);
      assertMatch(validate.text, new RegExp(`controller: ok \\(${esc(url)}\\)`));

      const discover = await iris(["cluster", "debug", "discover", "--config", config]);
      assertEquals(discover.code, 0, discover.text);
      assertMatch(discover.text, new RegExp(`\\(manual\\): controller ${esc(url)}`));
      assertMatch(discover.text, /answers: healthy/);

      // A manual controller is reached directly: its URL is printed and the command exits.
      const dash = await iris(["cluster", "dashboard", "--config", config]);
      assertEquals(dash.code, 0, dash.text);
      assertMatch(dash.text, new RegExp(`^${esc(url)}/$`, "m"));

      const health = await iris(["cluster", "debug", "health", "--config", config]);
      assertEquals(health.code, 0, health.text);
      assertMatch(health.text, /Controller pid \d+/);

      const boot = await iris([
        "cluster",
        "debug",
        "bootstrap-logs",
        "controller",
        "--config",
        config,
      ]);
      assertEquals(boot.code, 0, boot.text);

      const job = await iris([
        "job",
        "run",
        "--controller",
        url,
        "--detach",
        "--name",
        "kept",
        "--cpu",
        "0.5",
        "--",
        "sleep",
        "600",
      ]);
      assertEquals(job.code, 0, job.text);

      const restart = await iris(["cluster", "restart", "--config", config]);
      assertEquals(restart.code, 0, `${restart.text}\n${await daemonLogs(lab)}`);
      assertMatch(restart.text, new RegExp(`restarted at ${esc(url)}: healthy`));
      assertMatch(restart.text, /state kept in .*controller-state/);
      const kept = await iris(["job", "status", "--controller", url, "kept"]);
      if (kept.code !== 0) {
        const list = await iris(["job", "list", "--controller", url, "--user", "all"]);
        throw new Error(
          `${kept.text}\nsubmitted: ${job.text}\n${list.text}\n${await daemonLogs(lab)}`,
        );
      }

      const dry = await iris(["cluster", "debug", "cleanup", "--config", config]);
      assertEquals(dry.code, 0, dry.text);
      assertMatch(dry.text, new RegExp(`Would remove:\\n\\s+controller at ${esc(url)}`));
      assertMatch(dry.text, /Dry run: rerun with --yes/);
      const still = await iris(["cluster", "status", "--config", config]);
      assertEquals(still.code, 0, "a dry run deletes nothing: " + still.text);

      const clean = await iris(["cluster", "debug", "cleanup", "--config", config, "--yes"]);
      assertEquals(clean.code, 0, clean.text);
      const gone = await iris(["cluster", "debug", "discover", "--config", config]);
      assertEquals(gone.code, 1, gone.text);
      assertMatch(gone.text, /no controller found/);
    } finally {
      leftovers = await lab.close();
    }
    await assertLabGone(lab, leftovers);
  },
});
