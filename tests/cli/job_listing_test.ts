/**
 * Listing and status through the real CLI: newest first with a count of what is hidden, JSON a
 * script can use, multi-line errors kept to one table row, whole stderr tails, every attempt in
 * `job status`, and `job history` with elapsed time, peak memory and exit code.
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { cli, startCluster } from "./_cluster.ts";

Deno.test("iris job list/status/history", async (t) => {
  await using cluster = await startCluster();
  const env = { IRIS_CONTROLLER_URL: cluster.url, USER: "lister" };
  const run = async (args: string[]) => {
    await using p = cli(args, { env });
    const code = await p.code;
    return { code, out: p.stdout, err: p.stderr };
  };
  const fail = ["sh", "-c", "echo first-tail >&2; echo second-tail >&2; exit 3"];

  await t.step("a failure's stderr tail is whole in job run and job logs", async () => {
    const r = await run(["job", "run", "--name", "flaky", "--max-retries", "1", "--", ...fail]);
    assertEquals(r.code, 3, r.err.join("\n"));
    const sys = r.err.filter((l) => /^\[iris\] FAILED/.test(l));
    assert(sys.length >= 1, [...r.err, "--- stdout", ...r.out].join("\n"));
    assertMatch(sys.at(-1)!, /exited with code 3; last stderr lines: first-tail \| second-tail$/);
    const logs = await run(["job", "logs", "flaky"]);
    assert(
      logs.err.some((l) => /\[iris\] FAILED.*last stderr lines: first-tail \| second-tail/.test(l)),
      logs.err.join("\n"),
    );
  });

  await t.step("job status shows every attempt", async () => {
    const r = await run(["job", "status", "flaky"]);
    assertEquals(r.code, 0, r.err.join("\n"));
    const text = r.out.join("\n");
    assertMatch(text, /Command: +sh -c "echo first-tail/);
    assertMatch(text, /TASK +STATE +WORKER +ADDRESS +PORTS +ATTEMPTS/);
    const i = r.out.indexOf("Attempts:");
    assert(i > 0, text);
    assertMatch(r.out[i + 1]!, /TASK +ATTEMPT +WORKER +STATE +EXIT +DURATION +PEAK MEM +REASON/);
    const rows = r.out.slice(i + 2);
    assertEquals(rows.length, 2, text);
    for (const [n, row] of rows.entries()) {
      assertMatch(
        row,
        new RegExp(`^0 +${n} +\\S+ +failed +3 +\\S+ +\\S+.*first-tail \\| second-tail`),
      );
    }
    const json = JSON.parse((await run(["job", "status", "flaky", "--json"])).out.join(""));
    assertEquals(json.tasks[0].attempts.length, 2);
    assertEquals(json.tasks[0].attempts[0].exit_code, 3);
    assert(json.tasks[0].attempts[0].duration_ms >= 0);
    assert(typeof json.tasks[0].worker_address === "string");
  });

  await t.step("job list: newest first, hidden count on stderr, one row per job", async () => {
    for (const n of ["j1", "j2", "j3"]) {
      assertEquals((await run(["job", "run", "--name", n, "--", "true"])).code, 0);
    }
    const all = await run(["job", "list", "--user", "lister"]);
    assertEquals(all.out.length, 5, all.out.join("\n")); // header + 4 jobs, the error on one line
    assertEquals(all.out.slice(1).map((l) => l.split(/\s+/)[0]), [
      "/lister/j3",
      "/lister/j2",
      "/lister/j1",
      "/lister/flaky",
    ]);
    assertMatch(all.out[4]!, /first-tail \| second-tail/);
    const two = await run(["job", "list", "--user", "lister", "--limit", "2"]);
    assertEquals(two.out.length, 3);
    assertMatch(two.err.join("\n"), /\(2 more jobs not shown; use --limit 4 or filters\)/);
  });

  await t.step("job list --json has what a script needs", async () => {
    const r = await run([
      "job",
      "list",
      "--json",
      "--user",
      "lister",
      "--state",
      "failed,succeeded",
    ]);
    const jobs = r.out.map((l) => JSON.parse(l));
    assertEquals(jobs.length, 4);
    const flaky = jobs.find((j) => j.job_id === "/lister/flaky");
    for (
      const k of [
        "name",
        "user",
        "state",
        "tasks",
        "submitted_at_ms",
        "started_at_ms",
        "finished_at_ms",
        "duration_ms",
        "exit_code",
      ]
    ) assert(k in flaky, k);
    assertEquals(flaky.user, "lister");
    assertEquals(flaky.name, "flaky");
    assertEquals(flaky.state, "failed");
    assertEquals(flaky.exit_code, 3);
    assert(flaky.finished_at_ms >= flaky.started_at_ms && flaky.duration_ms >= 0);
    assertEquals(jobs.find((j) => j.job_id === "/lister/j1").exit_code, 0);
  });

  await t.step("job history: elapsed, peak memory, exit code", async () => {
    const r = await run(["job", "history", "--user", "lister"]);
    assertEquals(r.code, 0, r.err.join("\n"));
    assertMatch(r.out[0]!, /JOB +USER +STATE +SUBMITTED +ELAPSED +PEAK MEM +EXIT +TASKS/);
    const flaky = r.out.find((l) => l.startsWith("/lister/flaky"));
    assertMatch(flaky!, /^\/lister\/flaky +lister +failed +\S+Z +\S+ +(\S+ \S?i?B|-) +3 +1$/);
    const json = (await run(["job", "history", "--json", "--user", "lister"])).out.map((l) =>
      JSON.parse(l)
    );
    assertEquals(json.length, 4);
    assert(json.every((j) => "peak_memory_bytes" in j && "duration_ms" in j));
  });
});
