/**
 * The operator tools (docs/operations.md) against a real controller and worker on loopback with
 * auth on: `iris rpc`, `iris endpoints list`, `iris query` and `iris process status|logs`, run
 * through the CLI's `main` in-process (each goes through Connect RPCs only).
 */
import { main } from "../../src/cli/main.ts";
import { IrisClient } from "../../src/client/client.ts";
import { controllerClient } from "../../src/rpc/client.ts";
import { startController } from "../../src/controller/server.ts";
import { TaskState } from "../../src/rpc/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { listProcesses } from "../_helpers/iris_process.ts";
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { startSecureCluster, type Tokens } from "../security/_cluster.ts";

interface Run {
  code: number;
  out: string;
  err: string;
}

/** Runs `iris <argv>` in-process. */
async function iris(argv: string[]): Promise<Run> {
  let out = "";
  let err = "";
  const code = await main(argv, {
    out: (t) => out += t,
    err: (t) => err += t,
    isTty: false,
  }, AbortSignal.timeout(60_000));
  return { code, out, err };
}

/** Token files for every user of `tokens` under `dir`, and the CLI flags for each. */
function tokenFlags(
  dir: string,
  url: string,
  tokens: Tokens,
): Record<"alice" | "bob" | "admin", string[]> {
  const flags = (name: "alice" | "bob" | "admin") => {
    const file = `${dir}/${name}.token`;
    Deno.writeTextFileSync(file, tokens[name] + "\n", { mode: 0o600 });
    return ["--controller", url, "--token-file", file];
  };
  return { alice: flags("alice"), bob: flags("bob"), admin: flags("admin") };
}

