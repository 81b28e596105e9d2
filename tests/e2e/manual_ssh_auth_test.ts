/**
 * With `auth.mode: token` over namespace hosts (tests/e2e/_ns_lab.ts), the worker token reaches
 * every host over ssh stdin only: a job with a user token runs on two hosts, calls without one
 * are refused, no file or `ps` line holds it.
 * Then everything is torn down: no sshd, worker, controller, namespace, bridge or veth is left.
 * Needs root, `ip` and /usr/sbin/sshd (scripts/install_openssh.sh); skips with the reason when
 * the machine cannot make namespaces or has no sshd. Shared helpers: tests/e2e/_manual_ssh.ts.
 * @module
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { IrisClient } from "../../src/client/client.ts";
import { hashToken, newToken } from "../../src/auth/tokens.ts";
import { Code, ConnectError } from "@connectrpc/connect";
import { JobState } from "../../src/rpc/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { type LabHost, makeLab, must } from "./_ns_lab.ts";
import {
  assertLabGone,
  daemonLogs,
  exists,
  irisIn,
  labConfig,
  pairBarrierCommand,
  SKIP,
} from "./_manual_ssh.ts";

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
