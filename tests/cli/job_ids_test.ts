/**
 * Job ids in the CLI over real processes: short names resolve under the caller's user (the OS
 * user when $USER is unset, also for the library), cancel takes many ids and bulk filters with a
 * count and a confirmation, and comma lists work where a flag repeats.
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { userInfo } from "node:os";
import { JobState } from "../../mod.ts";
import { defaultUser } from "../../src/client/user.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { cli, startCluster } from "./_cluster.ts";

const CLI = new URL("../../cli.ts", import.meta.url).pathname;

Deno.test("iris job ids: short names, default user, bulk cancel, comma lists", async (t) => {
  await using cluster = await startCluster();
  const url = cluster.url;
  const run = async (args: string[], env: Record<string, string> = {}, clearEnv = false) => {
    await using p = cli(args, { env: { IRIS_CONTROLLER_URL: url, ...env }, clearEnv });
    const code = await p.code;
    return { code, out: p.stdout.join("\n"), err: p.stderr.join("\n") };
  };
  const sleeper = (name: string, user: string) =>
    run(["job", "run", "--detach", "--name", name, "--", "sleep", "100"], { USER: user });

  await t.step("with $USER unset, jobs go under the OS user", async () => {
    const os = userInfo().username;
    const r = await run(["job", "run", "--detach", "--name", "nouser", "--", "true"], {}, true);
    assertEquals(r.code, 0, r.err);
    assertEquals(r.out, `/${os}/nouser`);
  });

  await t.step("the library submits as the default user, not /anonymous", async () => {
    const id = await cluster.client.submit({ name: "lib", command: ["true"] });
    assertEquals(id, `/${defaultUser()}/lib`);
    assert(!id.startsWith("/anonymous/"));
  });

  await t.step("short names resolve to /$USER/… in status, logs and cancel", async () => {
    assertEquals((await sleeper("sleeper", "alice")).out, "/alice/sleeper");
    const status = await run(["job", "status", "sleeper"], { USER: "alice" });
    assertEquals(status.code, 0, status.err);
    assertMatch(status.out, /Job: +\/alice\/sleeper/);
    const cancel = await run(["job", "cancel", "sleeper"], { USER: "alice" });
    assertEquals(cancel.code, 0, cancel.err);
    assertEquals(cancel.out, "Cancelled /alice/sleeper");
  });

  await t.step("cancel takes many ids", async () => {
    await sleeper("a1", "carol");
    await sleeper("a2", "carol");
    const r = await run(["job", "cancel", "a1", "/carol/a2"], { USER: "carol" });
    assertEquals(r.code, 0, r.err);
    assertEquals(r.out.split("\n"), ["Cancelled /carol/a1", "Cancelled /carol/a2"]);
  });

  await t.step("bulk cancel: without a terminal needs -y; with -y cancels the count", async () => {
    for (const n of ["b1", "b2", "b3"]) await sleeper(n, "bob");
    await sleeper("keep", "dave");
    const listed = await run([
      "job",
      "list",
      "--json",
      "--user",
      "bob",
      "--state",
      "pending,running",
    ]);
    assertEquals(listed.code, 0, listed.err);
    assertEquals(listed.out.split("\n").length, 3);
    const refused = await run(["job", "cancel", "--user", "bob", "--state", "pending,running"]);
    assertEquals(refused.code, 2);
    assertMatch(refused.err, /3 jobs match/);
    assertMatch(refused.err, /refusing to cancel 3 jobs without a terminal to confirm; add -y/);
    const { jobs } = await cluster.client.list({
      user: "bob",
      states: [JobState.PENDING, JobState.RUNNING],
    });
    assertEquals(jobs.length, 3, "nothing was cancelled");
    const yes = await run(["job", "cancel", "--user", "bob", "-y"]);
    assertEquals(yes.code, 0, yes.err);
    assertEquals(yes.out.split("\n").filter((l) => l.startsWith("Cancelled")).length, 3);
    const dave = await cluster.client.status("/dave/keep");
    assert(dave.job!.state !== JobState.KILLED, "other users' jobs are untouched");
    const badState = await run(["job", "cancel", "--state", "pending,sleeping", "-y"]);
    assertEquals(badState.code, 2);
    assertMatch(badState.err, /unknown state "sleeping"/);
  });

  await t.step("bulk cancel by prefix asks on a terminal", async () => {
    await sleeper("sweep-1", "erin");
    await sleeper("sweep-2", "erin");
    // `script` gives the CLI a terminal; the piped "y" answers the question.
    const cmd = `${Deno.execPath()} run -A ${CLI} job cancel --prefix sweep-`;
    const child = new Deno.Command("script", {
      args: ["-qec", cmd, "/dev/null"],
      env: { IRIS_CONTROLLER_URL: url, USER: "erin", NO_COLOR: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await waitFor(async () => {
      const { jobs } = await cluster.client.list({ prefix: "/erin/sweep-" });
      return jobs.length === 2;
    }, { timeout: seconds(5), what: "jobs listed" });
    await w.write(new TextEncoder().encode("y\n"));
    await w.close();
    const out = await child.output();
    const text = new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 0, text);
    assertMatch(text, /2 jobs match/);
    assertMatch(text, /Cancel 2 jobs\? \[y\/N\]/);
    assertMatch(text, /Cancelled \/erin\/sweep-1/);
    assertMatch(text, /Cancelled \/erin\/sweep-2/);
  });
});

Deno.test("iris job logs -f on a pending job says it is pending", async () => {
  await using cluster = await startCluster();
  const env = { IRIS_CONTROLLER_URL: cluster.url, USER: "waiter" };
  // More CPU than the 4-core worker has: it stays pending.
  await using submit = cli(["job", "run", "-d", "--name", "big", "--cpu", "64", "--", "true"], {
    env,
  });
  assertEquals(await submit.code, 0, submit.stderr.join("\n"));
  await using follow = cli(["job", "logs", "-f", "big"], { env });
  await follow.waitFor(
    /^\[iris\] \/waiter\/big is pending: .*64.*; its lines follow once it starts$/,
  );
  await cluster.client.cancel("/waiter/big");
  assertEquals(await follow.code, 0);
});
