/**
 * Task sandboxes on a real worker: a TypeScript task tries to read another task's directory,
 * the controller's state, the worker token file and the worker's root, and to widen its own
 * permissions; a command task looks for the worker's secrets in its environment. Every escape
 * must fail. Here command tasks are only checked for a clean environment and their own directory;
 * what holds them (and module imports) is a per-task OS user: tests/security/task_user_test.ts.
 */
import { create } from "@bufbuild/protobuf";
import { RunTaskRequestSchema } from "../../src/rpc/gen/iris/v1/worker_pb.ts";
import { TaskState } from "../../src/rpc/mod.ts";
import { workerClient } from "../../src/rpc/client.ts";
import { newToken } from "../../src/auth/mod.ts";
import { seconds } from "../../src/time.ts";
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { commandTask, startHarness } from "../worker/harness.ts";

const PROBE = `
const results: string[] = [];
for (const path of Deno.args) {
  try {
    const text = Deno.statSync(path).isDirectory
      ? [...Deno.readDirSync(path)].map((e) => e.name).join(",")
      : Deno.readTextFileSync(path);
    results.push("LEAK " + path + " " + text);
  } catch (e) {
    results.push("denied " + (e as Error).name + " " + path);
  }
}
try {
  Deno.writeTextFileSync(Deno.args[0] + ".planted", "x");
  results.push("LEAK wrote next to " + Deno.args[0]);
} catch (e) {
  results.push("denied write " + (e as Error).name);
}
for (const r of results) console.log(r);
`;

Deno.test("sandbox: TS tasks cannot reach other tasks, controller state or the worker token", async () => {
  const outside = await Deno.makeTempDir({ prefix: "iris-sec-sandbox-" });
  const secrets = await Deno.makeTempDir({ prefix: "iris-sec-secrets-" });
  const root = await Deno.makeTempDir({ prefix: "iris-sec-root-" });
  const workerToken = newToken();
  try {
    const tokenFile = `${secrets}/worker-token`;
    const stateFile = `${secrets}/state/controller.sqlite3`;
    await Deno.writeTextFile(tokenFile, workerToken);
    await Deno.mkdir(`${secrets}/state`);
    await Deno.writeTextFile(stateFile, "controller state");
    await Deno.chmod(outside, 0o755); // task users must be able to read the module
    await Deno.writeTextFile(`${outside}/probe.ts`, PROBE);
    await using h = await startHarness({
      rootDir: root,
      workerToken,
      protectedPaths: [tokenFile, `${secrets}/state`],
    });
    const rpc = workerClient(h.worker.url, { token: workerToken });

    // Another task's directory with a file in it.
    const other = commandTask("/bob/other/0", [
      "sh",
      "-c",
      "echo bob-secret > secret.txt; sleep 30",
    ]);
    await rpc.runTask(other);
    await h.fake.waitForState("/bob/other/0", TaskState.RUNNING);
    const otherDir = (await Array.fromAsync(Deno.readDir(`${root}/tasks`))).find((e) =>
      e.name.startsWith("bob_other")
    )!;
    const otherSecret = `${root}/tasks/${otherDir.name}/secret.txt`;

    const module = (taskId: string, path: string, args: string[], permissions = {}) =>
      create(RunTaskRequestSchema, {
        taskId,
        jobId: taskId.slice(0, taskId.lastIndexOf("/")),
        attemptId: 0,
        numTasks: 1,
        entrypoint: { kind: { case: "module", value: { path, args, permissions } } },
      });
    const targets = [otherSecret, `${root}/tasks`, root, tokenFile, stateFile, "/etc/hostname"];
    await rpc.runTask(module("/alice/probe/0", `${outside}/probe.ts`, targets));
    await h.fake.waitForState("/alice/probe/0", TaskState.SUCCEEDED, seconds(30));
    const out = h.fake.logsOf("/alice/probe/0").filter((l) => l.stream === "stdout").map((l) =>
      l.text
    );
    assertEquals(out.length, targets.length + 1, out.join("\n"));
    for (const line of out) assertMatch(line, /^denied /, out.join("\n"));

    // Symlinks to protected places, made where the task may be granted access (issue #16).
    await Deno.symlink(`${root}/tasks/${otherDir.name}`, `${outside}/to-other`);
    await Deno.symlink(`${secrets}/state`, `${outside}/to-state`);
    await Deno.symlink(secrets, `${outside}/to-secrets`);
    // Asking for permissions that cover protected paths is refused with a clear error.
    for (
      const [i, perms] of [
        { read: ["*"] },
        { read: [root] },
        { read: [`${root}/tasks/${otherDir.name}`] },
        { write: ["/"] },
        { read: [secrets] },
        { read: ["../.."] },
        { read: [`${outside}/to-other`] },
        { write: [`${outside}/to-state`] },
        { read: [`${outside}/to-secrets/state`] },
      ].entries()
    ) {
      const id = `/alice/widen${i}/0`;
      await rpc.runTask(module(id, `${outside}/probe.ts`, [otherSecret], perms));
      const failed = await h.fake.waitForState(id, TaskState.FAILED, seconds(30));
      assertMatch(failed.error, /permissions\.(read|write): .* would give the task access to/);
      assert(!h.fake.logsOf(id).some((l) => l.text.includes("LEAK")));
    }
    for (const [id, name] of [["/alice/widen6/0", "to-other"], ["/alice/widen7/0", "to-state"]]) {
      const failed = h.fake.updatesOf(id!).find((u) => u.state === TaskState.FAILED)!;
      assertMatch(failed.error, new RegExp(`${name}.* \\(through symlinks: `));
    }
    // A link to an unprotected directory still works, under its own name.
    const data = await Deno.makeTempDir({ prefix: "iris-sec-data-" });
    try {
      await Deno.chmod(data, 0o755);
      await Deno.writeTextFile(`${data}/ok.txt`, "shared data");
      await Deno.chmod(`${data}/ok.txt`, 0o644);
      await Deno.symlink(data, `${outside}/to-data`);
      await rpc.runTask(
        module("/alice/data/0", `${outside}/probe.ts`, [`${outside}/to-data/ok.txt`], {
          read: [`${outside}/to-data`],
        }),
      );
      await h.fake.waitForState("/alice/data/0", TaskState.SUCCEEDED, seconds(30));
      const seen = h.fake.logsOf("/alice/data/0").map((l) => l.text).join("\n");
      assertMatch(seen, /LEAK .*to-data\/ok\.txt shared data/);
    } finally {
      await Deno.remove(data, { recursive: true });
    }
    // A module whose own directory is protected is refused too (it would be granted read).
    await Deno.writeTextFile(`${root}/probe.ts`, PROBE);
    await rpc.runTask(module("/alice/inroot/0", `${root}/probe.ts`, [otherSecret]));
    const inRoot = await h.fake.waitForState("/alice/inroot/0", TaskState.FAILED, seconds(30));
    assertMatch(inRoot.error, /entrypoint\.module\.path/);
    await rpc.killTask({ taskId: "/bob/other/0", attemptId: 0 });
  } finally {
    for (const d of [outside, secrets, root]) await Deno.remove(d, { recursive: true });
  }
});

