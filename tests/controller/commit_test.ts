/**
 * The store commit path (commit.ts): a failed write undoes the uncommitted changes, marks the
 * state unwritable (changes refused with `unavailable`) and a probe write that passes resumes.
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { withTempDir } from "../_helpers/temp_dir.ts";
import { FakeClock, seconds } from "../../src/time.ts";
import { UnavailableError } from "../../src/errors.ts";
import { TaskState } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { type Effects, JobTable, noEffects } from "../../src/controller/state.ts";
import { EndpointTable } from "../../src/controller/endpoints.ts";
import { StateStore } from "../../src/controller/store.ts";
import { Reconciler } from "../../src/controller/reconcile.ts";
import { attemptKey } from "../../src/controller/workers.ts";
import { holdAttempt } from "../../src/controller/snapshot.ts";
import {
  type CommitContext,
  CommitGroup,
  ensureWritable,
  flush,
  probe,
  tryFlush,
  writeHealth,
} from "../../src/controller/commit.ts";
import { spec, workerTable } from "./_concern_fixtures.ts";

/** A commit context over fresh tables; `store.fail` makes writes (and probes) fail. */
function context(store?: StateStore): CommitContext & { lines: string[] } {
  const lines: string[] = [];
  return {
    jobs: new JobTable(),
    endpoints: new EndpointTable(),
    workers: workerTable(1),
    reconciler: new Reconciler(),
    store,
    clock: new FakeClock(),
    write: {},
    log: (line) => lines.push(line),
    lines,
  };
}

/** A store whose writes and probes fail while `failing.on`. */
function failingStore(dir: string): { store: StateStore; failing: { on: boolean } } {
  const store = StateStore.open(dir);
  const failing = { on: false };
  const realFlush = store.flush.bind(store);
  const realProbe = store.probe.bind(store);
  store.flush = (table, endpoints, workers) => {
    if (failing.on) throw new Error("database or disk is full");
    realFlush(table, endpoints, workers);
  };
  store.probe = () => {
    if (failing.on) throw new Error("database or disk is full");
    realProbe();
  };
  return { store, failing };
}

function submit(ctx: CommitContext, name: string, fx: Effects = noEffects()): string {
  return ctx.jobs.submit(spec({ name }), `r-${name}`, ctx.clock.now(), fx).jobId;
}

Deno.test("commit: memory only, a flush clears the marks and the state stays writable", () => {
  const ctx = context();
  submit(ctx, "a");
  assert(ctx.jobs.dirty.size > 0);
  flush(ctx);
  assertEquals(ctx.jobs.dirty.size, 0);
  assertEquals(ctx.workers.dirty.size, 0);
  assertEquals(writeHealth(ctx.write), { healthy: true, message: "" });
  ensureWritable(ctx.write);
});

Deno.test("commit: a failed write undoes the uncommitted changes and refuses changes until a probe passes", () =>
  withTempDir("iris-commit-", async (dir) => {
    const { store, failing } = failingStore(dir);
    try {
      const ctx = context(store);
      const kept = submit(ctx, "kept");
      flush(ctx);
      failing.on = true;
      const lost = submit(ctx, "lost");
      let threw: unknown;
      try {
        flush(ctx);
      } catch (err) {
        threw = err;
      }
      assert(threw instanceof UnavailableError, `threw ${threw}`);
      assertEquals([...ctx.jobs.jobs.keys()], [kept], `${lost} was undone`);
      assertEquals(ctx.write.unwritable?.reloaded, true);
      assertEquals(writeHealth(ctx.write).healthy, false);
      assert(writeHealth(ctx.write).message.includes("database or disk is full"));
      let refused = false;
      try {
        ensureWritable(ctx.write);
      } catch (err) {
        refused = err instanceof UnavailableError;
      }
      assert(refused, "changes are refused while unwritable");
      assertEquals(tryFlush(ctx), false);

      await (ctx.clock as FakeClock).advance(seconds(2));
      assertEquals(probe(ctx), false, "the probe fails while the disk is full");
      assert(ctx.write.unwritable);
      failing.on = false;
      const w0 = ctx.workers.workers.get("w0")!;
      const deadlineBefore = w0.lastHeartbeatMs;
      assertEquals(probe(ctx), true);
      assertEquals(ctx.write.unwritable, undefined);
      assertEquals(w0.lastHeartbeatMs > deadlineBefore, true, "heartbeat deadlines restart");
      assert(
        ctx.lines.some((l) => l.includes("can be written again (after 2.0s)")),
        ctx.lines.join(),
      );
      ensureWritable(ctx.write);
    } finally {
      store.close();
    }
  }));

