/**
 * The worker's watchdog (see reaper.ts): `reaper_main.ts --root DIR [--remove DIR]`. Waits for
 * EOF on stdin. A worker that stops cleanly writes "clean" first and the watchdog just exits;
 * otherwise the worker died, and the watchdog kills what its ledger and tag name, removes
 * `--remove` (a temporary root) and exits.
 * @module
 */
import { readLedger, reapTag, removeFilesOf, sweep } from "./reaper.ts";

function arg(name: string): string | undefined {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

async function main(): Promise<number> {
  const root = arg("--root");
  if (!root) {
    console.error("reaper: --root DIR is required");
    return 2;
  }
  const remove = arg("--remove");
  let text = "";
  const decoder = new TextDecoder();
  const buf = new Uint8Array(64);
  while (true) {
    const n = await Deno.stdin.read(buf).catch(() => null);
    if (n === null) break;
    text += decoder.decode(buf.subarray(0, n));
  }
  if (text.includes("clean")) return 0;
  // Without a ledger (it could not be written) the tag alone still finds the tasks.
  const ledger = readLedger(root) ?? { tag: reapTag(root), workerPid: 0, uids: [], sids: [] };
  const started = performance.now();
  const result = await sweep(ledger);
  console.error(
    `reaper: the worker of ${root}${
      ledger.workerPid ? ` (pid ${ledger.workerPid})` : ""
    } died; killed ${result.killed} task processes in ${
      Math.round(performance.now() - started)
    } ms` + (result.left > 0 ? `, ${result.left} still running` : ""),
  );
  if (ledger.uids.length > 0) await removeFilesOf(new Set(ledger.uids));
  if (result.left === 0) await Deno.remove(`${root}/reap.json`).catch(() => {});
  if (remove) await Deno.remove(remove, { recursive: true }).catch(() => {});
  return 0;
}

Deno.exit(await main());
