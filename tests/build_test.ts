/**
 * Build artifacts: the committed generated RPC code matches proto/ (deno task gen), and the
 * `deno bundle` output runs: `iris --help` and a hello job through its own controller and worker.
 */
import { assertEquals, assertMatch } from "./_helpers/assert.ts";
import { seconds } from "../src/time.ts";

const ROOT = new URL("../", import.meta.url).pathname;

async function run(args: string[], options: { cwd?: string; timeout?: number } = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: options.cwd ?? ROOT,
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1" },
    stdin: "null",
    signal: AbortSignal.timeout(options.timeout ?? 120_000),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function readTree(dir: string, prefix = ""): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const e of Deno.readDir(dir)) {
    const rel = `${prefix}${e.name}`;
    if (e.isDirectory) {
      for (const [k, v] of await readTree(`${dir}/${e.name}`, `${rel}/`)) out.set(k, v);
    } else out.set(rel, await Deno.readTextFile(`${dir}/${e.name}`));
  }
  return out;
}

Deno.test("the committed src/rpc/gen matches what deno task gen makes from proto/", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "iris-gen-" });
  try {
    await Deno.copyFile(`${ROOT}/buf.yaml`, `${tmp}/buf.yaml`);
    const gen = (await Deno.readTextFile(`${ROOT}/buf.gen.yaml`)).replace(
      "out: src/rpc/gen",
      "out: out",
    );
    await Deno.writeTextFile(`${tmp}/buf.gen.yaml`, gen);
    await new Deno.Command("cp", { args: ["-r", `${ROOT}/proto`, `${tmp}/proto`] }).output();
    const res = await run(["run", "-A", "npm:@bufbuild/buf@1.74.0", "generate"], { cwd: tmp });
    assertEquals(res.code, 0, res.stderr);
    const fresh = await readTree(`${tmp}/out`);
    const committed = await readTree(`${ROOT}/src/rpc/gen`);
    assertEquals([...committed.keys()].sort(), [...fresh.keys()].sort());
    for (const [path, text] of fresh) {
      assertEquals(committed.get(path), text, `src/rpc/gen/${path} is stale: run deno task gen`);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("the bundled iris prints help and runs a hello job", async () => {
  const dist = await Deno.makeTempDir({ prefix: "iris-bundle-" });
  try {
    const bundled = await run([
      "bundle",
      "--outdir",
      dist,
      "cli_bundle.ts",
      "src/platform/local_worker_entry.ts",
    ]);
    assertEquals(bundled.code, 0, bundled.stderr);
    const cli = `${dist}/cli_bundle.js`;
    const help = await run(["run", "-A", "--no-config", cli, "--help"], { cwd: dist });
    assertEquals(help.code, 0, help.stderr);
    assertMatch(help.stdout, /job run/);
    const controller = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-config", cli, "controller", "serve", "--port", "0", "--quiet"],
      cwd: dist,
      stdout: "piped",
      stderr: "null",
      env: { RUST_BACKTRACE: "0" },
    }).spawn();
    const reader = controller.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let worker: Deno.ChildProcess | undefined;
    try {
      let text = "";
      while (!/Controller started at (\S+)/.test(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`controller exited: ${text}`);
        text += value;
      }
      const url = text.match(/Controller started at (\S+)/)![1]!;
      worker = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--no-config",
          cli,
          "worker",
          "serve",
          "--controller",
          url,
          "--cpu",
          "2",
          "--memory",
          "2GiB",
          "--quiet",
        ],
        cwd: dist,
        stdout: "null",
        stderr: "null",
        env: { RUST_BACKTRACE: "0" },
      }).spawn();
      const job = await run([
        "run",
        "-A",
        "--no-config",
        cli,
        "job",
        "run",
        "--controller",
        url,
        "--",
        "echo",
        "hello from the bundle",
      ], {
        cwd: dist,
        timeout: seconds(60),
      });
      assertEquals(job.code, 0, job.stderr);
      assertMatch(job.stdout, /hello from the bundle/);
    } finally {
      worker?.kill("SIGTERM");
      await worker?.status;
      controller.kill("SIGTERM");
      await reader.cancel();
      await controller.status;
    }
  } finally {
    await Deno.remove(dist, { recursive: true });
  }
});
