/**
 * A fake `nvidia-smi` (a shell script in a temp dir) replaying recorded outputs; `use()` swaps
 * the output mid-test (a GPU that fails while tasks run).
 * @module
 */
/** Recorded `nvidia-smi --query-gpu` outputs (tests/worker/fixtures/nvidia-smi). */
export const NVIDIA_SMI_FIXTURES = new URL("../worker/fixtures/nvidia-smi/", import.meta.url);
const fixture = (name: string) => Deno.readTextFileSync(new URL(name, NVIDIA_SMI_FIXTURES));

/** A fake `nvidia-smi` in a temp dir that prints `<dir>/out.csv` and exits with `<dir>/code`. */
export async function fakeNvidiaSmi(
  fixtureName: string,
): Promise<{ dir: string; bin: string; use(name: string, code?: number): void } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "iris-fake-smi-" });
  const bin = `${dir}/nvidia-smi`;
  await Deno.writeTextFile(
    bin,
    `#!/bin/sh\ncat "${dir}/out.csv"\nexit "$(cat "${dir}/code" 2>/dev/null || echo 0)"\n`,
  );
  await Deno.chmod(bin, 0o755);
  const use = (name: string, code = 0) => {
    Deno.writeTextFileSync(`${dir}/out.csv.tmp`, fixture(name));
    Deno.renameSync(`${dir}/out.csv.tmp`, `${dir}/out.csv`);
    Deno.writeTextFileSync(`${dir}/code`, String(code));
  };
  use(fixtureName);
  return {
    dir,
    bin,
    use,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}
