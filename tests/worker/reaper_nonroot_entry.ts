/**
 * A stand-in for a worker without root, run by tests/worker/reaper_test.ts under an
 * unprivileged uid (its source must need no import map: it runs with --no-config). Uses the
 * worker's own pieces — ledger, watchdog, session-leader spawn with the tag in the env — to
 * start the stubborn task given as arguments, prints "ready <leader pid>" and waits to be killed.
 * Usage: reaper_nonroot_entry.ts ROOT SCRIPT
 * @module
 */
import { spawnSessionLeader } from "../../src/worker/process_tree.ts";
import { REAP_TAG_ENV, ReapLedger, reapTag, startReaper } from "../../src/worker/reaper.ts";
import { setsidPath } from "../../src/worker/process_tree.ts";

const [root, script] = Deno.args as [string, string];
const tag = reapTag(root);
const ledger = new ReapLedger(root, tag);
startReaper({ rootDir: root, removeDir: root, setsid: setsidPath() });
await Deno.mkdir(`${root}/tasks`, { recursive: true });
const child = spawnSessionLeader("/bin/sh", ["-c", script], {
  cwd: `${root}/tasks`,
  env: { PATH: "/usr/bin:/bin", [REAP_TAG_ENV]: tag },
});
ledger.addSession(child.pid);
console.log(`ready ${child.pid}`);
// Keep the pipes drained; the test SIGKILLs this process.
await Promise.all([
  child.stdout.pipeTo(new WritableStream()),
  child.stderr.pipeTo(new WritableStream()),
]);
await child.status;
