/**
 * `iris smoke --config examples/manual.yaml` (its addresses, users and keys pointed at a
 * three-host lab, tests/e2e/_ns_lab.ts) starts the controller on one host over ssh, whose
 * autoscaler bootstraps workers on the others, and passes the CPU smoke jobs, endpoint and child
 * jobs across hosts.
 * Then everything is torn down: no sshd, worker, controller, namespace, bridge or veth is left.
 * Needs root, `ip` and /usr/sbin/sshd (scripts/install_openssh.sh); skips with the reason when
 * the machine cannot make namespaces or has no sshd. Shared helpers: tests/e2e/_manual_ssh.ts.
 * @module
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { type LabHost, makeLab } from "./_ns_lab.ts";
import { assertLabGone, daemonLogs, irisIn, labConfig, SKIP } from "./_manual_ssh.ts";

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
