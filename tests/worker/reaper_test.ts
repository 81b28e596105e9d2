/**
 * No task outlives its worker (issue #15): a real `iris worker serve` runs tasks that ignore
 * SIGTERM, leave their session with setsid and double fork; then the worker is SIGKILLed.
 * Within 5 s nothing of its tasks may run — looked up by the worker's tag, by task session and by
 * task uid — and its temporary root is gone. A worker restarted on the same root after its
 * watchdog was killed too cleans up what was left. Both with task users (as root) and without,
 * and with the worker's pieces running as an unprivileged user.
 * The same after a real OOM kill of the worker (in a cgroup-v1 memory cgroup made by the test).
 * Figures: docs/durability.md ("Worker death").
 */
import { workerClient } from "../../src/rpc/client.ts";
import { TaskState } from "../../src/rpc/mod.ts";
import { ms, seconds, sleep, waitFor } from "../../src/time.ts";
import { attemptDirName } from "../../src/worker/task_spec.ts";
import {
  findTargets,
  readLedger,
  reapTag,
  removeCgroup,
  taskCgroup,
} from "../../src/worker/reaper.ts";
import { spawnSessionLeader } from "../../src/worker/process_tree.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { type IrisProcess, pumpLines, spawnIris } from "../_helpers/iris_process.ts";
import { taskDenoPath } from "../../src/worker/task_users.ts";
import { FakeController } from "./fake_controller.ts";
import { commandTask } from "./harness.ts";

const isRoot = Deno.uid() === 0;

/** Task commands that try to survive: every one leaves at least one `sleep 120` behind. */
const STUBBORN: Record<string, string> = {
  // Ignores SIGTERM, two children in its session.
  trap: `trap '' TERM; sleep 120 & sleep 120 & wait`,
  // A grandchild in a session of its own, ignoring SIGTERM.
  setsid: `setsid sh -c "trap '' TERM; sleep 120" & sleep 120`,
  // Double fork: the grandchild is re-parented to init at once.
  double: `(sh -c 'sleep 120 &' &); sleep 120`,
};

/** Live (non-zombie) pids among `pids`. */
function alive(pids: Iterable<number>): number[] {
  const out: number[] = [];
  for (const pid of pids) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
      if (state !== "Z" && state !== "X") out.push(pid);
    } catch {
      // Gone.
    }
  }
  return out;
}

function cmdline(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ");
  } catch {
    return "?";
  }
}

/** Session ids of `pids`. */
function sessions(pids: Iterable<number>): number[] {
  const out = new Set<number>();
  for (const pid of pids) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      out.add(Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[3]));
    } catch {
      // Gone.
    }
  }
  return [...out];
}

interface Started {
  worker: IrisProcess;
  root: string;
  tag: string;
  url: string;
}

async function startServe(controller: string, args: string[]): Promise<Started> {
  const worker = spawnIris(["worker", "serve", "--controller", controller, ...args]);
  const m = await worker.waitForLine(/serving at (\S+), root (\S+)/, seconds(30));
  const root = await Deno.realPath(m[2]!);
  return { worker, root, tag: reapTag(root), url: m[1]! };
}

/**
 * Clears its environment (no tag) and leaves its session: only a task cgroup (or a task uid)
 * finds it. It writes its pid to `escaped.pid` in its task directory.
 */
const ESCAPE =
  `setsid env -i /bin/sh -c 'echo $$ > escaped.pid; trap "" TERM; sleep 120' & sleep 120`;

/**
 * Starts the stubborn tasks (and, where the worker has a task cgroup, the escape) and waits until
 * all their processes run. Returns their pids and the escaped process's session (or 0).
 */