Deno.test("ops: iris rpc lists and calls any RPC by name, with the CLI's URL and token", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-ops-" });
  try {
    await using cluster = await startSecureCluster();
    const url = cluster.controller.url;
    const as = tokenFlags(dir, url, cluster.tokens);

    const list = await iris(["rpc", "--list"]);
    assertEquals(list.code, 0, list.err);
    assertMatch(list.out, /^ControllerService \(iris\.v1\.ControllerService\)$/m);
    assertMatch(list.out, /^ {2}list-jobs +ListJobsRequest -> ListJobsResponse$/m);
    assertMatch(list.out, /^ {2}execute-raw-query /m);
    assertMatch(list.out, /^WorkerService /m);
    const workerOnly = await iris(["rpc", "worker", "--list"]);
    assert(!workerOnly.out.includes("ControllerService"), workerOnly.out);
    assertMatch(workerOnly.out, /get-process-status/);

    // Kebab-case and proto names, inline JSON and @file.
    const status = await iris(["rpc", "controller", "get-controller-status", ...as.alice]);
    assertEquals(status.code, 0, status.err);
    assertEquals(JSON.parse(status.out).workerCount, 1);
    await new IrisClient(url, { token: cluster.tokens.alice }).submit({
      name: "listed",
      command: ["true"],
    });
    const req = `${dir}/req.json`;
    await Deno.writeTextFile(req, JSON.stringify({ prefix: "/alice/" }));
    for (const args of [["ListJobs", '{"prefix": "/alice/"}'], ["list_jobs", `@${req}`]]) {
      const r = await iris(["rpc", "ControllerService", ...args, ...as.alice]);
      assertEquals(r.code, 0, r.err);
      assertEquals(JSON.parse(r.out).jobs[0].jobId, "/alice/listed");
    }

    // Mistakes are usage errors naming the problem; auth still applies.
    const bad: [string[], RegExp][] = [
      [["rpc", "nope", "x"], /unknown service "nope" \(known: ControllerService, WorkerService\)/],
      [["rpc", "controller", "no-such"], /ControllerService has no method "no-such"/],
      [["rpc", "controller", "list-jobs", "{oops"], /the request is not valid JSON/],
      [
        ["rpc", "controller", "list-jobs", '{"bogus": 1}'],
        /does not fit iris\.v1\.ListJobsRequest.*bogus/,
      ],
      [["rpc", "controller", "list-jobs", "@/nonexistent/req.json"], /cannot read request file/],
      [["rpc", "controller"], /missing SERVICE METHOD/],
    ];
    for (const [argv, re] of bad) {
      const r = await iris([...argv, "--controller", url]);
      assertEquals(r.code, 2, `${argv.join(" ")}: ${r.out}${r.err}`);
      assertMatch(r.err, re);
    }
    const anon = await iris(["rpc", "controller", "list-jobs", "--controller", url]);
    assertEquals(anon.code, 1);
    assertMatch(anon.err, /authentication required/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ops: iris endpoints list shows endpoints by prefix or exact name", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-ops-" });
  try {
    await using cluster = await startSecureCluster();
    const url = cluster.controller.url;
    const as = tokenFlags(dir, url, cluster.tokens);
    const alice = new IrisClient(url, { token: cluster.tokens.alice });
    const jobId = await alice.submit({ name: "serve", command: ["sleep", "60"] });
    const taskId = `${jobId}/0`;
    await waitFor(async () => {
      const [t] = await alice.tasks(jobId);
      return t?.state === TaskState.RUNNING || undefined;
    }, { timeout: seconds(30), what: "the task to run" });
    const rpc = controllerClient(url, { token: cluster.tokens.alice });
    await rpc.registerEndpoint({ name: "coord", address: "127.0.0.1:4321", taskId });
    await rpc.registerEndpoint({ name: "coord-2", address: "127.0.0.1:4322", taskId });

    const all = await iris(["endpoints", "list", ...as.alice]);
    assertEquals(all.code, 0, all.err);
    assertMatch(all.out, /^NAME +ADDRESS +TASK +ID$/m);
    assertMatch(all.out, /^\/alice\/serve\/coord +127\.0\.0\.1:4321 +\/alice\/serve\/0 /m);
    assertMatch(all.out, /\/alice\/serve\/coord-2 +127\.0\.0\.1:4322/);
    const exact = await iris(["endpoints", "list", "/alice/serve/coord", "--exact", "--json"]
      .concat(as.alice));
    assertEquals(exact.code, 0, exact.err);
    const parsed = JSON.parse(exact.out) as { name: string; address: string }[];
    assertEquals(parsed.map((e) => [e.name, e.address]), [[
      "/alice/serve/coord",
      "127.0.0.1:4321",
    ]]);
    const none = await iris(["endpoints", "list", "/bob/", ...as.alice]);
    assertEquals(none.out, "No endpoints.\n");
    await alice.cancel(jobId);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ops: iris query runs read-only SQL, admin only, with a row cap and a time limit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-ops-" });
  try {
    await using cluster = await startSecureCluster({ stateDir: `${dir}/state` });
    const url = cluster.controller.url;
    const as = tokenFlags(dir, url, cluster.tokens);
    await new IrisClient(url, { token: cluster.tokens.alice }).submit({
      name: "q",
      command: ["true"],
    });

    const tables = await iris([
      "query",
      "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
      ...as.admin,
    ]);
    assertEquals(tables.code, 0, tables.err);
    assertMatch(tables.out, /^name$/m);
    assertMatch(tables.out, /^jobs$/m);
    assertMatch(tables.out, /\(\d+ rows\)\n$/);

    const json = await iris(["query", "--json", "SELECT 1 AS a, NULL AS b, 'x' AS a", ...as.admin]);
    assertEquals(json.code, 0, json.err);
    assertEquals(JSON.parse(json.out), {
      columns: ["a", "b", "a:1"],
      rows: [[1, null, "x"]],
      truncated: false,
    });

    const capped = await iris([
      "query",
      "--max-rows",
      "10",
      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 50) SELECT x FROM c",
      ...as.admin,
    ]);
    assertEquals(capped.code, 0, capped.err);
    assertMatch(capped.out, /\(10 rows; truncated at --max-rows 10\)/);

    // At most 16 MiB of rows come back, whatever --max-rows says.
    const big = await iris([
      "query",
      "--json",
      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 20) " +
      "SELECT printf('%.*c', 1000000, 'x') AS s FROM c",
      ...as.admin,
    ]);
    assertEquals(big.code, 0, big.err);
    const bigRows = JSON.parse(big.out);
    assertEquals([bigRows.truncated, bigRows.rows.length], [true, 16]);

    // Writes never happen: refused up front, or by the read-only connection.
    const before = cluster.controller.controller.jobs.jobs.size;
    for (
      const sql of [
        "DELETE FROM jobs",
        "WITH x AS (SELECT 1) DELETE FROM jobs",
        "PRAGMA user_version = 3",
      ]
    ) {
      const r = await iris(["query", sql, ...as.admin]);
      assertEquals(r.code, 1, `${sql}: ${r.out}`);
      assertMatch(r.err, /^iris query: sql: /);
    }
    const count = await iris(["query", "--json", "SELECT count(*) AS n FROM jobs", ...as.admin]);
    assertEquals(JSON.parse(count.out).rows[0][0], before);

    // A runaway query is stopped at its time limit.
    const slow = await iris([
      "query",
      "--timeout",
      "1s",
      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
      ...as.admin,
    ]);
    assertEquals(slow.code, 1, slow.out);
    assertMatch(slow.err, /ran past its time limit of 1s/);

    // Admin only; bad SQL and flags are named.
    const denied = await iris(["query", "SELECT 1", ...as.alice]);
    assertEquals(denied.code, 1);
    assertMatch(denied.err, /alice may not run raw SQL queries: it needs an admin token/);
    const syntax = await iris(["query", "SELECT FROM WHERE", ...as.admin]);
    assertEquals(syntax.code, 1);
    assertMatch(syntax.err, /sql: .*syntax error/);
    const flag = await iris(["query", "--max-rows", "0", "SELECT 1", ...as.admin]);
    assertEquals(flag.code, 2);
    assertMatch(flag.err, /--max-rows must be an integer between 1 and 10000/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ops: iris query on a memory-only controller answers failed_precondition", async () => {
  await using server = startController({ log: () => {} });
  const r = await iris(["query", "SELECT 1", "--controller", server.url]);
  assertEquals(r.code, 1);
  assertMatch(r.err, /keeps its state in memory only \(no state dir\)/);
  let code = "";
  try {
    await controllerClient(server.url).executeRawQuery({ sql: "SELECT 1" });
  } catch (err) {
    code = String((err as { code?: unknown }).code);
  }
  assertEquals(code, "9"); // Code.FailedPrecondition
});

