/**
 * The CLI loads a command's module only when that command runs (src/cli/main.ts): its table of
 * names per module must match what the modules define, and a client command must not load the
 * controller, the worker or the cluster tools.
 */
import { allCommands, COMMAND_MODULES, main } from "../../src/cli/main.ts";
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";

Deno.test("each command module defines exactly the names main.ts lists for it", async () => {
  for (const m of COMMAND_MODULES) {
    const names = (await m.load()).map((c) => c.name);
    assertEquals(
      [...names].sort(),
      [...m.names].sort(),
      `COMMAND_MODULES in src/cli/main.ts must list the commands ${m.path} defines`,
    );
  }
  const { MODULES } = await import("../../src/cli/bundled_commands.ts");
  assertEquals(
    Object.keys(MODULES).sort(),
    [...COMMAND_MODULES.map((m) => m.path), "../errors.ts"].sort(),
    "src/cli/bundled_commands.ts (the bundle) must hold every command module",
  );
  const all = (await allCommands()).map((c) => c.name);
  assertEquals(new Set(all).size, all.length, "no command name twice");
});

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(argv, {
    out: (t) => out += t,
    err: (t) => err += t,
    isTty: false,
  }, AbortSignal.timeout(10_000));
  return { code, out, err };
}

Deno.test("group help and unknown commands name the group", async () => {
  const debug = await run(["cluster", "debug"]);
  assertEquals(debug.code, 2);
  assertMatch(debug.out, /cluster debug health/);
  const unknown = await run(["job", "frobnicate"]);
  assertEquals(unknown.code, 2);
  assertMatch(unknown.err, /unknown command "job frobnicate"\nRun 'iris job --help'/);
  const top = await run(["nosuch"]);
  assertEquals(top.code, 2);
  assertMatch(top.err, /unknown command "nosuch"/);
  const help = await run(["--help"]);
  assertEquals(help.code, 0);
  for (const m of COMMAND_MODULES) for (const n of m.names) assert(help.out.includes(n), n);
});

Deno.test("main.ts statically loads only args.ts and version.ts, neither of which loads npm code", async () => {
  const src = await Deno.readTextFile(new URL("../../src/cli/main.ts", import.meta.url));
  const statics = [...src.matchAll(/^import\s[^;]*?from\s+"([^"]+)";/gms)]
    .filter((m) => !/^import\s+type\s/.test(m[0]))
    .map((m) => m[1]);
  assertEquals(statics.sort(), ["../version.ts", "./args.ts"]);
  for (const file of ["../../src/cli/args.ts", "../../src/version.ts"]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", new URL(file, import.meta.url).pathname],
      stdout: "piped",
      stderr: "null",
    }).output();
    const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: { specifier: string }[];
    };
    const specs = graph.modules.map((m) => m.specifier);
    assert(specs.length > 0, `deno info ${file}`);
    for (const s of specs) {
      assert(
        !s.startsWith("npm:") && !/\/src\/(rpc|client|controller)\//.test(s),
        `${file} loads ${s}`,
      );
    }
  }
});
