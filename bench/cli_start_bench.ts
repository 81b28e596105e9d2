/**
 * CLI start cost: `deno run -A cli.ts --version` and `cli.ts job list --help` against Deno
 * running an empty module, medians of N runs each, interleaved. Goal: `--version` costs under
 * 150 ms beyond Deno's own start (printed as the difference and as a ratio).
 *
 * Run: `deno run -A bench/cli_start_bench.ts [N]` (default N = 15).
 * @module
 */
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const n = Number(Deno.args[0] ?? 15);
// In the checkout, so both runs load the same deno.json (imports map, lock file, node_modules).
const empty = await Deno.makeTempFile({
  dir: new URL("..", import.meta.url).pathname,
  prefix: ".bench-empty-",
  suffix: ".ts",
});

async function timeOnce(args: string[]): Promise<number> {
  const t0 = performance.now();
  const out = await new Deno.Command(Deno.execPath(), { args, stdout: "null", stderr: "null" })
    .output();
  if (!out.success) throw new Error(`deno ${args.join(" ")} failed`);
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const runs = { empty: [] as number[], version: [] as number[], help: [] as number[] };
try {
  for (let i = 0; i < n; i++) {
    runs.empty.push(await timeOnce(["run", "-A", empty]));
    runs.version.push(await timeOnce(["run", "-A", CLI, "--version"]));
    runs.help.push(await timeOnce(["run", "-A", CLI, "job", "list", "--help"]));
  }
} finally {
  await Deno.remove(empty);
}
const base = median(runs.empty);
for (const [name, xs] of Object.entries(runs)) {
  const m = median(xs);
  console.log(
    `${name.padEnd(8)} median ${m.toFixed(0).padStart(5)} ms  +${
      (m - base).toFixed(0).padStart(4)
    } ms over deno  ×${(m / base).toFixed(2)}`,
  );
}
const extra = median(runs.version) - base;
console.log(
  `--version start cost beyond deno: ${extra.toFixed(0)} ms (goal < 150 ms): ${
    extra < 150 ? "met" : "NOT met"
  }`,
);
