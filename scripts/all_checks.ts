/**
 * `deno task test`: every check, with the static ones beside the test suite instead of before it.
 *
 * - `deno fmt --check`, `deno lint` and `deno task check` run one after the other (stopping at
 *   the first failure), at a lower CPU priority (`nice`) so that the tests' deadlines come first;
 * - meanwhile `deno test -A --parallel --no-check` runs with its output streaming as it comes
 *   (extra arguments are passed to it, e.g. a file or `--filter`). Without arguments the slowest
 *   files ({@linkcode SLOWEST}) start first, so that no long file is left running alone at the
 *   end (deno test runs files in the order given, each once, then the rest of `.`);
 * - the static checks' output is printed once the tests end, then one line per verdict.
 *
 * Exits 0 only when both passed. Runs with the Deno running it (no `deno` on PATH needed).
 * @module
 */

const deno = Deno.execPath();

/** The slowest test files, longest first (measured; a missing one is skipped). */
const SLOWEST = [
  "tests/e2e/manual_ssh_smoke_test.ts",
  "tests/e2e/readme_test.ts",
  "tests/e2e/manual_ssh_cli_test.ts",
  "tests/e2e/manual_ssh_auth_test.ts",
  "tests/dashboard/browser_test.ts",
];

async function exists(path: URL): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

const root = new URL("../", import.meta.url);
const testArgs = Deno.args.length > 0 ? Deno.args : [
  ...(await Promise.all(SLOWEST.map(async (f) => await exists(new URL(f, root)) ? [f] : [])))
    .flat(),
  ".",
];
const started = performance.now();
const secondsSince = (t: number) => `${((performance.now() - t) / 1000).toFixed(0)}s`;

async function hasNice(): Promise<boolean> {
  try {
    const r = await new Deno.Command("nice", { args: ["true"], stdout: "null", stderr: "null" })
      .output();
    return r.success;
  } catch {
    return false;
  }
}

/** Runs the static checks in order; resolves with their combined output and the first failure. */
async function staticChecks(
  nice: boolean,
): Promise<{ ok: boolean; output: string; failed?: string }> {
  const steps: [string, string[]][] = [
    ["deno fmt --check", ["fmt", "--check"]],
    ["deno lint", ["lint"]],
    ["deno task check", ["task", "check"]],
  ];
  let output = "";
  for (const [name, args] of steps) {
    const t0 = performance.now();
    const cmd = nice
      ? new Deno.Command("nice", {
        args: ["-n", "10", deno, ...args],
        stdout: "piped",
        stderr: "piped",
      })
      : new Deno.Command(deno, { args, stdout: "piped", stderr: "piped" });
    const r = await cmd.output();
    const dec = new TextDecoder();
    output += `--- ${name} (${secondsSince(t0)})\n${dec.decode(r.stdout)}${dec.decode(r.stderr)}`;
    if (!r.success) return { ok: false, output, failed: `${name} exited ${r.code}` };
  }
  return { ok: true, output };
}

let checksDone = "";
const checks = staticChecks(await hasNice()).catch((err) => ({
  ok: false,
  output: String(err),
  failed: "the static checks could not start",
})).finally(() => checksDone = secondsSince(started));
const tests = await new Deno.Command(deno, {
  args: ["test", "-A", "--parallel", "--no-check", ...testArgs],
  cwd: root,
  stdin: "null",
}).spawn().status;
const testsDone = secondsSince(started);
const s = await checks;
console.log(s.output.trimEnd());
console.log(
  s.ok
    ? `static checks: ok (fmt, lint, check; done after ${checksDone})`
    : `static checks: FAILED (${s.failed})`,
);
console.log(
  `tests: ${tests.success ? "ok" : `FAILED (exit ${tests.code})`}; done after ${testsDone}`,
);
Deno.exit(s.ok && tests.success ? 0 : 1);