async function startStubborn(fake: FakeController, s: Started, prefix: string) {
  const rpc = workerClient(s.url);
  const escape = readLedger(s.root)?.cgroup !== undefined;
  const tasks = { ...STUBBORN, ...(escape ? { escape: ESCAPE } : {}) };
  for (const [name, script] of Object.entries(tasks)) {
    const res = await rpc.runTask(commandTask(`/${prefix}/${name}/0`, ["sh", "-c", script]));
    assert(res.accepted, res.error);
  }
  for (const name of Object.keys(tasks)) {
    await fake.waitForState(`/${prefix}/${name}/0`, TaskState.RUNNING, seconds(20));
  }
  const escaped = !escape ? 0 : await waitFor(() => {
    try {
      const dir = `${s.root}/tasks/${attemptDirName(`/${prefix}/escape/0`, 0)}`;
      return Number(Deno.readTextFileSync(`${dir}/escaped.pid`).trim()) || undefined;
    } catch {
      return undefined;
    }
  }, { timeout: seconds(20), what: "the escaped process" });
  // 3 leaders + trap: 2 sleeps; setsid: sh + sleep + sleep; double: sleep + sleep (+ transient sh).
  const pids = await waitFor(() => {
    const pids = findTargets({ tag: s.tag });
    return pids.length >= 9 ? pids : undefined;
  }, { timeout: seconds(20), what: "the stubborn tasks' processes" });
  if (escaped) {
    assert(!findTargets({ tag: s.tag }).includes(escaped), "the escape has no tag");
    pids.push(...findTargets({ sids: [escaped] }));
  }
  return { pids, escaped };
}

/** The watchdog's pid, from its command line. */
function watchdogPid(root: string): number | undefined {
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).split("\0");
      if (cmd.some((a) => a.endsWith("reaper_main.ts")) && cmd.includes(root)) {
        return Number(e.name);
      }
    } catch {
      // Gone.
    }
  }
  return undefined;
}

for (const mode of ["auto", "off"] as const) {
  const users = mode === "auto" && isRoot;
  Deno.test({
    name: `reaper: a SIGKILLed worker leaves no task process and no temp root (task users ${
      users ? "on" : "off"
    })`,
    ignore: Deno.build.os !== "linux" || (mode === "auto" && !isRoot),
    async fn() {
      await using fake = new FakeController();
      const s = await startServe(fake.url, ["--task-users", mode]);
      await using _ = s.worker;
      const { pids, escaped } = await startStubborn(fake, s, `reap-${mode}`);
      const sids = sessions(pids);
      if (escaped) assert(sids.includes(escaped));
      const ledger = readLedger(s.root);
      const uids = ledger?.uids ?? [];
      assertEquals(uids.length, (users ? 3 : 0) + (users && escaped ? 1 : 0), "task uids");
      // At least one process left the task sessions (the setsid one).
      assert(sids.length >= 4, `sessions ${sids}`);

      const killedAt = performance.now();
      Deno.kill(s.worker.pid, "SIGKILL");
      await s.worker.status;
      await waitFor(
        () =>
          alive(pids).length === 0 &&
          findTargets({ tag: s.tag, sids, uids, cgroup: ledger?.cgroup }).length === 0 &&
          !existsSync(s.root),
        {
          timeout: seconds(5),
          backoff: { max: ms(20) },
          what: "every task process and the root gone",
        },
      ).catch((err) => {
        throw new Error(
          `${err.message}: left ${alive(pids)} / ${
            findTargets({ tag: s.tag, sids, uids, cgroup: ledger?.cgroup })
          }, ` +
            `root ${existsSync(s.root) ? "still there" : "gone"}\n${s.worker.lines.join("\n")}`,
        );
      });
      const took = performance.now() - killedAt;
      console.log(
        `reaper figure (task users ${users ? "on" : "off"}${
          escaped ? ", task cgroup, an escape with a cleared environment" : ""
        }): ${pids.length} processes in ${sids.length} sessions gone ${
          took.toFixed(0)
        } ms after SIGKILL of the worker`,
      );
      await waitFor(() => s.worker.lines.some((l) => /^reaper: .* died; killed \d+/.test(l)), {
        timeout: seconds(5),
        what: "the watchdog's report",
      });
    },
  });
}

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

