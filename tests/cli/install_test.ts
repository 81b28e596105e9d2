/**
 * Installing `iris`: scripts/install.ts (and `deno install -g --config`) put a working `iris` in
 * a temp root; it runs from another directory, the first even with no deno on PATH.
 */
import { assertEquals, assertMatch } from "../_helpers/assert.ts";
import { seconds } from "../../src/time.ts";

const REPO = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");

async function run(cmd: string, args: string[], opts: { cwd?: string; path?: string } = {}) {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: { NO_COLOR: "1", ...(opts.path ? { PATH: opts.path } : {}) },
    stdin: "null",
    signal: AbortSignal.timeout(seconds(120)),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("scripts/install.ts puts iris on PATH; it runs elsewhere without deno on PATH", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-install-" });
  const elsewhere = await Deno.makeTempDir({ prefix: "iris-elsewhere-" });
  try {
    const inst = await run(Deno.execPath(), [
      "run",
      "-A",
      `${REPO}/scripts/install.ts`,
      "--root",
      root,
    ]);
    assertEquals(inst.code, 0, inst.stderr);
    assertMatch(inst.stdout, new RegExp(`Installed ${root}/bin/iris`));
    assertMatch(inst.stdout, new RegExp(`export PATH="${root}/bin:\\$PATH"`));
    const noDeno = `${root}/bin:/usr/bin:/bin`;
    const v = await run("iris", ["--version"], { cwd: elsewhere, path: noDeno });
    assertEquals(v.code, 0, v.stderr);
    assertEquals(v.stdout, "iris 0.1.0\n");
    const help = await run("iris", ["job", "run", "--help"], { cwd: elsewhere, path: noDeno });
    assertEquals(help.code, 0, help.stderr);
    assertMatch(help.stdout, /--gpu \[VARIANT:\]COUNT/);
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(elsewhere, { recursive: true });
  }
});

Deno.test("deno install -g --frozen=false --config deno.json -n iris cli.ts works from another directory", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-install-g-" });
  const elsewhere = await Deno.makeTempDir({ prefix: "iris-elsewhere-" });
  try {
    const inst = await run(Deno.execPath(), [
      "install",
      "-g",
      "-A",
      // A global install writes its own lock beside the command; the repo's lock is frozen.
      "--frozen=false",
      "--root",
      root,
      "--config",
      `${REPO}/deno.json`,
      "-n",
      "iris",
      `${REPO}/cli.ts`,
    ], { cwd: elsewhere });
    assertEquals(inst.code, 0, inst.stderr);
    const denoDir = Deno.execPath().slice(0, Deno.execPath().lastIndexOf("/"));
    const v = await run("iris", ["--version"], {
      cwd: elsewhere,
      path: `${root}/bin:${denoDir}:/usr/bin:/bin`,
    });
    assertEquals(v.code, 0, v.stderr);
    assertEquals(v.stdout, "iris 0.1.0\n");
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(elsewhere, { recursive: true });
  }
});
