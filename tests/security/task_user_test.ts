/**
 * Per-task OS users (docs/security.md#tasks): with `taskUserIsolation: "required"` a command task
 * and a TypeScript task try to read another running task's directory, the worker's root, the
 * worker token file, the controller's state and the other task's /proc environ — with cat and
 * ls, and, for TypeScript, with
 * `import` of a JSON file and of a text file, which Deno permissions do not cover. All must fail.
 * Normal work (files in the task dir, ports, logs, OOM, killing a tree) still works.
 * Skipped, with the reason, unless the tests run as root on Linux with setpriv(1).
 */
import { create } from "@bufbuild/protobuf";
import { RunTaskRequestSchema } from "../../src/rpc/gen/iris/v1/worker_pb.ts";
import { TaskState } from "../../src/rpc/mod.ts";
import { workerClient } from "../../src/rpc/client.ts";
import { newToken } from "../../src/auth/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { DEFAULT_TASK_UIDS, resolveTaskUsers, TaskUserPool } from "../../src/worker/task_users.ts";
import { startWorker } from "../../src/worker/mod.ts";
import { InvalidArgumentError } from "../../src/errors.ts";
import { main } from "../../src/cli/main.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "../_helpers/assert.ts";
import { commandTask, startHarness } from "../worker/harness.ts";