for (const mode of ["auto", "off"] as const) {
  const users = mode === "auto" && isRoot;
  Deno.test({
    name:
      `reaper: a worker restarted on the same root cleans up what its predecessor left (task users ${
        users ? "on" : "off"
      })`,
    ignore: Deno.build.os !== "linux" || (mode === "auto" && !isRoot),
    async fn() {
      const root = await Deno.makeTempDir({ prefix: "iris-reaper-root-" });
      try {
        await using fake = new FakeController();
        const args = ["--task-users", mode, "--root-dir", root];
        const first = await startServe(fake.url, args);
        await using _first = first.worker;
        const { pids, escaped } = await startStubborn(fake, first, `restart-${mode}`);
        const ledger = readLedger(first.root);
        const uids = ledger?.uids ?? [];
        const targets = { tag: first.tag, uids, cgroup: ledger?.cgroup };
        // The watchdog goes first, so nothing but the successor can clean up.
        const watchdog = watchdogPid(first.root);
        assert(watchdog, "the watchdog runs");
        Deno.kill(watchdog, "SIGKILL");
        Deno.kill(first.worker.pid, "SIGKILL");
        await first.worker.status;
        // The kernel's parent-death signal took the leaders; the escaped ones still run.
        const leaders = ledger?.sids ?? [];
        assert(leaders.length >= 3, `task sessions in the ledger: ${leaders}`);
        await waitFor(() => alive(leaders).length === 0, {
          timeout: seconds(5),
          what: "the task leaders killed by their parent-death signal",
        });
        const leftover = alive(pids);
        assert(leftover.length > 0, "some task processes outlived worker and watchdog");
        if (escaped) assert(leftover.includes(escaped), "the escape outlived worker and watchdog");
        const dirs = [...Deno.readDirSync(`${root}/tasks`)].length;
        assertEquals(dirs, escaped ? 4 : 3);

        const startedAt = performance.now();
        const second = await startServe(fake.url, args);
        await using _second = second.worker;
        assertEquals(second.root, first.root);
        const line = await second.worker.waitForLine(
          /cleaned up after the previous worker on .*: killed (\d+) task processes, removed (\d+) attempt directories/,
        );
        assertEquals(Number(line[2]), dirs);
        // (At most the leftovers: on a shared machine one may have been ended meanwhile.)
        assert(Number(line[1]) >= 1, line[0]);
        assertEquals(alive(leftover).map((p) => `${p}: ${cmdline(p)}`), []);
        assertEquals(findTargets(targets), []);
        assertEquals([...Deno.readDirSync(`${root}/tasks`)].length, 0);
        const escaped2 = escaped ? " (one with a cleared environment in a session of its own)" : "";
        console.log(
          `reaper figure (restart, task users ${users ? "on" : "off"}): ${leftover.length} ` +
            `leftover processes${escaped2} and ${dirs} attempt directories gone ${
              (performance.now() - startedAt).toFixed(0)
            } ms after the successor was started`,
        );
        await second.worker.stop();
        assertEquals(watchdogPid(second.root), undefined, "the watchdog exits with the worker");
      } finally {
        await Deno.remove(root, { recursive: true }).catch(() => {});
      }
    },
  });
}

