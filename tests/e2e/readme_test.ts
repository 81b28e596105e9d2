/**
 * Every code block of README.md runs as written (tests/e2e/_readme.ts says how blocks are read
 * and marked), in order, from the repository root like `deno task` runs them:
 * - `deno` is this test's Deno (2.9.6, the version the README pins), put first on PATH, so
 *   `deno task iris …` runs as typed; `npx --yes deno@2.9.6` stands for the same Deno;
 * - the README's controller port 10000 is a free port (`--port`, `127.0.0.1:10000` and
 *   `$IRIS_CONTROLLER_URL`, which the README names as the way to point commands elsewhere);
 * - `$USER` is `readme`; IRIS_HOME and TMPDIR are private temp dirs;
 * - a command whose comment says it runs until Ctrl-C starts in its own process group (its own
 *   terminal) and must print a first line on stdout before the next command runs; the others
 *   must exit 0. At the end every one still running gets SIGINT (Ctrl-C) and must exit cleanly.
 * - the `ts` block runs with `deno eval` from the repository root.
 * Blocks marked `<!-- ci -->` must be commands `.ci/run` runs as written; `<!-- tested-by: FILE -->`
 * blocks are `deno task` lines whose iris arguments FILE runs (the full smoke: smoke_test.ts).
 * @module
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { controllerClient } from "../../src/rpc/client.ts";
import { DENO_VERSION } from "../../src/platform/bootstrap.ts";
import { type Duration, seconds, waitFor } from "../../src/time.ts";
import { README, readmeBlocks, shCommands } from "./_readme.ts";

const REPO = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A process started from a README line. */
interface Run {
  readonly what: string;
  readonly child: Deno.ChildProcess;
  readonly stdout: string[];
  /** stdout and stderr lines in arrival order. */
  readonly lines: string[];
  readonly status: Promise<Deno.CommandStatus>;
  exited: boolean;
}

/** Calls `onLine` with every line of `stream` as it arrives (the last one even without "\n"). */
async function eachLine(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void) {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  }
  if (buf) onLine(buf);
}

