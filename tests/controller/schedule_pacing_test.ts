/** Pacing of scheduling passes (schedule_pacing.ts): the next pass waits as long as the last took. */
import { assertEquals } from "../_helpers/assert.ts";
import { FakeClock, ms, seconds } from "../../src/time.ts";
import { MAX_PASS_DELAY, SchedulePacer } from "../../src/controller/schedule_pacing.ts";

Deno.test("schedule pacing: cheap passes run back to back, a slow one delays the next by its length, at most a second", () => {
  const clock = new FakeClock();
  const pacer = new SchedulePacer(clock);
  assertEquals(pacer.delay(), 0, "before any pass");
  assertEquals(pacer.time(() => "plan"), "plan");
  assertEquals(pacer.delay(), 0, "a pass that took no time");
  pacer.time(() => clock.jump(ms(300)));
  assertEquals(pacer.delay(), 300);
  pacer.time(() => clock.jump(seconds(5)));
  assertEquals(pacer.delay(), MAX_PASS_DELAY);
  pacer.time(() => clock.jump(ms(0.5)));
  assertEquals(pacer.delay(), 0, "under a millisecond is cheap");
});
