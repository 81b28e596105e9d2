/**
 * Persisted job, task and worker state changes only inside its tables (state.ts, workers.ts,
 * endpoints.ts), which mark what they touch for the store (store.ts writes and clears the marks).
 * This scans the controller's sources for a mark or a field edit made elsewhere; the behaviour
 * side is tests/controller/persisted_state_test.ts.
 * @module
 */
import { assertEquals } from "../_helpers/assert.ts";

const ROOT = new URL("../../src/", import.meta.url);
/** The tables and the store: the only places that edit records and marks. */
const TABLES = new Set([
  "controller/state.ts",
  "controller/workers.ts",
  "controller/endpoints.ts",
  "controller/store.ts",
]);
/** Fields of JobRecord, TaskRecord, AttemptRecord and WorkerRecord that change over time. */
const FIELDS = [
  "band",
  "bandReason",
  "reservationReady",
  "ports",
  "pendingReason",
  "pendingSinceMs",
  "peakMemoryBytes",
  "failureCount",
  "preemptionCount",
  "stderrTail",
  "exitCode",
  "startedAtMs",
  "finishedAtMs",
  "isWorkerFailure",
  "lastHeartbeatMs",
  "healthy",
  "state",
  "error",
  "address",
  "statusMessage",
  "reconnecting",
];
const MARK = /\.(dirty|dirtyTasks)\.(add|delete|clear)\(/;
const EDIT = new RegExp(
  `(?<!\\bthis)\\.(${FIELDS.join("|")})\\s*(=[^=]|\\+=|-=|\\+\\+|--|\\?\\?=)`,
);

async function* sources(dir: URL, rel = ""): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const path = `${rel}${e.name}`;
    if (e.isDirectory) yield* sources(new URL(`${e.name}/`, dir), `${path}/`);
    else if (e.name.endsWith(".ts")) yield path;
  }
}

Deno.test("no mark for the store and no record field edit outside the tables", async () => {
  const found: string[] = [];
  for await (const path of sources(ROOT)) {
    if (TABLES.has(path)) continue;
    // The autoscaler's slices are its own state (saved whole by the runner), not table records.
    const scan = path.startsWith("controller/") && !path.startsWith("controller/autoscaler/");
    const text = await Deno.readTextFile(new URL(path, ROOT));
    for (const [i, line] of text.split("\n").entries()) {
      if (MARK.test(line) || (scan && EDIT.test(line))) {
        found.push(`src/${path}:${i + 1}: ${line.trim()}`);
      }
    }
  }
  assertEquals(found, []);
});

Deno.test("the scan finds a mark and a field edit when there is one", () => {
  assertEquals(MARK.test("this.jobs.dirty.add(jobId);"), true);
  assertEquals(EDIT.test("job.band = 3;"), true);
  assertEquals(EDIT.test("task.ports = { ...u.ports };"), true);
  assertEquals(EDIT.test("if (job.state === 4) x();"), false);
  assertEquals(EDIT.test("this.startedAtMs = now;"), false);
});
