/**
 * FakeClock (src/time.ts): time stands still until a test moves it; sleepers wake in due order at
 * their own due time, woken code gets to run before the next timer fires, aborts are honoured,
 * `jump` models a blocked process, Deadline sees fake time, and the scripted command runner's
 * delays and timeouts run on it.
 */
import { assert, assertEquals, assertRejects } from "./_helpers/assert.ts";
import { Deadline, FakeClock, minutes, ms, seconds, timestamp } from "../src/time.ts";
import { ScriptedRunner } from "./fakes/scripted_runner.ts";
import type { CommandResult } from "../src/command/command.ts";

Deno.test("FakeClock: time stands still until advanced; wall and monotonic move together", async () => {
  const clock = new FakeClock(timestamp(1_000_000));
  assertEquals(clock.now(), 1_000_000);
  assertEquals(clock.monotonic(), 0);
  await clock.advance(seconds(2));
  assertEquals(clock.now(), 1_002_000);
  assertEquals(clock.monotonic(), 2000);
  clock.jump(ms(500));
  assertEquals([clock.now(), clock.monotonic()], [1_002_500, 2500]);
});

Deno.test("FakeClock: sleepers wake in due order, each at its own due time", async () => {
  const clock = new FakeClock();
  const woke: [string, number][] = [];
  const nap = (name: string, d: number) =>
    clock.sleep(ms(d)).then(() => woke.push([name, clock.monotonic()]));
  const all = Promise.all([nap("c", 300), nap("a", 100), nap("b", 200), nap("a2", 100)]);
  assertEquals(clock.pending, 4);
  assertEquals(clock.nextDue(), 100);
  await clock.advance(ms(150));
  assertEquals(woke, [["a", 100], ["a2", 100]], "only what fell due, in the order set");
  await clock.advance(ms(1000));
  await all;
  assertEquals(woke.map(([n, t]) => `${n}@${t}`), ["a@100", "a2@100", "b@200", "c@300"]);
  assertEquals(clock.monotonic(), 1150);
  assertEquals(clock.pending, 0);
});

Deno.test("FakeClock: a loop that sleeps again ticks at every interval within one advance", async () => {
  const clock = new FakeClock();
  const ticks: number[] = [];
  const stop = new AbortController();
  const loop = (async () => {
    while (true) {
      try {
        await clock.sleep(ms(100), stop.signal);
      } catch {
        return;
      }
      ticks.push(clock.monotonic());
    }
  })();
  await clock.advance(ms(450));
  assertEquals(ticks, [100, 200, 300, 400]);
  stop.abort();
  await loop;
  assertEquals(clock.pending, 0, "the aborted sleep was removed");
});

Deno.test("FakeClock: an aborted sleep rejects with the reason and never fires", async () => {
  const clock = new FakeClock();
  const ac = new AbortController();
  const p = clock.sleep(seconds(1), ac.signal);
  ac.abort(new Error("stop now"));
  await assertRejects(() => p, /stop now/);
  await assertRejects(() => clock.sleep(seconds(1), ac.signal), /stop now/);
  assertEquals(clock.pending, 0);
});

Deno.test("FakeClock: jump leaves timers overdue until runDue, as a blocked process would", async () => {
  const clock = new FakeClock();
  let wokeAt = -1;
  const p = clock.sleep(ms(100)).then(() => wokeAt = clock.monotonic());
  clock.jump(seconds(3));
  await clock.settle();
  assertEquals(wokeAt, -1, "nothing fires during a jump");
  await clock.runDue();
  await p;
  assertEquals(wokeAt, 3000, "the overdue timer sees the late time");
});

Deno.test("FakeClock: Deadline runs on it; advanceUntil names what never happened", async () => {
  const clock = new FakeClock();
  const deadline = Deadline.after(seconds(10), clock);
  await clock.advance(seconds(9));
  assertEquals([deadline.expired(), deadline.remaining()], [false, 1000]);
  await clock.advance(seconds(1));
  assert(deadline.expired());
  let n = 0;
  const got = await clock.advanceUntil(() => ++n >= 3 && n, {
    step: ms(10),
    limit: seconds(1),
    what: "three polls",
  });
  assertEquals(got, 3);
  await assertRejects(
    () =>
      clock.advanceUntil(() => false, { step: ms(100), limit: ms(300), what: "the impossible" }),
    /FakeClock: the impossible did not happen within 300ms/,
  );
  await assertRejects(() => clock.advance(ms(-1)), /must be >= 0/);
});

Deno.test("FakeClock: a zero-delay sleep fires when the loop settles, without moving time", async () => {
  const clock = new FakeClock();
  const order: string[] = [];
  void clock.sleep(ms(0)).then(() => {
    order.push("first");
    // Set by woken code: fires in the same settle.
    void clock.sleep(ms(0)).then(() => order.push("second"));
  });
  void clock.sleep(ms(1)).then(() => order.push("timer"));
  await clock.settle();
  assertEquals(order, ["first", "second"]);
  assertEquals(clock.monotonic(), 0);
  await clock.advance(ms(1));
  assertEquals(order, ["first", "second", "timer"]);
});

Deno.test("ScriptedRunner on a FakeClock: delays and hard timeouts pass when the test moves time", async () => {
  const clock = new FakeClock();
  const runner = new ScriptedRunner([], { clock })
    .on(["slow"], { stdout: "done\n", delay: seconds(30) })
    .on(["stuck"], { hang: true });
  let slow: CommandResult | undefined;
  let stuck: CommandResult | undefined;
  void runner.run({ argv: ["slow"] }, { timeout: minutes(1) }).then((r) => slow = r);
  void runner.run({ argv: ["stuck"] }, { timeout: minutes(5) }).then((r) => stuck = r);
  await clock.advance(seconds(29));
  assertEquals([slow?.code, stuck?.code], [undefined, undefined]);
  await clock.advance(seconds(1));
  assertEquals([slow?.code, slow?.stdout, slow?.timedOut], [0, "done\n", false]);
  await clock.advance(minutes(4));
  assertEquals(stuck?.code, undefined, "still within its 5 minutes");
  await clock.advance(minutes(1));
  assertEquals([stuck?.timedOut, stuck?.signal], [true, "SIGTERM"]);
  assertEquals(clock.pending, 0, "the losing sleeps were cancelled");
});