Deno.test("commit: a rollback makes the workers' commitments match the reloaded attempts", () =>
  withTempDir("iris-commit-", (dir) => {
    const { store, failing } = failingStore(dir);
    try {
      const ctx = context(store);
      const w0 = ctx.workers.workers.get("w0")!;
      const jobId = submit(ctx, "a");
      const job = ctx.jobs.job(jobId);
      const task = ctx.jobs.task(job.taskIds[0]!);
      const first = ctx.jobs.assign(task.taskId, "w0", ctx.clock.now());
      holdAttempt(ctx.workers, w0, job, task, first);
      flush(ctx);
      // Uncommitted: the attempt fails and a retry is placed on the same worker.
      ctx.jobs.attemptEnded(task, first, {
        state: TaskState.WORKER_FAILED,
        error: "gone",
        finishedAtMs: ctx.clock.now(),
      }, noEffects());
      ctx.workers.release("w0", attemptKey(task.taskId, first.attemptId));
      const retry = ctx.jobs.assign(task.taskId, "w0", ctx.clock.now());
      holdAttempt(ctx.workers, w0, job, task, retry);
      failing.on = true;
      assertEquals(tryFlush(ctx), false);
      assertEquals([...w0.active.keys()], [attemptKey(task.taskId, first.attemptId)]);
      assertEquals(ctx.jobs.currentAttempt(ctx.jobs.task(task.taskId))?.attemptId, first.attemptId);
    } finally {
      store.close();
    }
  }));

Deno.test("commit group: submits of one turn share a commit, each answered after it; a bad one fails alone", () =>
  withTempDir("iris-commit-", async (dir) => {
    const store = StateStore.open(dir);
    try {
      const ctx = context(store);
      const group = new CommitGroup(ctx);
      const seq0 = store.commitSeq;
      const after: string[] = [];
      const calls = ["a", "b", "c"].map((name) =>
        group.run(() => submit(ctx, name), (jobId) => {
          assertEquals(ctx.jobs.dirty.size, 0, "committed before its effects");
          after.push(jobId);
        })
      );
      const bad = group.run(() => {
        throw new Error("refused");
      }, () => after.push("bad"));
      assertEquals(ctx.jobs.jobs.size, 0, "nothing applied before the group runs");
      assertEquals(await Promise.all(calls), ["/alice/a", "/alice/b", "/alice/c"]);
      assertEquals(await bad.catch((err: Error) => err.message), "refused");
      assertEquals(store.commitSeq, seq0 + 1, "one commit for the group");
      assertEquals(after, ["/alice/a", "/alice/b", "/alice/c"]);
      // Memory only: applied and answered at once.
      const memory = context();
      const now = new CommitGroup(memory).run(() => submit(memory, "m"), () => {});
      assertEquals(memory.jobs.jobs.size, 1);
      assertEquals(await now, "/alice/m");
    } finally {
      store.close();
    }
  }));

Deno.test("commit group: a failed commit undoes the whole group and fails every call with unavailable", () =>
  withTempDir("iris-commit-", async (dir) => {
    const { store, failing } = failingStore(dir);
    try {
      const ctx = context(store);
      const group = new CommitGroup(ctx);
      failing.on = true;
      const after: string[] = [];
      const calls = ["a", "b"].map((name) =>
        group.run(() => submit(ctx, name), (jobId) => after.push(jobId)).then(
          () => "answered",
          (err) => err instanceof UnavailableError ? "unavailable" : `${err}`,
        )
      );
      assertEquals(await Promise.all(calls), ["unavailable", "unavailable"]);
      assertEquals(ctx.jobs.jobs.size, 0, "undone");
      assertEquals(after, [], "no effects of changes not committed");
      assert(ctx.write.unwritable, "marked unwritable");
    } finally {
      store.close();
    }
  }));
