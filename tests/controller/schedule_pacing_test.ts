/** Pacing of scheduling passes (schedule_pacing.ts): the next pass waits as long as the last took. */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { FakeClock, ms, seconds } from "../../src/time.ts";
import {
  BUSY_WINDOW,
  MAX_PASS_DELAY,
  SchedulePacer,
} from "../../src/controller/schedule_pacing.ts";

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

Deno.test("schedule pacing: idle once no pass placed anything for a while and the last one's pacing is over", () => {
  const clock = new FakeClock();
  const pacer = new SchedulePacer(clock);
  assertEquals(pacer.idle(), true, "before any pass");
  pacer.time(() => "nothing placed");
  assertEquals(pacer.idle(), true, "a cheap pass that placed nothing");
  pacer.time(() => "placed", () => true);
  assertEquals(pacer.idle(), false, "a burst may be under way");
  clock.jump(ms(BUSY_WINDOW - 0.1));
  assertEquals(pacer.idle(), false);
  clock.jump(ms(0.1));
  assertEquals(pacer.idle(), true);
  pacer.time(() => clock.jump(ms(300)));
  assertEquals(pacer.idle(), false, "right after a slow pass");
  clock.jump(ms(299));
  assertEquals(pacer.idle(), false);
  clock.jump(ms(1));
  assertEquals(pacer.idle(), true, "as long after it as it took");
  let threw = false;
  try {
    pacer.time(() => {
      throw new Error("pass failed");
    }, () => true);
  } catch {
    threw = true;
  }
  assert(threw, "the pass's error reaches the caller");
  assertEquals(pacer.idle(), true, "a pass that threw placed nothing");
});
