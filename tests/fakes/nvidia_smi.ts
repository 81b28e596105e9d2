/**
 * A fake `nvidia-smi` (a shell script in a temp dir) replaying recorded outputs; `use()` swaps
 * the output mid-test (a GPU that fails while tasks run). It answers the two forms Iris runs, as
 * nvidia-smi(1) documents them:
 * - `--query-gpu=F,… --format=csv,noheader,nounits`: the fixture `<name>.csv` (one GPU a line,
 *   `, `-separated, or nvidia-smi's message such as "No devices were found"), with the exit code
 *   given to `use()` (6: no devices, 9: driver not loaded, 15: GPU fallen off the bus). A field
 *   nvidia-smi does not know is refused as it does (`Field "x" is not a valid field to query.`,
 *   exit 2), and so is a query without `--format=csv,noheader,nounits`.
 * - `-L`: `<name>.L.txt` when there is one (MIG devices), else `GPU i: NAME (UUID: …)` lines made
 *   from the CSV.
 * @module
 */
/** Recorded `nvidia-smi` outputs (tests/worker/fixtures/nvidia-smi). */
export const NVIDIA_SMI_FIXTURES = new URL("../worker/fixtures/nvidia-smi/", import.meta.url);
const fixture = (name: string) => Deno.readTextFileSync(new URL(name, NVIDIA_SMI_FIXTURES));

/** Fields of `nvidia-smi --help-query-gpu` the fake accepts. */
const KNOWN_FIELDS = [
  "index",
  "uuid",
  "name",
  "pci.bus_id",
  "driver_version",
  "memory.total",
  "memory.used",
  "memory.free",
  "utilization.gpu",
  "utilization.memory",
  "temperature.gpu",
  "power.draw",
  "mig.mode.current",
  "mig.mode.pending",
];

/** `nvidia-smi -L` lines for a query fixture without its own list. */
function listOf(csv: string): string {
  return csv.split("\n").map((l) => l.split(",").map((s) => s.trim()))
    .filter((f) => /^\d+$/.test(f[0] ?? "") && f.length >= 3)
    .map((f) => `GPU ${f[0]}: ${f[2]} (UUID: ${f[1]})\n`).join("");
}

/** A fake `nvidia-smi` in a temp dir that answers from `<dir>/out.csv`, `<dir>/list.txt`, `<dir>/code`. */
export async function fakeNvidiaSmi(
  fixtureName: string,
): Promise<{ dir: string; bin: string; use(name: string, code?: number): void } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "iris-fake-smi-" });
  const bin = `${dir}/nvidia-smi`;
  const known = KNOWN_FIELDS.join(" ");
  await Deno.writeTextFile(
    bin,
    `#!/bin/sh
code="$(cat "${dir}/code" 2>/dev/null || echo 0)"
case "$1" in
  -L)
    cat "${dir}/list.txt"; exit "$code" ;;
  --query-gpu=*)
    fields="\${1#--query-gpu=}"
    for f in $(echo "$fields" | tr ',' ' '); do
      case " ${known} " in
        *" $f "*) ;;
        *) echo "Field \\"$f\\" is not a valid field to query."; exit 2 ;;
      esac
    done
    if [ "$2" != "--format=csv,noheader,nounits" ]; then
      echo "fake nvidia-smi: expected --format=csv,noheader,nounits, got '$2'"; exit 2
    fi
    cat "${dir}/out.csv"; exit "$code" ;;
  *)
    echo "fake nvidia-smi: unsupported arguments: $*" >&2; exit 2 ;;
esac
`,
  );
  await Deno.chmod(bin, 0o755);
  const use = (name: string, code = 0) => {
    const csv = fixture(name);
    let list: string;
    try {
      list = fixture(name.replace(/\.csv$/, ".L.txt"));
    } catch {
      list = code === 0 ? listOf(csv) : csv;
    }
    for (const [file, text] of [["out.csv", csv], ["list.txt", list]] as const) {
      Deno.writeTextFileSync(`${dir}/${file}.tmp`, text);
      Deno.renameSync(`${dir}/${file}.tmp`, `${dir}/${file}`);
    }
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