Deno.test({
  name: "reaper: without root, the watchdog still kills every task process of a SIGKILLed worker",
  ignore: !isRoot || Deno.build.os !== "linux",
  async fn() {
    const nobody = 65534;
    const base = await Deno.makeTempDir({ prefix: "iris-reaper-nonroot-" });
    try {
      await Deno.chmod(base, 0o777); // the user's watchdog removes its root from here
      // The deno binary may sit under a private directory: give the user one it can run.
      const deno = await taskDenoPath(`${base}/bin`);
      const root = `${base}/root`;
      await Deno.mkdir(root);
      await Deno.mkdir(`${base}/deno-dir`);
      for (const d of [root, `${base}/deno-dir`]) await Deno.chown(d, nobody, nobody);
      const entry = new URL("./reaper_nonroot_entry.ts", import.meta.url).pathname;
      const script = Object.values(STUBBORN).map((s) => `(${s}) &`).join(" ") + " wait";
      const child = new Deno.Command("/usr/bin/setpriv", {
        args: [
          `--reuid=${nobody}`,
          `--regid=${nobody}`,
          "--clear-groups",
          "--",
          deno,
          "run",
          "--no-config",
          "--no-lock",
          "-A",
          entry,
          root,
          script,
        ],
        clearEnv: true,
        env: { PATH: "/usr/bin:/bin", DENO_DIR: `${base}/deno-dir`, HOME: base, NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const lines: string[] = [];
      const pumps = Promise.all([
        pumpLines(child.stdout, lines),
        pumpLines(child.stderr, lines),
      ]);
      try {
        await waitFor(() => lines.some((l) => l.startsWith("ready ")), {
          timeout: seconds(60),
          what: `the unprivileged worker stand-in to start (${lines.join(" | ")})`,
        });
        const tag = reapTag(root);
        const pids = await waitFor(() => {
          const found = findTargets({ tag });
          return found.length >= 9 ? found : undefined;
        }, { timeout: seconds(20), what: "the stubborn task's processes" });
        for (const pid of pids) assertEquals(Deno.statSync(`/proc/${pid}`).uid, nobody);
        const killedAt = performance.now();
        child.kill("SIGKILL");
        await child.status;
        await waitFor(
          () => alive(pids).length === 0 && findTargets({ tag }).length === 0 && !existsSync(root),
          { timeout: seconds(5), backoff: { max: ms(20) }, what: "every task process gone" },
        ).catch((err) => {
          throw new Error(`${err.message}: left ${alive(pids)}\n${lines.join("\n")}`);
        });
        console.log(
          `reaper figure (no root, uid ${nobody}): ${pids.length} processes gone ${
            (performance.now() - killedAt).toFixed(0)
          } ms after SIGKILL of the worker`,
        );
      } finally {
        try {
          child.kill("SIGKILL");
        } catch {
          // Already gone.
        }
        await child.status;
        await pumps;
      }
    } finally {
      await Deno.remove(base, { recursive: true }).catch(() => {});
    }
  },
});

/** A child of this process's cgroup-v1 memory cgroup, when one can be made; undefined if not. */
function memoryCgroup(name: string): string | undefined {
  try {
    const line = Deno.readTextFileSync("/proc/self/cgroup").split("\n").find((l) =>
      /^\d+:memory:/.test(l)
    );
    if (!line) return undefined;
    const dir = `/sys/fs/cgroup/memory${line.slice(line.indexOf(":memory:") + 8)}/${name}`
      .replace(/\/+/g, "/");
    Deno.mkdirSync(dir);
    return dir;
  } catch {
    return undefined;
  }
}

Deno.test({
  name: "reaper: a worker killed by the OOM killer leaves no task process",
  ignore: !isRoot || Deno.build.os !== "linux",
  async fn() {
    const cg = memoryCgroup(`iris-oom-test-${Deno.pid}`);
    if (!cg) {
      console.log("skipped: no writable cgroup v1 memory controller to provoke an OOM kill in");
      return;
    }
    await using fake = new FakeController();
    const cli = new URL("../../cli.ts", import.meta.url).pathname;
    let child: Deno.ChildProcess | undefined;
    const lines: string[] = [];
    let pumps: Promise<unknown> = Promise.resolve();
    try {
      Deno.writeTextFileSync(`${cg}/memory.limit_in_bytes`, String(800 * 1024 * 1024));
      // The worker (and so its tasks and watchdog) starts inside the cgroup.
      child = new Deno.Command("/bin/sh", {
        args: [
          "-c",
          `echo $$ > ${cg}/cgroup.procs && exec "$0" run -A "$1" worker serve --controller "$2" --task-users off`,
          Deno.execPath(),
          cli,
          fake.url,
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).spawn();
      pumps = Promise.all([pumpLines(child.stdout, lines), pumpLines(child.stderr, lines)]);
      const m = await waitFor(
        () => lines.map((l) => l.match(/serving at (\S+), root (\S+)/)).find((x) => x),
        { timeout: seconds(30), what: `the worker to start (${lines.join(" | ")})` },
      );
      const root = await Deno.realPath(m[2]!);
      const s = {
        worker: undefined as unknown as IrisProcess,
        root,
        tag: reapTag(root),
        url: m[1]!,
      };
      const { pids } = await startStubborn(fake, s, "oom");
      // A memory hog that waits for a file in its directory before it starts eating.
      const rpc = workerClient(s.url);
      await rpc.runTask(commandTask("/oom/hog/0", [
        "sh",
        "-c",
        "while [ ! -e go ]; do sleep 0.05; done; exec tail /dev/zero",
      ]));
      await fake.waitForState("/oom/hog/0", TaskState.RUNNING);
      // Make the worker the OOM killer's choice; its tasks, started before, keep their score.
      Deno.writeTextFileSync(`/proc/${child.pid}/oom_score_adj`, "1000");
      Deno.writeTextFileSync(`${root}/tasks/${attemptDirName("/oom/hog/0", 0)}/go`, "");
      const exited = child.status;
      const status = await waitFor(
        () => Promise.race([exited, sleep(ms(100)).then(() => undefined)]),
        {
          timeout: seconds(60),
          what: "the OOM killer to take the worker",
        },
      );
      const killedAt = performance.now();
      assertEquals(status.signal, "SIGKILL", lines.join("\n"));
      const oom = Deno.readTextFileSync(`${cg}/memory.oom_control`);
      assert(/oom_kill [1-9]/.test(oom), oom);
      await waitFor(
        () =>
          alive(pids).length === 0 && findTargets({ tag: s.tag }).length === 0 && !existsSync(root),
        { timeout: seconds(5), backoff: { max: ms(20) }, what: "every task process gone" },
      );
      console.log(
        `reaper figure (OOM kill): ${pids.length} processes and the memory hog gone ${
          (performance.now() - killedAt).toFixed(0)
        } ms after the OOM killer took the worker`,
      );
    } finally {
      try {
        child?.kill("SIGKILL");
      } catch {
        // Gone.
      }
      await child?.status;
      await pumps;
      // Whatever is left in the cgroup goes, then the cgroup.
      await waitFor(() => {
        const procs = Deno.readTextFileSync(`${cg}/cgroup.procs`).split("\n").filter((l) => l);
        for (const pid of procs) {
          try {
            Deno.kill(Number(pid), "SIGKILL");
          } catch {
            // Gone.
          }
        }
        return procs.length === 0;
      }, { timeout: seconds(10), what: "the test cgroup empty" }).catch(() => {});
      try {
        Deno.removeSync(cg);
      } catch {
        // Still busy: left for the machine's owner.
      }
    }
  },
});

Deno.test({
  name: "reaper: a task leader is in the task cgroup before its first fork",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const tag = `test-${Deno.pid}-${Date.now()}`;
    const cgroup = taskCgroup(tag);
    if (!cgroup) {
      console.log("skipped: no writable cgroup2 hierarchy");
      return;
    }
    try {
      // No join after the spawn here: the child `cat` is forked at once, and must be born in it.
      const child = spawnSessionLeader("sh", ["-c", "cat /proc/self/cgroup"], {
        cwd: "/",
        env: { PATH: "/usr/bin:/bin" },
        cgroup,
      });
      const out = await child.output();
      assert(out.success, new TextDecoder().decode(out.stderr));
      const line = new TextDecoder().decode(out.stdout).split("\n").find((l) =>
        l.startsWith("0::")
      );
      assert(line?.endsWith(`/iris-tasks-${tag}`), `cat ran in ${line}`);
    } finally {
      removeCgroup(cgroup);
    }
  },
});
