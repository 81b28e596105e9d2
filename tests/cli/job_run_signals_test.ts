/**
 * `iris job run` and signals, over real processes: Ctrl-C detaches (the job keeps running, the
 * reattach and cancel commands are printed), a second Ctrl-C within 2 s cancels, --cancel-on-exit
 * cancels at once and records the real signal name; Iris's own lines go to stderr only.
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { JobState } from "../../mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { cli, startCluster } from "./_cluster.ts";

Deno.test("iris job run: signals detach or cancel; own lines on stderr", async (t) => {
  await using cluster = await startCluster();
  const env = { IRIS_CONTROLLER_URL: cluster.url, USER: "sigtester" };
  const job = (args: string[]) =>
    cli(["job", "run", ...args, "--", "sh", "-c", "echo out-line; echo err-line >&2; sleep 60"], {
      env,
    });
  const stateOf = async (id: string) => (await cluster.client.status(id)).job!;

  await t.step("task stdout on stdout; [iris] lines and status on stderr", async () => {
    await using run = cli([
      "job",
      "run",
      "--name",
      "streams",
      "--",
      "sh",
      "-c",
      "echo o; echo e >&2",
    ], {
      env,
    });
    assertEquals(await run.code, 0);
    assertEquals(run.stdout, ["o"]);
    assert(run.stderr.includes("e"), run.stderr.join("\n"));
    assert(run.stderr.some((l) => /^Submitted \/sigtester\/streams/.test(l)));
    assert(run.stderr.some((l) => /^\[iris\] (started|SUCCEEDED)/.test(l)), run.stderr.join("\n"));
    assert(run.stdout.every((l) => !l.includes("[iris]")));
  });

  await t.step("Ctrl-C detaches and prints how to reattach and cancel", async () => {
    await using run = job(["--name", "detach"]);
    await run.waitFor(/^out-line$/, "stdout");
    run.child.kill("SIGINT");
    assertEquals(await run.code, 130);
    const err = run.stderr.join("\n");
    assertMatch(err, /stopped following \/sigtester\/detach; it keeps running/);
    assertMatch(err, /reattach: iris job logs -f \/sigtester\/detach/);
    assertMatch(err, /cancel: +iris job cancel \/sigtester\/detach/);
    assertEquals((await stateOf("/sigtester/detach")).state, JobState.RUNNING);
    await cluster.client.cancel("/sigtester/detach");
  });

  await t.step("a second Ctrl-C within 2 s cancels", async () => {
    await using run = job(["--name", "twice"]);
    await run.waitFor(/^out-line$/, "stdout");
    run.child.kill("SIGINT");
    await run.waitFor(/Ctrl-C again within 2 s cancels/);
    run.child.kill("SIGINT");
    assertEquals(await run.code, 130);
    assertMatch(run.stderr.join("\n"), /Cancelled \/sigtester\/twice/);
    const j = await waitFor(async () => {
      const s = await stateOf("/sigtester/twice");
      return s.state === JobState.KILLED ? s : undefined;
    }, { timeout: seconds(20), what: "the job to be killed" });
    assertMatch(j.error, /SIGINT \(Ctrl-C\) twice/);
  });

  await t.step("--cancel-on-exit with SIGTERM cancels and records SIGTERM", async () => {
    await using run = job(["--name", "term", "--cancel-on-exit"]);
    await run.waitFor(/^out-line$/, "stdout");
    run.child.kill("SIGTERM");
    assertEquals(await run.code, 143);
    const j = await waitFor(async () => {
      const s = await stateOf("/sigtester/term");
      return s.state === JobState.KILLED ? s : undefined;
    }, { timeout: seconds(20), what: "the job to be killed" });
    assertMatch(j.error, /SIGTERM/);
    assert(!/Ctrl-C/.test(j.error), j.error);
  });

  await t.step("SIGHUP without --cancel-on-exit leaves the job running, with a hint", async () => {
    await using run = job(["--name", "hup"]);
    await run.waitFor(/^out-line$/, "stdout");
    run.child.kill("SIGHUP");
    assertEquals(await run.code, 129);
    assertMatch(run.stderr.join("\n"), /SIGHUP: stopped following .*\n.*iris job logs -f/);
    assertEquals((await stateOf("/sigtester/hup")).state, JobState.RUNNING);
    await cluster.client.cancel("/sigtester/hup");
  });
});