function start(what: string, command: string, env: Record<string, string>): Run {
  // setsid: its own process group, like a terminal's foreground job, so Ctrl-C (SIGINT to the
  // group) reaches deno task and the iris process under it alike.
  const child = new Deno.Command("setsid", {
    args: ["bash", "-c", command],
    cwd: REPO,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout: string[] = [];
  const lines: string[] = [];
  const run: Run = {
    what,
    child,
    stdout,
    lines,
    exited: false,
    status: Promise.all([
      child.status,
      eachLine(child.stdout, (l) => (stdout.push(l), lines.push(l))),
      eachLine(child.stderr, (l) => lines.push(l)),
    ]).then(([s]) => (run.exited = true, s)),
  };
  return run;
}

function signalGroup(run: Run, signal: Deno.Signal): void {
  try {
    Deno.kill(-run.child.pid, signal);
  } catch { /* gone */ }
}

/** Runs to completion (killed, group and all, after `timeout`). */
async function finish(run: Run, timeout: Duration): Promise<Deno.CommandStatus> {
  const timer = setTimeout(() => signalGroup(run, "SIGKILL"), timeout);
  try {
    return await run.status;
  } finally {
    clearTimeout(timer);
  }
}

Deno.test({
  name: "README.md: every sh and ts block runs as written against a local cluster",
  async fn() {
    assertEquals(Deno.version.deno, DENO_VERSION, "the README pins this Deno");
    const markdown = await Deno.readTextFile(README);
    const blocks = readmeBlocks(markdown);
    assert(blocks.some((b) => b.mark === "run" && b.lang === "sh"), "README has sh blocks");
    const port = freePort();
    const url = `http://127.0.0.1:${port}`;
    const scratch = await Deno.makeTempDir({ prefix: "iris-readme-" });
    await Deno.mkdir(`${scratch}/bin`);
    await Deno.mkdir(`${scratch}/home`);
    await Deno.mkdir(`${scratch}/tmp`);
    await Deno.symlink(Deno.execPath(), `${scratch}/bin/deno`);
    const env = {
      PATH: `${scratch}/bin:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
      HOME: Deno.env.get("HOME") ?? scratch,
      USER: "readme",
      IRIS_HOME: `${scratch}/home`,
      TMPDIR: `${scratch}/tmp`,
      IRIS_CONTROLLER_URL: url,
      NO_COLOR: "1",
      DENO_NO_UPDATE_CHECK: "1",
      RUST_BACKTRACE: "0",
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
    };
    const asTyped = (text: string) =>
      text.replaceAll(`npx --yes deno@${DENO_VERSION} `, "deno ")
        .replaceAll("127.0.0.1:10000", `127.0.0.1:${port}`)
        .replaceAll("--port 10000", `--port ${port}`);
    const background: Run[] = [];
    const before = await Array.fromAsync(Deno.readDir(`${REPO}/smoke-logs`)).catch(() => []);
    // Files the README's blocks write as a user would (job.yaml in the checkout, a download).
    const written = [`${REPO}/job.yaml`, "/tmp/iris-step-100.json"];
    const existed = await Promise.all(
      written.map((f) => Deno.stat(f).then(() => true, () => false)),
    );
    try {
      for (const block of blocks) {
        const where = `README.md:${block.line}`;
        if (block.mark === "illustrative") continue;
        if (block.mark === "ci") {
          const ci = await Deno.readTextFile(`${REPO}/.ci/run`);
          for (const c of shCommands(block)) {
            assert(ci.includes(c.text), `${where}: .ci/run does not run \`${c.text}\``);
          }
          continue;
        }
        if (block.mark === "tested-by") {
          const test = await Deno.readTextFile(`${REPO}/${block.testedBy}`);
          const tasks = JSON.parse(await Deno.readTextFile(`${REPO}/deno.json`)).tasks;
          for (const c of shCommands(block)) {
            const name = /^(?:npx --yes deno@\S+|deno) task (\S+)$/.exec(c.text)?.[1];
            const task: string = tasks[name ?? ""] ?? "";
            assert(
              task.startsWith("deno run -A cli.ts "),
              `${where}: \`${c.text}\` runs no iris task`,
            );
            for (const arg of task.slice("deno run -A cli.ts ".length).split(" ")) {
              assert(test.includes(arg), `${where}: ${block.testedBy} does not run \`${task}\``);
            }
          }
          continue;
        }
        if (block.lang === "ts") {
          const code = asTyped(block.body);
          const r = start(where, `deno eval ${shellQuote(code)}`, env);
          const s = await finish(r, seconds(60));
          assertEquals(s.code, 0, `${where}: the ts block failed:\n${r.lines.join("\n")}`);
          continue;
        }
        for (const c of shCommands(block)) {
          const what = `README.md:${c.line}: ${c.text}`;
          const run = start(what, asTyped(c.text), env);
          const t0 = performance.now();
          if (!c.background) {
            const s = await finish(run, seconds(180));
            console.log(`${((performance.now() - t0) / 1000).toFixed(1)}s  ${what}`);
            assertEquals(s.code, 0, `${what}\nexited ${s.code}:\n${run.lines.join("\n")}`);
            continue;
          }
          background.push(run);
          await waitFor(() => {
            if (run.stdout.length > 0) return true;
            if (run.exited) throw new Error(`${what}\nexited early:\n${run.lines.join("\n")}`);
            return false;
          }, { timeout: seconds(90), what: `a first line from ${what}` }).catch((err) => {
            throw new Error(`${err}\n${run.lines.join("\n")}`);
          });
          if (c.text.includes("--port 10000")) {
            // The controller the README's other commands reach: up before they run.
            await waitFor(async () => {
              try {
                return (await controllerClient(url).getControllerStatus({})).healthy;
              } catch {
                return false;
              }
            }, { timeout: seconds(60), what: `the controller at ${url}` });
          }
        }
      }
      // Ctrl-C for what still runs, newest first: each stops cleanly.
      for (const run of background.toReversed()) {
        if (!run.exited) signalGroup(run, "SIGINT");
        const s = await finish(run, seconds(30));
        assert(
          s.code === 0 || s.code === 130,
          `${run.what}\nexited ${s.code} after Ctrl-C:\n${run.lines.join("\n")}`,
        );
      }
    } finally {
      for (const run of background) {
        if (!run.exited) signalGroup(run, "SIGKILL");
        await run.status;
      }
      await Deno.remove(scratch, { recursive: true }).catch(() => {});
      await Deno.remove("/tmp/iris-logs", { recursive: true }).catch(() => {});
      for (const [i, f] of written.entries()) {
        if (!existed[i]) await Deno.remove(f).catch(() => {});
      }
      // The smoke runs of the README wrote smoke-logs/<timestamp>/ here, as it says.
      const names = new Set(before.map((e) => e.name));
      for (const e of await Array.fromAsync(Deno.readDir(`${REPO}/smoke-logs`)).catch(() => [])) {
        if (!names.has(e.name)) {
          await Deno.remove(`${REPO}/smoke-logs/${e.name}`, { recursive: true });
        }
      }
    }
  },
});

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

Deno.test("the Deno version is pinned at 2.9.6 in the README, docs, CI and scripts", async () => {
  const files = ["README.md", ".ci/run", "src/platform/bootstrap.ts"];
  for (const dir of ["docs", "scripts", "examples"]) {
    for await (const e of Deno.readDir(`${REPO}/${dir}`)) {
      if (e.isFile) files.push(`${dir}/${e.name}`);
    }
  }
  for (const f of files) {
    const text = await Deno.readTextFile(`${REPO}/${f}`);
    for (const m of text.matchAll(/deno@(\d+\.\d+\.\d+)/g)) {
      assertEquals(m[1], "2.9.6", `${f}: ${m[0]}`);
    }
    for (const m of text.matchAll(/Deno (\d+\.\d+\.\d+)/g)) {
      assertEquals(m[1], "2.9.6", `${f}: ${m[0]}`);
    }
  }
  assertEquals(DENO_VERSION, "2.9.6");
});
