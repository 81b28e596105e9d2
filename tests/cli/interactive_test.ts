/**
 * Interactive work over real processes: `iris task exec -i` (stdin piped, and under a terminal
 * with -t, and from a real terminal through script(1)) and `iris job run -i` (a one-replica job
 * whose stdin is the CLI's), with their usage errors.
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { cli, startCluster } from "./_cluster.ts";
import { TaskState } from "../../src/rpc/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";

const CLI = new URL("../../cli.ts", import.meta.url).pathname;

function quote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

Deno.test("iris task exec -i and iris job run -i attach stdin (and a terminal)", async () => {
  await using cluster = await startCluster();
  const env = { IRIS_CONTROLLER_URL: cluster.url, USER: "tty" };
  await using sleeper = cli(["job", "run", "--detach", "--name", "shell", "--", "sleep", "300"], {
    env,
  });
  assertEquals(await sleeper.code, 0, sleeper.stderr.join("\n"));
  await waitFor(
    async () => (await cluster.client.tasks("/tty/shell"))[0]?.state === TaskState.RUNNING,
    {
      timeout: seconds(30),
      what: "the task to run",
    },
  );

  await t("a pipe: stdin in order to EOF, stderr apart, the exit code back");
  {
    await using exec = cli(
      ["task", "exec", "-i", "/tty/shell/0", "--", "sh", "-c", "cat; echo done >&2; exit 4"],
      { env, stdin: "hello\nworld\n" },
    );
    assertEquals(await exec.code, 4, exec.stderr.join("\n"));
    assertEquals(exec.stdout, ["hello", "world"]);
    assertEquals(exec.stderr, ["done"]);
  }

  await t("-t: a terminal of the default size even when stdin is a pipe");
  {
    await using exec = cli([
      "task",
      "exec",
      "-it",
      "/tty/shell/0",
      "--",
      "sh",
      "-c",
      "tty; stty size; read x; echo got-$x; exit 5",
    ], { env, stdin: "abc\n" });
    assertEquals(await exec.code, 5, exec.stderr.join("\n"));
    const out = exec.stdout.join("\n");
    assertMatch(out, /\/dev\/pts\/\d+/);
    assertMatch(out, /^24 80\r?$/m);
    assertMatch(out, /got-abc/);
  }

  await t("from a real terminal (script(1)): raw mode, the terminal's size, Ctrl-D ends cat");
  {
    const inner = [Deno.execPath(), "run", "-A", CLI, "task", "exec", "-i", "/tty/shell/0", "--"]
      .map(quote).join(" ") + " sh -c 'stty size; cat; echo cat-ended; exit 7'";
    const child = new Deno.Command("script", {
      args: ["-qfec", `stty rows 33 cols 101; ${inner}`, "/dev/null"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { ...env, NO_COLOR: "1" },
    }).spawn();
    const w = child.stdin.getWriter();
    let text = "";
    const reading = (async () => {
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) text += chunk;
    })();
    const errText = new Response(child.stderr).text();
    // Typed once the task's terminal is up (it printed its size): raw mode passes every key on,
    // Ctrl-D (0x04) included, which ends cat at the remote terminal.
    await waitFor(() => /33 101/.test(text), { timeout: seconds(30), what: "stty size" });
    await w.write(new TextEncoder().encode("typed\r"));
    await waitFor(() => /typed[\s\S]*typed/.test(text), { timeout: seconds(10), what: "cat" });
    await w.write(new Uint8Array([4]));
    const status = await child.status;
    await reading;
    await w.close().catch(() => {});
    const out = { code: status.code, stderr: await errText };
    assertEquals(out.code, 7, text + out.stderr);
    assertMatch(text, /33 101/);
    assertMatch(text, /typed/);
    assertMatch(text, /cat-ended/);
  }

  await t("job run -i: the task reads the CLI's stdin; the job's exit code is the CLI's");
  {
    await using run = cli([
      "job",
      "run",
      "-i",
      "--name",
      "reader",
      "--",
      "sh",
      "-c",
      "read a; echo got-$a; read b; echo also-$b >&2; exit 6",
    ], { env, stdin: "first\nsecond\n" });
    assertEquals(await run.code, 6, run.stderr.join("\n"));
    assert(run.stdout.includes("got-first"), run.stdout.join("\n"));
    assert(run.stderr.includes("also-second"), run.stderr.join("\n"));
    assertMatch(run.stderr.join("\n"), /Job \/tty\/reader failed/);
    // The task's output is in its logs as well.
    const logs = (await cluster.client.logs("/tty/reader")).map((l) => l.text);
    assert(logs.includes("got-first"), logs.join("\n"));
  }

  await t("job run -it: the task gets a terminal");
  {
    await using run = cli(
      ["job", "run", "-it", "--name", "term", "--", "sh", "-c", "tty; read a; echo got-$a"],
      { env, stdin: "xyz\n" },
    );
    assertEquals(await run.code, 0, run.stderr.join("\n"));
    assertMatch(run.stdout.join("\n"), /\/dev\/pts\/\d+/);
    assertMatch(run.stdout.join("\n"), /got-xyz/);
  }

  await t("usage errors name the flag");
  for (
    const [args, re] of [
      [["task", "exec", "-t", "/tty/shell/0", "--", "sh"], /--tty needs --interactive \(-i\)/],
      [
        ["task", "exec", "-i", "-t", "-T", "/tty/shell/0", "--", "sh"],
        /either --tty \(-t\) or --no-tty/,
      ],
      [["job", "run", "-i", "--replicas", "2", "--", "sh"], /--interactive needs one replica/],
      [["job", "run", "-i", "--detach", "--", "sh"], /either --interactive or --detach/],
    ] as const
  ) {
    await using bad = cli([...args], { env });
    assertEquals(await bad.code, 2, bad.stderr.join("\n"));
    assertMatch(bad.stderr.join("\n"), re);
  }

  await t("input to a session that is not there is refused by name");
  {
    await using bad = cli(
      ["rpc", "controller", "exec-input", JSON.stringify({ sessionId: "exec:nope", data: "" })],
      { env },
    );
    assertEquals(await bad.code, 1);
    assertMatch(bad.stderr.join("\n"), /No interactive session exec:nope/);
  }
  await cluster.client.cancel("/tty/shell");
});

function t(what: string): Promise<void> {
  console.log(`  - ${what}`);
  return Promise.resolve();
}