Deno.test("ops: iris process status|logs shows the controller's and a worker's process", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-ops-" });
  try {
    await using cluster = await startSecureCluster();
    const url = cluster.controller.url;
    const as = tokenFlags(dir, url, cluster.tokens);

    const status = await iris(["process", "status", ...as.admin]);
    assertEquals(status.code, 0, status.err);
    assertMatch(status.out, /^process: +controller$/m);
    assertMatch(status.out, new RegExp(`^pid: +${Deno.pid}$`, "m"));
    assertMatch(status.out, /^rss: +\d/m);
    assertMatch(status.out, /^threads: +[1-9]/m);
    assertMatch(status.out, /^open fds: +[1-9]/m);
    assertMatch(status.out, /controller listening on/);

    const workerId = cluster.worker.workerId;
    const ws = await iris(["process", "status", "--worker", workerId, "--json", ...as.admin]);
    assertEquals(ws.code, 0, ws.err);
    const info = JSON.parse(ws.out);
    assertEquals([info.role, info.id, info.pid], ["worker", workerId, Deno.pid]);
    assert(info.cpuUserSeconds > 0 && info.threads > 0 && info.openFds > 0, ws.out);

    const logs = await iris(["process", "logs", "--worker", workerId, "--lines", "3", ...as.admin]);
    assertEquals(logs.code, 0, logs.err);
    const lines = logs.out.trim().split("\n");
    assert(lines.length >= 1 && lines.length <= 3, logs.out);
    const clogs = await iris(["process", "logs", ...as.admin]);
    assertMatch(clogs.out, /worker .* registered at/);

    const denied = await iris(["process", "status", ...as.alice]);
    assertEquals(denied.code, 1);
    assertMatch(denied.err, /alice may not read process status: it needs an admin token/);
    const missing = await iris(["process", "status", "--worker", "w-nope", ...as.admin]);
    assertEquals(missing.code, 1);
    assertMatch(missing.err, /No worker w-nope/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ops: iris job summary and job bug-report describe a finished job", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-ops-" });
  try {
    await using cluster = await startSecureCluster();
    const url = cluster.controller.url;
    const as = tokenFlags(dir, url, cluster.tokens);
    const alice = new IrisClient(url, { token: cluster.tokens.alice });
    const jobId = await alice.submit({
      name: "two",
      command: ["sh", "-c", "echo hello from $IRIS_TASK_INDEX; sleep 0.3"],
      replicas: 2,
    });
    await alice.wait(jobId, { timeout: seconds(60) });

    const summary = await iris(["job", "summary", jobId, ...as.alice]);
    assertEquals(summary.code, 0, summary.err);
    assertMatch(summary.out, /^\/alice\/two {2}succeeded {2}2 task\(s\) {2}wall /);
    assertMatch(summary.out, /^TASK +STATE +ATTEMPTS +WORKER +RUN TIME +PEAK MEM +NOTE$/m);
    assertMatch(summary.out, /^0 +succeeded +1 +\S+ +\d/m);
    assertMatch(summary.out, /^1 +succeeded +1 /m);
    const sj = await iris(["job", "summary", jobId, "--json", ...as.alice]);
    const rows = JSON.parse(sj.out) as { state: string; runTimeMs: number }[];
    assertEquals(rows.map((r) => r.state), ["succeeded", "succeeded"]);
    // The start is stamped when the worker hears of the fork: on a busy CI host its event loop may
    // hear late, so a 0.3 s sleep can show a few ms less (seen: 292.7 ms).
    assert(rows.every((r) => r.runTimeMs >= 250), sj.out);

    // A directory, then a .tar.gz with the same parts.
    const out = `${dir}/report`;
    const rep = await iris(["job", "bug-report", jobId, "--out", out, ...as.alice]);
    assertEquals(rep.code, 0, rep.err);
    assertEquals(rep.out, `${out}\n`);
    const job = JSON.parse(await Deno.readTextFile(`${out}/job.json`));
    assertEquals(job.job.spec.replicas, 2);
    assertEquals(job.tasks.length, 2);
    assertEquals(job.tasks[0].attempts.length, 1);
    const logs = await Deno.readTextFile(`${out}/logs.txt`);
    assertMatch(logs, /\[0#0 stdout\] hello from 0/);
    assertMatch(logs, /\[1#0 stdout\] hello from 1/);
    const workers = JSON.parse(await Deno.readTextFile(`${out}/workers.json`));
    assertEquals(Object.keys(workers), [cluster.worker.workerId]);
    const sched = JSON.parse(await Deno.readTextFile(`${out}/scheduler.json`));
    assertEquals(sched.job.state, "succeeded");
    assertMatch(await Deno.readTextFile(`${out}/README.txt`), /Iris bug report for \/alice\/two/);
    const again = await iris(["job", "bug-report", jobId, "--out", out, ...as.alice]);
    assertEquals(again.code, 2);
    assertMatch(again.err, /exists; choose another --out/);

    const tgz = await iris(["job", "bug-report", jobId, "--out", `${dir}/r.tar.gz`, ...as.alice]);
    assertEquals(tgz.code, 0, tgz.err);
    const listed = await new Deno.Command("tar", { args: ["-tzf", `${dir}/r.tar.gz`] }).output();
    const names = new TextDecoder().decode(listed.stdout).split("\n").filter((n) => n).sort();
    assertEquals(names, ["README.txt", "job.json", "logs.txt", "scheduler.json", "workers.json"]);

    const missing = await iris(["job", "summary", "/alice/nope", ...as.alice]);
    assertEquals(missing.code, 1);
    assertMatch(missing.err, /\/alice\/nope/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ops: GetTransactions records who submitted and cancelled, admin only, across restarts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-ops-" });
  try {
    const stateDir = `${dir}/state`;
    {
      await using cluster = await startSecureCluster({ stateDir });
      const url = cluster.controller.url;
      const alice = new IrisClient(url, { token: cluster.tokens.alice });
      const jobId = await alice.submit({ name: "tx", command: ["sleep", "60"] });
      await alice.cancel(jobId, "changed my mind");
      const admin = controllerClient(url, { token: cluster.tokens.admin });
      const res = await admin.getTransactions({ actions: ["submit", "cancel"] });
      assertEquals(
        res.transactions.map((t) => [t.action, t.entity, t.user, t.details]),
        [
          ["submit", "/alice/tx", "alice", "1 task(s)"],
          ["cancel", "/alice/tx", "alice", "changed my mind"],
        ],
      );
      let denied = "";
      try {
        await controllerClient(url, { token: cluster.tokens.alice }).getTransactions({});
      } catch (err) {
        denied = String(err);
      }
      assertMatch(denied, /alice may not read the transactions log: it needs an admin token/);
      // The worker dies: recorded by the controller.
      cluster.controller.controller.workerDead(cluster.worker.workerId, "test kill");
      const dead = await admin.getTransactions({ actions: ["worker_dead"] });
      assertEquals(dead.transactions.map((t) => [t.entity, t.user, t.details]), [
        [cluster.worker.workerId, "controller", "test kill"],
      ]);
    }
    // A new controller on the same state dir still has them.
    await using server = startController({ stateDir, log: () => {} });
    const res = await controllerClient(server.url).getTransactions({});
    assertEquals(res.transactions.map((t) => t.action), ["submit", "cancel", "worker_dead"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ops: iris task exec runs in the task's dir, as its user, with its env; streams and exits", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-ops-" });
  try {
    await using cluster = await startSecureCluster();
    const url = cluster.controller.url;
    const as = tokenFlags(dir, url, cluster.tokens);
    const alice = new IrisClient(url, { token: cluster.tokens.alice });
    const jobId = await alice.submit({
      name: "box",
      command: ["sh", "-c", "echo uid=$(id -u) dir=$(pwd); sleep 60"],
      env: { FOO: "from-the-spec" },
    });
    const taskId = `${jobId}/0`;
    const first = await waitFor(async () => {
      const lines = await alice.logs(jobId);
      return lines.find((l) => l.text.startsWith("uid="))?.text;
    }, { timeout: seconds(30), what: "the task's first line" });
    const [, uid, taskDir] = first.match(/^uid=(\d+) dir=(.*)$/)!;

    const r = await iris([
      "task",
      "exec",
      taskId,
      ...as.alice,
      "--",
      "sh",
      "-c",
      "echo uid=$(id -u) dir=$(pwd) foo=$FOO; echo oops >&2; exit 3",
    ]);
    assertEquals(r.code, 3, r.err);
    assertEquals(r.out, `uid=${uid} dir=${taskDir} foo=from-the-spec\n`);
    assertEquals(r.err, "oops\n");

    // The time limit kills the command and everything it started.
    const slow = await iris([
      "task",
      "exec",
      taskId,
      "--timeout",
      "1s",
      ...as.alice,
      "--",
      "sleep",
      "37",
    ]);
    assert(slow.code !== 0, slow.err);
    assertMatch(slow.err, /stopped after 1(\.0)?s \(the time limit\)/);
    assert(
      !(await listProcesses()).some((p) => /^\S*sleep 37$/.test(p.args)),
      "the exec'd sleep survived",
    );

    // Only the owner or an admin; unlimited time only for an admin; the log says who ran what.
    const bob = await iris(["task", "exec", taskId, ...as.bob, "--", "true"]);
    assertEquals(bob.code, 1);
    assertMatch(bob.err, /bob may not exec in \/alice\/box/);
    const forever = await iris([
      "task",
      "exec",
      taskId,
      "--timeout",
      "none",
      ...as.alice,
      "--",
      "true",
    ]);
    assertMatch(forever.err, /alice may not exec without a time limit/);
    const admin = await iris([
      "task",
      "exec",
      taskId,
      "--timeout",
      "none",
      ...as.admin,
      "--",
      "true",
    ]);
    assertEquals(admin.code, 0, admin.err);
    const missing = await iris(["task", "exec", taskId, ...as.alice, "--", "no-such-program-x"]);
    assertEquals(missing.code, 127, missing.err);
    assertMatch(missing.err, /cannot start no-such-program-x/);
    const usage = await iris(["task", "exec", taskId, ...as.alice]);
    assertEquals(usage.code, 2);
    assertMatch(usage.err, /missing the command after --/);
    const tx = await controllerClient(url, { token: cluster.tokens.admin }).getTransactions({
      actions: ["exec"],
    });
    assertEquals(tx.transactions[0]!.user, "alice");
    assertEquals(tx.transactions[0]!.entity, taskId);
    assertMatch(tx.transactions[0]!.details, /"sh","-c","echo uid=/);
    assert(tx.transactions.some((t) => t.user === "root"), "the admin's exec is recorded");

    // The caller going away (Ctrl-C) kills the command too.
    const abort = new AbortController();
    const stream = controllerClient(url, { token: cluster.tokens.alice }).execInTask(
      { taskId, command: ["sleep", "41"] },
      { signal: abort.signal },
    );
    const drained = (async () => {
      try {
        for await (const _ of stream) { /* nothing is printed */ }
      } catch { /* aborted */ }
    })();
    await waitFor(
      async () => (await listProcesses()).some((p) => /^\S*sleep 41$/.test(p.args)) || undefined,
      { timeout: seconds(10), what: "the exec'd sleep 41" },
    );
    abort.abort();
    await drained;
    await waitFor(
      async () => !(await listProcesses()).some((p) => /^\S*sleep 41$/.test(p.args)) || undefined,
      { timeout: seconds(10), what: "the exec'd sleep 41 to be killed" },
    );

    await alice.cancel(jobId);
    const done = await iris(["task", "exec", taskId, ...as.alice, "--", "true"]);
    assertEquals(done.code, 1);
    assertMatch(done.err, /task \/alice\/box\/0 is not running/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ops: iris cluster debug health checks every worker live, admin only", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-ops-" });
  try {
    await using cluster = await startSecureCluster();
    const url = cluster.controller.url;
    const as = tokenFlags(dir, url, cluster.tokens);
    const ok = await iris(["cluster", "debug", "health", ...as.admin]);
    assertEquals(ok.code, 0, ok.err);
    assertMatch(ok.out, /1 worker\(s\), 0 failing/);
    assertMatch(
      ok.out,
      new RegExp(`^${cluster.worker.workerId} +ok +\\S+ ago +${Deno.pid} `, "m"),
    );
    // A worker the controller lists but that does not answer fails the check.
    await controllerClient(url, { token: cluster.tokens.worker }).registerWorker({
      workerId: "w-ghost",
      address: "http://127.0.0.1:9",
      resources: { cpuMillicores: 1000, memoryBytes: 1e9 },
    });
    const bad = await iris(["cluster", "debug", "health", "--json", ...as.admin]);
    assertEquals(bad.code, 1, bad.err);
    const rows = JSON.parse(bad.out).workers as { workerId: string; ok: boolean; error: string }[];
    const ghost = rows.find((r) => r.workerId === "w-ghost")!;
    assertEquals(ghost.ok, false);
    assert(ghost.error !== "", bad.out);
    assertEquals(rows.find((r) => r.workerId === cluster.worker.workerId)!.ok, true);
    const denied = await iris(["cluster", "debug", "health", ...as.alice]);
    assertEquals(denied.code, 1);
    assertMatch(denied.err, /alice may not read process status/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ops: iris task profile writes a /proc-sampled profile of a running task", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-ops-" });
  try {
    await using cluster = await startSecureCluster();
    const url = cluster.controller.url;
    const as = tokenFlags(dir, url, cluster.tokens);
    const alice = new IrisClient(url, { token: cluster.tokens.alice });
    // One busy process and one sleeping one in the task's session.
    const jobId = await alice.submit({
      name: "busy",
      command: ["sh", "-c", "sleep 50 & while :; do :; done"],
    });
    const taskId = `${jobId}/0`;
    await waitFor(async () => {
      const [t] = await alice.tasks(jobId);
      return t?.state === TaskState.RUNNING || undefined;
    }, { timeout: seconds(30), what: "the task to run" });
    const out = `${dir}/p.txt`;
    const r = await iris(["task", "profile", taskId, "--seconds", "1", "--out", out, ...as.alice]);
    assertEquals(r.code, 0, r.err);
    assertEquals(r.out, `${out} (proc-sampling, text)\n`);
    const text = await Deno.readTextFile(out);
    assertMatch(text, /^\/proc sampling of session \d+: \d+ rounds/);
    // The shell loop is mostly running; sleep is sleeping in the kernel.
    const shell = text.split("\n").find((l) => /sh -c sleep 50/.test(l))!;
    const running = Number(/^\d+\s+[\d.]+\s+(\d+)%/.exec(shell)![1]);
    assert(running > 20, text);
    // Sleeping nearly always (a sample may catch its start), in whatever kernel function.
    const sleeper = text.split("\n").find((l) => / sleep 50$/.test(l))!;
    assert(Number(/^\d+\s+[\d.]+\s+(\d+)%/.exec(sleeper)![1]) <= 20, text);

    const bob = await iris(["task", "profile", taskId, ...as.bob]);
    assertMatch(bob.err, /bob may not profile \/alice\/busy/);
    const flag = await iris(["task", "profile", taskId, "--seconds", "99", ...as.alice]);
    assertEquals(flag.code, 2);
    await alice.cancel(jobId);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