Deno.test("sandbox: a command task's environment is an allowlist without the worker's secrets", async () => {
  const workerToken = newToken();
  const ownSecret = newToken();
  Deno.env.set("IRIS_SEC_TEST_SECRET", ownSecret);
  try {
    await using h = await startHarness({ workerToken });
    const rpc = workerClient(h.worker.url, { token: workerToken });
    await rpc.runTask(commandTask("/alice/env/0", ["sh", "-c", "env; pwd"], {
      env: { JOB_VAR: "1", IRIS_TOKEN: "spoofed", IRIS_WORKER_TOKEN_FILE: "/etc/shadow" },
    }));
    await h.fake.waitForState("/alice/env/0", TaskState.SUCCEEDED, seconds(20));
    const lines = h.fake.logsOf("/alice/env/0").filter((l) => l.stream === "stdout").map((l) =>
      l.text
    );
    const text = lines.join("\n");
    assert(!text.includes(workerToken), "the worker token reached a task");
    assert(!text.includes(ownSecret), "the worker's environment leaked into a task");
    const names = lines.filter((l) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(l)).map((l) =>
      l.slice(0, l.indexOf("="))
    );
    const allowed = new Set([
      "PATH",
      "HOME",
      "LANG",
      "TZ",
      "TMPDIR",
      "PWD",
      "SHLVL",
      "_",
      "JOB_VAR",
      // The Python client of the worker's install (docs/python.md).
      "PYTHONPATH",
    ]);
    for (const name of names) {
      assert(allowed.has(name) || name.startsWith("IRIS_"), `unexpected variable ${name}`);
    }
    assertMatch(text, /^IRIS_TOKEN=iris-task-v1\.alice\./m);
    assert(!/^IRIS_WORKER_TOKEN_FILE=/m.test(text), "job env set a reserved variable");
    const home = /^HOME=(.*)$/m.exec(text)![1]!;
    assertEquals(lines.at(-1), home, "the task runs in its own directory, which is HOME");
    assertMatch(home, /alice_env_0-[0-9a-f]{8}_attempt_0$/);
  } finally {
    Deno.env.delete("IRIS_SEC_TEST_SECRET");
  }
});

Deno.test("sandbox: known limit — Deno permissions do not cover module imports (docs/security.md)", async () => {
  // If this starts failing, Deno gates imports by --allow-read and docs/security.md should say so.
  const dir = await Deno.makeTempDir({ prefix: "iris-sec-import-" });
  try {
    await Deno.mkdir(`${dir}/task`);
    await Deno.mkdir(`${dir}/secret`);
    await Deno.writeTextFile(`${dir}/secret/leak.json`, `{"secret": "s3cret"}`);
    await Deno.writeTextFile(
      `${dir}/task/main.ts`,
      `const m = await import("${dir}/secret/leak.json", { with: { type: "json" } });\n` +
        "console.log(JSON.stringify(m.default));\n",
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-config",
        "--no-prompt",
        `--allow-read=${dir}/task`,
        `${dir}/task/main.ts`,
      ],
      clearEnv: true,
      env: { NO_COLOR: "1", DENO_DIR: `${dir}/deno` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(new TextDecoder().decode(out.stdout).trim(), `{"secret":"s3cret"}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