const decision = resolveTaskUsers("auto", "/tmp/iris-task-user-probe");
const skipReason = decision.enabled ? undefined : decision.reason;
if (skipReason) console.warn(`task_user_test.ts skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

/** Tries every path given: cat for files, ls for directories; prints LEAK or denied per path. */
const COMMAND_PROBE = `
echo "uid $(id -u) gid $(id -g) groups $(id -G)"
for p in "$@"; do
  if [ -d "$p" ]; then out=$(ls -A "$p" 2>&1) && echo "LEAK $p $out" || echo "denied ls $p"
  else out=$(cat "$p" 2>&1) && echo "LEAK $p $out" || echo "denied cat $p"; fi
done
touch "$1.planted" 2>/dev/null && echo "LEAK planted next to $1" || echo "denied write"
`;

/**
 * Imports JSON files and text files (as modules). The specifiers are literals, as in the known
 * limit of tests/security/sandbox_test.ts: Deno then loads them without a permission check, so
 * only the OS can refuse.
 */
function moduleProbe(json: readonly string[], text: readonly string[]): string {
  const attempt = (kind: string, path: string, load: string) => `
try {
  const m = await ${load};
  console.log("LEAK import ${kind} ${path} " + JSON.stringify(m.default ?? m));
} catch (e) {
  console.log("denied import ${kind} ${path}: " + String(e).replaceAll("\\n", " | "));
}`;
  return [
    ...json.map((p) =>
      attempt("json", p, `import(${JSON.stringify(p)}, { with: { type: "json" } })`)
    ),
    ...text.map((p) => attempt("text", p, `import(${JSON.stringify(p)})`)),
    `const id = await new Deno.Command("id", { args: ["-u"] }).output();`,
    `console.log("uid " + new TextDecoder().decode(id.stdout).trim());`,
  ].join("\n");
}

/** Pids whose /proc entry belongs to `uid`. */
function processesOf(uid: number): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.statSync(`/proc/${e.name}`).uid === uid) pids.push(Number(e.name));
    } catch {
      // Gone.
    }
  }
  return pids;
}

function waitUntil(what: string, cond: () => boolean): Promise<true> {
  return waitFor(() => cond() || undefined, { timeout: seconds(30), what });
}

Deno.test({
  name: "task users: command and TS tasks cannot read other tasks, the token or controller state",
  ignore,
  async fn() {
    const secrets = await Deno.makeTempDir({ prefix: "iris-sec-secrets-" });
    const root = await Deno.makeTempDir({ prefix: "iris-sec-root-" });
    const probes = await Deno.makeTempDir({ prefix: "iris-sec-probes-" });
    const workerToken = newToken();
    // Identifiers, so that importing them as a module leaks them whole in the error message.
    const hex = () => crypto.randomUUID().replaceAll("-", "");
    const bobSecret = `bob_${hex()}`;
    const stateSecret = `state_${hex()}`;
    try {
      // As on a real host: the token file 0600 and the state directory 0700, both root's.
      const tokenFile = `${secrets}/worker-token`;
      const stateDir = `${secrets}/state`;
      await Deno.writeTextFile(tokenFile, workerToken, { mode: 0o600 });
      await Deno.mkdir(stateDir, { mode: 0o700 });
      await Deno.writeTextFile(`${stateDir}/state.json`, JSON.stringify({ s: stateSecret }));
      await Deno.chmod(secrets, 0o755); // the secrets themselves carry the protection
      // The probes must be readable by the task users.
      await Deno.chmod(probes, 0o755);
      await Deno.writeTextFile(`${probes}/probe.sh`, COMMAND_PROBE, { mode: 0o644 });

      await using h = await startHarness({
        rootDir: root,
        workerToken,
        protectedPaths: [tokenFile, stateDir],
        taskUserIsolation: "required",
      });
      assert(h.logs.some((l) => l.startsWith("tasks run as their own users")), h.logs.join("\n"));
      const rpc = workerClient(h.worker.url, { token: workerToken });

      // Bob's task keeps secrets in its directory while the probes run.
      await rpc.runTask(commandTask("/bob/other/0", [
        "sh",
        "-c",
        `id -u; echo '{"s":"${bobSecret}"}' > secret.json; echo ${bobSecret} > secret; ` +
        "echo ready; sleep 60",
      ]));
      await waitUntil(
        "bob's task",
        () => h.fake.logsOf("/bob/other/0").some((l) => l.text === "ready"),
      );
      const bobDir = (await Array.fromAsync(Deno.readDir(`${root}/tasks`))).find((e) =>
        e.name.startsWith("bob_other")
      )!.name;
      const bobPath = `${root}/tasks/${bobDir}`;
      const bobUid = Number(
        h.fake.logsOf("/bob/other/0").find((l) =>
          l.stream === "stdout"
        )!.text,
      );
      assertEquals(Deno.statSync(bobPath).uid, bobUid);
      assertEquals((Deno.statSync(bobPath).mode ?? 0) & 0o777, 0o700);

      const targets = [
        `${bobPath}/secret`,
        bobPath,
        `${root}/tasks`,
        root,
        `${root}/bundles`,
        tokenFile,
        stateDir,
        `${stateDir}/state.json`,
        // Bob's environment holds his IRIS_TOKEN.
        `/proc/${h.worker.tasks().find((t) => t.taskId === "/bob/other/0")!.pid}/environ`,
      ];
      await rpc.runTask(commandTask("/alice/cmd/0", ["sh", `${probes}/probe.sh`, ...targets]));
      const cmd = await h.fake.waitForState("/alice/cmd/0", TaskState.SUCCEEDED, seconds(30));
      assertEquals(cmd.exitCode, 0);

      const module = create(RunTaskRequestSchema, {
        taskId: "/alice/ts/0",
        jobId: "/alice/ts",
        attemptId: 0,
        numTasks: 1,
        entrypoint: {
          kind: {
            case: "module",
            value: {
              path: `${probes}/probe.ts`,
              permissions: { run: ["id"] },
            },
          },
        },
      });
      await Deno.writeTextFile(
        `${probes}/probe.ts`,
        moduleProbe([`${bobPath}/secret.json`, `${stateDir}/state.json`], [
          `${bobPath}/secret`,
          tokenFile,
        ]),
        { mode: 0o644 },
      );
      await rpc.runTask(module);
      await h.fake.waitForState("/alice/ts/0", TaskState.SUCCEEDED, seconds(60));

      const all = [
        ...h.fake.logsOf("/alice/cmd/0"),
        ...h.fake.logsOf("/alice/ts/0"),
      ].map((l) => l.text).join("\n");
      for (const secret of [workerToken, bobSecret, stateSecret]) {
        // Any 8 characters of a secret count: a module error may quote only part of it.
        for (let i = 0; i + 8 <= secret.length; i += 4) {
          assert(!all.includes(secret.slice(i, i + 8)), `a secret leaked:\n${all}`);
        }
      }
      assert(!all.includes("LEAK"), all);
      const stdout = (id: string) =>
        h.fake.logsOf(id).filter((l) => l.stream === "stdout").map((l) => l.text);
      const cmdOut = stdout("/alice/cmd/0");
      assertEquals(cmdOut.filter((l) => l.startsWith("denied")).length, targets.length + 1, all);
      const tsOut = stdout("/alice/ts/0");
      assertEquals(tsOut.filter((l) => l.startsWith("denied import")).length, 4, all);
      for (const line of tsOut.filter((l) => l.startsWith("denied import"))) {
        assertMatch(line, /Permission denied|os error 13/);
      }
      // Control: the same probe without task users does read the files (the probe can fail).
      {
        await using off = await startHarness({
          workerToken,
          protectedPaths: [tokenFile, stateDir],
          taskUserIsolation: "off",
        });
        const offRpc = workerClient(off.worker.url, { token: workerToken });
        await offRpc.runTask(module);
        await off.fake.waitForState("/alice/ts/0", TaskState.SUCCEEDED, seconds(60));
        const leaked = off.fake.logsOf("/alice/ts/0").map((l) => l.text).join("\n");
        for (const secret of [bobSecret, stateSecret]) {
          assert(leaked.includes(secret), `control: no leak of ${secret.slice(0, 6)}…:\n${leaked}`);
        }
        const textLine = leaked.split("\n").find((l) =>
          l.includes(`import text ${bobPath}/secret`)
        );
        assert(textLine?.includes(bobSecret), `control: the text import did not leak:\n${leaked}`);
      }

      // Each task has its own unprivileged uid (and gid, and no other groups).
      const cmdIds = /^uid (\d+) gid (\d+) groups (\d+)$/.exec(cmdOut[0]!)!;
      const cmdUid = Number(cmdIds[1]);
      assertEquals([cmdIds[2], cmdIds[3]], [cmdIds[1], cmdIds[1]]);
      const tsUid = Number(tsOut.find((l) => l.startsWith("uid "))!.slice(4));
      for (const uid of [bobUid, cmdUid, tsUid]) {
        assert(uid >= DEFAULT_TASK_UIDS.first && uid <= DEFAULT_TASK_UIDS.last, `uid ${uid}`);
      }
      assertEquals(new Set([bobUid, cmdUid, tsUid]).size, 3, "concurrent tasks share a uid");
      assert(!Deno.statSync(`${bobPath}`).isFile && !existsSync(`${bobPath}/secret.planted`));
      await rpc.killTask({ taskId: "/bob/other/0", attemptId: 0 });
      await h.fake.waitForState("/bob/other/0", TaskState.KILLED, seconds(30));
    } finally {
      for (const d of [secrets, root, probes]) await Deno.remove(d, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "task users: files, ports, logs, OOM and killing a tree still work, nothing outlives a task",
  ignore,
  async fn() {
    await using h = await startHarness({ taskUserIsolation: "required" });
    // Writes in its own directory, and its output arrives.
    await h.client.runTask(commandTask("/u/files/0", [
      "sh",
      "-c",
      'mkdir -p sub && echo hi > sub/f && chmod 000 sub && cat "$HOME/sub/f" 2>/dev/null; ' +
      "chmod 700 sub; cat sub/f; chmod 000 sub; echo port=$IRIS_PORT_HTTP",
    ], { ports: ["http"] }));
    const files = await h.fake.waitForState("/u/files/0", TaskState.SUCCEEDED);
    assertEquals(files.exitCode, 0);
    const out = h.fake.logsOf("/u/files/0").filter((l) => l.stream === "stdout").map((l) => l.text);
    assertEquals(out[0], "hi");
    assertMatch(out[1]!, /^port=\d+$/);

    // A module task listens on its port.
    const dir = await Deno.makeTempDir({ prefix: "iris-sec-port-" });
    try {
      await Deno.chmod(dir, 0o755);
      await Deno.writeTextFile(
        `${dir}/serve.ts`,
        `const port = Number(Deno.env.get("IRIS_PORT_HTTP"));
const listener = Deno.listen({ hostname: "127.0.0.1", port });
const conn = await Deno.connect({ hostname: "127.0.0.1", port });
const accepted = await listener.accept();
console.log("connected on " + port);
conn.close(); accepted.close(); listener.close();
Deno.writeTextFileSync("out.txt", "written");
console.log(Deno.readTextFileSync("out.txt"));
`,
      );
      await h.client.runTask(create(RunTaskRequestSchema, {
        taskId: "/u/port/0",
        jobId: "/u/port",
        attemptId: 0,
        numTasks: 1,
        ports: ["http"],
        entrypoint: { kind: { case: "module", value: { path: `${dir}/serve.ts` } } },
      }));
      const port = await h.fake.waitForState("/u/port/0", TaskState.SUCCEEDED, seconds(60));
      assertEquals(port.exitCode, 0, h.fake.logsOf("/u/port/0").map((l) => l.text).join("\n"));
      const portOut = h.fake.logsOf("/u/port/0").filter((l) => l.stream === "stdout");
      assertMatch(portOut[0]!.text, /^connected on \d+$/);
      assertEquals(portOut[1]!.text, "written");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }

    // Over its memory limit: exit 137.
    await h.client.runTask(commandTask("/u/hog/0", [
      "sh",
      "-c",
      "x=$(head -c 50000000 /dev/zero | tr '\\0' a); sleep 5",
    ], { resources: { cpuMillicores: 100, memoryBytes: 1024 * 1024 } }));
    const hog = await h.fake.waitForState("/u/hog/0", TaskState.FAILED);
    assertEquals(hog.exitCode, 137);

    // A tree, plus a process that left the session: killing the task ends all of them.
    await h.client.runTask(commandTask("/u/tree/0", [
      "sh",
      "-c",
      "id -u; setsid sleep 300 & sleep 300 & sleep 300 & echo started; wait",
    ]));
    await waitUntil("the tree", () => h.fake.logsOf("/u/tree/0").some((l) => l.text === "started"));
    const uid = Number(h.fake.logsOf("/u/tree/0").find((l) => l.stream === "stdout")!.text);
    assert(uid !== 0);
    await waitUntil("4 processes", () => processesOf(uid).length >= 4);
    await h.client.killTask({ taskId: "/u/tree/0", attemptId: 0, graceMs: 200 });
    await h.fake.waitForState("/u/tree/0", TaskState.KILLED);
    await waitUntil("no process of the task's uid", () => processesOf(uid).length === 0);
  },
});

Deno.test("task users: bad settings and unmet `required` fail naming the option", async () => {
  for (const bad of [{ first: 0, last: 5 }, { first: 10, last: 9 }, { first: 1.5, last: 9 }]) {
    let error: unknown;
    try {
      new TaskUserPool(bad, "/usr/bin/setpriv");
    } catch (err) {
      error = err;
    }
    assert(error instanceof InvalidArgumentError, String(error));
    assertMatch(error.message, /^taskUids: must be integers/);
  }
  // A worker root whose parent others cannot traverse (or not root at all) cannot isolate.
  const parent = await Deno.makeTempDir({ prefix: "iris-sec-closed-" });
  try {
    await Deno.chmod(parent, 0o700);
    assertEquals(resolveTaskUsers("off", `${parent}/w`).enabled, false);
    assertEquals(resolveTaskUsers("auto", `${parent}/w`).enabled, false);
    const err = await assertRejects(
      () =>
        startWorker({
          controllerUrl: "http://127.0.0.1:9",
          rootDir: `${parent}/w`,
          taskUserIsolation: "required",
        }),
      /^taskUserIsolation: is "required" but tasks cannot get their own users: /,
    );
    assert(err instanceof InvalidArgumentError);
    await assertRejects(
      () =>
        startWorker({
          controllerUrl: "http://127.0.0.1:9",
          // @ts-expect-error: a mode that does not exist
          taskUserIsolation: "sometimes",
        }),
      /^taskUserIsolation: must be one of off, auto, required: current value is "sometimes"/,
    );
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("cli: worker serve --task-users takes off, auto or required", async () => {
  const err: string[] = [];
  const code = await main(
    ["worker", "serve", "--controller", "http://127.0.0.1:9", "--task-users", "sometimes"],
    { out: () => {}, err: (s) => err.push(s), isTty: false },
    new AbortController().signal,
  );
  assertEquals(code, 2, err.join(""));
  assertMatch(err.join(""), /--task-users must be one of off, auto, required \(got "sometimes"\)/);
});

Deno.test("task users: a pool hands out distinct uids in rotation within its range", () => {
  const pool = new TaskUserPool({ first: 300_000, last: 300_002 }, "/usr/bin/setpriv");
  const a = pool.allocate();
  const b = pool.allocate();
  const c = pool.allocate();
  assertEquals(new Set([a.uid, b.uid, c.uid]), new Set([300_000, 300_001, 300_002]));
  assertEquals(a.gid, a.uid);
  let error: unknown;
  try {
    pool.allocate();
  } catch (err) {
    error = err;
  }
  assertMatch(String(error), /no free task uid in 300000-300002/);
  // Released uids come back only after their sweep.
  pool.release(a);
  return pool.close().then(() => assertEquals(pool.allocate().uid, a.uid));
});

function existsSync(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name: "task users: a leftover that left the task's process group dies after the task ends",
  ignore,
  async fn() {
    // The leader's process group is empty when it exits (the end skips the /proc scan), but a
    // process that moved to a group of its own in the task's session still runs as the task's
    // user: the uid's sweep must kill it.
    const perl = "/usr/bin/perl";
    if (!existsSync(perl)) return;
    await using h = await startHarness({ taskUserIsolation: "required" });
    await workerClient(h.worker.url).runTask(commandTask("/u/escape/0", [
      "sh",
      "-c",
      `id -u; ${perl} -e 'setpgrp(0, 0); sleep 1000' & sleep 0.3`,
    ]));
    const done = await h.fake.waitForState("/u/escape/0", TaskState.SUCCEEDED, seconds(30));
    assertEquals(done.state, TaskState.SUCCEEDED);
    const uid = Number(h.fake.logsOf("/u/escape/0").find((l) => l.stream === "stdout")!.text);
    assert(uid >= DEFAULT_TASK_UIDS.first, `task uid ${uid}`);
    await waitFor(() => processesOf(uid).length === 0 || undefined, {
      timeout: seconds(10),
      what: `the task's escaped process (uid ${uid}) to die`,
    });
  },
});
