/**
 * A 10,000-replica job beside a small job of another user (issue #15): an in-process controller
 * with a state dir (synchronous=FULL) and four fake workers that finish every task they are
 * given at their next heartbeat. The small job is placed by the first scheduling pass after it
 * is submitted, while most of the big job is still pending; every completion writes its task's
 * row and the job's row only; the big job ends with every task SUCCEEDED once. Prints the
 * completion rate and write volume (docs/durability.md); `deno run -A bench/state_bench.ts`
 * compares the rate with single-task jobs'.
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { JobState, TaskState } from "../../src/rpc/mod.ts";
import { harness, spec } from "../_helpers/controller_harness.ts";

Deno.test("a 10,000-replica job finishes beside another user's small job, which starts within one pass", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-big-job-" });
  try {
    await using h = harness(`${dir}/big`);
    const { c, store } = h;
    const big = c.launchJob(spec("alice", "big", 10_000), "big").jobId;
    const t0 = performance.now();
    const writes0 = { ...store.written };
    const io0 = bytesWritten();
    let rounds = 0;
    let completed = 0;
    let small = "";
    while (c.jobs.job(big).state !== JobState.SUCCEEDED) {
      assert(rounds++ < 2_000, "the big job should finish in bounded rounds");
      if (rounds === 50) {
        // The big job is running and most of it is still pending.
        const pending = c.jobs.pending.get(big)!.size;
        assert(pending > 5_000, `pending: ${pending}`);
        small = c.launchJob(spec("bob", "small", 2), "small").jobId;
        const r = h.round();
        completed += r.completed;
        // At its submit (an idle scheduler places it then) or in the first pass after.
        assertEquals(
          c.jobs.job(small).taskIds.map((id) => c.jobs.task(id).attempts.length),
          [1, 1],
          "bob's job is placed by the first pass after its submit",
        );
        continue;
      }
      completed += h.round().completed;
    }
    const secs = (performance.now() - t0) / 1000;
    // Every task once: 10,000 successes, one attempt each.
    const tasks = c.jobs.job(big).taskIds.map((id) => c.jobs.task(id));
    assertEquals(tasks.filter((t) => t.state === TaskState.SUCCEEDED).length, 10_000);
    assertEquals(tasks.filter((t) => t.attempts.length !== 1).length, 0);
    h.round();
    assertEquals(c.jobs.job(small).state, JobState.SUCCEEDED);
    const io = bytesWritten() - io0;
    const rows = store.written.rows - writes0.rows;
    const mib = (store.written.bytes - writes0.bytes) / 2 ** 20;
    // A placement and a completion each write the task row and the job row (per flush).
    assert(rows < 10_000 * 2 * 2, `rows written: ${rows}`);
    console.log(
      `10,000-replica job: ${completed} completions in ${secs.toFixed(1)} s (${
        Math.round(completed / secs)
      }/s), ${rows} rows, ${mib.toFixed(1)} MiB of rows written (${
        Math.round((store.written.bytes - writes0.bytes) / completed)
      } bytes per completion); the process wrote ${(io / 2 ** 20).toFixed(0)} MiB (${
        (io / 2 ** 20 / secs).toFixed(1)
      } MiB/s, SQLite pages and WAL frames)`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Bytes this process has passed to write(2) so far (Linux /proc/self/io `wchar`; else 0). */
function bytesWritten(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/self/io").match(/^wchar: (\d+)/m)?.[1] ?? 0);
  } catch {
    return 0;
  }
}
