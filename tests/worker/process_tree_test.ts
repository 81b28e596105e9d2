/**
 * process_tree.ts: /proc parsing, program resolution, session-leader spawning and the shared
 * process table, on real processes.
 * @module
 */
import assert from "node:assert/strict";
import {
  parseProcStat,
  ProcessTable,
  resolveProgram,
  spawnedIntoCgroup,
  spawnSessionLeader,
} from "../../src/worker/process_tree.ts";
import { DEFAULT_TASK_PATH } from "../../src/worker/task_spec.ts";
import { seconds, waitFor } from "../../src/time.ts";

Deno.test("parseProcStat() reads session, group, state, CPU and RSS, even with ') ' in the name", () => {
  const line = "4242 (we (ird) x) S 4200 4242 4242 0 -1 4194560 100 0 0 0 " +
    "250 50 0 0 20 0 1 0 12345 1000000 300 18446744073709551615";
  assert.deepEqual(parseProcStat(line, 4096), {
    pid: 4242,
    ppid: 4200,
    pgid: 4242,
    sid: 4242,
    zombie: false,
    cpuSeconds: 3,
    rssBytes: 300 * 4096,
  });
  const zombie = parseProcStat(line.replace(") S ", ") Z "), 4096);
  assert.equal(zombie?.zombie, true);
  assert.equal(parseProcStat("garbage", 4096), undefined);
  assert.equal(parseProcStat("1 (short) S 0 1", 4096), undefined);
});

Deno.test("resolveProgram() finds a bare name on PATH and a relative path under cwd, like exec", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-resolve-" });
  try {
    await Deno.mkdir(`${dir}/bin`);
    await Deno.writeTextFile(`${dir}/bin/tool`, "#!/bin/sh\n", { mode: 0o755 });
    await Deno.writeTextFile(`${dir}/bin/data`, "not a program", { mode: 0o644 });
    assert.equal(resolveProgram("tool", `/nonexistent:${dir}/bin`, "/"), `${dir}/bin/tool`);
    assert.equal(resolveProgram("./bin/tool", "/usr/bin", dir), `${dir}/bin/tool`);
    assert.equal(resolveProgram(`${dir}/bin/tool`, "", "/"), `${dir}/bin/tool`);
    assert.equal(resolveProgram("data", `${dir}/bin`, "/"), undefined, "not executable");
    assert.equal(resolveProgram("iris-no-such-tool", `${dir}/bin`, "/"), undefined);
    assert.equal(resolveProgram("tool", "bin", dir), undefined, "relative PATH entries are Deno's");
    assert.equal(resolveProgram("tool", undefined, dir), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("spawnSessionLeader() starts the program as the leader of its own session, with argv[0] as Deno sets it", async () => {
  const script = 'ps -o pid=,pgid=,sid= -p $$; echo "$0"';
  const options = { cwd: "/", env: { PATH: DEFAULT_TASK_PATH } };
  const child = spawnSessionLeader("sh", ["-c", script], options);
  const out = await child.output();
  assert.equal(out.code, 0);
  const [ids, argv0] = new TextDecoder().decode(out.stdout).trim().split("\n");
  assert.deepEqual(ids!.trim().split(/\s+/).map(Number), [child.pid, child.pid, child.pid]);
  const plain = await new Deno.Command("sh", {
    args: ["-c", 'echo "$0"'],
    ...options,
    clearEnv: true,
  })
    .output();
  assert.equal(argv0, new TextDecoder().decode(plain.stdout).trim());
});

Deno.test("spawnSessionLeader() tells whether its wrapper joins the given cgroup (so the worker need not)", async () => {
  const options = { cwd: "/", env: { PATH: DEFAULT_TASK_PATH } };
  const dir = await Deno.makeTempDir({ prefix: "iris-fake-cgroup-" });
  try {
    // A plain directory stands in for the cgroup: the wrapper writes its pid to cgroup.procs.
    const wrapped = spawnSessionLeader("true", [], { ...options, cgroup: dir });
    await wrapped.output();
    const plain = spawnSessionLeader("true", [], options);
    await plain.output();
    if (resolveProgram("setsid", DEFAULT_TASK_PATH, "/")) {
      assert.equal(spawnedIntoCgroup(wrapped), true);
      assert.equal((await Deno.readTextFile(`${dir}/cgroup.procs`)).trim(), "0");
    }
    assert.equal(spawnedIntoCgroup(plain), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "spawnSessionLeader() gives the program its limits, soft and hard, a file size not in whole blocks too",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const options = { cwd: "/", env: { PATH: DEFAULT_TASK_PATH } };
    const limitsOf = async (fileBytes: number) => {
      const child = spawnSessionLeader("cat", ["/proc/self/limits"], {
        ...options,
        limits: { processes: 321, openFiles: 123, fileBytes },
      });
      const out = await child.output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      const text = new TextDecoder().decode(out.stdout);
      const row = (name: string) =>
        text.match(new RegExp(`^${name}\\s+(\\S+)\\s+(\\S+)`, "m"))?.slice(1);
      return {
        nproc: row("Max processes"),
        nofile: row("Max open files"),
        fsize: row("Max file size"),
      };
    };
    // One exec fewer than prlimit where the shell's ulimit can do it (#20); exact either way.
    assert.deepEqual(await limitsOf(8 * 1024 * 1024), {
      nproc: ["321", "321"],
      nofile: ["123", "123"],
      fsize: [String(8 * 1024 * 1024), String(8 * 1024 * 1024)],
    });
    assert.deepEqual((await limitsOf(1_000_001)).fsize, ["1000001", "1000001"]);
  },
});

Deno.test("spawnSessionLeader() reports a missing program or cwd as Deno.Command does", () => {
  const env = { PATH: DEFAULT_TASK_PATH };
  assert.throws(
    () => spawnSessionLeader("iris-no-such-command-xyz", [], { cwd: "/", env }),
    Deno.errors.NotFound,
  );
  assert.throws(
    () => spawnSessionLeader("true", [], { cwd: "/nonexistent-iris-dir", env }),
    Deno.errors.NotFound,
  );
});

Deno.test("ProcessTable.fresh() shares one scan among concurrent callers and sees processes started before the call", async () => {
  const table = new ProcessTable();
  const child = spawnSessionLeader("sleep", ["30"], { cwd: "/", env: { PATH: DEFAULT_TASK_PATH } });
  try {
    // The spawn returns while the wrappers still exec towards `sleep` (mid-exec, RSS reads 0).
    await waitFor(() => Deno.readTextFileSync(`/proc/${child.pid}/comm`).trim() === "sleep", {
      timeout: seconds(10),
      what: "the child to become sleep",
    });
    const [a, b] = [table.fresh(), table.fresh()];
    assert.equal(a, b, "one pending scan");
    const scan = await a;
    assert.ok(scan, "the process table is readable");
    const session = scan.get(child.pid) ?? [];
    assert.deepEqual(session.map((e) => [e.pid, e.pgid, e.zombie]), [[
      child.pid,
      child.pid,
      false,
    ]]);
    assert.ok(session[0]!.rssBytes > 0);
    assert.notEqual(table.fresh(), a, "a later call gets a later scan");
    await table.fresh();
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await child.stdout.cancel();
    await child.stderr.cancel();
  }
});
